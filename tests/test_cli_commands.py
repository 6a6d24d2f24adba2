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
    done = subprocess.run(
        [sys.executable, "-c", _HELP_PROBE, *OWN], capture_output=True, text=True, env=ENV, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["heavy"] == []  # no TensorFlow / Keras (nor OpenCV) behind --help
    for command in OWN:
        got = report["commands"][command]
        assert got["code"] == 0 and got["help"].startswith(f"usage: keras-mmga {command}"), command
        assert "(default:" in got["help"], command
        assert "(default: None)" not in got["help"] and "(default: False)" not in got["help"], command
    train_help = " ".join(report["commands"]["train"]["help"].split())  # unwrapped
    # The paper recipe's defaults are shown, the epoch definition among them.
    for flag, default in (
        ("--epochs", "900"),
        ("--epoch", "identities"),
        ("--lr", "0.1"),
        ("--num-identities", "24"),
        ("--num-instances", "4"),
        ("--lr-decay-epochs", "90"),
    ):
        assert flag in train_help and f"(default: {default})" in train_help, flag


def test_scripts_are_wrappers_of_the_commands():
    for script, command in (("train.py", "train"), ("make_synthetic.py", "synthetic"), ("evaluate.py", "evaluate")):
        done = subprocess.run(
            [sys.executable, os.path.join(ROOT, "scripts", script), "--help"],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=120,
        )
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
    assert main(["evaluate", "--model", os.fspath(bad), "--data", os.fspath(tmp_path)]) == 2
    assert "not a valid Keras archive" in _one_line_error(capsys)
    assert main(["evaluate", "--model", os.fspath(bad), "--data", os.fspath(tmp_path), "--batch-size", "0"]) == 2
    assert "--batch-size must be ≥ 1" in _one_line_error(capsys)
    assert main(["demo", "--epochs", "0", "--output", os.fspath(tmp_path / "demo")]) == 2
    assert "--epochs must be ≥ 1" in _one_line_error(capsys)
    assert main(["ablation", "--output", os.fspath(tmp_path / "ablation")]) == 2
    assert "give --data/--masks or --synthetic" in _one_line_error(capsys)
    # argparse's usage error: one line and exit 2 too
    assert main(["train", "--data", "d", "--output", "o", "--epoch", "passes"]) == 2
    assert "argument --epoch: invalid choice: 'passes'" in _one_line_error(capsys)


def test_train_flags_reach_the_config():
    from keras_mmga.cli.train import parse_args

    base = ["--data", "d", "--output", "o"]
    config = parse_args(base)
    assert config.epoch == "identities" and config.dress_group == "upper" and config.cache_images is False
    config = parse_args(base + ["--epoch", "images", "--dress-group", "none", "--cache-images"])
    assert config.epoch == "images" and config.dress_group == "none" and config.cache_images is True
    # (tests/test_engine_train.py checks that the config reaches make_train_dataset.)


def test_config_variant_names_are_the_models():
    from keras_mmga.engine.ablation import VARIANT_ORDER
    from keras_mmga.models import VARIANTS
    from keras_mmga.settings import VARIANT_NAMES

    assert set(VARIANT_NAMES) == set(VARIANTS) and VARIANT_ORDER is VARIANT_NAMES


def test_data_and_engine_packages_import_without_tensorflow():
    # Lazy package namespaces: the readers, the sampler, the synthetic writer and the run
    # configurations need no TensorFlow (the deploy path reads datasets with `data.market`).
    code = (
        "import sys, keras_mmga.data, keras_mmga.engine, keras_mmga.data.market, keras_mmga.data.pk_sampler, "
        "keras_mmga.engine.config\n"
        "from keras_mmga.data import Market1501, PKSampler, synthetic\n"
        "from keras_mmga.engine import TrainConfig, DemoConfig\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-2000:]


def test_ablation_passes_missing_masks_to_every_run(tmp_path, monkeypatch):
    import keras_mmga.engine.ablation as ablation

    seen = {}

    def fake_run_ablation(datasets, output_dir, **kwargs):
        seen.update(kwargs, datasets=[(d.name, d.mask_root) for d in datasets])
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
            str(tmp_path / "generated"),
            "--name",
            "Mine",
            "--missing-masks",
            "ignore",
        ]
    )
    assert code == 0
    assert seen["missing_masks"] == "ignore" and seen["datasets"] == [("Mine", str(tmp_path / "generated"))]


# --- one vocabulary, one-line errors, outputs checked first (issue 27) ---------------------------------------


@pytest.mark.parametrize("command,old", sorted(__import__("keras_mmga.cli", fromlist=["RENAMED"]).RENAMED))
def test_renamed_flags_are_refused_naming_the_new_one(command, old, capsys):
    from keras_mmga.cli import RENAMED

    expected = f"error: {old} is now {RENAMED[command, old]} (keras-mmga {command} --help lists the flags)\n"
    for spelling in ([f"{old}=x"], [old, "x"]):
        assert main([command, *spelling]) == 2
        assert _one_line_error(capsys) == expected, spelling


def test_old_spellings_of_model_output_and_verbosity_are_refused(tmp_path, capsys):
    assert main(["evaluate", "m.keras", "--data", "d"]) == 2
    assert "the model is given with --model: keras-mmga evaluate --model m.keras" in _one_line_error(capsys)
    assert main(["export", "m.keras"]) == 2
    assert "keras-mmga export --model m.keras" in _one_line_error(capsys)
    assert main(["synthetic", str(tmp_path)]) == 2
    assert f"keras-mmga synthetic --output {tmp_path}" in _one_line_error(capsys)
    assert main(["train", "--data", "d", "--output", "o", "--verbose", "0"]) == 2
    assert "--verbose takes no value" in _one_line_error(capsys) and not os.path.exists("o")
    # Every command has both verbosity flags.
    from keras_mmga.cli import build_parser

    for command in COMMANDS:
        sub = build_parser(command)._subparsers._group_actions[0].choices[command]
        flags = {f for action in sub._actions for f in action.option_strings}
        assert {"--quiet", "--verbose"} <= flags, command


def test_train_output_that_is_a_file_or_below_one_is_refused_before_work(tmp_path, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    base = ["train", "--data", str(tmp_path), "--variant", "baseline", "--backbone-weights", "none"]
    assert main(base + ["--output", str(taken)]) == 2
    assert "is an existing file, not a folder" in _one_line_error(capsys)
    assert main(base + ["--output", str(taken / "run")]) == 2
    assert "notes.txt' is a file, not a folder" in _one_line_error(capsys)
    assert taken.read_text() == "mine"


def test_offline_imagenet_is_one_line_before_any_data_is_read(tmp_path, capsys, monkeypatch):
    import keras

    from keras_mmga.engine import trainer

    def offline(*args, **kwargs):
        raise Exception(
            "URL fetch failure on https://storage.googleapis.com/x: None -- [Errno -3] "
            "Temporary failure in name resolution"
        )

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr(trainer, "load_dataset", lambda *a, **k: pytest.fail("data read before the weights"))
    code = main(["train", "--data", str(tmp_path), "--output", str(tmp_path / "run"), "--variant", "baseline"])
    assert code == 2
    err = _one_line_error(capsys)
    assert "Could not obtain the ImageNet ResNet50 weights" in err and "--backbone-weights none" in err
    assert not (tmp_path / "run").exists()  # the lock's folder is not left behind


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    from keras_mmga.cli import synthetic

    def interrupted(args):
        raise KeyboardInterrupt("3 masks written this run are kept")

    monkeypatch.setattr(synthetic, "run", interrupted)
    assert main(["synthetic", "--output", "x"]) == 130
    err = capsys.readouterr().err
    assert err == "error: interrupted (3 masks written this run are kept)\n"


def test_evaluate_quiet_prints_only_the_metrics_line(tmp_path, monkeypatch, capsys):
    from keras_mmga.evaluation import model_metrics

    seen = {}

    def fake_metrics(model, root, dataset, batch_size, **kwargs):
        seen.update(kwargs)
        return {"rank1": 0.5, "rank5": 0.75, "rank10": 1.0, "mAP": 0.25, "mINP": 0.125, "num_valid_queries": 4}

    monkeypatch.setattr(model_metrics, "dataset_metrics", fake_metrics)
    assert main(["evaluate", "--model", "m.keras", "--data", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == {"rank1": 0.5, "rank5": 0.75, "rank10": 1.0, "mAP": 0.25, "mINP": 0.125}
    assert out.out.count("\n") == 1 and out.err == "" and seen["verbose"] is False
    assert main(["evaluate", "--model", "m.keras", "--data", str(tmp_path)]) == 0
    assert "| rank-1 |" in capsys.readouterr().out and seen["verbose"] is True


def test_budget_line_says_what_an_epoch_is():
    from keras_mmga.engine.config import TrainConfig
    from keras_mmga.engine.trainer import describe_budget

    fixed = TrainConfig("d", "o", epoch="images", steps_per_epoch=50, epochs=8, num_identities=8)
    line = describe_budget(fixed, 50, 32)
    assert "every image once" not in line and "fixed by steps_per_epoch" in line and "400 iterations" in line
    natural = describe_budget(TrainConfig("d", "o", epoch="images"), 136, 96)
    assert "about every image once" in natural


def test_no_replacement_help_says_what_the_flag_does():
    from keras_mmga.cli import build_parser

    sub = build_parser("train")._subparsers._group_actions[0].choices["train"]
    action = next(a for a in sub._actions if "--no-replacement" in a.option_strings)
    assert action.help.startswith("refuse identities with fewer than K images")
    assert "sampled with replacement" not in action.help


def test_startup_noise_filter_keeps_everything_else():
    from keras_mmga.cli.stderr_filter import is_noise

    noise = [
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        b"I0000 00:00:1796475063.298208    4795 port.cc:153] oneDNN custom operations are on.\n",
        b"E0000 00:00:1796475077.324181    4881 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n",
        b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
        b"appropriate compiler flags.\n",
        b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",
        # Two mask workers writing it at once.
        b"INFO: INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",
        b"Created TensorFlow Lite XNNPACK delegate for CPU.\n",
    ]
    kept = [
        b"error: Mask root 'x' does not exist.\n",
        b"masks: 10/20 images\r",
        b"Epoch 1/3\n",
        b"I0000 is not a log line\n",
        b"\n",
        b"INFO about the run\n",
    ]
    assert all(is_noise(line) for line in noise) and not any(is_noise(line) for line in kept)


def test_command_line_run_prints_no_tensorflow_startup_lines(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"truncated")
    env = {k: v for k, v in ENV.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-m", "keras_mmga", "evaluate", "--model", str(bad), "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: ") and "not a valid Keras archive" in done.stderr


def test_readme_import_path_of_load_model_works():
    import keras_mmga

    assert keras_mmga.models.load_model is __import__("keras_mmga.models.loading", fromlist=["x"]).load_model


def test_demo_quiet_prints_only_the_table(tmp_path, monkeypatch, capsys):
    from keras_mmga.engine import demo

    def noisy(config, export=True):
        print("Training mmga ...")
        print("Epoch 1/8", file=sys.stderr)
        return {"table": "| Model | rank-1 |"}

    monkeypatch.setattr(demo, "run_demo", noisy)
    assert main(["demo", "--output", str(tmp_path / "d"), "--quiet"]) == 0
    out = capsys.readouterr()
    assert out.out == "| Model | rank-1 |\n" and out.err == ""


def test_a_warning_is_one_line_once(tmp_path, monkeypatch, capsys):
    from keras_mmga.engine import trainer

    def fake_train(config):
        config.validate()  # the API checks the settings again: the warning is not repeated
        return None, None

    monkeypatch.setattr(trainer, "train", fake_train)
    argv = [
        "train",
        "--data",
        str(tmp_path),
        "--output",
        str(tmp_path / "run"),
        "--variant",
        "baseline",
        "--masks",
        str(tmp_path),
        "--backbone-weights",
        "none",
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err == (
        f"warning: variant 'baseline' trains without masks: mask_root (--masks) {str(tmp_path)!r} is "
        "not read (wmga, dmga and mmga use it).\n"
    )


@pytest.mark.parametrize(
    "weights, message",
    [("missing.pth", "Backbone weights not found"), ("imagenet", "takes torchvision / timm weights")],
)
def test_v15_backbone_weights_that_cannot_load_are_one_line_before_any_data(
    tmp_path, capsys, monkeypatch, weights, message
):
    from keras_mmga.engine import trainer

    monkeypatch.setattr(trainer, "load_dataset", lambda *a, **k: pytest.fail("data read before the weights"))
    code = main(
        [
            "train",
            "--data",
            str(tmp_path),
            "--output",
            str(tmp_path / "run"),
            "--variant",
            "baseline",
            "--backbone",
            "resnet50_v1.5",
            "--backbone-weights",
            str(tmp_path / weights) if weights != "imagenet" else weights,
        ]
    )
    assert code == 2
    assert message in _one_line_error(capsys)


def test_demo_output_folders_are_checked_before_any_work(tmp_path, monkeypatch, capsys):
    from keras_mmga.engine import demo

    monkeypatch.setattr(demo, "prepare_synthetic_dataset", lambda *a, **k: pytest.fail("work before the check"))
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    assert main(["demo", "--output", str(taken)]) == 2
    assert f"out_dir (--output) {str(taken)!r} is an existing file, not a folder" in _one_line_error(capsys)
    assert main(["demo", "--output", str(tmp_path / "d"), "--export-dir", str(taken / "onnx")]) == 2
    assert "export_dir (--export-dir)" in _one_line_error(capsys)
    # The API checks the same, before the data are written.
    with pytest.raises(NotADirectoryError, match="notes.txt' is a file, not a folder"):
        demo.run_demo(demo.DemoConfig(out_dir=str(taken / "demo"), export_dir=str(tmp_path / "e")))
    assert taken.read_text() == "mine"


def test_user_errors_are_one_line_and_verbose_shows_the_traceback(monkeypatch, capsys):
    from keras_mmga.cli import synthetic

    def needs(args):
        raise ImportError("backend='faiss' needs the faiss package: pip install faiss-cpu")

    monkeypatch.setattr(synthetic, "run", needs)
    assert main(["synthetic", "--output", "x"]) == 2
    assert _one_line_error(capsys) == "error: backend='faiss' needs the faiss package: pip install faiss-cpu\n"
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        main(["synthetic", "--output", "x", "--verbose"])
    # A usage error stays one line with --verbose (no traceback of argparse).
    assert main(["synthetic", "--output", "x", "--verbose", "--seed", "one"]) == 2
    assert "argument --seed: invalid int value: 'one'" in _one_line_error(capsys)
