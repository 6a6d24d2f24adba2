"""MMGA on the JAX backend, run in its own process (the test session is TensorFlow's).

jax_steps.py identity OUT.npz
    float64 (x64 enabled before Keras loads), seeded start (seeded.py),
    2 steps of the default recipe on one device, then the same on 2 CPU
    devices with keras.distribution.DataParallel. Writes OUT.npz (both
    runs' final weights: one_<i>, two_<i>; the start: init_<i>) and OUT.json (histories).
jax_steps.py variants OUT.json DIR VARIANT[:POLICY] ...
    per variant (at 32x16, float32 unless a dtype policy is given):
    fit 1 step, evaluate, predict, save, load, predict the loaded model;
    the first variant's trained model is also kept as DIR/<variant>.keras
    with its features of fixed images (DIR/<variant>.features.npz) for the
    load-on-TensorFlow test. Also ParamGroupSGD's stateless update on JAX.
"""

import json
import os
import sys

MODE = sys.argv[1]
os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if MODE == "identity":
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
import seeded  # noqa: E402

from keras_mmga import MMGA
from keras_mmga.backends import jax as jax_backend  # noqa: E402

if MODE == "identity":
    jax_backend.enable_float64()  # before any model exists


def _numpy(values):
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in values]


def identity(out):
    import tensorflow as tf

    # tf.data, as train_steps.py (and the training pipeline) feed it: NumPy inputs to fit
    # would be cast to floatx (float32) by Keras's array adapter.
    dataset = tf.data.Dataset.from_tensor_slices(seeded.identity_batches(steps=2)).batch(seeded.GLOBAL_BATCH)
    results, histories = {}, {}
    for name, kind in (("one", "one"), ("two", "data_parallel")):
        distribution = jax_backend.make_distribution(kind)
        model = MMGA(
            4, variant="mmga", input_shape=seeded.SHAPE, backbone_weights=None, sync_batchnorm=True, dtype="float64"
        )
        seeded.assign_seeded_weights(model)
        if name == "one":
            results.update({f"init_{i}": w for i, w in enumerate(_numpy(model.weights))})
        model.compile(steps_per_epoch=2, learning_rate=0.01)
        history = model.fit(dataset, epochs=1, verbose=0)
        if distribution is not None:
            # The inputs really were split: a batch-sharded array lives on both devices.
            layout = distribution.get_data_layout((seeded.GLOBAL_BATCH,) + seeded.SHAPE)
            histories["data_devices"] = len(layout.device_mesh.devices.flatten())
            histories["batch_axis"] = layout.axes[0]
        results.update({f"{name}_{i}": w for i, w in enumerate(_numpy(model.weights))})
        histories[name] = {k: [float(x) for x in v] for k, v in history.history.items()}
        histories[name + "_dtype"] = str(model.weights[0].dtype)
    jax_backend.make_distribution("one")
    np.savez(out, **results)
    with open(out[: -len(".npz")] + ".json", "w") as f:
        json.dump(histories, f)


def param_group_sgd():
    """ParamGroupSGD's stateless update (the one JAX's fit uses), 3 steps, two groups."""
    from keras_mmga.optimizers import ParamGroupSGD

    rng = np.random.RandomState(0)
    w0 = rng.normal(size=(3, 2)).astype("float32")
    grads = [rng.normal(size=(3, 2)).astype("float32") for _ in range(3)]
    a, b = keras.Variable(w0), keras.Variable(w0)
    opt = ParamGroupSGD(learning_rate=0.1, momentum=0.9, weight_decay=5e-4)
    opt.set_lr_scale([a], 0.5)
    opt.build([a, b])
    values, opt_values = [a.value, b.value], [v.value for v in opt.variables]
    step = jax.jit(lambda o, g, t: opt.stateless_apply(o, g, t))
    for g in grads:
        values, opt_values = step(opt_values, [g, g], values)
    return {
        "w0": w0.tolist(),
        "grads": [g.tolist() for g in grads],
        "a": _numpy(values)[0].tolist(),
        "b": _numpy(values)[1].tolist(),
    }


def variants(out, folder, specs):
    rng = np.random.RandomState(0)
    shape = (32, 16, 3)
    images = rng.uniform(0, 255, (8,) + shape).astype("float32")
    targets = {
        "labels": np.repeat(np.arange(4), 2).astype("int32"),
        "masks": (rng.rand(8, 2, 1, 3) > 0.5).astype("float32"),
    }
    report = {"param_group_sgd": param_group_sgd(), "variants": {}}
    for index, spec in enumerate(specs):
        variant, _, policy = spec.partition(":")
        keras.utils.set_random_seed(0)
        model = MMGA(
            4,
            variant=variant,
            input_shape=shape,
            backbone_weights=None,
            whole_dim=64,
            local_dim=64,
            dtype=policy or None,
        )
        if policy == "mixed_float16":
            # Keras would wrap the optimizer with a loss scale of 2**15, which
            # overflows float16 on the first step of this model (the step is
            # then skipped): start lower, so that the step is taken and shows
            # that the scaled gradients were unscaled.
            from keras_mmga.optimizers import ParamGroupSGD

            model.compile(optimizer=keras.optimizers.LossScaleOptimizer(ParamGroupSGD(0.01), initial_scale=256.0))
        else:
            model.compile(learning_rate=0.01, steps_per_epoch=1)
        before = _numpy(model.trainable_variables)
        history = model.fit(images, targets, batch_size=8, epochs=1, verbose=0).history
        moved = max(float(np.max(np.abs(a - b))) for a, b in zip(before, _numpy(model.trainable_variables)))
        logs = model.evaluate(images, targets, batch_size=8, verbose=0, return_dict=True)
        features = model.predict(images, batch_size=8, verbose=0)
        path = os.path.join(folder, f"{variant}.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        entry = {
            "policy": model.dtype_policy.name,
            "history": {k: [float(x) for x in v] for k, v in history.items()},
            "evaluate": {k: float(v) for k, v in logs.items()},
            "moved": moved,
            "feature_shape": list(features.shape),
            "feature_norms": np.linalg.norm(features.astype("float64"), axis=1).tolist(),
            "loaded_class": type(loaded).__name__,
            "loaded_iterations": int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)),
            "loaded_max_diff": float(np.max(np.abs(loaded.predict(images, batch_size=8, verbose=0) - features))),
            "optimizer": type(model.optimizer).__name__,
        }
        if hasattr(model.optimizer, "dynamic_scale"):
            entry["loss_scale"] = float(keras.ops.convert_to_numpy(model.optimizer.dynamic_scale))
            entry["loss_scale_steps"] = int(keras.ops.convert_to_numpy(model.optimizer.step_counter))
        if index == 0:
            np.savez(os.path.join(folder, f"{variant}.features.npz"), images=images, features=features)
        else:
            os.remove(path)
        report["variants"][variant] = entry
        print(variant, "done", flush=True)
    with open(out, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    if MODE == "identity":
        identity(sys.argv[2])
    elif MODE == "variants":
        variants(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        raise SystemExit(f"unknown mode {MODE!r}")
