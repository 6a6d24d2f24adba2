"""Image files: checking them before training, decoding and resizing one in a tf.data map.

`check_images` reports a missing, truncated or undecodable JPEG/PNG by path
once, before a pipeline runs (inside a tf.data map a bad file stops training
mid-epoch without naming it); `decode_resize` is the per-image decode that
`keras_mmga.data.pipeline` maps over paths; `check_image_size` validates a
model input size. `keras_mmga.data.pipeline` re-exports these names.
"""

import os

import cv2
import numpy as np
import tensorflow as tf

from keras_mmga.progress import Progress

_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_PNG_START = b"\x89PNG\r\n\x1a\n"
# A PNG ends with an empty IEND chunk: its type and its CRC are fixed bytes.
_PNG_END = b"IEND\xaeB`\x82"
CHECK_MODES = ("header", "decode", "none")


def _check_mode(check_files):
    if check_files is True:
        return "header"
    if check_files is False or check_files is None:
        return "none"
    if check_files not in CHECK_MODES:
        raise ValueError(f"check_files must be one of {CHECK_MODES} (or a bool), got {check_files!r}.")
    return check_files


def check_images(paths, mode="header", verbose=False):
    """Raises on a missing, truncated or undecodable JPEG/PNG file, naming it.

    Done once before the pipeline runs: inside a tf.data map a bad file would
    stop training mid-epoch with a TensorFlow decode error that does not say
    which file it was.

    Args:
        paths: image files.
        mode: `"header"` checks the signature and the end of the file (JPEG's
            end-of-image marker, PNG's IEND chunk): catches truncated
            downloads in microseconds per file;
            `"decode"` also decodes every image (about 0.1 ms per Market-size
            image).
        verbose: show progress (count, images/s, time left) on stderr.

    Example:
    ```python
    check_images([p for p, _, _ in market.train], mode="decode")
    ```
    """
    mode = _check_mode(mode)
    if mode == "none":
        return
    paths = list(paths)
    with Progress(len(paths), "images", label=f"check images ({mode})", verbose=verbose) as bar:
        for path in paths:
            _check_image(os.fspath(path), mode)
            bar.update(1)


def _check_image(path, mode):
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(max(0, size - len(_PNG_END)))
            tail = f.read(len(_PNG_END))
    except OSError as err:
        raise FileNotFoundError(f"Cannot read image {path!r}: {err}") from err
    if head.startswith(_JPEG_START):
        if not tail.endswith(_JPEG_END):
            raise ValueError(f"Corrupt or truncated JPEG {path!r} (no end-of-image marker).")
    elif head.startswith(_PNG_START):
        if tail != _PNG_END:
            raise ValueError(f"Corrupt or truncated PNG {path!r} (does not end with the IEND chunk).")
    else:
        # Masks, search and export read every `image_io.IMAGE_SUFFIXES` format through OpenCV; the
        # training pipeline decodes in TensorFlow, which reads JPEG and PNG.
        raise ValueError(
            f"{path!r} is not a JPEG or PNG image: training decodes those two only (convert the "
            "file, e.g. with OpenCV), other formats are for masks, export and search."
        )
    if mode == "decode":
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None or image.size == 0:
            raise ValueError(f"Cannot decode image {path!r}.")


def decode(contents):
    """JPEG/PNG bytes to uint8 RGB `(H, W, 3)`, pixel for pixel what the deploy side's OpenCV decodes.

    JPEGs go through libjpeg's accurate integer IDCT (`dct_method="INTEGER_ACCURATE"`), the one
    `cv2.imread` uses: the two agree bit for bit (chroma upsampling included), while
    `tf.io.decode_image`'s default (fast) IDCT differs by up to ~18 grey levels. Grey images become
    three equal channels and an alpha channel is dropped, as with `cv2.IMREAD_COLOR`.
    """
    return tf.cond(
        tf.io.is_jpeg(contents),
        lambda: tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(contents, channels=3, expand_animations=False),
    )


def decode_resize(path, image_size):
    """Reads, decodes (JPEG/PNG, see `decode`) and bilinearly resizes one image: float32 RGB 0..255.

    The resize is on float32 pixels (bilinear, half-pixel centres, no antialias), as
    `keras_mmga.preprocessing.preprocess` does with `cv2.resize(INTER_LINEAR)` on float32: equal when
    shrinking, < 2e-3 grey levels apart when enlarging (float32 rounding of the weights). Resizing
    uint8 pixels instead, as OpenCV does by default, would round to whole levels (up to 0.75 apart).
    """
    image = decode(tf.io.read_file(path))
    image = tf.image.resize(tf.cast(image, tf.float32), image_size, method="bilinear")
    return tf.ensure_shape(image, tuple(image_size) + (3,))


def check_image_size(image_size):
    """`(H, W)` as ints, both positive multiples of 16 (the attention maps are input/16)."""
    try:
        size = tuple(image_size)
    except TypeError:
        size = None
    if (
        size is None
        or len(size) != 2
        or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in size)
        or any(s < 16 or s % 16 for s in size)
    ):
        raise ValueError(f"image_size must be (H, W): two positive ints, both divisible by 16, got {image_size!r}.")
    return tuple(int(s) for s in size)
