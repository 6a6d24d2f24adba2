"""Takes the photos of people that the ultralytics wheel ships (bus.jpg, zidane.jpg) out of the wheel.

    python benchmarks/extract_photos.py ultralytics-*.whl OUT_DIR

Used by `make check-clients` (the BoxMOT check's real frames); the wheel comes from PyPI with
`pip download ultralytics --no-deps`.
"""

import os
import sys
import zipfile

PHOTOS = ("bus.jpg", "zidane.jpg")


def main(wheel, out_dir):
    with zipfile.ZipFile(wheel) as z:
        for name in PHOTOS:
            with open(os.path.join(out_dir, name), "wb") as f:
                f.write(z.read(f"ultralytics/assets/{name}"))
    print(f"wrote {', '.join(PHOTOS)} to {out_dir}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
