"""By-hand check of the PyTorch backend (not in CI: torch with its CUDA libraries is ~5 GB).

Usage:
    pip install --target /opt/torchlib torch          # or any environment with torch
    KERAS_BACKEND=torch PYTHONPATH=/opt/torchlib python benchmarks/check_torch_backend.py

For baseline and mmga at 64x32, batch 8: inference, fit 3 steps (every loss
term, weights moving, s/step), evaluate, predict, save / load; writes the
mmga model to /tmp/torch_mmga.keras and its features to /tmp/torch_feat.npy,
which `KERAS_BACKEND=tensorflow python benchmarks/check_torch_backend.py --compare`
loads and compares on TensorFlow.
"""

import sys
import time

import keras
import numpy as np

from keras_mmga import MMGA


def compare():
    x = np.random.RandomState(0).uniform(0, 255, (8, 64, 32, 3)).astype("float32")
    m = keras.models.load_model("/tmp/torch_mmga.keras")
    diff = float(np.abs(keras.ops.convert_to_numpy(m(x)) - np.load("/tmp/torch_feat.npy")).max())
    print(keras.backend.backend(), "features of the PyTorch-saved model, max diff:", diff)


def main():
    if "--compare" in sys.argv:
        return compare()
    print("backend", keras.backend.backend())
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 255, (8, 64, 32, 3)).astype("float32")
    y = {"labels": np.repeat(np.arange(4), 2), "masks": rng.rand(8, 4, 2, 3).astype("float32")}
    for variant in ("baseline", "mmga"):
        keras.utils.set_random_seed(0)
        m = MMGA(4, variant=variant, input_shape=(64, 32, 3), backbone_weights=None)
        f = keras.ops.convert_to_numpy(m(x))
        print(variant, "feature", f.shape, "norms", np.linalg.norm(f, axis=1)[:2])
        m.compile(learning_rate=0.01)
        before = [keras.ops.convert_to_numpy(v).copy() for v in m.trainable_variables]
        start = time.time()
        history = m.fit(x, y, batch_size=8, epochs=3, verbose=0).history
        step = (time.time() - start) / 3
        moved = max(
            float(np.abs(keras.ops.convert_to_numpy(v) - b).max()) for v, b in zip(m.trainable_variables, before)
        )
        print(
            variant,
            {k: [round(float(a), 3) for a in v] for k, v in history.items() if k != "lr"},
            "moved",
            moved,
            "s/step (first includes tracing)",
            round(step, 2),
        )
        logs = m.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
        print(variant, "evaluate", {k: round(float(v), 3) for k, v in logs.items()})
        predicted = m.predict(x, verbose=0)
        m.save(f"/tmp/torch_{variant}.keras")
        loaded = keras.models.load_model(f"/tmp/torch_{variant}.keras")
        print(variant, "reload max diff", float(np.abs(keras.ops.convert_to_numpy(loaded(x)) - predicted).max()))
        if variant == "mmga":
            np.save("/tmp/torch_feat.npy", keras.ops.convert_to_numpy(m(x)))


if __name__ == "__main__":
    sys.exit(main())
