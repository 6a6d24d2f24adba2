"""tf.data pipelines: PK training batches with masks, and plain evaluation batches."""

import os
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from keras_mmga.data import augment, masks as mask_lib
from keras_mmga.data.pk_sampler import PKSampler

_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_PNG_START = b"\x89PNG\r\n\x1a\n"


def check_images(paths):
    """Raises on a missing, empty or truncated JPEG/PNG file, naming it.

    A cheap structural check (signature and, for JPEG, the end-of-image
    marker) done once before training, so that a bad file is reported by path
    instead of failing deep inside a TensorFlow decode op mid-epoch.
    """
    for path in paths:
        try:
            with open(path, "rb") as f:
                head = f.read(8)
                f.seek(-2, os.SEEK_END) if os.path.getsize(path) >= 2 else None
                tail = f.read(2)
        except OSError as err:
            raise FileNotFoundError(f"Cannot read image {path!r}: {err}") from err
        if head.startswith(_JPEG_START):
            if tail != _JPEG_END:
                raise ValueError(f"Corrupt or truncated JPEG {path!r} (no end-of-image marker).")
        elif not head.startswith(_PNG_START):
            raise ValueError(f"{path!r} is not a JPEG or PNG image.")


def decode_resize(path, image_size):
    """Reads, decodes (JPEG/PNG) and bilinearly resizes one image: float32 RGB 0..255."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), image_size, method="bilinear")
    return tf.ensure_shape(image, tuple(image_size) + (3,))


@dataclass
class TrainData:
    """A training dataset for `MMGA.fit` and what `fit` needs to know about it."""

    dataset: tf.data.Dataset
    steps_per_epoch: int
    batch_size: int
    num_classes: int


def make_train_dataset(samples, image_size=(384, 128), num_identities=24, num_instances=4, mask_root=None,
                       image_root=None, mask_mode="parts", mask_format="lip", dress_group="upper",
                       missing_masks="error", num_replicas=1, replacement=True, augment_images=True,
                       erasing_probability=0.5, seed=0, check_files=True):
    """Endless PK batches `(images, {"labels", "masks", "mask_weights"})`.

    Args:
        samples: list of `(path, pid, camid)` with pids `0..N-1` (a dataset's
            `.train`).
        image_size: `(H, W)` of the model input.
        num_identities, num_instances: P and K (paper: 24 × 4).
        mask_root, image_root: mirrored mask folder and the image folder it
            mirrors. Without `mask_root`, masks are zeros with weight 0.
        mask_mode: `"parts"` (mmga), `"halves"` (dmga) or `"whole"` (wmga);
            `MMGA.mask_mode` gives a variant's.
        mask_format: `"lip"` label maps or `"binary"` 0/255 whole masks.
        missing_masks: `"error"` or `"ignore"` (see `masks.load_targets`).
        num_replicas: replicas of the strategy; P must be divisible by it.
        replacement: identities with fewer than K images are sampled with
            replacement (otherwise they are an error).
        augment_images: random flip (with the masks) and random erasing.
        erasing_probability: p of random erasing (0.5).
        seed: seeds the sampler and the augmentation.
        check_files: check every image file once before training.

    Returns:
        `TrainData` with the dataset, `steps_per_epoch`, `batch_size` and
        `num_classes`.

    Example:
    >>> market = Market1501(root)
    >>> data = make_train_dataset(market.train, (384, 128), mask_root=masks, image_root=root)
    >>> model.fit(data.dataset, steps_per_epoch=data.steps_per_epoch, epochs=...)
    """
    if not samples:
        raise ValueError("make_train_dataset: the sample list is empty.")
    paths = [p for p, _, _ in samples]
    pids = np.array([pid for _, pid, _ in samples], "int32")
    if pids.min() < 0:
        raise ValueError("Training pids must be relabelled to 0..N-1 (junk images, pid -1, removed).")
    image_size = tuple(int(s) for s in image_size)
    if image_size[0] % 16 or image_size[1] % 16:
        raise ValueError(f"image_size must be divisible by 16, got {image_size}.")
    sampler = PKSampler(pids, num_identities, num_instances, num_replicas, replacement, seed)
    if check_files:
        check_images(paths)
    map_size = (image_size[0] // 16, image_size[1] // 16)
    if mask_root is not None:
        if image_root is None:
            raise ValueError("mask_root needs image_root: masks mirror the image folder.")
        targets, weights = mask_lib.load_targets(
            paths, image_root, mask_root, map_size, mask_mode, mask_format, dress_group, missing_masks
        )
    else:
        targets = np.zeros((len(paths),) + map_size + (3,), "float32")
        weights = np.zeros(len(paths), "float32")

    table = {
        "path": tf.constant(paths),
        "label": tf.constant(pids),
        "mask": tf.constant(targets),
        "weight": tf.constant(weights),
    }
    batch = sampler.batch_size

    def indices():
        for b in sampler:
            yield b.astype("int32")

    def load(position, index):
        image = decode_resize(table["path"][index], image_size)
        masks = table["mask"][index]
        if augment_images:
            seed_pair = tf.stack([tf.constant(seed, tf.int64), position])
            flip_seed, erase_seed = tf.unstack(tf.random.experimental.stateless_split(seed_pair, 2))
            image, masks = augment.random_flip(image, masks, flip_seed)
            image = augment.random_erasing(image, erase_seed, probability=erasing_probability)
        return image, {"labels": table["label"][index], "masks": masks, "mask_weights": table["weight"][index]}

    dataset = (
        tf.data.Dataset.from_generator(indices, output_signature=tf.TensorSpec((batch,), tf.int32))
        .unbatch()
        .enumerate()
        .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    return TrainData(dataset, sampler.steps_per_epoch, batch, int(pids.max()) + 1)


def make_eval_dataset(samples, image_size=(384, 128), batch_size=64, check_files=True):
    """Batches of images (no augmentation, dataset order) for feature extraction."""
    paths = [p if isinstance(p, str) else p[0] for p in samples]
    if check_files:
        check_images(paths)
    image_size = tuple(int(s) for s in image_size)
    return (
        tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
        .map(lambda p: decode_resize(p, image_size), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
