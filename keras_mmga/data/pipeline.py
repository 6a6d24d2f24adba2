"""tf.data pipelines: PK training batches with mask targets, and plain evaluation batches."""

import os
from dataclasses import dataclass

import cv2
import numpy as np
import tensorflow as tf

from keras_mmga.data import augment, masks as mask_lib
from keras_mmga.data.pk_sampler import PKSampler

_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_PNG_START = b"\x89PNG\r\n\x1a\n"
CHECK_MODES = ("header", "decode", "none")


def _check_mode(check_files):
    if check_files is True:
        return "header"
    if check_files is False or check_files is None:
        return "none"
    if check_files not in CHECK_MODES:
        raise ValueError(f"check_files must be one of {CHECK_MODES} (or a bool), got {check_files!r}.")
    return check_files


def check_images(paths, mode="header"):
    """Raises on a missing, truncated or undecodable JPEG/PNG file, naming it.

    Done once before the pipeline runs: inside a tf.data map a bad file would
    stop training mid-epoch with a TensorFlow decode error that does not say
    which file it was.

    Args:
        paths: image files.
        mode: `"header"` checks the signature and, for JPEG, the end-of-image
            marker (catches truncated downloads; microseconds per file);
            `"decode"` also decodes every image (about 0.1 ms per Market-size
            image).

    Example:
    >>> check_images([p for p, _, _ in market.train], mode="decode")
    """
    mode = _check_mode(mode)
    if mode == "none":
        return
    for path in paths:
        path = os.fspath(path)
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                head = f.read(8)
                f.seek(max(0, size - 2))
                tail = f.read(2)
        except OSError as err:
            raise FileNotFoundError(f"Cannot read image {path!r}: {err}") from err
        if head.startswith(_JPEG_START):
            if tail != _JPEG_END:
                raise ValueError(f"Corrupt or truncated JPEG {path!r} (no end-of-image marker).")
        elif not head.startswith(_PNG_START):
            raise ValueError(f"{path!r} is not a JPEG or PNG image (unknown file signature).")
        if mode == "decode":
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None or image.size == 0:
                raise ValueError(f"Cannot decode image {path!r}.")


def decode_resize(path, image_size):
    """Reads, decodes (JPEG/PNG) and bilinearly resizes one image: float32 RGB 0..255."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), image_size, method="bilinear")
    return tf.ensure_shape(image, tuple(image_size) + (3,))


def load_images(paths, image_size, batch_size=256):
    """Decodes and resizes `paths` once: uint8 (N, H, W, 3), for `cache_images`."""
    image_size = tuple(int(s) for s in image_size)
    dataset = (
        tf.data.Dataset.from_tensor_slices(tf.constant([os.fspath(p) for p in paths], tf.string))
        .map(lambda p: tf.cast(tf.round(decode_resize(p, image_size)), tf.uint8),
             num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size)
    )
    return np.concatenate([b.numpy() for b in dataset], axis=0)


@dataclass
class TrainData:
    """A training dataset and what `fit` needs to know about it.

    Attributes:
        dataset: endless `tf.data.Dataset` of `(images, targets)` batches.
        steps_per_epoch: batches in one epoch (see `PKSampler.steps_per_epoch`).
        batch_size: P·K, the global batch.
        num_classes: identities (classifier classes).
        sampler: the `PKSampler` producing the batches' indices.
    """

    dataset: tf.data.Dataset
    steps_per_epoch: int
    batch_size: int
    num_classes: int
    sampler: PKSampler = None


def make_train_dataset(samples, image_size=(384, 128), num_identities=24, num_instances=4, mask_root=None,
                       image_root=None, mask_mode="parts", mask_format="lip", dress_group="upper",
                       label_groups=None, missing_masks="error", num_replicas=1, replacement=True,
                       augment_images=True, erasing_probability=0.5, seed=0, check_files="decode",
                       cache_images=False):
    """Endless PK batches `(images, {"labels", "masks", "mask_weights"})`.

    - `images`: float32 (B, H, W, 3) RGB in [0, 255], not normalised (the
      model normalises inside its graph);
    - `labels`: int32 (B,);
    - `masks`: float32 (B, H/16, W/16, 3) soft targets in [0, 1], channels
      (whole, upper, bottom) — see `masks.binary_masks` for what the
      channels hold in each `mask_mode`;
    - `mask_weights`: float32 (B,), 1 for an image with a mask and 0 for one
      without (`missing_masks="ignore"`, or no `mask_root` at all): such
      images add nothing to the attention loss.

    B = P·K. Batches list their P identities one after another, K images
    each; with `num_replicas` R, each contiguous block of B/R images holds
    whole identities. Every random choice (sampling, flip, erasing) derives
    from `seed`: the same seed gives the same batches, and
    `dataset.skip(n)` gives the batches an uninterrupted run sees after n.

    Mask targets are computed once per image when the dataset is made (they
    are tiny), so the per-step work is decoding, resizing and augmenting.

    Args:
        samples: list of `(path, pid, camid)` with pids `0..N-1` (a dataset's
            `.train`).
        image_size: `(H, W)` of the model input, both divisible by 16.
        num_identities, num_instances: P and K (paper: 24 × 4).
        mask_root, image_root: the mask folder and the image folder it
            mirrors: the mask of `image_root/a/b.jpg` is `mask_root/a/b.png`.
            Without `mask_root` (unsupervised variants) every mask weight is 0.
        mask_mode: `"parts"` (mmga), `"halves"` (dmga) or `"whole"` (wmga);
            `MMGA.mask_mode` gives a variant's.
        mask_format: `"lip"` label maps or `"binary"` 0/255 whole masks.
        dress_group, label_groups: LIP grouping, see `masks.group_label_map`.
        missing_masks: `"error"` (default: a missing or unreadable mask raises,
            naming the file) or `"ignore"` (weight 0 for that image).
        num_replicas: replicas of the strategy; P must be divisible by it.
        replacement: identities with fewer than K images are sampled with
            replacement (otherwise they are an error).
        augment_images: random flip (masks flip too) and random erasing.
        erasing_probability: p of random erasing (0.5).
        seed: int.
        check_files: `"decode"` (default) decodes every image once before
            training so a corrupt file is reported by path; `"header"` only
            checks signatures and JPEG end markers; `"none"` skips the check.
        cache_images: decode and resize every image once and keep them in
            memory as uint8 (N·H·W·3 bytes: 150 MB for 1,000 images at
            384×128, 1.9 GB for Market-1501's 12,936). Cached pixels are
            rounded to integers after the resize.

    Returns:
        `TrainData` with `dataset`, `steps_per_epoch`, `batch_size`,
        `num_classes` and `sampler`.

    Example:
    >>> market = Market1501(root)
    >>> data = make_train_dataset(market.train, (384, 128), mask_root=mask_dir, image_root=root)
    >>> model.fit(data.dataset, steps_per_epoch=data.steps_per_epoch, epochs=...)
    """
    if not samples:
        raise ValueError("make_train_dataset: the sample list is empty.")
    paths = [os.fspath(s[0]) for s in samples]
    pids = np.array([int(s[1]) for s in samples], "int32")
    if pids.min() < 0:
        raise ValueError("Training pids must be relabelled to 0..N-1 (junk images, pid -1, removed).")
    image_size = tuple(int(s) for s in image_size)
    if len(image_size) != 2 or image_size[0] % 16 or image_size[1] % 16 or min(image_size) < 16:
        raise ValueError(f"image_size must be (H, W), both divisible by 16, got {image_size}.")
    sampler = PKSampler(pids, num_identities, num_instances, num_replicas, replacement, seed)
    check_images(paths, check_files)
    map_size = (image_size[0] // 16, image_size[1] // 16)
    if mask_root is not None:
        if image_root is None:
            raise ValueError("mask_root needs image_root: masks mirror the image folder.")
        targets, weights = mask_lib.load_targets(
            paths, image_root, mask_root, map_size, mask_mode, mask_format, dress_group, missing_masks,
            label_groups=label_groups,
        )
    else:
        targets = np.zeros((len(paths),) + map_size + (3,), "float32")
        weights = np.zeros(len(paths), "float32")

    batch = sampler.batch_size
    cache = load_images(paths, image_size) if cache_images else None
    path_table = tf.constant(paths)
    label_table, mask_table, weight_table = tf.constant(pids), tf.constant(targets), tf.constant(weights)

    # Index batches come from the (numpy) sampler; with a cache the generator
    # also gathers the batch's pixels, which is one memcpy per batch.
    if cache is None:
        signature = tf.TensorSpec((batch,), tf.int32)

        def generate():
            for indices in sampler:
                yield indices.astype("int32")
    else:
        signature = (tf.TensorSpec((batch,), tf.int32), tf.TensorSpec((batch,) + image_size + (3,), tf.uint8))

        def generate():
            for indices in sampler:
                yield indices.astype("int32"), cache[indices]

    def draw(step, item):
        # One seed per batch: vectorised draws, and `skip(n)` stays exact.
        params = augment.sample_augmentation(
            tf.stack([tf.constant(seed, tf.int64), step]), batch, image_size,
            erasing_probability=erasing_probability,
        )
        if not augment_images:
            params["flip"] = params["erase"] = tf.zeros([batch], tf.bool)
        # (No zero-size placeholder for the pixels without a cache:
        # unbatching a zero-size tensor crashes TF 2.21.)
        return (item, params) if cache is None else (item[0], params, item[1])

    def load(index, params, pixels=None):
        if pixels is None:
            image = decode_resize(path_table[index], image_size)
        else:
            image = tf.cast(pixels, tf.float32)
        if augment_images:
            image = augment.augment_image(image, params["flip"], params["erase"], params["box"])
        return image, index, params["flip"]

    def targets_of(images, indices, flip):
        mask = tf.gather(mask_table, indices)
        return images, {
            "labels": tf.gather(label_table, indices),
            "masks": augment.flip_masks(mask, flip),
            "mask_weights": tf.gather(weight_table, indices),
        }

    dataset = (
        tf.data.Dataset.from_generator(generate, output_signature=signature)
        .enumerate()
        .map(draw)
        .unbatch()
        # Deterministic order: a batch's P×K structure is its sample order.
        .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch, drop_remainder=True)
        .map(targets_of)
        .prefetch(tf.data.AUTOTUNE)
    )
    return TrainData(dataset, sampler.steps_per_epoch, batch, int(pids.max()) + 1, sampler)


def make_eval_dataset(samples, image_size=(384, 128), batch_size=64, check_files="header"):
    """Batches of images in the samples' order, no augmentation, for feature extraction.

    Args:
        samples: list of `(path, pid, camid)` (or of paths).
        image_size: `(H, W)` of the model input.
        batch_size: int; the last batch may be smaller.
        check_files: see `make_train_dataset` (`"header"` by default).

    Returns:
        `tf.data.Dataset` of float32 (b, H, W, 3) RGB images in [0, 255].

    Example:
    >>> features = extract_features(model, make_eval_dataset(market.query, (384, 128)))
    """
    paths = [os.fspath(s) if isinstance(s, (str, os.PathLike)) else os.fspath(s[0]) for s in samples]
    if not paths:
        raise ValueError("make_eval_dataset: the sample list is empty.")
    check_images(paths, check_files)
    image_size = tuple(int(s) for s in image_size)
    return (
        tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
        .map(lambda p: decode_resize(p, image_size), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
