"""`TrainConfig.parts` and `--parts`: parsing, validation and the resume check (no model is built)."""

import json

import pytest

from keras_mmga.cli import train as train_cli
from keras_mmga.engine import TrainConfig
from keras_mmga.engine.callbacks import ResumableBackup
from keras_mmga.engine.run_folder import check_resume
from keras_mmga.engine.train_data import check_batches

REQUIRED = ["--data", "d", "--output", "o", "--masks", "m"]


def test_parts_flag_is_parsed_to_a_tuple():
    assert train_cli.parse_args(REQUIRED).parts is None
    config = train_cli.parse_args(REQUIRED + ["--parts", "head, torso,legs,feet"])
    assert config.parts == ("head", "torso", "legs", "feet")
    with pytest.raises(SystemExit):
        train_cli.parse_args(REQUIRED + ["--parts", "head,,feet"])


@pytest.mark.parametrize(
    "parts, variant, message",
    [
        (("head", "head"), "mmga", r"\['head'\] appear more than once"),
        ((), "mmga", "non-empty tuple"),
        ("head", "mmga", "non-empty tuple"),
        (("head", "feet"), "dmga", "fixed halves"),
        (("head", "feet"), "baseline", "no parts"),
    ],
)
def test_bad_parts_are_refused(tmp_path, parts, variant, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig("d", "o", mask_root=str(tmp_path), variant=variant, parts=parts).validate()


def _started_run(folder, **saved):
    """A run folder at epoch 1 whose config.json holds `saved` over the defaults."""
    config = TrainConfig("d", str(folder), mask_root="m")
    record = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(config).items()}
    (folder / "config.json").write_text(json.dumps(record | saved | {"num_classes": 5}))
    backup = folder / "backup"
    backup.mkdir()
    (backup / "training_metadata.json").write_text(json.dumps({"epoch": 1}))
    (backup / "latest.weights.h5").write_bytes(b"")  # only its presence is read here
    assert ResumableBackup.completed_epochs(str(backup)) == 1
    return str(backup)


def test_resume_with_other_parts_is_refused(tmp_path):
    backup = _started_run(tmp_path, parts=["head", "torso", "legs", "feet"])
    same = TrainConfig("d", str(tmp_path), mask_root="m", parts=("head", "torso", "legs", "feet"))
    assert check_resume(same, str(tmp_path), 5, backup) == 1
    with pytest.raises(ValueError, match=r"parts: \['head', 'torso', 'legs', 'feet'\] → \['upper', 'bottom'\]"):
        check_resume(TrainConfig("d", str(tmp_path), mask_root="m"), str(tmp_path), 5, backup)


def test_a_run_saved_without_parts_resumes_with_the_default_parts(tmp_path):
    # config.json of a run from before the setting: no "parts" key = the default halves.
    backup = _started_run(tmp_path)
    record = json.loads((tmp_path / "config.json").read_text())
    record.pop("parts")
    (tmp_path / "config.json").write_text(json.dumps(record))
    explicit = TrainConfig("d", str(tmp_path), mask_root="m", parts=("upper", "bottom"))
    assert check_resume(explicit, str(tmp_path), 5, backup) == 1
    with pytest.raises(ValueError, match="parts"):
        check_resume(TrainConfig("d", str(tmp_path), mask_root="m", parts=("head",)), str(tmp_path), 5, backup)


def test_mask_channels_follow_the_parts():
    import tensorflow as tf

    def spec(channels):
        return (tf.TensorSpec((8, 64, 32, 3)), {"masks": tf.TensorSpec((8, 4, 2, channels))})

    check_batches(spec(5), "mmga", (64, 32), 8, parts=("head", "torso", "legs", "feet"))
    check_batches(spec(3), "mmga", (64, 32), 8)
    with pytest.raises(ValueError, match=r"needs \(8, 4, 2, 5\) \(input/16, whole/head/torso/legs/feet\)"):
        check_batches(spec(3), "mmga", (64, 32), 8, parts=("head", "torso", "legs", "feet"))


def test_ablation_passes_parts_for_its_mmga_row(tmp_path, monkeypatch):
    import keras_mmga.engine.ablation as ablation
    from keras_mmga.cli import main

    seen = {}

    def fake_run_ablation(datasets, output_dir, **kwargs):
        seen.update(kwargs)
        return None, "table"

    monkeypatch.setattr(ablation, "run_ablation", fake_run_ablation)
    code = main(
        [
            "ablation",
            "--output",
            str(tmp_path / "out"),
            "--data",
            str(tmp_path / "data"),
            "--masks",
            str(tmp_path / "masks"),
            "--parts",
            "head,torso,bottom",
        ]
    )
    assert code == 0 and seen["parts"] == ("head", "torso", "bottom")
