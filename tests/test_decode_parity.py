"""Training and deploy see the same pixels: TF pipeline decode + resize vs the OpenCV deploy path.

Real JPEG files written by OpenCV (libjpeg) at several qualities with 4:2:0 and 4:4:4 chroma
subsampling, a grey JPEG, PNGs (with and without alpha), at sizes that need a resize both ways.
"""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_mmga.data.images import decode, decode_resize
from keras_mmga.image_io import read_image
from keras_mmga.preprocessing import preprocess


def _picture(rng, h, w):
    # Smooth shapes plus texture: JPEG errors of a realistic size, and colour edges that chroma
    # subsampling blurs.
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(x / 7.0), 128 + 100 * np.cos(y / 11.0), (x + y) * 255.0 / (h + w)], -1)
    noise = cv2.GaussianBlur(rng.randint(0, 256, (h, w, 3)).astype(np.float32), (3, 3), 0)
    return np.uint8(np.clip(0.7 * base + 0.3 * noise, 0, 255))


def _files(tmp_path):
    rng = np.random.RandomState(7)
    files = []
    for i, (quality, sampling) in enumerate(
        [
            (50, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420),
            (75, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420),
            (95, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420),
            (90, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444),
        ]
    ):
        path = str(tmp_path / f"q{quality}_{i}.jpg")
        # Odd sizes: the 4:2:0 chroma planes have a half-covered last row / column.
        cv2.imwrite(
            path,
            _picture(rng, 117 + 6 * i, 45 + 4 * i),
            [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling],
        )
        files.append(path)
    grey = str(tmp_path / "grey.jpg")
    cv2.imwrite(grey, cv2.cvtColor(_picture(rng, 90, 40), cv2.COLOR_BGR2GRAY), [cv2.IMWRITE_JPEG_QUALITY, 80])
    png = str(tmp_path / "plain.png")
    cv2.imwrite(png, _picture(rng, 140, 70))
    rgba = str(tmp_path / "alpha.png")
    cv2.imwrite(rgba, np.dstack([_picture(rng, 50, 30), rng.randint(0, 256, (50, 30), np.uint8)]))
    return files + [grey, png, rgba]


def test_decode_equals_opencv_bit_for_bit(tmp_path):
    files = _files(tmp_path)
    default_gap = 0
    for path in files:
        contents = tf.io.read_file(path)
        expected = read_image(path)[..., ::-1]  # what the deploy side decodes, as RGB
        np.testing.assert_array_equal(decode(contents).numpy(), expected, err_msg=path)
        if path.endswith(".jpg") and "grey" not in path:
            default = tf.io.decode_image(contents, channels=3).numpy().astype(int)
            default_gap = max(default_gap, np.abs(default - expected).max())
    # The check has teeth: TensorFlow's default IDCT (the decoder before) is off by whole levels.
    assert default_gap >= 2


@pytest.mark.parametrize("size", [(64, 32), (128, 64), (256, 128)])
def test_pipeline_pixels_equal_deploy_pixels(tmp_path, size):
    for path in _files(tmp_path):
        pipeline = decode_resize(tf.constant(path), size).numpy()
        deploy = preprocess(path, size)
        assert pipeline.shape == deploy.shape == size + (3,)
        gap = np.abs(pipeline - deploy).max()
        shape = read_image(path).shape[:2]
        if shape[0] >= size[0] and shape[1] >= size[1]:
            assert gap == 0, (path, size, gap)  # shrinking: the same float32 sums
        else:
            assert gap < 2e-3, (path, size, gap)  # enlarging: float32 rounding of the weights only
