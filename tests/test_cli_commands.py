"""The `keras-mmga` subcommands of the data / training / evaluation stages: help, exit codes, one-line errors.

Only this area's commands (train, evaluate, synthetic, demo, ablation) are
checked here; export, search and masks have their own tests.
"""

import json
import os
import subprocess
import sys

import pytest

from keras_mmga.cli import COMMANDS, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OWN = ("train", "evaluate", "synthetic", "demo", "ablation")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")

_HELP_PROBE = """
import contextlib, io, json, sys
from keras_mmga.cli import main
out = {}
for command in sys.argv[1:]:
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        try:
            main([command, "--help"])
        except SystemExit as exit_:
            code = exit_.code
    out[command] = {"code": code, "help": text.getvalue()}
heavy = sorted(m for m in ("tensorflow", "keras", "jax", "torch", "cv2") if m in sys.modules)
print(json.dumps({"commands": out, "heavy": heavy}))
"""


def test_help_of_every_own_command_answers_without_importing_tensorflow():
    assert set(OWN) <= set(COMMANDS)
    done = subprocess.run([sys.executable, "-c", _HELP_PROBE, *OWN], capture_output=True, text=True, env=ENV,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["heavy"] == []  # no TensorFlow / Keras (nor OpenCV) behind --help
    for command in OWN:
        got = report["commands"][command]
        assert got["code"] == 0 and got["help"].startswith(f"usage: keras-mmga {command}"), command
        assert "(default:" in got["help"], command
    train_help = " ".join(report["commands"]["train"]["help"].split())  # unwrapped
    # The paper recipe's defaults are shown, the epoch definition among them.
    for flag, default in (("--epochs", "900"), ("--epoch", "identities"), ("--lr", "0.1"),
                          ("--num-identities", "24"), ("--num-instances", "4"), ("--lr-decay-epochs", "90")):
        assert flag in train_help and f"(default: {default})" in train_help, flag


def test_scripts_are_wrappers_of_the_commands():
    for script, command in (("train.py", "train"), ("make_synthetic.py", "synthetic"), ("evaluate.py", "evaluate")):
        done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), "--help"], capture_output=True,
                              text=True, env=ENV, timeout=120)
        assert done.returncode == 0 and done.stdout.startswith(f"usage: keras-mmga {command}"), script


def _one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_bad_values_exit_2_with_one_line(tmp_path, capsys):
    base = ["train", "--data", os.fspath(tmp_path), "--output", os.fspath(tmp_path / "run"), "--variant", "baseline"]
    assert main(base + ["-P", "0"]) == 2
    assert "num_identities must be an int ≥ 1, got 0" in _one_line_error(capsys)
    assert main(base + ["--momentum", "1.5"]) == 2
    assert "momentum must be a finite number in [0, 1)" in _one_line_error(capsys)
    assert main(base + ["--erasing-probability", "2"]) == 2
    assert "erasing_probability" in _one_line_error(capsys)
    assert main(base + ["--height", "100"]) == 2
    assert "divisible by 16" in _one_line_error(capsys)
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"truncated")
    assert main(["evaluate", os.fspath(bad), "--data", os.fspath(tmp_path)]) == 2
    assert "not a valid Keras archive" in _one_line_error(capsys)
    assert main(["evaluate", os.fspath(bad), "--data", os.fspath(tmp_path), "--batch-size", "0"]) == 2
    assert "--batch-size must be ≥ 1" in _one_line_error(capsys)
    assert main(["demo", "--epochs", "0", "--out", os.fspath(tmp_path / "demo")]) == 2
    assert "--epochs must be ≥ 1" in _one_line_error(capsys)
    assert main(["ablation", "--output", os.fspath(tmp_path / "ablation")]) == 2
    assert "give --data/--masks or --synthetic" in _one_line_error(capsys)
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error: exit 2 too
        main(["train", "--data", "d", "--output", "o", "--epoch", "passes"])
    assert exit_.value.code == 2


def test_train_flags_reach_the_config():
    from keras_mmga.cli.train import parse_args

    base = ["--data", "d", "--output", "o"]
    config = parse_args(base)
    assert config.epoch == "identities" and config.dress_group == "upper" and config.cache_images is False
    config = parse_args(base + ["--epoch", "images", "--dress-group", "none", "--cache-images"])
    assert config.epoch == "images" and config.dress_group == "none" and config.cache_images is True
    # (tests/test_engine_train.py checks that the config reaches make_train_dataset.)


def test_config_variant_names_are_the_models():
    from keras_mmga.engine.config import VARIANT_NAMES
    from keras_mmga.engine.ablation import VARIANT_ORDER
    from keras_mmga.models import VARIANTS

    assert set(VARIANT_NAMES) == set(VARIANTS) and VARIANT_ORDER is VARIANT_NAMES


def test_data_and_engine_packages_import_without_tensorflow():
    # Lazy package namespaces: the readers, the sampler, the synthetic writer and the run
    # configurations need no TensorFlow (the deploy path reads datasets with `data.market`).
    code = ("import sys, keras_mmga.data, keras_mmga.engine, keras_mmga.data.market, keras_mmga.data.pk_sampler, "
            "keras_mmga.engine.config\n"
            "from keras_mmga.data import Market1501, PKSampler, synthetic\n"
            "from keras_mmga.engine import TrainConfig, DemoConfig\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-2000:]


def test_ablation_passes_missing_masks_to_every_run(tmp_path, monkeypatch):
    import keras_mmga.engine.ablation as ablation

    seen = {}

    def fake_run_ablation(datasets, output_dir, **kwargs):
        seen.update(kwargs, datasets=[(d.name, d.mask_root) for d in datasets])
        return None, "table"

    monkeypatch.setattr(ablation, "run_ablation", fake_run_ablation)
    code = main(["ablation", "--output", str(tmp_path / "out"), "--data", str(tmp_path / "data"),
                 "--masks", str(tmp_path / "generated"), "--name", "Mine", "--missing-masks", "ignore"])
    assert code == 0
    assert seen["missing_masks"] == "ignore" and seen["datasets"] == [("Mine", str(tmp_path / "generated"))]
