"""Parity: an export (ONNX Runtime, LiteRT) against Keras on random, synthetic-person and the caller's images.

Example:
```python
from keras_mmga.export import parity, parity_images
images = np.concatenate(list(parity_images((384, 128), None).values()))
parity(model, "exported/mmga.onnx", images) <= FP32_TOLERANCE
```
"""

import os

import keras
import numpy as np

# ONNX Runtime vs Keras, float32 graph, on unit-length features. Measured
# ~1e-7 here (see the model card); the bound leaves room for other CPUs' kernels.
FP32_TOLERANCE = 1e-4
# Float16 graph (`fp16=True`) vs the float32 Keras model, per feature component
# of unit-length features. Weights and activations are rounded to 11
# significant bits (relative error ~5e-4 per operation, accumulating over ~50
# layers); measured 1e-3 to 4e-3 on random-weight models. Cosine similarity to
# the float32 feature stays above 0.999.
FP16_TOLERANCE = 1e-2


class ParityError(RuntimeError):
    """ONNX Runtime and Keras disagree by more than the tolerance."""


def parity_images(image_size, provided=None):
    """`{group: images}` for the parity check, float32 RGB `(n, H, W, 3)` in [0, 255].

    Groups: `random` (4 uniform-noise images), `synthetic_person` (2 drawn
    people) and, when given, `provided`: the caller's image paths or RGB
    arrays of any size, resized as `keras_mmga.deploy` does.
    """
    from keras_mmga.data import synthetic
    from keras_mmga.preprocessing import preprocess, preprocess_batch

    h, w = image_size
    rng = np.random.RandomState(0)
    groups = {"random": rng.uniform(0, 255, (4, h, w, 3)).astype(np.float32)}
    people = []
    for _ in range(2):
        bgr, _ = synthetic.draw_person(rng, synthetic.make_identity(rng), synthetic.make_camera(rng))
        people.append(preprocess(bgr, (h, w), color="bgr"))
    groups["synthetic_person"] = np.stack(people)
    if provided is not None:
        groups["provided"] = preprocess_batch(provided, (h, w))
    return groups


def parity_set(image_size, provided=None):
    """`(images, counts)`: the `parity_images` groups as one batch, and how many images each group gave."""
    groups = parity_images(image_size, provided)
    return np.concatenate(list(groups.values())), {k: len(v) for k, v in groups.items()}


def features_vs_keras(model, run, images, profile="default", nchw=False, runtime="ONNX Runtime"):
    """`(got, expected)`: features of raw RGB `images` through `run` (fed the export's input) and through Keras.

    Args:
        model: the Keras model (called with `training=False`).
        run: callable, the export's input batch → features (ONNX Runtime, LiteRT).
        images: float32 RGB `(N, H, W, 3)` in [0, 255].
        profile, nchw: the export's input (`profiles.graph_input`).
        runtime: its name, for the error.
    """
    from keras_mmga.export.profiles import graph_input

    images = np.asarray(images, np.float32)
    got = np.asarray(run(graph_input(images, profile, nchw)), np.float32)
    expected = np.asarray(keras.ops.convert_to_numpy(model(images, training=False)), np.float32)
    if got.shape != expected.shape:
        raise ParityError(f"{runtime} gave features of shape {got.shape}, Keras {expected.shape}.")
    return got, expected


def check_parity(diff, fp16, num_images, path, runtime="ONNX Runtime"):
    """Raises `ParityError` when `diff` exceeds the tolerance (`FP16_TOLERANCE` for `fp16`); returns the tolerance."""
    tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
    if not diff <= tolerance:  # NaN fails too
        raise ParityError(
            f"{runtime} differs from Keras by {diff:.3e} (> {tolerance:g}) on {num_images} images; "
            f"{path!r} was removed."
        )
    return tolerance


def cosine_similarity(a, b):
    """Row-wise cosine similarity of two `(N, D)` feature sets, in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-300)


def parity(model, onnx_path, images, nchw=False, profile="default"):
    """Max |ONNX Runtime − Keras| over the features of `images`.

    Args:
        model: the Keras model (called with `training=False`).
        onnx_path: the exported file.
        images: float32 RGB `(N, H, W, 3)` in [0, 255].
        nchw: the export takes `(N, 3, H, W)`.
        profile: the export's input profile; for `"field"` / `"boxmot"` the
            ONNX graph gets the same images as BoxMOT would feed them
            (`profiles.field_images`), Keras the raw pixels.

    Example:
    ```python
    parity(model, "exported/mmga.onnx", images)
    ```
    """
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    got, expected = features_vs_keras(model, lambda x: session.run(None, {name: x})[0], images, profile, nchw)
    return float(np.max(np.abs(got - expected)))
