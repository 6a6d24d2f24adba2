"""Training and evaluation runs end to end on a tiny synthetic dataset (64x32)."""

import csv
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_mmga.data import synthetic
from keras_mmga.engine import TrainConfig, TrainingDiverged, evaluate_model, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return synthetic.write_dataset(root, num_train_ids=6, num_test_ids=5, seed=0, num_distractors=2, num_junk=1)


def _config(dataset, out, **kw):
    images, masks = dataset
    base = dict(dataset_root=images, output_dir=str(out), mask_root=masks, image_size=(64, 32), num_identities=4,
                num_instances=2, epochs=2, steps_per_epoch=2, learning_rate=0.01, backbone_weights=None,
                eval_every=1, verbose=0)
    base.update(kw)
    return TrainConfig(**base)


class _Interrupt(keras.callbacks.Callback):
    """Simulates a crash right after epoch `epoch` was checkpointed."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("simulated interruption")


def test_train_writes_checkpoints_logs_and_evaluates(dataset, tmp_path):
    model, history = train(_config(dataset, tmp_path))
    for name in ("latest.keras", "best.keras", "log.csv", "config.json"):
        assert os.path.exists(tmp_path / name), name
    assert os.path.isdir(tmp_path / "tensorboard")
    assert len(history.history["val_mAP"]) == 2 and 0 <= history.history["val_mAP"][-1] <= 1
    result = evaluate_model(tmp_path / "latest.keras", dataset[0], pictures_dir=tmp_path / "pics",
                            json_path=tmp_path / "m.json", verbose=False)
    assert 0 <= result["rank1"] <= 1 and result["num_valid_queries"] > 0
    assert np.isclose(result["mAP"], history.history["val_mAP"][-1], atol=1e-6)
    assert os.listdir(tmp_path / "pics" / "rankings") and os.listdir(tmp_path / "pics" / "attention")


def test_interrupted_run_resumes_with_optimizer_state(dataset, tmp_path):
    config = _config(dataset, tmp_path, epochs=2, eval_every=0)
    with pytest.raises(KeyboardInterrupt):
        train(config, extra_callbacks=[_Interrupt(epoch=0)])
    model, history = train(config)
    # The second call ran only epoch 2, starting from epoch 1's optimizer state.
    assert len(history.history["loss"]) == 1
    assert int(model.optimizer.iterations) == 2 * config.steps_per_epoch
    with open(tmp_path / "log.csv") as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    assert epochs == [0, 1]


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(dataset, tmp_path):
    config = _config(dataset, tmp_path, epochs=1, eval_every=0)
    train(config)
    good = os.path.getmtime(tmp_path / "latest.keras")
    with pytest.raises(TrainingDiverged, match="latest.keras"):
        train(_config(dataset, tmp_path / "nan", epochs=3, eval_every=0, learning_rate=1e30))
    assert os.path.getmtime(tmp_path / "latest.keras") == good


def test_preflight_errors(dataset, tmp_path):
    with pytest.raises(ValueError, match="fewer than P"):
        train(_config(dataset, tmp_path, num_identities=50))
    with pytest.raises(ValueError, match="fewer than K"):
        train(_config(dataset, tmp_path, num_instances=40, replacement=False))
    with pytest.raises(ValueError, match="mask_root"):
        train(_config(dataset, tmp_path, mask_root=None))


def test_scripts_are_thin_wrappers(dataset, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for script in ("train.py", "evaluate.py", "export_onnx.py", "search.py", "demo.py", "ablation.py", "make_synthetic.py"):
        out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), "--help"], capture_output=True,
                             text=True, env=env, timeout=120)
        assert out.returncode == 0 and "usage" in out.stdout.lower(), script
    images, masks = dataset
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "train.py"), "--data", images, "--masks", masks,
         "--output", str(tmp_path / "run"), "--height", "64", "--width", "32", "-P", "4", "-K", "2",
         "--epochs", "1", "--steps-per-epoch", "1", "--backbone-weights", "none", "--eval-every", "0",
         "--lr", "0.01", "--verbose", "0"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    ev = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "evaluate.py"), str(tmp_path / "run" / "latest.keras"),
         "--data", images, "--json", str(tmp_path / "m.json")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert "rank-1" in ev.stdout and os.path.exists(tmp_path / "m.json")
