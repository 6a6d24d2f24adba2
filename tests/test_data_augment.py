import numpy as np
import tensorflow as tf

from keras_mmga.data import augment


def _params(seed, batch=64, size=(128, 64), **kwargs):
    p = augment.sample_augmentation(tf.constant([seed, 3], tf.int64), batch, size, **kwargs)
    return {k: v.numpy() for k, v in p.items()}


def test_erasing_boxes_follow_zhong_limits():
    p = _params(0, batch=400)
    erased = p["erase"]
    assert 0.4 < erased.mean() < 0.6  # p = 0.5
    top, left, bottom, right = p["box"][erased].T
    h, w = bottom - top, right - left
    assert np.all(top >= 0) and np.all(left >= 0) and np.all(bottom <= 128) and np.all(right <= 64)
    area = h * w / (128 * 64)
    # Rounding the sides moves the area a little around [0.02, 0.4].
    assert area.min() >= 0.015 and area.max() <= 0.43
    assert (h / w).min() >= 0.25 and (h / w).max() <= 3.6
    assert 0.4 < p["flip"].mean() < 0.6


def test_draws_are_seeded():
    a, b, c = _params(1), _params(1), _params(2)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["box"], c["box"])
    none = _params(1, erasing_probability=0.0)
    assert not none["erase"].any()


def test_augment_image_flips_then_fills_the_box():
    image = np.zeros((16, 8, 3), np.float32)
    image[2, 0] = 255.0  # marked pixel, left edge
    box = tf.constant([10, 2, 13, 6], tf.int32)  # rows 10..12, cols 2..5
    out = augment.augment_image(tf.constant(image), tf.constant(True), tf.constant(True), box).numpy()
    assert out[2, 7, 0] == 255.0 and out[2, 0, 0] == 0.0
    filled = np.all(out == np.array(augment.IMAGENET_MEAN_RGB, np.float32), axis=-1)
    expected = np.zeros((16, 8), bool)
    expected[10:13, 2:6] = True
    np.testing.assert_array_equal(filled, expected)
    same = augment.augment_image(tf.constant(image), tf.constant(False), tf.constant(False), box).numpy()
    np.testing.assert_array_equal(same, image)


def test_flip_masks_only_flips_marked_images():
    masks = np.zeros((2, 3, 2, 3), np.float32)
    masks[:, 1, 0, 2] = 1.0
    out = augment.flip_masks(tf.constant(masks), tf.constant([True, False])).numpy()
    assert out[0, 1, 1, 2] == 1.0 and out[0, 1, 0, 2] == 0.0
    np.testing.assert_array_equal(out[1], masks[1])
