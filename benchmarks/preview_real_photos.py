"""A preview sheet of masks on real photos: people cropped from the photos that wheels on PyPI ship.

Usage:
    python -m pip download ultralytics scikit-image matplotlib --no-deps -d /tmp/ul
    python benchmarks/extract_photos.py /tmp/ul/*.whl /tmp/ul/photos
    python benchmarks/preview_real_photos.py --assets /tmp/ul/photos \\
        --out docs/images/masks_real_photos.jpg [--pose-model PATH]

Each row: the crop, its whole mask, its parts over the image (colours as in
`keras_mmga.masks.writer.PALETTE`), cells 256 px high with the crop's aspect
kept; the caption lists the parts reported absent (or says that no person
was found). The boxes are drawn by
hand (no detector in the wheels); three are cut from a full-body person at the
waist, the knees and the shoulders. The portraits (astronaut, grace_hopper)
and the cameraman (camera, cut at the thighs) are framings a pose model made
for whole bodies squeezes a whole skeleton into.
"""

import argparse
import os

import cv2
import numpy as np

from keras_mmga.masks.parser import PART_NAMES, BodyPartParser
from keras_mmga.masks.writer import colourise

# (file, name, x0, y0, x1, y1) in the photo's pixels.
CROPS = (
    ("zidane.jpg", "zidane left (waist up)", 120, 200, 900, 720),
    ("zidane.jpg", "zidane right (waist up)", 740, 40, 1150, 720),
    ("bus.jpg", "bus coat (full)", 50, 380, 250, 910),
    ("bus.jpg", "bus black coat (full)", 220, 400, 350, 870),
    ("bus.jpg", "bus right edge", 660, 380, 810, 880),
    ("bus.jpg", "bus coat cut at waist", 50, 380, 250, 680),
    ("bus.jpg", "bus coat cut at knees", 50, 380, 250, 780),
    ("bus.jpg", "bus coat below shoulders", 50, 490, 250, 910),
    ("astronaut.png", "astronaut (chest up)", 0, 0, 380, 512),
    ("camera.png", "cameraman (thighs up, dark coat)", 0, 60, 330, 512),
    ("grace_hopper.jpg", "grace_hopper (head and shoulders, dark)", 0, 0, 512, 600),
)


def _caption(text, width, scale=0.4, line_height=16):
    """White rows holding `text`, wrapped at word boundaries to fit `width` pixels."""
    char_w = cv2.getTextSize("m", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]
    per_line, lines = max(8, width // char_w), [""]
    for word in text.split(" "):
        if lines[-1] and len(lines[-1]) + 1 + len(word) > per_line:
            lines.append(word)
        else:
            lines[-1] = f"{lines[-1]} {word}".strip()
    caption = np.full((line_height * len(lines) + 6, width, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(
            caption, line, (2, 13 + line_height * i), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA
        )
    return caption


def cell(image, labels, absent, person=True, height=256):
    h, w = image.shape[:2]
    width = max(1, int(round(w * height / h)))
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    labels = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
    whole = np.repeat(((labels > 0) * 255).astype(np.uint8)[..., None], 3, axis=-1)
    parts = np.where(labels[..., None] > 0, (0.35 * image + 0.65 * colourise(labels)).astype(np.uint8), image // 3)
    gap = np.full((height, 4, 3), 255, np.uint8)
    row = np.concatenate([image, gap, whole, gap, parts], axis=1)
    if not person:
        text = "no person found"
    else:
        text = "absent: " + (", ".join(PART_NAMES.get(a, str(a)) for a in absent) if absent else "none")
    return np.concatenate([row, _caption(text, row.shape[1])], axis=0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", required=True, help="folder of the photos (benchmarks/extract_photos.py)")
    parser.add_argument("--out", default="docs/images/masks_real_photos.jpg")
    parser.add_argument("--pose-model", default=None)
    parser.add_argument("--columns", type=int, default=2)
    args = parser.parse_args(argv)
    body_parser = BodyPartParser(args.pose_model, num_threads=2)
    cells = []
    for name, label, x0, y0, x1, y1 in CROPS:
        photo = cv2.imread(os.path.join(args.assets, name))
        if photo is None:
            raise FileNotFoundError(f"{name} not found under {args.assets!r}.")
        crop = np.ascontiguousarray(photo[y0:y1, x0:x1])
        result = body_parser.parse(crop)
        absent = tuple(getattr(result, "absent", ()))
        body = (result.label_map > 0).mean()
        print(
            f"{label}: person={result.person} confidence={result.confidence:.3f} body={body:.2f} "
            f"absent={[PART_NAMES.get(a, a) for a in absent]} "
            f"labels={sorted(int(v) for v in np.unique(result.label_map) if v)}"
        )
        cells.append(cell(crop, result.label_map, absent, result.person))
    rows = []
    for i in range(0, len(cells), args.columns):
        group = cells[i : i + args.columns]
        width = sum(c.shape[1] for c in group) + 12 * (len(group) - 1)
        row = np.full((max(c.shape[0] for c in group), width, 3), 255, np.uint8)
        x = 0
        for c in group:
            row[: c.shape[0], x : x + c.shape[1]] = c
            x += c.shape[1] + 12
        rows.append(row)
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 12), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    cv2.imwrite(args.out, sheet, [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
