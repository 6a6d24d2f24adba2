"""Image files without TensorFlow: reading, listing, re-ID file names and checksums.

Deployment (`keras_mmga.deploy`, the `search` command) runs where only ONNX
Runtime, OpenCV and NumPy are installed, so what it shares with the training
side lives here and imports nothing else: the image suffixes, decoding with
OpenCV, the Market-1501 / DukeMTMC-reID file-name patterns and the SHA-256 of
a file.

Example:
```python
from keras_mmga.image_io import list_images, parse_reid_name, read_image
paths = list_images("Market-1501/query")
read_image(paths[0]).shape, parse_reid_name(paths[0])
```
"""

import hashlib
import os
import re

import numpy as np

# The image files every command reads (masks, training, evaluation, export, search): one list.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_SUFFIX = "(?:" + "|".join(s[1:] for s in IMAGE_SUFFIXES) + ")"

# `(pid, camera)` groups; camera numbered from 1 in the names, 0-based once parsed.
MARKET_PATTERN = re.compile(r"^(-?\d+)_c(\d)s\d+_\d+_\d+\." + _SUFFIX + "$", re.IGNORECASE)
DUKE_PATTERN = re.compile(r"^(-?\d+)_c(\d+)_f\d+\." + _SUFFIX + "$", re.IGNORECASE)


def read_image(path):
    """An image file as BGR uint8 `(H, W, 3)` (grey and alpha images are converted).

    Raises `FileNotFoundError` for a missing file and `ValueError` for one
    that is not a readable image.

    Example:
    ```python
    read_image("query/0001_c1s1_001051_00.jpg").shape
    ```
    """
    import cv2

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image not found: {path!r}.")
    # imdecode of the bytes, not imread: works for any path encoding.
    image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"Cannot decode image {path!r} (not a JPEG/PNG/BMP/WebP/TIFF, or corrupt).")
    return image


def image_shape(path):
    """`(H, W)` of an image file from its header (PNG, JPEG), else by decoding it; None when unreadable.

    Reading a JPEG header is about a hundred times faster than decoding it.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
            if head[:2] == b"\xff\xd8":
                f.seek(2)
                while True:
                    marker = f.read(2)
                    if len(marker) < 2 or marker[0] != 0xFF:
                        break
                    if marker[1] in (0xD8, 0x01) or 0xD0 <= marker[1] <= 0xD7:
                        continue
                    length = int.from_bytes(f.read(2), "big")
                    # Start-of-frame markers (baseline, progressive, ...) hold the size.
                    if 0xC0 <= marker[1] <= 0xCF and marker[1] not in (0xC4, 0xC8, 0xCC):
                        data = f.read(5)
                        return int.from_bytes(data[1:3], "big"), int.from_bytes(data[3:5], "big")
                    f.seek(length - 2, 1)
    except OSError:
        return None
    try:
        image = read_image(path)
    except (FileNotFoundError, ValueError):
        return None
    return image.shape[:2]


def is_image_file(name):
    """True when `name` ends with one of `IMAGE_SUFFIXES` (any case)."""
    return os.fspath(name).lower().endswith(IMAGE_SUFFIXES)


def list_images(folder, what="Image folder"):
    """The image files directly in `folder`, sorted by name (not recursive).

    Raises `FileNotFoundError` naming `what` and the folder when it does not exist.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{what} not found: {folder!r}.")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if is_image_file(f))


def parse_reid_name(name):
    """`(pid, camid)` of a Market-1501 or DukeMTMC-reID file name (camid 0-based), else `(-1, -1)`.

    Example:
    ```python
    parse_reid_name("/x/0002_c3s1_000300_01.jpg"), parse_reid_name("photo.jpg")
    ```
    """
    base = os.path.basename(os.fspath(name))
    for pattern in (MARKET_PATTERN, DUKE_PATTERN):
        match = pattern.match(base)
        if match is not None:
            pid, cam = int(match.group(1)), int(match.group(2))
            if pid >= -1 and cam >= 1:
                return pid, cam - 1
    return -1, -1


def sha256(path):
    """Hex SHA-256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(os.fspath(path), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
