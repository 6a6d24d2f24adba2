"""Shared test inputs and models, one definition each (in the spirit of keras-hub's TestCase).

Test modules import what they need (`from factories import random_images`);
`conftest.py` puts this folder on the import path and offers the same
factories as fixtures (`small_mmga`).

Example:
```python
from factories import pk_targets, random_images, small_mmga

model = small_mmga(4, variant="mmga", input_shape=(64, 32, 3))
model.compile(learning_rate=0.01)
model.fit(random_images(8, (64, 32, 3)), pk_targets(8, 4, size=(4, 2)), epochs=1, verbose=0)
```
"""

import numpy as np


def random_images(n, shape, seed=0):
    """`n` seeded images of `shape` `(H, W, 3)`: float32 pixels uniform in [0, 255]."""
    return np.random.RandomState(seed).uniform(0, 255, (n,) + tuple(shape)).astype("float32")


def pk_targets(n, num_ids, size, channels=3, seed=1):
    """`{"labels", "masks"}` for `n` images of `num_ids` identities in P×K order, with random binary masks.

    Args:
        size: `(h, w)` of the masks (the model's `attention_size`: input / 16).
        channels: mask channels (whole first, then the parts).
    """
    rng = np.random.RandomState(seed)
    return {
        "labels": np.repeat(np.arange(num_ids), n // num_ids).astype("int32"),
        "masks": (rng.rand(n, *size, channels) > 0.5).astype("float32"),
    }


def small_mmga(num_classes=4, variant="mmga", input_shape=(64, 32, 3), **kwargs):
    """An `MMGA` without downloaded weights (`backbone_weights=None`); other keywords go to `MMGA`."""
    from keras_mmga import MMGA

    return MMGA(num_classes, variant=variant, input_shape=input_shape, backbone_weights=None, **kwargs)
