"""Checks of what `MMGA`'s training and inference methods are given.

Where each check runs:

* at the call (`fit`, `evaluate`, `predict`, `*_on_batch`), eagerly, on
  in-memory data (NumPy arrays, tensors, lists): image shape and channels,
  image range [0, 255], label type, shape and range, mask shape and range,
  sample-weight shape and sign. For a `tf.data.Dataset` only what its
  `element_spec` says (shapes, ranks), so the data stream is never consumed
  twice;
* while the step is traced, on every backend: the static shapes of images,
  labels and masks, and the structure of the targets;
* inside the TensorFlow step (`assert_batch_values`): label range and
  integrality, mask range, sample-weight sign, for data the call could not
  see (datasets, generators). These are `tf.debugging` assertions: XLA
  (`jit_compile=True`) compiles them away, so there only the other checks run.

Every message starts with `ERROR_PREFIX`, so that `MMGA` can re-raise an
assertion from the graph as one-line `ValueError`.
"""

import re
import warnings

import numpy as np

ERROR_PREFIX = "MMGA input check: "


def input_error(message):
    return ValueError(ERROR_PREFIX + message)


def static_shape(x):
    """The shape of `x` as a tuple (None for unknown dims), or None for unknown rank."""
    shape = getattr(x, "shape", None)
    if shape is None:
        return None
    try:
        return tuple(None if d is None else int(d) for d in shape)
    except (TypeError, ValueError):  # TensorShape of unknown rank
        return None


def check_image_shape(shape, expected, argument="x"):
    """Raises unless `shape` (may hold None) is `(N,) + expected`."""
    if shape is None:
        return
    h, w, c = expected
    if len(shape) != 4:
        raise input_error(
            f"{argument} must be a batch of images (N, {h}, {w}, {c}); got an array of shape {shape}"
            + (" (a single image? add a batch axis)" if len(shape) == 3 else "")
            + "."
        )
    if shape[3] is not None and shape[3] != c:
        hint = " (grayscale? repeat it to 3 channels)" if shape[3] == 1 else ""
        raise input_error(f"{argument} must have {c} (RGB) channels, got {shape[3]}{hint}; shape {shape}.")
    for got, want, name in ((shape[1], h, "height"), (shape[2], w, "width")):
        if got is not None and got != want:
            raise input_error(
                f"{argument} has images of {shape[1]}×{shape[2]} but the model takes {h}×{w} "
                f"(its input_shape {expected}): resize the images, or build a model with "
                f"input_shape=({shape[1]}, {shape[2]}, 3); got {name} {got}."
            )


def check_label_shape(shape, num_classes, argument="labels"):
    """Static shape of the labels: (N,) or (N, 1); one-hot (N, C) is an error."""
    if shape is None:
        return
    if len(shape) == 2 and shape[1] not in (None, 1):
        raise input_error(
            f"{argument} must be integer identity ids of shape (N,); got shape {shape}, which looks "
            f"one-hot (num_classes = {num_classes}): pass labels.argmax(-1)."
        )
    if len(shape) not in (1, 2):
        raise input_error(f"{argument} must be integer identity ids of shape (N,); got shape {shape}.")


def check_mask_shape(shape, attention_size, argument="masks", channels=("whole", "upper", "bottom")):
    h, w = attention_size
    c = len(channels)
    if shape is None or len(shape) != 4 or tuple(shape[1:]) != (h, w, c):
        raise input_error(
            f"{argument} must have shape (N, {h}, {w}, {c}) (the attention-map size, input/16, channels "
            f"{'/'.join(channels)}); got {'unknown' if shape is None else shape}."
            + (
                " Make the targets with the model's parts: make_train_dataset(..., parts=model.parts)."
                if shape is not None and len(shape) == 4 and tuple(shape[1:3]) == (h, w)
                else ""
            )
        )


def check_label_values(labels, num_classes, argument="labels"):
    """Eager check of label values (NumPy-convertible)."""
    labels = np.asarray(labels)
    check_label_shape(labels.shape, num_classes, argument)
    if labels.size == 0:
        return
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise input_error(f"{argument} must be integer identity ids; got dtype {labels.dtype}.")
    if np.issubdtype(labels.dtype, np.floating):
        bad = labels[~np.isfinite(labels) | (labels != np.round(labels))]
        if bad.size:
            raise input_error(f"{argument} must be integer identity ids; got the non-integer value {bad.flat[0]}.")
    low, high = labels.min(), labels.max()
    if low < 0:
        raise input_error(f"{argument} must be in [0, num_classes = {num_classes}); got the negative label {low}.")
    if high >= num_classes:
        raise input_error(
            f"{argument} must be in [0, num_classes = {num_classes}); got the label {high} (relabel the "
            f"identities to 0..N-1, or build the model with num_classes ≥ {int(high) + 1})."
        )


def check_mask_values(masks, attention_size, argument="masks", channels=("whole", "upper", "bottom")):
    masks = np.asarray(masks)
    check_mask_shape(masks.shape, attention_size, argument, channels)
    if masks.size and not (np.nanmin(masks) >= 0 and np.nanmax(masks) <= 1 and np.isfinite(masks).all()):
        raise input_error(
            f"{argument} must be in [0, 1]; got values in [{np.nanmin(masks)}, {np.nanmax(masks)}]"
            + (" (0/255 PNG values? divide by 255)" if np.nanmax(masks) > 1 else "")
            + "."
        )


def check_image_values(images, argument="x"):
    images = np.asarray(images)
    if images.size == 0:
        return
    low, high = float(np.min(images)), float(np.max(images))
    if not (np.isfinite(low) and np.isfinite(high) and low >= 0 and high <= 255):
        raise input_error(
            f"{argument} must hold RGB pixels in [0, 255] (the model preprocesses them itself); "
            f"got values in [{low:.4g}, {high:.4g}]."
        )


def looks_unit_range(images):
    """True when float `images` are clearly in [0, 1] (a torchreid habit), not [0, 255] pixels.

    "Clearly": all values in [0, 1] and at least one strictly between 0 and 1, so
    a black or binary image is not taken for one.
    """
    images = np.asarray(images)
    if images.size == 0 or not np.issubdtype(images.dtype, np.floating):
        return False
    low, high = float(np.min(images)), float(np.max(images))
    return low >= 0 and high <= 1 and bool(np.any((images > 0) & (images < 1)))


def warn_unit_range(owner, images, argument="x"):
    """Warns once per `owner` (the model) when `images` look like [0, 1] floats.

    Only eager data reaches here (NumPy arrays, eager tensors), so the traced
    train and predict steps carry no extra op.
    """
    if getattr(owner, "_warned_unit_range", False) or not looks_unit_range(images):
        return
    try:
        owner._warned_unit_range = True
    except AttributeError:
        pass
    warnings.warn(
        f"{argument} holds values in [0, 1], but the model takes RGB pixels in [0, 255] (it normalises "
        "them itself): multiply by 255, or the features are those of a nearly black image. "
        "(Warned once per model.)",
        UserWarning,
        stacklevel=4,
    )


def concrete_values(x):
    """`x` as a NumPy array when it is concrete (NumPy, eager / JAX / torch tensor), else None (symbolic)."""
    if isinstance(x, np.ndarray):
        return x
    kind = type(x)
    if kind.__name__ == "EagerTensor" or (kind.__name__ == "ArrayImpl" and kind.__module__.startswith("jax")):
        return np.asarray(x)
    if kind.__module__.startswith("torch") and kind.__name__ == "Tensor" and x.device.type == "cpu":
        return x.detach().numpy()  # not GPU tensors: reading them would sync the device every call
    return None


def check_sample_weight_values(sample_weight, n, argument="sample_weight"):
    w = np.asarray(sample_weight)
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.ndim != 1 or (n is not None and w.shape[0] != n):
        raise input_error(f"{argument} must be one weight per image, shape ({n},); got shape {w.shape}.")
    if w.size and not (np.isfinite(w).all() and w.min() >= 0):
        raise input_error(f"{argument} must be finite and ≥ 0; got values in [{w.min()}, {w.max()}].")


def check_mask_weight_values(mask_weights, n, channels, argument="mask_weights"):
    """Mask weights: one per image (N,) or one per mask channel (N, channels), finite and ≥ 0."""
    w = np.asarray(mask_weights)
    if w.ndim == 2 and w.shape[1] not in (1, channels):
        raise input_error(
            f"{argument} must be (N,) or one weight per mask channel (N, {channels}); got shape {w.shape}."
        )
    if w.ndim == 2 and w.shape[1] == channels and channels != 1:
        if n is not None and w.shape[0] != n:
            raise input_error(f"{argument} must have one row per image, ({n}, {channels}); got shape {w.shape}.")
        if w.size and not (np.isfinite(w).all() and w.min() >= 0):
            raise input_error(f"{argument} must be finite and ≥ 0; got values in [{w.min()}, {w.max()}].")
        return
    check_sample_weight_values(w, n, argument)


def assert_batch_values(images, labels, int_labels, masks, sample_weight, num_classes, image_shape):
    """In-graph checks of a batch's shapes and values (TensorFlow; a no-op under XLA).

    The image size is checked here too: TensorFlow relaxes a retraced step to
    unknown dimensions (a second `fit` with other data), where the static
    check cannot see it. Returns `(images, int_labels)` that depend on the
    checks, for the step to use.
    """
    import tensorflow as tf

    labels = tf.convert_to_tensor(labels)
    checks = [
        assert_image_shape(images, image_shape),
        tf.debugging.assert_non_negative(labels, message=ERROR_PREFIX + "labels must be ≥ 0; got a negative label."),
        tf.debugging.assert_less(
            labels,
            tf.cast(num_classes, labels.dtype),
            message=ERROR_PREFIX + f"labels must be in [0, num_classes = {num_classes}); got a label ≥ {num_classes}.",
        ),
    ]
    if labels.dtype.is_floating:
        checks.append(
            tf.debugging.assert_equal(
                labels,
                tf.round(labels),
                message=ERROR_PREFIX + "labels must be integer identity ids; got a non-integer value.",
            )
        )
    if masks is not None:
        checks += [
            tf.debugging.assert_greater_equal(
                masks, tf.cast(0, masks.dtype), message=ERROR_PREFIX + "masks must be in [0, 1]; got a value < 0."
            ),
            tf.debugging.assert_less_equal(
                masks,
                tf.cast(1, masks.dtype),
                message=ERROR_PREFIX + "masks must be in [0, 1]; got a value > 1 (0/255 values? divide by 255).",
            ),
        ]
    if sample_weight is not None:
        checks.append(
            tf.debugging.assert_non_negative(
                sample_weight, message=ERROR_PREFIX + "sample_weight must be ≥ 0; got a negative weight."
            )
        )
    # The step reads images and labels through these identities, so the
    # checks run before any op that would fail on the bad values first.
    with tf.control_dependencies([c for c in checks if c is not None]):
        return tf.identity(images), tf.identity(int_labels)


def assert_image_shape(images, image_shape):
    """In-graph check of the image size alone (TensorFlow; see `assert_batch_values`)."""
    import tensorflow as tf

    h, w, c = image_shape
    return tf.debugging.assert_equal(
        tf.shape(images)[1:],
        tf.constant(image_shape, tf.int32),
        message=ERROR_PREFIX + f"x has images of another size than the model's input {h}×{w}×{c} "
        f"(input_shape {tuple(image_shape)}): resize them or build a model for their size.",
    )


def reraise_input_error(err):
    """Raises a one-line ValueError if `err` carries an input check's message; else returns."""
    text = str(err).replace("\\'", "'")
    match = re.search(re.escape(ERROR_PREFIX) + r"(.*?)(?:\] \[Condition|\n|$)", text)
    if match:
        message = ERROR_PREFIX + match.group(1).strip()
        # A graph assertion also prints the offending values ("[x (...) = ] [128 64 3]").
        values = re.search(r"\[x \([^)]*\) = \] \[([^\]]*)\]", text)
        if values:
            message += f" (values seen: {values.group(1).strip()})"
        raise ValueError(message) from None
