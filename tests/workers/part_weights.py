"""Per-channel mask weights on one backend, in float64, run in its own process.

    part_weights.py BACKEND OUT.json

BACKEND is tensorflow or jax. Writes OUT.json with:
- `attention`: eq. 5 from `step_losses` on fixed NumPy inputs (2 and 4 parts,
  (N, 1 + K) weights with zeros mixed in, and a sample_weight), for the test
  to compare with its own NumPy eq. 3-5;
- `fit`: the largest weight change between one-step fits whose masks differ
  only where the channel weight is 0 (`same_where_weight_0`, expected 0) and
  where it is 1 (`differs_where_weight_1`, expected > 0), on a 4-part MMGA.
"""

import json
import os
import sys

BACKEND, OUT = sys.argv[1], sys.argv[2]
os.environ["KERAS_BACKEND"] = BACKEND
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

if BACKEND == "jax":
    from keras_mmga.backends import jax as jax_backend

    jax_backend.enable_float64()  # before any model exists

import keras  # noqa: E402
import numpy as np  # noqa: E402
import seeded  # noqa: E402

from keras_mmga import MMGA  # noqa: E402
from keras_mmga.models.step_losses import step_losses  # noqa: E402
from keras_mmga.settings import COMPILE_DEFAULTS  # noqa: E402

PARTS = {2: ("upper", "bottom"), 4: ("head", "torso", "legs", "feet")}


def loss_inputs(k, seed=0):
    """The fixed inputs the test rebuilds: maps, masks, (N, 1 + K) weights, sample weights."""
    rng = np.random.RandomState(seed + k)
    n = 6
    names = ["module1_whole", "module2_whole"] + [f"module2_{p}" for p in PARTS[k]]
    maps = {name: rng.rand(n, 4, 2) + 0.1 for name in names}
    masks = rng.rand(n, 4, 2, 1 + k)
    weights = (rng.rand(n, 1 + k) > 0.35).astype("float64")
    weights[0, 1:] = 0.0  # an image whose parts are all out of view
    sample_weight = np.array([1.0, 0.5, 1.0, 2.0, 1.0, 0.0])
    return maps, masks, weights, sample_weight


def attention_values():
    out = {}
    for k in PARTS:
        maps, masks, weights, sample_weight = loss_inputs(k)
        n = masks.shape[0]
        outputs = {
            "features": keras.ops.convert_to_tensor(np.random.RandomState(9).rand(n, 8)),
            "whole_logits": keras.ops.convert_to_tensor(np.random.RandomState(8).rand(n, 3)),
            "attention_maps": {name: keras.ops.convert_to_tensor(m) for name, m in maps.items()},
        }
        labels = keras.ops.convert_to_tensor(np.array([0, 0, 1, 1, 2, 2], "int32"))
        _, logs = step_losses(
            outputs,
            labels,
            keras.ops.convert_to_tensor(masks),
            keras.ops.convert_to_tensor(weights),
            keras.ops.convert_to_tensor(sample_weight),
            dict(COMPILE_DEFAULTS),
            "float64",
            True,
            PARTS[k],
        )
        out[str(k)] = float(keras.ops.convert_to_numpy(logs["attention"]))
    return out


def one_step_fits():
    """`fit(masks, weights)`: one float64 step from the same start each call, on one model built once.

    Building and compiling per fit tripled the run (XLA compiles the step once per model);
    restoring the weights and the optimizer's variables gives the same start instead.
    """
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = MMGA(4, variant="mmga", input_shape=seeded.SHAPE, backbone_weights=None, dtype="float64", parts=PARTS[4])
    seeded.assign_seeded_weights(model)
    model.compile(steps_per_epoch=1, learning_rate=0.01)
    model.optimizer.build(model.trainable_variables)
    start = model.get_weights()
    optimizer_start = [np.array(keras.ops.convert_to_numpy(v)) for v in model.optimizer.variables]
    images = np.random.RandomState(1).uniform(0, 255, (8,) + seeded.SHAPE)
    labels = np.repeat(np.arange(4), 2).astype("int32")

    def fit(masks, weights):
        model.set_weights(start)
        for variable, value in zip(model.optimizer.variables, optimizer_start):
            variable.assign(value)
        keras.utils.set_random_seed(0)
        targets = {"labels": labels, "masks": masks, "mask_weights": weights}
        model.fit(tf.data.Dataset.from_tensor_slices((images, targets)).batch(8), epochs=1, verbose=0)
        return [np.asarray(keras.ops.convert_to_numpy(w)) for w in model.trainable_weights]

    return fit


def fit_values():
    rng = np.random.RandomState(2)
    masks = rng.rand(8, 4, 2, 5)
    weights = np.ones((8, 5))
    weights[1, 3:] = 0.0  # image 1: legs and feet out of view
    weights[4, 1] = 0.0  # image 4: head out of view
    fit_once = one_step_fits()
    base = fit_once(masks, weights)
    garbage = masks.copy()
    garbage[1, ..., 3:] = 1.0 - garbage[1, ..., 3:]
    garbage[4, ..., 1] = 1.0 - garbage[4, ..., 1]
    same = fit_once(garbage, weights)
    counted = masks.copy()
    counted[2, ..., 3] = 1.0 - counted[2, ..., 3]
    differs = fit_once(counted, weights)
    diff = lambda a, b: max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))  # noqa: E731
    return {
        "same_where_weight_0": diff(base, same),
        "differs_where_weight_1": diff(base, differs),
        "dtype": str(base[0].dtype),
    }


if __name__ == "__main__":
    result = {"attention": attention_values(), "fit": fit_values(), "backend": keras.backend.backend()}
    with open(OUT, "w") as f:
        json.dump(result, f)
