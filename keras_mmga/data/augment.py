"""Training augmentation in TensorFlow ops (runs inside the tf.data maps).

Random horizontal flip (image and masks together) and random erasing (image
only: the masks say where the body is, occluded or not; Zhong et al., AAAI
2020). The random draws are split from the per-image work so that they can be
made for a whole batch at once: `sample_augmentation` draws every parameter
of a batch with stateless ops from one `(seed, batch number)` pair (a handful
of vectorised ops per batch instead of per image, and the same batches on
every run and after `Dataset.skip`), then `augment_image` applies one image's
parameters and `flip_masks` flips the batch's mask targets.

Example:
```python
params = sample_augmentation(tf.constant([0, 7], tf.int64), 4, (384, 128))
image = augment_image(image, params["flip"][0], params["erase"][0], params["box"][0])
```
"""

import tensorflow as tf

# Fill of the erased box: the ImageNet mean in RGB, 0..255, so that after the
# model's mean subtraction the box is zero ("torch" preprocessing; within half
# a grey level with "caffe"): an occluder that carries no signal. This is this
# project's choice: SPEC.md (the paper's recipe, §4.2) asks for random erasing
# of the image only and names no fill. It is not torchreid's: Zhong et al.'s
# algorithm draws random values, and torchreid's `RandomErasing` writes its
# `mean` into the already normalised tensor (default (0.4914, 0.4822, 0.4465);
# its `build_transforms` passes the ImageNet mean (0.485, 0.456, 0.406)), so
# its box is not zero after normalisation.
IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)


def sample_augmentation(
    seed,
    batch_size,
    image_size,
    flip_probability=0.5,
    erasing_probability=0.5,
    area=(0.02, 0.4),
    aspect=(0.3, 3.3),
    attempts=100,
):
    """Draws the flip and random-erasing parameters of `batch_size` images.

    Random erasing follows Zhong et al. (and torchreid's `RandomErasing`):
    with probability `erasing_probability`, a box with area fraction
    U(area) and aspect ratio height / width U(aspect) is placed uniformly
    inside the image; draws whose box does not fit are retried, up to
    `attempts` times (vectorised), and an image with no fitting draw is left
    unerased.

    Args:
        seed: int64 tensor of shape (2,): a stateless seed.
        batch_size: int, images to draw for.
        image_size: `(H, W)` of the (resized) images.
        flip_probability: float.
        erasing_probability: float, p of random erasing (0.5).
        area: `(min, max)` fraction of the image area erased.
        aspect: `(min, max)` height / width ratio of the box.
        attempts: int.

    Returns:
        dict with `flip` (B,) bool, `erase` (B,) bool and `box` (B, 4) int32
        `(top, left, bottom, right)`, bottom and right exclusive.
    """
    height, width = float(image_size[0]), float(image_size[1])
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 7)
    b = batch_size
    flip = tf.random.stateless_uniform([b], seeds[0]) < flip_probability
    erase = tf.random.stateless_uniform([b], seeds[1]) < erasing_probability
    target = tf.random.stateless_uniform([b, attempts], seeds[2], area[0], area[1]) * (height * width)
    ratio = tf.random.stateless_uniform([b, attempts], seeds[3], aspect[0], aspect[1])
    box_h = tf.round(tf.sqrt(target * ratio))
    box_w = tf.round(tf.sqrt(target / ratio))
    # torchreid accepts a draw when the box is strictly smaller than the image.
    fits = (box_h < height) & (box_w < width) & (box_h >= 1) & (box_w >= 1)
    first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)
    erase = erase & tf.reduce_any(fits, axis=1)
    box_h = tf.gather(box_h, first, batch_dims=1)
    box_w = tf.gather(box_w, first, batch_dims=1)
    top = tf.floor(tf.random.stateless_uniform([b], seeds[4]) * (height - box_h + 1.0))
    left = tf.floor(tf.random.stateless_uniform([b], seeds[5]) * (width - box_w + 1.0))
    box = tf.cast(tf.stack([top, left, top + box_h, left + box_w], axis=1), tf.int32)
    return {"flip": flip, "erase": erase, "box": box}


def augment_image(image, flip, erase, box, fill=IMAGENET_MEAN_RGB):
    """Applies one image's parameters: flip left-right, then erase `box`.

    The box is written with one strided-slice update rather than a
    full-image `where`, which is several times slower on CPU.

    Args:
        image: (H, W, 3) float32.
        flip, erase: scalar bool tensors.
        box: (4,) int32 `(top, left, bottom, right)`.
        fill: RGB fill value of the erased box.
    """
    image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)

    def erased():
        size = tf.concat([box[2:] - box[:2], [3]], axis=0)
        patch = tf.broadcast_to(tf.constant(fill, image.dtype), size)
        return tf.raw_ops.TensorStridedSliceUpdate(
            input=image,
            begin=tf.concat([box[:2], [0]], 0),
            end=tf.concat([box[2:], [3]], 0),
            strides=[1, 1, 1],
            value=patch,
        )

    return tf.cond(erase, erased, lambda: image)


def flip_masks(masks, flip):
    """Flips the (B, h, w, C) mask targets of the images whose `flip` is set."""
    return tf.where(flip[:, None, None, None], tf.reverse(masks, axis=[2]), masks)
