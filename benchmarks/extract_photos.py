"""Takes the photos of people that some wheels on PyPI ship out of the wheels.

    python benchmarks/extract_photos.py WHEEL [WHEEL ...] OUT_DIR

Known wheels (from `pip download <project> --no-deps`):
  ultralytics   bus.jpg (four people walking, full bodies), zidane.jpg (two men, waist up)
  scikit-image  astronaut.png (a woman, chest up), camera.png (a man in a long coat, thighs up, grey)
  matplotlib    grace_hopper.jpg (a woman in uniform, head and shoulders, dark clothes)

Used by `make check-clients` (the BoxMOT check's real frames, from ultralytics) and by
`benchmarks/preview_real_photos.py` (all of them).
"""

import os
import sys
import zipfile

# Project (the wheel file's name up to its first "-") -> {member in the wheel: file name written}.
PHOTOS = {
    "ultralytics": {"ultralytics/assets/bus.jpg": "bus.jpg", "ultralytics/assets/zidane.jpg": "zidane.jpg"},
    "scikit_image": {"skimage/data/astronaut.png": "astronaut.png", "skimage/data/camera.png": "camera.png"},
    "matplotlib": {"matplotlib/mpl-data/sample_data/grace_hopper.jpg": "grace_hopper.jpg"},
}


def extract(wheel, out_dir):
    """Writes the known photos of `wheel` into `out_dir`; returns their file names."""
    project = os.path.basename(wheel).split("-")[0].lower()
    if project not in PHOTOS:
        raise SystemExit(f"{wheel}: not a wheel with known photos (expected one of {', '.join(sorted(PHOTOS))}).")
    with zipfile.ZipFile(wheel) as z:
        for member, name in PHOTOS[project].items():
            with open(os.path.join(out_dir, name), "wb") as f:
                f.write(z.read(member))
    return list(PHOTOS[project].values())


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    *wheels, out_dir = argv
    os.makedirs(out_dir, exist_ok=True)
    written = [name for wheel in wheels for name in extract(wheel, out_dir)]
    print(f"wrote {', '.join(written)} to {out_dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
