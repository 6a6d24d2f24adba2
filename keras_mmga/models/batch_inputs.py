"""What `MMGA`'s training and inference methods are given: eager checks, and the batch a step unpacks.

The eager checks (`check_call`) run in `fit` / `evaluate` / `predict` before
Keras sees the data, so bad input fails with one line naming the argument;
`unpack_batch` runs while a step is traced (static shapes only, every backend).
The individual checks are in `keras_mmga.models.input_checks`.
"""

import warnings

import keras
import numpy as np
from keras import ops

from keras_mmga.models import input_checks


def mask_channel_names(model):
    """Names of the mask channels `model` is trained with: whole first, then its parts."""
    return ("whole",) + (model.parts if model.mask_mode in ("parts", "halves") else ("upper", "bottom"))


def check_call(model, x, y, sample_weight, where):
    """Eager checks of what a training / inference method was given."""
    if hasattr(x, "element_spec"):  # tf.data: only its spec, never its values
        spec = x.element_spec
        images = spec[0] if isinstance(spec, tuple) else spec
        input_checks.check_image_shape(input_checks.static_shape(images), model.input_shape[1:], f"{where}: x")
        if isinstance(spec, tuple) and len(spec) > 1:
            check_target_structure(model, spec[1], where)
        return
    shape = input_checks.static_shape(x)
    if shape is None:
        return  # generators, PyDataset: checked while the step is traced
    input_checks.check_image_shape(shape, model.input_shape[1:], f"{where}: x")
    images = to_numpy(x)
    input_checks.check_image_values(images, f"{where}: x")
    input_checks.warn_unit_range(model, images, f"{where}: x")
    n = shape[0]
    if y is not None:
        check_target_structure(model, y, where)
        labels = y["labels"] if isinstance(y, dict) else y
        input_checks.check_label_values(to_numpy(labels), model.num_classes, f"{where}: labels")
        if length(labels) != n:
            raise input_checks.input_error(f"{where}: x has {n} images but labels has {length(labels)}.")
        if isinstance(y, dict) and model.mask_supervised and y.get("masks") is not None:
            input_checks.check_mask_values(
                to_numpy(y["masks"]), model.attention_size, f"{where}: masks", mask_channel_names(model)
            )
        if isinstance(y, dict) and y.get("mask_weights") is not None:
            input_checks.check_mask_weight_values(
                to_numpy(y["mask_weights"]),
                n,
                len(mask_channel_names(model)) if model.mask_supervised else 1,
                f"{where}: mask_weights",
            )
    if sample_weight is not None:
        input_checks.check_sample_weight_values(to_numpy(sample_weight), n, f"{where}: sample_weight")
    if y is not None and where == "fit":
        labels = to_numpy(y["labels"] if isinstance(y, dict) else y).reshape(-1)
        if labels.size > 1 and len(np.unique(labels)) == labels.size:
            warnings.warn(
                "fit: every identity has one image only (K = 1): no anchor has a positive, so the "
                "triplet term is 0 throughout. Train on PK batches (keras_mmga.data) with K ≥ 2.",
                stacklevel=3,
            )


def check_target_structure(model, targets, where):
    """Static checks of the targets: labels, or a dict of labels / masks / mask_weights."""
    if isinstance(targets, (tuple, list)):
        raise input_checks.input_error(
            f"{where}: targets must be the labels or a dict {{'labels': ..., 'masks': ...}}; got a "
            f"{type(targets).__name__} of {len(targets)}: use a dict, e.g. {{'labels': labels, 'masks': masks}}."
        )
    if isinstance(targets, dict):
        unknown = sorted(set(targets) - {"labels", "masks", "mask_weights"})
        if "labels" not in targets or unknown:
            raise input_checks.input_error(
                f"{where}: targets must be a dict with 'labels' (and 'masks', optionally 'mask_weights'); "
                f"got keys {sorted(targets)}."
            )
        labels = targets["labels"]
        if model.mask_supervised and targets.get("masks") is not None:
            input_checks.check_mask_shape(
                input_checks.static_shape(targets["masks"]),
                model.attention_size,
                f"{where}: masks",
                mask_channel_names(model),
            )
    else:
        labels = targets
    input_checks.check_label_shape(input_checks.static_shape(labels), model.num_classes, f"{where}: labels")


def unpack_batch(model, data):
    """`(images, labels, masks, mask_weights, sample_weight)` of a batch, shapes checked.

    Runs while the step is traced, so every check here is on static shapes
    and works on every backend.
    """
    images, targets, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    input_checks.check_image_shape(input_checks.static_shape(images), model.input_shape[1:], "x")
    if targets is None:
        raise input_checks.input_error("training and evaluation need targets: labels or {'labels', 'masks'}.")
    check_target_structure(model, targets, "targets")
    if isinstance(targets, dict):
        labels = targets["labels"]
        masks, weights = targets.get("masks"), targets.get("mask_weights")
    else:
        labels, masks, weights = targets, None, None
    raw_labels = labels
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    dtype = model.output_dtype
    if sample_weight is not None:
        if isinstance(sample_weight, dict):
            # Keras repeats one sample_weight for every key of a dict target.
            sample_weight = sample_weight.get("labels", next(iter(sample_weight.values())))
        if isinstance(sample_weight, (tuple, list)):
            raise input_checks.input_error("sample_weight must be one array of per-image weights (N,).")
        sample_weight = ops.reshape(ops.cast(sample_weight, dtype), (-1,))
    if model.mask_supervised:
        channels = mask_channel_names(model)
        if masks is None:
            raise ValueError(
                f"Variant {model.variant!r} is trained with mask supervision: the targets "
                f"need 'masks' of shape (N, h, w, {len(channels)}) ({', '.join(channels)})."
            )
        input_checks.check_mask_shape(input_checks.static_shape(masks), model.attention_size, "masks", channels)
        masks = ops.cast(masks, dtype)
        weights = ops.ones_like(labels, dtype=dtype) if weights is None else ops.cast(weights, dtype)
        weight_shape = input_checks.static_shape(weights) or (None,)
        if len(weight_shape) == 2 and weight_shape[1] == 1:
            weights = ops.reshape(weights, (-1,))
        elif len(weight_shape) == 2 and weight_shape[1] not in (None, len(channels)):
            raise input_checks.input_error(
                f"mask_weights must be (N,) or one weight per mask channel (N, {len(channels)}) "
                f"({', '.join(channels)}); got shape {tuple(weight_shape)}."
            )
        elif len(weight_shape) not in (1, 2):
            raise input_checks.input_error(
                f"mask_weights must be (N,) or (N, {len(channels)}); got shape {tuple(weight_shape)}."
            )
    else:
        masks, weights = None, None
    if keras.backend.backend() == "tensorflow":
        # Values only the step sees (datasets): checked before the losses use them.
        images, labels = input_checks.assert_batch_values(
            images, raw_labels, labels, masks, sample_weight, model.num_classes, model.input_shape[1:]
        )
    return images, labels, masks, weights, sample_weight


class input_errors:
    """Re-raises a failed input check (a graph assertion included) as a one-line ValueError."""

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is not None and isinstance(err, Exception):
            input_checks.reraise_input_error(err)
        return False


def is_stream(x):
    """Data Keras does not shuffle itself (datasets, generators, iterators)."""
    if x is None or hasattr(x, "shape") or isinstance(x, (list, tuple, dict)):
        return False
    if isinstance(x, keras.utils.PyDataset):
        return getattr(x, "num_batches", None) is None
    return True


def is_endless(x):
    cardinality = getattr(x, "cardinality", None)
    if cardinality is None:
        return False
    import tensorflow as tf

    return int(cardinality()) == int(tf.data.INFINITE_CARDINALITY)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def length(x):
    shape = getattr(x, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) else len(x)


def known_length(x, batch_size):
    if hasattr(x, "cardinality"):
        n = int(x.cardinality())
        return n if n > 0 else None
    if hasattr(x, "__len__") and hasattr(x, "shape"):
        return -(-len(x) // (batch_size or 32))
    return None
