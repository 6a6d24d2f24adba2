"""Training augmentation in TensorFlow ops (runs inside the tf.data map).

Random horizontal flip (image and masks together) and random erasing (image
only: the masks say where the body is, occluded or not). All randomness is
stateless and seeded per sample, so a pipeline with a fixed seed yields the
same batches every run.
"""

import tensorflow as tf

# ImageNet mean in RGB, 0..255: the erased box reads as "no information" to the
# backbone after mean subtraction (Zhong et al. 2020).
IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)


def random_flip(image, masks, seed):
    """Flips `image` (H, W, 3) and `masks` (h, w, 3) left-right with probability 0.5."""
    flip = tf.random.stateless_uniform([], seed=seed) < 0.5
    image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
    masks = tf.cond(flip, lambda: tf.reverse(masks, axis=[1]), lambda: masks)
    return image, masks


def random_erasing(image, seed, probability=0.5, area=(0.02, 0.4), aspect=(0.3, 3.3), attempts=10,
                   fill=IMAGENET_MEAN_RGB):
    """Random erasing (Zhong et al., AAAI 2020) of one (H, W, 3) float image.

    With `probability`, a box of area fraction U(area) and aspect ratio
    (height / width) U(aspect) is filled with `fill`. Placements that do not fit
    are retried up to `attempts` times (vectorised), then the image is kept.
    """
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 6)
    apply = tf.random.stateless_uniform([], seed=seeds[0]) < probability
    target = tf.random.stateless_uniform([attempts], seeds[1], area[0], area[1]) * height * width
    ratio = tf.random.stateless_uniform([attempts], seeds[2], aspect[0], aspect[1])
    box_h = tf.round(tf.sqrt(target * ratio))
    box_w = tf.round(tf.sqrt(target / ratio))
    fits = (box_h < height) & (box_w < width)
    first = tf.argmax(tf.cast(fits, tf.int32))
    apply = apply & tf.reduce_any(fits)
    box_h, box_w = tf.gather(box_h, first), tf.gather(box_w, first)
    top = tf.floor(tf.random.stateless_uniform([], seed=seeds[3]) * (height - box_h + 1.0))
    left = tf.floor(tf.random.stateless_uniform([], seed=seeds[4]) * (width - box_w + 1.0))
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w) & apply
    return tf.where(inside[..., None], tf.constant(fill, image.dtype), image)
