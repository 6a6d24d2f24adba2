"""Feature extraction for evaluation, averaged with the horizontal flip (the paper's protocol)."""

import keras
import numpy as np


def _l2_normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def extract_features(model, images, flip=True, verbose=True, batch_size=64):
    """Features of every image: mean of the image's and its mirror image's, re-normalised.

    Args:
        model: callable `model(batch, training=False) -> (N, D)` (an `MMGA`, a
            loaded `.keras` model, or any Keras model returning features).
        images: a `tf.data.Dataset` or any iterable of image batches (float32
            RGB in [0, 255], NHWC; tuple/list elements use their first item,
            e.g. `(images, pids)`), or one array `(N, H, W, 3)` that is cut
            into batches of `batch_size`.
        flip: also run the horizontally flipped batch and average the two
            features, then L2-normalise again. `False`: the model's features
            as they are.
        verbose: show a `keras.utils.Progbar` (in batches).
        batch_size: batch size for an array input.

    Returns:
        float32 array `(N, D)`.

    Example:
    >>> from keras_mmga.data import make_eval_dataset
    >>> qf = extract_features(model, make_eval_dataset(market.query, (384, 128)))
    """
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(f"An image array must be (N, H, W, C); got shape {images.shape}.")
        images = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    total = None
    if hasattr(images, "cardinality"):  # tf.data: known length when not infinite / unknown (< 0)
        n = int(images.cardinality())
        total = n if n >= 0 else None
    elif hasattr(images, "__len__"):
        total = len(images)
    progress = keras.utils.Progbar(total, unit_name="batch") if verbose else None
    outputs = []
    for step, batch in enumerate(images, start=1):
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        feats = _forward(model, batch)
        if flip:
            # Width is axis 2 in NHWC.
            mirrored = keras.ops.flip(keras.ops.convert_to_tensor(batch, "float32"), axis=2)
            feats = _l2_normalize(feats + _forward(model, mirrored))
        outputs.append(feats)
        if progress is not None:
            progress.update(step)
    if not outputs:
        raise ValueError("extract_features: no images.")
    return np.concatenate(outputs)


def _forward(model, batch):
    feats = keras.ops.convert_to_numpy(model(batch, training=False)).astype(np.float32)
    if feats.ndim != 2:
        raise ValueError(f"The model must return (N, D) features; got shape {feats.shape}.")
    return feats
