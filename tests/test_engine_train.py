"""Training engine end to end on a tiny synthetic dataset (64x32 input, a few steps)."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_mmga.data import synthetic
from keras_mmga.engine import TrainConfig, TrainingDiverged, build_model, train, train_data, trainer
from keras_mmga.engine.callbacks import ResumableBackup
from keras_mmga.engine.run_folder import backup_dir, check_resume
from keras_mmga.engine.train_data import check_batches
from keras_mmga.evaluation import dataset_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine_synthetic")
    return synthetic.write_dataset(root, num_train_ids=5, num_test_ids=4, seed=0, num_distractors=2, num_junk=1)


def config(dataset, out, **kw):
    images, masks = dataset
    base = dict(
        dataset_root=images,
        output_dir=os.fspath(out),
        mask_root=masks,
        image_size=(64, 32),
        num_identities=4,
        num_instances=2,
        epochs=2,
        steps_per_epoch=2,
        learning_rate=0.01,
        backbone_weights=None,
        eval_every=0,
        verbose=0,
        seed=3,
    )
    base.update(kw)
    return TrainConfig(**base)


def read_log(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_train_writes_run_folder_and_evaluates(dataset, tmp_path):
    model, history = train(config(dataset, tmp_path, eval_every=2, epochs=2))
    for name in ("latest.keras", "best.keras", "best.json", "log.csv", "config.json"):
        assert (tmp_path / name).exists(), name
    assert os.listdir(tmp_path / "tensorboard")
    rows = read_log(tmp_path / "log.csv")
    # Evaluated at epoch 2 only; the column exists from the start.
    assert [r["val_mAP"] for r in rows][0] == "NA" and 0 <= float(rows[1]["val_mAP"]) <= 1
    assert {"loss", "triplet", "attention", "lr", "backbone_lr"} <= set(rows[0])
    assert float(rows[0]["backbone_lr"]) == pytest.approx(0.005)
    saved = json.load(open(tmp_path / "config.json"))
    assert saved["variant"] == "mmga" and saved["num_classes"] == 5

    # Epochs numbered from 1, as best.json and the console number them.
    assert [r["epoch"] for r in rows] == ["1", "2"] and json.load(open(tmp_path / "best.json"))["epoch"] == 2
    # Lean run folder: one copy of the resume state; the .keras files without the optimizer's state.
    assert sorted(os.listdir(tmp_path / "backup")) == ["latest.weights.h5", "training_metadata.json"]
    for name in ("latest.keras", "best.keras"):
        assert _optimizer_variables(tmp_path / name) == 0, name
    assert os.path.getsize(tmp_path / "latest.keras") < 0.6 * os.path.getsize(tmp_path / "backup" / "latest.weights.h5")
    tuned = keras.models.load_model(tmp_path / "best.keras")
    assert not getattr(tuned, "compiled", False)  # fine-tuning compiles it with its own settings
    tuned.compile(learning_rate=0.001, steps_per_epoch=1)

    result = dataset_metrics(
        tmp_path / "best.keras",
        dataset[0],
        pictures_dir=tmp_path / "pics",
        json_path=tmp_path / "metrics.json",
        verbose=False,
    )
    assert result["mAP"] == pytest.approx(history.history["val_mAP"][-1], abs=1e-6)
    assert json.load(open(tmp_path / "metrics.json"))["rank1"] == pytest.approx(result["rank1"])
    assert os.listdir(tmp_path / "pics" / "rankings") and os.listdir(tmp_path / "pics" / "attention")


def _optimizer_variables(keras_file):
    """Variables stored under the optimizer in a .keras archive (its model.weights.h5)."""
    import zipfile

    import h5py

    with zipfile.ZipFile(keras_file) as archive:
        archive.extract("model.weights.h5", os.path.dirname(keras_file) + "/unzipped")
    found = []
    with h5py.File(os.path.dirname(keras_file) + "/unzipped/model.weights.h5") as f:
        f.visit(lambda name: found.append(name) if name.startswith("optimizer") and "vars/" in name else None)
    return len(found)


def train_command(dataset, out, **kw):
    """scripts/train.py with the settings of `config(dataset, out, **kw)`."""
    c = config(dataset, out, **kw)
    return [
        sys.executable,
        os.path.join(ROOT, "scripts", "train.py"),
        "--data",
        c.dataset_root,
        "--masks",
        c.mask_root,
        "--output",
        c.output_dir,
        "--variant",
        c.variant,
        "--height",
        "64",
        "--width",
        "32",
        "-P",
        str(c.num_identities),
        "-K",
        str(c.num_instances),
        "--epochs",
        str(c.epochs),
        "--steps-per-epoch",
        str(c.steps_per_epoch),
        "--lr",
        str(c.learning_rate),
        "--lr-decay-epochs",
        str(c.lr_decay_epochs),
        "--backbone-weights",
        "none",
        "--eval-every",
        "0",
        "--seed",
        str(c.seed),
        "--progress",
        "0",
    ]


def _weights(path):
    import keras_mmga  # noqa: F401  (registers the classes for loading)

    return [keras.ops.convert_to_numpy(w) for w in keras.models.load_model(path).weights]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_restart_finishes_like_an_uninterrupted_run(dataset, tmp_path):
    # TensorFlow's multi-threaded CPU kernels are not bit-reproducible from run
    # to run (two identical uninterrupted runs of this set-up differ by ~1e-6
    # after 8 steps and by ~1e-2 after 12: random-init ResNet50 amplifies
    # summation-order noise), with or without op determinism. Single-threaded
    # they are, so both runs use one thread and must agree exactly: anything
    # else would be resume state that was lost or restored wrongly.
    # Learning rate halves after each epoch, so the restart must restore the
    # step count. (baseline: the quickest graph; resume does not depend on the variant.)
    kw = dict(epochs=3, steps_per_epoch=4, lr_decay_epochs=1, learning_rate=0.02, variant="baseline")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    # The uninterrupted run goes alongside the crashed one (one thread each).
    straight = tmp_path / "straight"
    reference_log = open(tmp_path / "reference.txt", "w")
    reference = subprocess.Popen(
        train_command(dataset, straight, **kw), env=env, stdout=subprocess.DEVNULL, stderr=reference_log
    )

    try:
        run = tmp_path / "crashed"
        command = train_command(dataset, run, **kw)
        stderr = open(tmp_path / "stderr.txt", "w")  # a file: a full pipe would block the child
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.time() + 240
        # The CSV row of epoch 1 is written after its backup: kill right after it,
        # i.e. during epoch 2.
        while time.time() < deadline and proc.poll() is None:
            if (run / "log.csv").exists() and len(read_log(run / "log.csv")) >= 1:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
        proc.wait(timeout=60)
        stderr.close()
        assert proc.returncode == -signal.SIGKILL, (tmp_path / "stderr.txt").read_text()[-2000:]
        assert ResumableBackup.completed_epochs(run / "backup") == 1
        assert len(read_log(run / "log.csv")) == 1  # epoch 2 did not finish

        restart = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert restart.returncode == 0, restart.stderr[-3000:]
        reference.wait(timeout=300)
    finally:
        if reference.poll() is None:  # a failure above must not leave it training
            reference.kill()
            reference.wait()
        reference_log.close()
    assert reference.returncode == 0, (tmp_path / "reference.txt").read_text()[-3000:]
    rows, expected = read_log(run / "log.csv"), read_log(straight / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.02, 0.01, 0.005])
    for key in ("loss", "triplet", "whole_softmax", "accuracy"):
        assert [float(r[key]) for r in rows] == [float(r[key]) for r in expected], key
    final, uninterrupted = _weights(run / "latest.keras"), _weights(straight / "latest.keras")
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(final, uninterrupted)) == 0.0

    # Re-running the finished command trains nothing and restores the final state.
    model, history = train(config(dataset, run, **kw))
    assert not history.history.get("loss")
    assert int(model.optimizer.iterations) == 3 * kw["steps_per_epoch"]
    restored = [keras.ops.convert_to_numpy(w) for w in model.weights]
    assert all(np.array_equal(a, b) for a, b in zip(restored, final))

    # The folder holds this run: other settings are refused before any model is built.
    with pytest.raises(ValueError, match="variant: 'baseline' → 'mmga'"):
        train(config(dataset, run, **(kw | {"variant": "mmga"})))


@pytest.mark.slow
def test_nan_stops_with_message_and_keeps_last_good_epoch(dataset, tmp_path):
    # Epoch 1 trains at lr 0.01; the "decay" multiplies it by 1e30 from epoch 2 on.
    cfg = config(
        dataset, tmp_path, epochs=3, steps_per_epoch=3, lr_decay_epochs=1, lr_decay_rate=1e30, variant="baseline"
    )
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf).*epoch 2.*keep epoch 1"):
        train(cfg)
    assert ResumableBackup.completed_epochs(tmp_path / "backup") == 1
    assert [int(r["epoch"]) for r in read_log(tmp_path / "log.csv")] == [1]
    import keras_mmga  # noqa: F401

    kept = keras.models.load_model(tmp_path / "latest.keras")
    assert all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in kept.weights)

    # Ctrl-C in the resumed run's first step: the message names the epoch the resume state holds.
    class CtrlC(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt, match=r"keeps epoch 1 of 3; run the same command again to resume"):
        train(cfg, extra_callbacks=[CtrlC()])
    assert ResumableBackup.completed_epochs(tmp_path / "backup") == 1


def test_preflight_errors_before_the_model_is_built(dataset, tmp_path):
    images, masks = dataset
    cases = [
        (dict(num_identities=50), "fewer than P"),
        (dict(num_instances=40, replacement=False), "fewer than K"),
        (dict(mask_root=None), "mask_root"),
        (dict(mask_root=os.fspath(tmp_path / "nowhere")), "does not exist"),
        (dict(image_size=(64, 40)), "divisible by 16"),
        (dict(variant="pcb"), "Unknown variant"),
        (dict(strategy="tpu"), "Unknown strategy"),
        (dict(epochs=0), "epochs"),
        (dict(dataset_root=os.fspath(tmp_path)), "Market-1501 layout"),
    ]
    for overrides, message in cases:
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            train(config(dataset, tmp_path / "run", **overrides))
    # A missing mask file is named.
    victim = sorted(os.listdir(os.path.join(masks, "bounding_box_train")))[0]
    os.rename(os.path.join(masks, "bounding_box_train", victim), tmp_path / victim)
    try:
        with pytest.raises(FileNotFoundError, match=victim):
            train(config(dataset, tmp_path / "run"))
    finally:
        os.rename(tmp_path / victim, os.path.join(masks, "bounding_box_train", victim))


def test_mask_shape_check():
    import tensorflow as tf

    spec = lambda mask_shape: (  # noqa: E731
        tf.TensorSpec((8, 64, 32, 3)),
        {"labels": tf.TensorSpec((8,)), "masks": tf.TensorSpec(mask_shape)},
    )
    check_batches(spec((8, 4, 2, 3)), "mmga", (64, 32), 8)
    with pytest.raises(ValueError, match=r"masks have shape \(8, 8, 4, 3\).*needs \(8, 4, 2, 3\)"):
        check_batches(spec((8, 8, 4, 3)), "mmga", (64, 32), 8)
    labels_only = (tf.TensorSpec((8, 64, 32, 3)), {"labels": tf.TensorSpec((8,))})
    check_batches(labels_only, "baseline", (64, 32), 8)
    with pytest.raises(ValueError, match="'wmga' is trained with body masks.*have none"):
        check_batches(labels_only, "wmga", (64, 32), 8)
    with pytest.raises(ValueError, match=r"images have shape \(8, 64, 32, 3\).*expects \(8, 128, 64, 3\)"):
        check_batches(labels_only, "baseline", (128, 64), 8)


class _Stop(Exception):
    """Raised by a patched step of `train` once what a test checks has happened."""


def _stop_after_dataset(monkeypatch, transform=None):
    """Makes `train` stop right after its dataset is made; returns the recorded keyword arguments.

    The real `make_train_dataset` runs (so masks are looked up); `transform`
    may alter its result, and then `train` continues until it builds the model.
    """
    calls = []
    real = train_data.make_train_dataset

    def spy(*args, **kwargs):
        calls.append(kwargs)
        data = real(*args, **kwargs)
        if transform is None:
            raise _Stop
        return transform(data)

    monkeypatch.setattr(train_data, "make_train_dataset", spy)
    return calls


def test_batch_shapes_are_checked_before_the_model_is_built(dataset, tmp_path, monkeypatch):
    import tensorflow as tf

    def wrong_masks(data):
        data.dataset = data.dataset.map(lambda x, y: (x, y | {"masks": tf.image.resize(y["masks"], (8, 4))}))
        return data

    def build_model(*args, **kwargs):
        raise _Stop("the model was built before the batch check")

    _stop_after_dataset(monkeypatch, wrong_masks)
    monkeypatch.setattr(trainer, "build_model", build_model)
    with pytest.raises(ValueError, match=r"Training masks have shape \(8, 8, 4, 3\)"):
        train(config(dataset, tmp_path))


def test_masks_mirror_the_dataset_folder_found_below_the_root(dataset, tmp_path, monkeypatch):
    # --data names a folder holding Market-1501-v15.09.15/; the masks mirror
    # that subfolder (the one holding bounding_box_train/).
    images, masks = dataset
    subfolder = tmp_path / "data" / "Market-1501-v15.09.15"
    shutil.copytree(images, subfolder)
    calls = _stop_after_dataset(monkeypatch)
    with pytest.raises(_Stop):  # not FileNotFoundError: every mask was found
        train(config(dataset, tmp_path / "run", dataset_root=os.fspath(tmp_path / "data"), mask_root=masks))
    assert calls[0]["image_root"] == os.fspath(subfolder) and calls[0]["mask_root"] == masks


def test_mask_grouping_and_image_cache_reach_the_dataset(dataset, tmp_path, monkeypatch):
    calls = _stop_after_dataset(monkeypatch)
    with pytest.raises(_Stop):
        train(config(dataset, tmp_path, dress_group="bottom", cache_images=True))
    assert calls[0]["dress_group"] == "bottom" and calls[0]["cache_images"] is True
    assert calls[0]["mask_mode"] == "parts" and calls[0]["start_batch"] == 0
    with pytest.raises(_Stop):
        train(config(dataset, tmp_path, variant="baseline"))
    assert calls[1]["mask_mode"] is None and calls[1]["mask_root"] is None
    with pytest.raises(ValueError, match="dress_group must be one of"):
        train(config(dataset, tmp_path, dress_group="skirt"))


def test_a_worker_resumes_from_its_own_backup_folder(tmp_path):
    # Without a shared disk, worker 1's machine holds only backup/worker1/:
    # the epoch that positions its data stream must come from there, the
    # folder its ResumableBackup restores from.
    out = os.fspath(tmp_path)
    assert backup_dir(out, True, 0) == os.path.join(out, "backup")
    assert backup_dir(out, False, 1) == os.path.join(out, "backup", "worker1")
    x, y = np.zeros((4, 2), "float32"), np.zeros((4, 1), "float32")
    for folder, epochs in ((backup_dir(out, True, 0), 1), (backup_dir(out, False, 1), 2)):
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
        model.fit(x, y, epochs=epochs, verbose=0, callbacks=[ResumableBackup(folder)])
    cfg = TrainConfig("data", out, variant="baseline")
    assert check_resume(cfg, out, 5, backup_dir(out, False, 1)) == 2
    assert check_resume(cfg, out, 5, backup_dir(out, True, 0)) == 1
    assert check_resume(cfg, out, 5, backup_dir(out, False, 2)) == 0


def test_backup_folder_exists_from_train_begin(tmp_path):
    # The chief's backup/ and worker 1's backup/worker1/ are created at the
    # same instant; Keras would create the folder only at the first save,
    # with a check-then-create that loses that race (FileExistsError). Created
    # at train begin (idempotently), there is no window left.
    folder = tmp_path / "backup"
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    callback = ResumableBackup(folder)
    callback.set_model(model)
    callback.on_train_begin()
    assert folder.is_dir() and os.listdir(folder) == []
    callback.on_train_begin()  # already there: no error


def test_mixed_precision_policy_is_given_to_the_model(dataset, tmp_path):
    # Training in bfloat16 is covered by test_mmga; the engine only has to pick
    # the policy and leave the global one alone.
    model = build_model(config(dataset, tmp_path, variant="baseline", mixed_precision=True), num_classes=5)
    assert model.dtype_policy.name == "mixed_bfloat16"  # no GPU here
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(dataset, tmp_path):
    # conftest.py splits the CPU into logical devices; the engine builds the
    # PK stream for 2 replicas, the model under the strategy's scope, and
    # evaluates and saves the mirrored model. The same run checks that
    # save_optimizer=True keeps the optimizer's state in both .keras files
    # (test_train_writes_run_folder_and_evaluates: not by default).
    model, history = train(
        config(
            dataset,
            tmp_path,
            variant="baseline",
            strategy="mirrored",
            devices=("/cpu:0", "/cpu:1"),
            sync_batchnorm=True,
            epochs=1,
            steps_per_epoch=1,
            eval_every=1,
            save_optimizer=True,
        )
    )
    assert model.distribute_strategy.num_replicas_in_sync == 2
    assert np.isfinite(history.history["loss"]).all() and 0 <= history.history["val_mAP"][0] <= 1
    assert (tmp_path / "latest.keras").exists()
    for name in ("latest.keras", "best.keras"):
        assert _optimizer_variables(tmp_path / name) > 0, name
    with pytest.raises(ValueError, match="divisible by the number of replicas"):
        train(config(dataset, tmp_path / "odd", strategy="mirrored", devices=("/cpu:0", "/cpu:1"), num_identities=3))


def test_per_replica_triplet_with_one_identity_per_replica_is_refused(dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "load_dataset", lambda *a, **k: pytest.fail("data read before the check"))
    with pytest.raises(ValueError, match="1 identity per replica: no anchor has a negative"):
        train(
            config(
                dataset,
                tmp_path,
                variant="baseline",
                strategy="mirrored",
                devices=("/cpu:0", "/cpu:1"),
                num_identities=2,
                cross_replica_triplet=False,
            )
        )
    assert not (tmp_path / "config.json").exists()


@pytest.mark.slow
def test_train_with_four_parts_end_to_end(dataset, tmp_path):
    """`--parts` through the whole run: 5-channel targets, a 4-part model, pictures with one map per part."""
    import cv2

    parts = ("head", "torso", "legs", "feet")
    model, history = train(config(dataset, tmp_path, parts=parts, epochs=1, steps_per_epoch=1))
    assert model.parts == parts and model.mask_channels == 5
    assert np.isfinite(history.history["attention"][0])
    loaded = keras.models.load_model(tmp_path / "latest.keras")
    assert loaded.parts == parts and loaded.feature_dim == 2048
    dataset_metrics(tmp_path / "latest.keras", dataset[0], pictures_dir=tmp_path / "pics", verbose=False)
    panel = cv2.imread(
        os.path.join(tmp_path / "pics" / "attention", sorted(os.listdir(tmp_path / "pics" / "attention"))[0])
    )
    # image | overlay | module 1 | module 2 whole | 4 parts, each 32 wide at 64x32
    assert panel.shape[1] == 32 * (2 + 2 + 4)
