"""Feature extraction for evaluation, averaged with the horizontal flip (the paper's protocol)."""

import keras
import numpy as np

from keras_mmga.progress import Progress


def _l2_normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def extract_features(model, images, flip=True, verbose=True, batch_size=64, label="features", num_images=None):
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
        verbose: show progress on stderr (images, images/s, time left),
            labelled `label`.
        batch_size: batch size for an array input.
        label: what is extracted, shown first in the progress line (e.g.
            "query features").
        num_images: the number of images, for the time left (known for an
            array input).

    Returns:
        float32 array `(N, D)`.

    Example:
    ```python
    from keras_mmga.data import make_eval_dataset
    qf = extract_features(model, make_eval_dataset(market.query, (384, 128)))
    ```
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an int ≥ 1, got {batch_size!r}.")
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(f"An image array must be (N, H, W, C); got shape {images.shape}.")
        num_images = len(images)
        images = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    outputs = []
    with Progress(num_images, "images", label=label, verbose=verbose) as bar:
        for batch in images:
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            feats = _forward(model, batch)
            if flip:
                # Width is axis 2 in NHWC.
                mirrored = keras.ops.flip(keras.ops.convert_to_tensor(batch, "float32"), axis=2)
                feats = _l2_normalize(feats + _forward(model, mirrored))
            outputs.append(feats)
            bar.update(len(feats))
    if not outputs:
        raise ValueError("extract_features: no images.")
    return np.concatenate(outputs)


def _forward(model, batch):
    feats = keras.ops.convert_to_numpy(model(batch, training=False)).astype(np.float32)
    if feats.ndim != 2:
        raise ValueError(f"The model must return (N, D) features; got shape {feats.shape}.")
    return feats
