"""Model loading errors, rank validation in a user's own `fit`, labelled progress, resume with another epoch."""

import json
import os
import zipfile

import keras
import numpy as np
import pytest

from keras_mmga.data import Market1501, synthetic
from keras_mmga.engine import RankValidation, TrainConfig
from keras_mmga.engine.callbacks import ResumableBackup
from keras_mmga.engine.run_folder import check_resume
from keras_mmga.engine.train_data import steps_per_epoch
from keras_mmga.evaluation import split_metrics
from keras_mmga.models import load_model


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    images, _ = synthetic.write_dataset(
        tmp_path_factory.mktemp("evaluator_synthetic"),
        num_train_ids=3,
        num_test_ids=3,
        seed=2,
        num_distractors=1,
        num_junk=1,
    )
    return Market1501(images)


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=4)(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.UnitNormalization()(keras.layers.Dense(8)(x)))


def test_damaged_keras_files_are_named_with_what_is_wrong(tmp_path):
    good = tmp_path / "good.keras"
    _model().save(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a model at all")
    empty = tmp_path / "empty.keras"
    empty.write_bytes(b"")
    foreign = tmp_path / "foreign.keras"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("notes.txt", "hello")
    hdf5 = tmp_path / "weights.keras"
    hdf5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    cases = {
        truncated: "truncated download",
        garbage: "truncated download",
        empty: "an empty file",
        foreign: "lacks config.json",
        hdf5: "HDF5 file",
    }
    for path, why in cases.items():
        with pytest.raises(ValueError) as err:
            load_model(path)
        message = str(err.value)
        # Keras's own message was "File not found" for a file that exists.
        assert "not found" not in message.lower() and repr(str(path)) in message and why in message, message
        assert "not a valid Keras archive" in message
    with pytest.raises(FileNotFoundError, match="Model file not found"):
        load_model(tmp_path / "absent.keras")
    assert load_model(good).output_shape == (None, 8)


def test_features_progress_is_labelled_by_split(market, capsys):
    split_metrics(_model(), market.query, market.gallery, (32, 16), batch_size=4, verbose=True)
    err = capsys.readouterr().err
    assert f"query features: {len(market.query)}/{len(market.query)} images" in err
    assert f"gallery features: {len(market.gallery)}/{len(market.gallery)} images" in err


def test_rank_validation_logs_reach_early_stopping_and_checkpoint(market, tmp_path):
    model = _model()
    model.compile("sgd", "mse")
    x = np.random.RandomState(0).uniform(0, 255, (8, 32, 16, 3)).astype("float32")
    y = np.zeros((8, 8), "float32")
    best = tmp_path / "best.keras"
    # min_delta=2 can never be met (mAP ≤ 1): with patience 1, EarlyStopping stops after the second
    # epoch, but only if it sees val_mAP (a missing key is skipped, and all 5 epochs run).
    stop = keras.callbacks.EarlyStopping("val_mAP", mode="max", patience=1, min_delta=2.0)
    checkpoint = keras.callbacks.ModelCheckpoint(best, monitor="val_mAP", mode="max", save_best_only=True)
    history = model.fit(x, y, epochs=5, verbose=0, callbacks=[RankValidation(market, verbose=False), stop, checkpoint])
    assert history.epoch == [0, 1] and stop.stopped_epoch == 1
    expected, _ = split_metrics(model, market.query, market.gallery, (32, 16), verbose=False)
    assert history.history["val_mAP"][-1] == pytest.approx(expected["mAP"])
    assert all(0 <= v <= 1 for v in history.history["val_rank1"] + history.history["val_mINP"])
    assert best.is_file()
    with pytest.raises(ValueError, match="query list is empty"):
        RankValidation([], market.gallery)
    with pytest.raises(ValueError, match=r"\(path, pid, camid\)"):
        RankValidation(["a.jpg"], market.gallery)


def _backed_up_run(out, saved_config):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(
        np.zeros((4, 2), "float32"),
        np.zeros((4, 1), "float32"),
        epochs=2,
        verbose=0,
        callbacks=[ResumableBackup(os.path.join(out, "backup"))],
    )
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(saved_config, f)


def test_a_run_resumed_with_the_other_epoch_definition_is_refused(tmp_path):
    out = os.fspath(tmp_path)
    images = TrainConfig("data", out, variant="baseline", epoch="images")
    identities = TrainConfig("data", out, variant="baseline")
    saved = {k: v for k, v in images.__dict__.items()} | {"num_classes": 5}
    _backed_up_run(out, saved)
    assert check_resume(images, out, 5, os.path.join(out, "backup")) == 2
    with pytest.raises(ValueError, match=r"at epoch 2.*epoch: 'images' → 'identities'.*--epoch images"):
        check_resume(identities, out, 5, os.path.join(out, "backup"))
    # A run folder written before the setting existed trained in image epochs.
    del saved["epoch"]
    _backed_up_run(out, saved)
    assert check_resume(images, out, 5, os.path.join(out, "backup")) == 2
    with pytest.raises(ValueError, match="epoch: 'images' → 'identities'"):
        check_resume(identities, out, 5, os.path.join(out, "backup"))


def test_engine_steps_per_epoch_follow_the_definition(market):
    # 3 training identities with 2..5 images per camera in 2..4 cameras.
    per_id = np.bincount([pid for _, pid, _ in market.train])
    for p in (1, 2, 3):
        config = TrainConfig("d", "o", variant="baseline", num_identities=p, num_instances=2)
        assert steps_per_epoch(config, market.train, 1) == -(-3 // p)
        config.epoch = "images"
        assert steps_per_epoch(config, market.train, 1) == max(1, int(sum(np.maximum(per_id, 2) // 2)) // p)
    config.steps_per_epoch = 7
    assert steps_per_epoch(config, market.train, 1) == 7
