"""`keras-mmga train` / `evaluate` with KERAS_BACKEND=jax (each in its own process), the model read back on TensorFlow.

Two JAX devices (XLA's host-platform split of the CPU) and `--strategy
mirrored`: the run trains with `keras.distribution.DataParallel`.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_mmga.data import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JAX_ENV = dict(
    os.environ,
    KERAS_BACKEND="jax",
    TF_CPP_MIN_LOG_LEVEL="2",
    CUDA_VISIBLE_DEVICES="",
    XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2",
    PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
)
# A JAX process that writes the features of a model for a few images.
FEATURES = """
import sys, numpy as np, keras, keras_mmga
model = keras.models.load_model(sys.argv[1])
images = np.load(sys.argv[2])
np.save(sys.argv[3], keras.ops.convert_to_numpy(model(images)))
print(keras.backend.backend())
"""


def _run(argv, timeout=900):
    result = subprocess.run(
        [sys.executable, *map(str, argv)], env=JAX_ENV, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


@pytest.mark.slow
def test_train_evaluate_resume_on_jax_and_load_on_tensorflow(tmp_path):
    images, masks = synthetic.write_dataset(
        tmp_path / "data", num_train_ids=5, num_test_ids=4, seed=0, num_distractors=2, num_junk=1
    )
    run = tmp_path / "run"
    train = [
        os.path.join(ROOT, "scripts", "train.py"),
        "--data",
        images,
        "--masks",
        masks,
        "--output",
        run,
        "--height",
        "64",
        "--width",
        "32",
        "-P",
        "4",
        "-K",
        "2",
        "--steps-per-epoch",
        "2",
        "--lr",
        "0.01",
        "--lr-decay-epochs",
        "1",
        "--backbone-weights",
        "none",
        "--eval-every",
        "0",
        "--seed",
        "3",
        "--progress",
        "0",
        "--strategy",
        "mirrored",
    ]
    _run(train + ["--epochs", "2"])
    rows = open(run / "log.csv").read().splitlines()
    assert rows[0].startswith("epoch,") and [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    assert json.load(open(run / "config.json"))["num_classes"] == 5

    # Resume: one more epoch, from the backup, the learning rate halved once more.
    _run(train + ["--epochs", "3"])
    log = open(run / "log.csv").read().splitlines()
    header = log[0].split(",")
    lrs = [float(r.split(",")[header.index("lr")]) for r in log[1:]]
    assert lrs == pytest.approx([0.01, 0.005, 0.0025])

    out = _run(
        [
            os.path.join(ROOT, "scripts", "evaluate.py"),
            "--model",
            run / "latest.keras",
            "--data",
            images,
            "--quiet",
            "--json",
            tmp_path / "metrics.json",
        ]
    )
    metrics = json.load(open(tmp_path / "metrics.json"))
    assert 0 <= metrics["mAP"] <= 1 and 0 <= metrics["rank1"] <= 1
    assert json.loads(out.strip().splitlines()[-1])["mAP"] == pytest.approx(metrics["mAP"])

    batch = np.random.default_rng(0).uniform(0, 255, (3, 64, 32, 3)).astype("float32")
    np.save(tmp_path / "images.npy", batch)
    script = tmp_path / "features.py"
    script.write_text(FEATURES)
    assert _run([script, run / "latest.keras", tmp_path / "images.npy", tmp_path / "jax.npy"]).split()[-1] == "jax"
    assert keras.backend.backend() == "tensorflow"
    model = keras.models.load_model(run / "latest.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(batch)), np.load(tmp_path / "jax.npy"), atol=1e-5)
