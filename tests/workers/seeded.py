"""Backend-independent starting point for cross-backend identity runs.

TensorFlow and JAX draw different random numbers from the same seed, so a
TF-vs-JAX comparison cannot start from each backend's own initialisation.
`assign_seeded_weights` replaces every random-initialised variable (the
kernels: rank ≥ 2) with values drawn by NumPy, scaled like LeCun-normal;
the rest (BatchNorm's 1s and 0s, zero biases) is constant-initialised
already and is checked to be. `identity_batches` is the data both backends
train on.
"""

import numpy as np

SHAPE = (64, 32, 3)
GLOBAL_BATCH = 8


def assign_seeded_weights(model, seed=0):
    rng = np.random.RandomState(seed)
    for variable in model.weights:
        value = np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable.value)
        if value.ndim >= 2:
            fan_in = int(np.prod(value.shape[:-1]))
            variable.assign(rng.normal(0.0, 1.0 / np.sqrt(fan_in), value.shape).astype(value.dtype))
        elif value.size and not np.all(value == value.flat[0]):
            raise AssertionError(f"{variable.path} is not constant-initialised; seed it too")


def identity_batches(steps, identities=4):
    """(images float64, targets) of `steps` global batches: `identities` × 2 images,
    random masks, one image per batch without a mask (it must drop out of the RMSE)."""
    rng = np.random.RandomState(0)
    n = steps * GLOBAL_BATCH
    images = rng.uniform(0, 255, (n,) + SHAPE).astype("float64")
    targets = {
        "labels": np.tile(np.repeat(np.arange(identities), GLOBAL_BATCH // identities), steps).astype("int32"),
        "masks": (rng.rand(n, SHAPE[0] // 16, SHAPE[1] // 16, 3) > 0.4).astype("float32"),
        "mask_weights": np.where(np.arange(n) % GLOBAL_BATCH == 3, 0.0, 1.0).astype("float32"),
    }
    return images, targets
