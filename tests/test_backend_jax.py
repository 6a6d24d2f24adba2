"""MMGA on the JAX backend: the same step as on TensorFlow, data parallelism, every variant, JAX → TF → ONNX.

The test session runs on TensorFlow (conftest.py), so every JAX run is its own
process (tests/workers/jax_steps.py); TensorFlow's side of the identity is
tests/workers/train_steps.py. Identities are checked in float64 from one
NumPy-seeded start (tests/workers/seeded.py): in float32 a random-init
ResNet50 step is so ill-conditioned that summation order alone moves early
weights by percents.
"""

import os

import keras
import numpy as np
import onnxruntime as ort
import pytest
from workers import runner

from keras_mmga import MMGA
from keras_mmga.export import export_onnx

pytestmark = pytest.mark.slow  # every test reads the JAX runs (subprocesses): not in `make test-fast`

WORKERS = os.path.join(os.path.dirname(__file__), "workers")
JAX_STEPS = os.path.join(WORKERS, "jax_steps.py")
TRAIN_STEPS = os.path.join(WORKERS, "train_steps.py")
# Variants at 32x16 with small heads (whole 64, parts 32); the first is kept for the TF/ONNX test.
# Mixed precision rides on two of them: float16 with a loss scale, bfloat16 without.
VARIANT_RUNS = {"a": ["wmga", "baseline", "baseline_att"], "b": ["mmga:mixed_float16", "dmga:mixed_bfloat16"]}
FEATURE_DIM = {"baseline": 64, "baseline_att": 64, "wmga": 64, "dmga": 128, "mmga": 128}
LOGGED = {
    "baseline": {"loss", "whole_softmax", "triplet", "accuracy"},
    "baseline_att": {"loss", "whole_softmax", "triplet", "accuracy"},
    "wmga": {"loss", "whole_softmax", "triplet", "attention", "accuracy"},
    "dmga": {"loss", "whole_softmax", "local_softmax", "triplet", "attention", "accuracy"},
    "mmga": {"loss", "whole_softmax", "local_softmax", "triplet", "attention", "accuracy"},
}


def _wait(procs, outs, timeout=600):
    runner.finish(procs, timeout=timeout)
    for out in outs:
        if not os.path.exists(out):
            with open(out + ".log") as f:
                raise AssertionError(f"run {out} failed:\n{f.read()[-4000:]}")


@pytest.fixture(scope="module")
def identity_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jax_identity")
    jax_out, tf_out = str(tmp / "jax.npz"), str(tmp / "tf.npz")
    procs = [
        runner.spawn([JAX_STEPS, "identity", jax_out], jax_out + ".log"),
        runner.spawn([TRAIN_STEPS, tf_out, "--steps", "2", "--seeded-init"], tf_out + ".log"),
    ]
    _wait(procs, [jax_out, tf_out])
    import json

    with np.load(jax_out) as z:
        jax = {k: z[k] for k in z.files}
    with open(jax_out[: -len(".npz")] + ".json") as f:
        jax_info = json.load(f)
    tf_weights, tf_info = runner.result(tf_out)
    n = len(tf_weights)
    split = lambda prefix: [jax[f"{prefix}_{i}"] for i in range(n)]  # noqa: E731
    return {
        "init": split("init"),
        "one": split("one"),
        "two": split("two"),
        "tf": tf_weights,
        "jax_info": jax_info,
        "tf_info": tf_info,
    }


@pytest.fixture(scope="module")
def variant_runs(tmp_path_factory):
    import json

    tmp = tmp_path_factory.mktemp("jax_variants")
    outs = {k: str(tmp / f"{k}.json") for k in VARIANT_RUNS}
    procs = [
        runner.spawn([JAX_STEPS, "variants", outs[k], tmp, *specs], outs[k] + ".log")
        for k, specs in VARIANT_RUNS.items()
    ]
    _wait(procs, outs.values())
    report = {"folder": tmp, "variants": {}}
    for out in outs.values():
        with open(out) as f:
            part = json.load(f)
        report["variants"].update(part["variants"])
        report["param_group_sgd"] = part["param_group_sgd"]
    return report


def _assert_same_update(weights, reference, initial, rtol=1e-6):
    """Each variable's step (final − start) equals the reference step to `rtol` of its size.

    (The biases of convolutions followed by BatchNorm have a zero gradient: their
    "steps" are ~1e-17 of rounding, hence the absolute floor.)
    """
    for i, (w, r, w0) in enumerate(zip(weights, reference, initial)):
        step = np.max(np.abs(r - w0))
        assert np.max(np.abs(w - r)) <= rtol * step + 1e-12, f"variable {i}: {np.max(np.abs(w - r))} vs step {step}"


def test_tensorflow_and_jax_take_the_same_float64_steps(identity_runs):
    runs = identity_runs
    assert runs["jax_info"]["one_dtype"] == "float64"  # x64 was on: not float32 silently
    assert runs["tf_info"]["moved"] > 1e-3
    assert all(w.dtype == np.float64 for w in runs["one"])
    # Two steps of the default recipe: momentum, L2 weight decay, backbone at half the rate,
    # BatchNorm moving statistics, every loss term.
    _assert_same_update(runs["one"], runs["tf"], runs["init"])
    for key in ("loss", "whole_softmax", "local_softmax", "triplet", "attention"):
        np.testing.assert_allclose(runs["jax_info"]["one"][key], runs["tf_info"]["history"][key], rtol=1e-6)


def test_jax_data_parallel_on_two_devices_takes_the_one_device_steps(identity_runs):
    runs = identity_runs
    assert runs["jax_info"]["data_devices"] == 2 and runs["jax_info"]["batch_axis"] == "batch"
    _assert_same_update(runs["two"], runs["one"], runs["init"], rtol=1e-8)
    for key in ("loss", "triplet", "attention"):
        np.testing.assert_allclose(runs["jax_info"]["two"][key], runs["jax_info"]["one"][key], rtol=1e-7)


@pytest.mark.parametrize("variant", sorted(FEATURE_DIM))
def test_every_variant_fits_evaluates_predicts_saves_and_loads_on_jax(variant_runs, variant):
    run = variant_runs["variants"][variant]
    assert set(run["history"]) == LOGGED[variant]
    assert all(np.isfinite(v[0]) for v in run["history"].values())
    assert run["moved"] > 0
    logs = run["evaluate"]
    assert set(logs) == LOGGED[variant]
    expected = (
        logs["whole_softmax"] + logs.get("local_softmax", 0) + 2.0 * logs["triplet"] + 0.1 * logs.get("attention", 0)
    )
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)  # eq. 9 of the logged parts
    assert run["feature_shape"] == [8, FEATURE_DIM[variant]]
    np.testing.assert_allclose(run["feature_norms"], 1.0, atol=1e-3)
    assert run["loaded_class"] == "MMGA" and run["loaded_iterations"] == 1
    assert run["loaded_max_diff"] <= 1e-6


def test_mixed_precision_on_jax(variant_runs):
    fp16, bf16 = variant_runs["variants"]["mmga"], variant_runs["variants"]["dmga"]
    assert fp16["policy"] == "mixed_float16" and fp16["optimizer"] == "LossScaleOptimizer"
    # The scaled step was finite and taken (weights moved, the scale's growth counter advanced),
    # so the gradients were unscaled from the loss scale held in the optimizer state.
    assert fp16["loss_scale"] == 256.0 and fp16["loss_scale_steps"] == 1 and fp16["moved"] > 0
    assert bf16["policy"] == "mixed_bfloat16" and bf16["optimizer"] == "ParamGroupSGD"


def test_param_group_sgd_stateless_update_on_jax_follows_pytorch(variant_runs):
    r = variant_runs["param_group_sgd"]
    w0, grads = np.array(r["w0"], "float64"), [np.array(g) for g in r["grads"]]

    def torch_sgd(lr, momentum=0.9, wd=5e-4):  # torch.optim.SGD, dampening 0
        w, buf = w0, None
        for g in grads:
            d = g + wd * w
            buf = d if buf is None else momentum * buf + d
            w = w - lr * buf
        return w

    np.testing.assert_allclose(r["a"], torch_sgd(0.05), rtol=1e-5)  # the group at scale 0.5
    np.testing.assert_allclose(r["b"], torch_sgd(0.1), rtol=1e-5)


def test_trained_on_jax_loads_on_tensorflow_and_exports_to_onnx(variant_runs, tmp_path):
    assert keras.backend.backend() == "tensorflow"
    folder = variant_runs["folder"]
    path = os.path.join(folder, "wmga.keras")
    with np.load(os.path.join(folder, "wmga.features.npz")) as z:
        images, jax_features = z["images"], z["features"]
    model = keras.models.load_model(path)
    assert isinstance(model, MMGA) and model.variant == "wmga"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(images)), jax_features, atol=1e-5)
    info = export_onnx(path, tmp_path / "wmga.onnx")
    assert info["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(info["onnx_path"], providers=["CPUExecutionProvider"])
    (onnx_features,) = session.run(None, {session.get_inputs()[0].name: images})
    np.testing.assert_allclose(onnx_features, jax_features, atol=1e-4)
