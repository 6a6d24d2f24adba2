"""Feature extraction for evaluation, averaged with the horizontal flip."""

import keras
import numpy as np


def _l2_normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def extract_features(model, images, flip=True, verbose=True):
    """Features of every image, the paper's protocol: mean of image and flip, re-normalised.

    Args:
        model: callable `model(batch, training=False) -> (N, D)` (an `MMGA`, a
            loaded `.keras` model or any Keras model returning features).
        images: a `tf.data.Dataset` or iterable of image batches (float32 RGB
            [0, 255], NHWC; tuple elements use their first item), or an array
            `(N, H, W, 3)`.
        flip: average with the horizontally flipped image's feature.
        verbose: show a progress bar.

    Returns:
        float32 array `(N, D)`, L2-normalised rows.

    Example:
    >>> feats = extract_features(model, make_eval_dataset(market.query, (384, 128)))
    """
    if isinstance(images, np.ndarray):
        images = [images[i : i + 64] for i in range(0, len(images), 64)]
    total = None
    if hasattr(images, "cardinality"):
        n = int(images.cardinality())
        total = n if n > 0 else None
    progress = keras.utils.Progbar(total, unit_name="batch") if verbose else None
    outputs = []
    for step, batch in enumerate(images, start=1):
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        feats = keras.ops.convert_to_numpy(model(batch, training=False)).astype(np.float32)
        if flip:
            mirrored = keras.ops.flip(keras.ops.convert_to_tensor(batch), axis=2)
            feats = _l2_normalize(feats + keras.ops.convert_to_numpy(model(mirrored, training=False)))
        outputs.append(feats)
        if progress is not None:
            progress.update(step)
    if not outputs:
        raise ValueError("extract_features: no images.")
    return np.concatenate(outputs)
