"""tf.data pipelines: PK training batches with mask targets, and plain evaluation batches.

Checking and decoding image files is `keras_mmga.data.images` (re-exported
here: `check_images`, `decode_resize`, `check_image_size`, `CHECK_MODES`);
mask targets come from `keras_mmga.data.masks`.
"""

import os
import warnings
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from keras_mmga.data import augment
from keras_mmga.data import masks as mask_lib

# Re-exported (defined here before the split). `decode_resize` is looked up
# in this module's namespace by the training map and by `load_images`.
from keras_mmga.data.images import CHECK_MODES, check_image_size, check_images, decode_resize  # noqa: F401
from keras_mmga.data.pk_sampler import PKSampler
from keras_mmga.progress import Progress
from keras_mmga.settings import check_epoch


def load_images(paths, image_size, batch_size=256, verbose=False):
    """Decodes and resizes `paths` once: uint8 (N, H, W, 3), for `cache_images` (`verbose`: progress)."""
    image_size = tuple(int(s) for s in image_size)
    paths = [os.fspath(p) for p in paths]
    dataset = (
        tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
        .map(
            lambda p: tf.cast(tf.round(decode_resize(p, image_size)), tf.uint8),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        .batch(batch_size)
    )
    batches = []
    with Progress(len(paths), "images", label="cache images", verbose=verbose) as bar:
        for b in dataset:
            batches.append(b.numpy())
            bar.update(len(batches[-1]))
    return np.concatenate(batches, axis=0)


@dataclass
class TrainData:
    """A training dataset and what `fit` needs to know about it.

    Attributes:
        dataset: endless `tf.data.Dataset` of `(images, targets)` batches.
        steps_per_epoch: batches in one epoch (see `PKSampler.steps_per_epoch`).
        batch_size: P·K, the global batch.
        num_classes: identities (classifier classes).
        sampler: the `PKSampler` producing the batches' indices.
        epoch: what one epoch is, `"identities"` or `"images"`.
    """

    dataset: tf.data.Dataset
    steps_per_epoch: int
    batch_size: int
    num_classes: int
    sampler: PKSampler = None
    epoch: str = "identities"


def make_train_dataset(
    samples,
    image_size=(384, 128),
    num_identities=24,
    num_instances=4,
    mask_root=None,
    image_root=None,
    mask_mode=None,
    mask_format="lip",
    dress_group="upper",
    label_groups=None,
    missing_masks="error",
    num_replicas=1,
    replacement=True,
    augment_images=True,
    erasing_probability=0.5,
    seed=0,
    check_files="decode",
    cache_images=False,
    start_batch=0,
    epoch="identities",
    verbose=False,
    parts=None,
):
    """Endless PK batches `(images, {"labels", "masks", "mask_weights"})`.

    - `images`: float32 (B, H, W, 3) RGB in [0, 255], not normalised (the
      model normalises inside its graph);
    - `labels`: int32 (B,);
    - `masks`: float32 (B, H/16, W/16, C) soft targets in [0, 1]: with
      `mask_mode="parts"` C = 1 + K, channels (whole, part 1, ..., part K)
      of `parts` (default upper, bottom: C = 3); with `"halves"` and
      `"whole"` C = 3 — see `masks.binary_masks` for what the channels hold
      in each `mask_mode`;
    - `mask_weights`: float32 (B,), 1 for an image with a mask and 0 for one
      without (`missing_masks="ignore"`): such images add nothing to the
      attention loss; (B, C) when the masks carry absence sidecars
      (`masks.load_targets`, docs/MASKS.md): a part out of view has weight 0
      for that image only, its other channels still count.

    With `mask_mode=None` (the default, for `baseline` / `baseline_att`) the
    targets are `{"labels"}` only: a mask-supervised model then refuses the
    batches instead of training with an attention loss of exactly 0.

    B = P·K. One epoch (`steps_per_epoch` batches) is, with
    `epoch="identities"` (default, the paper recipe), every training identity
    once with K images: `ceil(N / P)` batches for N identities; with
    `epoch="images"`, about one pass over the training images (see
    `PKSampler`). Batches list their P identities one after another, K images
    each; with `num_replicas` R, each contiguous block of B/R images holds
    whole identities. Every random choice (sampling, flip, erasing) derives
    from `seed` and the batch number: the same seed gives the same batches,
    and `start_batch=n` gives the batches an uninterrupted run sees from
    batch n on (as `dataset.skip(n)` would, without decoding n batches).

    Mask targets are computed once per image when the dataset is made (they
    are tiny), so the per-step work is decoding, resizing and augmenting.

    Args:
        samples: list of `(path, pid, camid)` with pids `0..N-1` (a dataset's
            `.train`).
        image_size: `(H, W)` of the model input, both divisible by 16.
        num_identities, num_instances: P and K (paper: 24 × 4).
        mask_root, image_root: the mask folder and the image folder it
            mirrors: the mask of `image_root/a/b.jpg` is `mask_root/a/b.png`.
            For a `Market1501` / `DukeMTMCreID` reader, `image_root` is its
            `.root` (the folder holding `bounding_box_train/`).
        mask_mode: None (no mask targets), `"parts"` (mmga), `"halves"`
            (dmga) or `"whole"` (wmga); `MMGA.mask_mode` gives a variant's.
            A mode needs `mask_root`, unless `missing_masks="ignore"` says
            explicitly that images may lack masks (then, without `mask_root`,
            every mask weight is 0). With None, `mask_root` is not read.
        mask_format: `"lip"` label maps or `"binary"` 0/255 whole masks.
        dress_group, label_groups: LIP grouping, see `masks.group_label_map`.
        parts: part-group names for `mask_mode="parts"`, in channel order
            (`masks.PART_GROUPS` or custom `label_groups` keys; None:
            `("upper", "bottom")`, `MMGA.parts` gives a model's). Other
            modes have fixed channels: `parts` with them is an error.
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
            checks signatures and end markers; `"none"` skips the check.
        cache_images: decode and resize every image once and keep them in
            memory as uint8 (N·H·W·3 bytes: 150 MB for 1,000 images at
            384×128, 1.9 GB for Market-1501's 12,936). Cached pixels are
            rounded to integers after the resize.
        start_batch: int ≥ 0, the number of the first batch (a resumed run:
            completed epochs × steps per epoch). The PK sampler skips the
            earlier batches on index arrays, and the augmentation of every
            batch is seeded by its number, so nothing is decoded for them.
        epoch: `"identities"` or `"images"`: what one epoch is (above).
        verbose: progress of the file check and the mask targets on stderr.

    Returns:
        `TrainData` with `dataset`, `steps_per_epoch`, `batch_size`,
        `num_classes` and `sampler`.

    Example:
    ```python
    market = Market1501(root)
    data = make_train_dataset(market.train, (384, 128), mask_root=mask_dir, image_root=market.root,
                              mask_mode=model.mask_mode)
    model.fit(data.dataset, steps_per_epoch=data.steps_per_epoch, epochs=...)
    ```
    """
    paths, pids = _check_samples(samples)
    image_size = check_image_size(image_size)
    start_batch = _check_int(start_batch, "start_batch", minimum=0)
    epoch = check_epoch(epoch)
    if (
        isinstance(erasing_probability, bool)
        or not isinstance(erasing_probability, (int, float, np.number))
        or not 0.0 <= float(erasing_probability) <= 1.0
    ):
        raise ValueError(f"erasing_probability must be a number in [0, 1], got {erasing_probability!r}.")
    erasing_probability = float(erasing_probability)
    _check_mask_arguments(mask_mode, mask_root, image_root, missing_masks, parts)
    if mask_mode is not None:
        if mask_format not in mask_lib.MASK_FORMATS:
            raise ValueError(f"mask_format must be one of {mask_lib.MASK_FORMATS}, got {mask_format!r}.")
        if mask_format == "binary" and mask_mode == "parts":
            raise ValueError(
                "Binary whole-body masks have no parts: mask_mode 'parts' (mmga) needs "
                "mask_format='lip'; use mask_mode 'halves' (dmga) or 'whole' (wmga)."
            )
        mask_lib.check_grouping(dress_group, label_groups, allow_empty=mask_mode != "parts", parts=parts)
    sampler = PKSampler(pids, num_identities, num_instances, num_replicas, replacement, seed, epoch=epoch)
    _check_signal(sampler, mask_mode, mask_root)
    check_images(paths, check_files, verbose=verbose)
    map_size = (image_size[0] // 16, image_size[1] // 16)
    if mask_mode is None:
        targets = weights = None
    elif mask_root is None:  # missing_masks="ignore", explicitly: no image has a mask
        targets = np.zeros((len(paths),) + map_size + (mask_lib.target_channels(mask_mode, parts),), "float32")
        weights = np.zeros(len(paths), "float32")
    else:
        targets, weights = mask_lib.load_targets(
            paths,
            image_root,
            mask_root,
            map_size,
            mask_mode,
            mask_format,
            dress_group,
            missing_masks,
            label_groups=label_groups,
            verbose=verbose,
            parts=parts,
        )

    batch = sampler.batch_size
    cache = load_images(paths, image_size, verbose=verbose) if cache_images else None
    path_table, label_table = tf.constant(paths), tf.constant(pids)
    mask_table = weight_table = None
    if targets is not None:
        mask_table, weight_table = tf.constant(targets), tf.constant(weights)

    # Index batches come from the (numpy) sampler; with a cache the generator
    # also gathers the batch's pixels, which is one memcpy per batch.
    if cache is None:
        signature = tf.TensorSpec((batch,), tf.int32)

        def generate():
            for indices in sampler.batches(start_batch):
                yield indices.astype("int32")
    else:
        signature = (tf.TensorSpec((batch,), tf.int32), tf.TensorSpec((batch,) + image_size + (3,), tf.uint8))

        def generate():
            for indices in sampler.batches(start_batch):
                yield indices.astype("int32"), cache[indices]

    def draw(step, item):
        # One seed per batch number: vectorised draws, and a stream started
        # at batch n augments it as the uninterrupted stream does.
        params = augment.sample_augmentation(
            tf.stack([tf.constant(seed, tf.int64), step]),
            batch,
            image_size,
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
        out = {"labels": tf.gather(label_table, indices)}
        if mask_table is not None:
            out["masks"] = augment.flip_masks(tf.gather(mask_table, indices), flip)
            out["mask_weights"] = tf.gather(weight_table, indices)
        return images, out

    dataset = (
        tf.data.Dataset.from_generator(generate, output_signature=signature)
        .enumerate(start=start_batch)
        .map(draw)
        .unbatch()
        # Deterministic order: a batch's P×K structure is its sample order.
        .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch, drop_remainder=True)
        .map(targets_of)
        .prefetch(tf.data.AUTOTUNE)
    )
    return TrainData(dataset, sampler.steps_per_epoch, batch, int(pids.max()) + 1, sampler, epoch)


def _check_int(value, name, minimum=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}, got {value}.")
    return int(value)


def _check_samples(samples):
    """`(paths, int32 pids)` of `(path, pid, camid)` samples, or an error naming the first bad one."""
    if samples is None or not len(samples):
        raise ValueError("make_train_dataset: the sample list is empty.")
    paths, pids = [], []
    for i, sample in enumerate(samples):
        if isinstance(sample, (str, os.PathLike)) or not hasattr(sample, "__len__") or len(sample) < 2:
            raise ValueError(f"samples[{i}] must be (path, pid, camid) (a dataset's .train), got {sample!r}.")
        pid = sample[1]
        if isinstance(pid, bool) or not isinstance(pid, (int, np.integer)):
            raise ValueError(f"samples[{i}] has pid {pid!r}: training pids must be ints 0..N-1.")
        paths.append(os.fspath(sample[0]))
        pids.append(int(pid))
    pids = np.array(pids, "int32")
    test_split = next((p for p in paths if os.path.basename(os.path.dirname(p)) in _TEST_FOLDERS), None)
    if test_split is not None:
        # A query / gallery list keeps the file names' ids: its identities are not the classifier's classes.
        raise ValueError(
            f"make_train_dataset: the samples come from the test split ({test_split!r} is in "
            f"{os.path.basename(os.path.dirname(test_split))}/): train on a dataset's .train (relabelled ids "
            "0..N-1 of bounding_box_train/), not its .query or .gallery."
        )
    if pids.min() < 0:
        raise ValueError("Training pids must be relabelled to 0..N-1 (junk images, pid -1, removed).")
    unused = int(pids.max()) + 1 - len(np.unique(pids))
    if unused:
        # Classes without images: the classifier is one of max+1 classes, of which some never appear.
        raise ValueError(
            f"make_train_dataset: pids must be 0..N-1 with every id present (a dataset's .train is relabelled "
            f"so); got {len(np.unique(pids))} identities with ids up to {int(pids.max())} ({unused} ids have no "
            "image). Relabel them, e.g. {pid: i for i, pid in enumerate(sorted(set(pids)))}."
        )
    return paths, pids


# Folders of the Market-1501 / DukeMTMC-reID test split.
_TEST_FOLDERS = ("query", "bounding_box_test")


def _check_signal(sampler, mask_mode, mask_root):
    """Warnings for batches that would make a loss term identically 0 for the whole run."""
    p, k = sampler.P, sampler.K
    if k < 2 or p < 2:
        # batch_hard_triplet_loss needs a positive (same id, another image) and a negative per anchor.
        which = "K=1: no anchor has a positive" if k < 2 else "P=1: no anchor has a negative"
        warnings.warn(
            f"make_train_dataset: {which} in a batch of P x K = {p} x {k}, so MMGA's triplet loss is 0 for the "
            "whole run; use P >= 2 and K >= 2, or compile(triplet_weight=0) to train without it on purpose.",
            stacklevel=3,
        )
    if mask_mode is not None and mask_root is None:
        warnings.warn(
            f"make_train_dataset: mask_mode={mask_mode!r} without mask_root: every mask weight is 0, so the "
            "attention loss is 0 for the whole run (missing_masks='ignore' asked for it).",
            stacklevel=3,
        )


def _check_mask_arguments(mask_mode, mask_root, image_root, missing_masks, parts=None):
    """Refuses mask settings that would train towards empty masks without saying so.

    A mask mode without a mask folder used to give every image a zero target
    of weight 0: a mask-supervised variant then trained with an attention loss
    of exactly 0 and no error. Images without masks are only accepted when
    `missing_masks="ignore"` asks for it.
    """
    if mask_mode is not None and mask_mode not in mask_lib.MASK_MODES:
        raise ValueError(f"mask_mode must be None or one of {mask_lib.MASK_MODES}, got {mask_mode!r}.")
    if missing_masks not in ("error", "ignore"):
        raise ValueError(f"missing_masks must be 'error' or 'ignore', got {missing_masks!r}.")
    # Part channels only exist in "parts" mode: silently dropping `parts`
    # would train another variant than the one asked for.
    if parts is not None and mask_mode != "parts":
        raise ValueError(
            f"parts={parts!r} needs mask_mode='parts' (mmga's part masks), got mask_mode={mask_mode!r}: "
            "'halves' (dmga) and 'whole' (wmga) have the fixed channels whole, upper, bottom, and None has "
            "no masks. Leave parts as None, or use mask_mode='parts'."
        )
    if mask_mode is not None and mask_root is None and missing_masks != "ignore":
        raise ValueError(
            f"mask_mode={mask_mode!r} needs mask_root, the mask folder mirroring image_root. Use "
            "mask_mode=None for a variant without mask supervision, or missing_masks='ignore' to train "
            "on images without masks on purpose (they add no attention loss)."
        )
    if mask_mode is not None and mask_root is not None and image_root is None:
        raise ValueError("mask_root needs image_root: masks mirror the image folder.")


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
    ```python
    features = extract_features(model, make_eval_dataset(market.query, (384, 128)))
    ```
    """
    paths = [os.fspath(s) if isinstance(s, (str, os.PathLike)) else os.fspath(s[0]) for s in samples]
    if not paths:
        raise ValueError("make_eval_dataset: the sample list is empty.")
    batch_size = _check_int(batch_size, "batch_size", minimum=1)
    image_size = check_image_size(image_size)
    check_images(paths, check_files)
    return (
        tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
        .map(lambda p: decode_resize(p, image_size), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
