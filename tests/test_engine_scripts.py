"""The thin command-line wrappers, the ablation runner and the demo, on tiny synthetic data."""

import json
import os
import subprocess
import sys

import pytest

from keras_mmga.data import synthetic
from keras_mmga.engine import AblationDataset, format_ablation_table, run_ablation
from keras_mmga.engine.demo import DemoConfig, run_demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("scripts_synthetic")
    return synthetic.write_dataset(root, num_train_ids=5, num_test_ids=4, seed=1, num_distractors=2, num_junk=1)


def script(name, *args, timeout=300):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", name), *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )


def test_help_lists_every_recipe_flag():
    out = script("train.py", "--help")
    assert out.returncode == 0, out.stderr[-2000:]
    for flag in (
        "-P",
        "-K",
        "--epochs",
        "--lr",
        "--backbone-lr-scale",
        "--weight-decay",
        "--momentum",
        "--lr-decay-epochs",
        "--lr-decay-rate",
        "--margin",
        "--triplet-weight",
        "--attention-weight",
        "--part-attention-weight",
        "--height",
        "--width",
        "--variant",
        "--backbone-weights",
        "--seed",
        "--strategy",
        "--sync-batchnorm",
        "--mixed-precision",
        "--eval-every",
        "--dress-group",
        "--cache-images",
        "--missing-masks",
        "--epoch",
    ):
        assert flag in out.stdout, flag
    for name in ("ablation.py", "demo.py"):  # evaluate.py runs in the next test
        out = script(name, "--help")
        assert out.returncode == 0 and "usage" in out.stdout, name


# (The flags reaching TrainConfig: tests/test_cli_commands.py.)


@pytest.mark.slow
def test_train_then_evaluate_from_the_command_line(dataset, tmp_path):
    images, masks = dataset
    run = tmp_path / "run"
    out = script(
        "train.py",
        "--data",
        images,
        "--masks",
        masks,
        "--output",
        run,
        "--height",
        64,
        "--width",
        32,
        "-P",
        4,
        "-K",
        2,
        "--epochs",
        1,
        "--steps-per-epoch",
        2,
        "--backbone-weights",
        "none",
        "--eval-every",
        0,
        "--lr",
        0.01,
        "--variant",
        "dmga",
        "--progress",
        0,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert (run / "latest.keras").exists()

    out = script(
        "evaluate.py",
        "--model",
        run / "latest.keras",
        "--data",
        images,
        "--json",
        tmp_path / "m.json",
        "--pictures",
        tmp_path / "pics",
        "--num-pictures",
        2,
        "--rerank",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| rank-1 | rank-5 | rank-10 | mAP | mINP |" in out.stdout and "re-ranking" in out.stdout
    metrics = json.load(open(tmp_path / "m.json"))
    assert metrics["rerank"] and 0 <= metrics["mAP"] <= 1 and len(os.listdir(tmp_path / "pics" / "rankings")) == 2

    # Train/serve parity end to end: `evaluate` (tf.data decode, Keras) and the float32 ONNX export
    # (OpenCV decode, ONNX Runtime, as deploy and `export --eval-data` read images) rank the same
    # JPEGs alike. Before one decoder served both, they differed by 2.6 rank-1 points on such a model.
    from keras_mmga.evaluation.model_metrics import dataset_metrics
    from keras_mmga.export import export_onnx
    from keras_mmga.export.int8 import rank_accuracy

    assert all(p.endswith(".jpg") for p in os.listdir(os.path.join(images, "query")))
    evaluated = dataset_metrics(run / "latest.keras", images, verbose=False)  # what `keras-mmga evaluate` runs
    onnx_path = export_onnx(run / "latest.keras", tmp_path / "m.onnx", write_card=False)["onnx_path"]
    deployed = rank_accuracy({"float32": onnx_path}, images)["float32"]
    assert abs(100 * evaluated["rank1"] - deployed["rank1"]) <= 0.2, (evaluated, deployed)
    assert abs(100 * evaluated["mAP"] - deployed["mAP"]) <= 0.2, (evaluated, deployed)


@pytest.mark.slow
def test_bad_input_exits_with_a_message_not_a_traceback(dataset, tmp_path):
    images, masks = dataset
    out = script(
        "train.py", "--data", images, "--masks", masks, "--output", tmp_path, "-P", 40, "--backbone-weights", "none"
    )
    assert out.returncode == 2 and "fewer than P=40" in out.stderr and "Traceback" not in out.stderr
    out = script("evaluate.py", "--model", tmp_path / "missing.keras", "--data", images)
    assert out.returncode == 2 and "Model file not found" in out.stderr


def test_ablation_table_layout():
    results = {
        "Market-1501": {"baseline": {"rank1": 0.927, "mAP": 0.835}, "mmga": {"rank1": 0.95, "mAP": 0.872}},
        "DukeMTMC-reID": {"mmga": {"rank1": 0.895, "mAP": 0.781}},
    }
    table = format_ablation_table(results, ["baseline", "mmga"]).splitlines()
    assert table[0] == ("| Model | Market-1501 Rank-1 | Market-1501 mAP | DukeMTMC-reID Rank-1 | DukeMTMC-reID mAP |")
    assert table[2] == "| Baseline | 92.7 | 83.5 | – | – |"
    assert table[3] == "| MMGA | 95.0 | 87.2 | 89.5 | 78.1 |"


@pytest.mark.slow
def test_ablation_runs_each_variant_once_and_resumes(dataset, tmp_path):
    images, masks = dataset
    ds = [AblationDataset("Synthetic", images, masks)]
    kw = dict(
        image_size=(64, 32),
        num_identities=4,
        num_instances=2,
        epochs=1,
        steps_per_epoch=1,
        learning_rate=0.01,
        backbone_weights=None,
        verbose=0,
    )
    results, table = run_ablation(ds, tmp_path, variants=["baseline"], **kw)
    assert set(results["Synthetic"]) == {"baseline"}
    assert "| Baseline |" in table and (tmp_path / "ablation.md").read_text().strip() == table
    # Finished runs are read back, not retrained.
    stamp = os.path.getmtime(tmp_path / "synthetic" / "baseline" / "metrics.json")
    again, _ = run_ablation(ds, tmp_path, variants=["baseline"], **kw)
    assert again == results and os.path.getmtime(tmp_path / "synthetic" / "baseline" / "metrics.json") == stamp
    with pytest.raises(ValueError, match="variant"):
        run_ablation(ds, tmp_path, variant="mmga")


@pytest.mark.slow
def test_demo_end_to_end_tiny(tmp_path):
    config = DemoConfig(
        out_dir=os.fspath(tmp_path / "demo"),
        export_dir=os.fspath(tmp_path / "exported"),
        num_train_ids=5,
        num_test_ids=4,
        num_identities=4,
        num_instances=2,
        epochs=1,
        steps_per_epoch=2,
    )
    report = run_demo(config, export=True)
    assert set(report["results"]) == {"untrained", "trained mmga"}
    assert "| untrained |" in report["table"] and report["onnx"]["max_abs_diff"] < 1e-4
    assert (tmp_path / "exported" / "demo_mmga.onnx").exists()
    assert os.listdir(tmp_path / "demo" / "pictures" / "attention")
    assert json.load(open(tmp_path / "demo" / "results.json"))["wall_time_s"] > 0


# ---------------------------------------------------------------------------
# Ablation: settings stored with the metrics, synthetic data follows its settings.

from keras_mmga.engine import TrainConfig  # noqa: E402
from keras_mmga.engine.ablation import reusable_metrics, run_settings  # noqa: E402
from keras_mmga.engine.demo import prepare_synthetic_dataset  # noqa: E402


def _train_pids(images_root):
    return {name.split("_")[0] for name in os.listdir(os.path.join(images_root, "bounding_box_train"))}


def test_synthetic_dataset_is_rewritten_when_its_settings_change(tmp_path):
    images, masks = prepare_synthetic_dataset(tmp_path, num_train_ids=2, num_test_ids=2, seed=0)
    assert len(_train_pids(images)) == 2 and os.path.isdir(os.path.join(masks, "query"))
    (tmp_path / "notes.txt").write_text("kept")
    first = sorted(os.listdir(os.path.join(images, "bounding_box_train")))
    stamp = os.path.getmtime(os.path.join(images, "bounding_box_train", first[0]))
    assert prepare_synthetic_dataset(tmp_path, 2, 2, seed=0) == (images, masks)  # same settings: reused
    assert os.path.getmtime(os.path.join(images, "bounding_box_train", first[0])) == stamp
    prepare_synthetic_dataset(tmp_path, 3, 2, seed=0)  # more identities: rewritten
    assert len(_train_pids(images)) == 3
    prepare_synthetic_dataset(tmp_path, 3, 2, seed=5)  # another seed: other images, no leftovers
    assert sorted(os.listdir(os.path.join(images, "bounding_box_train"))) != first
    assert (
        json.load(open(tmp_path / "synthetic.json")).items()
        >= {"num_train_ids": 3, "num_test_ids": 2, "seed": 5}.items()
    )
    assert (tmp_path / "notes.txt").read_text() == "kept"  # only the generator's own entries are replaced
    (tmp_path / "synthetic.json").unlink()  # no marker (older script, interrupted write): rewritten
    prepare_synthetic_dataset(tmp_path, 2, 2, seed=5)
    assert len(_train_pids(images)) == 2


def _settings(**overrides):
    config = TrainConfig("data", "run", mask_root="masks", variant="baseline", epochs=1, **overrides)
    return run_settings(config, {"synthetic": {"num_train_ids": 2}})


def test_stored_metrics_are_reused_only_with_the_same_settings(tmp_path):
    assert reusable_metrics(tmp_path, _settings()) is None
    metrics = {"rank1": 0.5, "mAP": 0.25}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics | {"settings": _settings()}))
    assert reusable_metrics(tmp_path, _settings()) == metrics
    # Settings that cannot change the result (folders, verbosity) may differ.
    moved = run_settings(
        TrainConfig("elsewhere", "run2", variant="baseline", epochs=1, verbose=0), {"synthetic": {"num_train_ids": 2}}
    )
    assert reusable_metrics(tmp_path, moved) == metrics
    with pytest.raises(
        ValueError,
        match=r"epochs: 1 there, 2 now.*learning_rate: 0\.1 there, 0\.01 now"
        r".*another output folder",
    ):
        reusable_metrics(tmp_path, _settings(learning_rate=0.01) | {"epochs": 2})
    with pytest.raises(ValueError, match=r"image_size: \[384, 128\] there, \[128, 64\] now"):
        reusable_metrics(tmp_path, _settings(image_size=(128, 64)))
    with pytest.raises(ValueError, match="data_provenance"):
        reusable_metrics(tmp_path, run_settings(TrainConfig("data", "run", variant="baseline", epochs=1)))
    # A TrainConfig field added since the metrics were written matches at its default.
    old = _settings()
    del old["missing_masks"]
    (tmp_path / "metrics.json").write_text(json.dumps(metrics | {"settings": old}))
    assert reusable_metrics(tmp_path, _settings()) == metrics
    with pytest.raises(ValueError, match="missing_masks: 'error' there, 'ignore' now"):
        reusable_metrics(tmp_path, _settings(missing_masks="ignore"))
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))  # written before settings were stored
    with pytest.raises(ValueError, match="records no settings"):
        reusable_metrics(tmp_path, _settings())


def test_an_unfinished_run_of_other_settings_is_not_resumed(tmp_path):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "latest.weights.h5").write_bytes(b"")
    (tmp_path / "backup" / "training_metadata.json").write_text(json.dumps({"epoch": 3}))
    saved = {k: v for k, v in _settings().items() if k != "data_provenance"}
    saved |= {"output_dir": "run", "verbose": 1, "num_classes": 5}  # as train() writes config.json
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert reusable_metrics(tmp_path, _settings(verbose=0)) is None  # same recipe: train() resumes it
    with pytest.raises(ValueError, match=r"unfinished run.*lr_decay_epochs: 90 there, 30 now"):
        reusable_metrics(tmp_path, _settings(lr_decay_epochs=30))


def test_ablation_refuses_other_settings_before_training_anything(dataset, tmp_path):
    images, masks = dataset
    ds = [AblationDataset("Synthetic", images, masks)]
    kw = dict(
        image_size=(64, 32),
        num_identities=4,
        num_instances=2,
        epochs=1,
        steps_per_epoch=1,
        learning_rate=0.01,
        backbone_weights=None,
        verbose=0,
    )
    finished = tmp_path / "synthetic" / "baseline"
    finished.mkdir(parents=True)
    other = run_settings(TrainConfig(images, str(finished), variant="baseline", **(kw | {"epochs": 3})))
    (finished / "metrics.json").write_text(json.dumps({"rank1": 0.5, "mAP": 0.25, "settings": other}))
    with pytest.raises(ValueError, match=r"epochs: 3 there, 1 now"):
        run_ablation(ds, tmp_path, variants=["mmga", "baseline"], **kw)
    assert not (tmp_path / "synthetic" / "mmga").exists()  # checked before the first run


@pytest.mark.slow
def test_ablation_script_rewrites_synthetic_data_and_names_changed_settings(tmp_path):
    prepare_synthetic_dataset(tmp_path / "data", num_train_ids=2, num_test_ids=2, seed=0)
    finished = tmp_path / "synthetic" / "baseline"
    finished.mkdir(parents=True)
    (finished / "metrics.json").write_text(json.dumps({"rank1": 0.5, "mAP": 0.25, "settings": {}}))
    out = script(
        "ablation.py",
        "--output",
        tmp_path,
        "--synthetic",
        "--synthetic-ids",
        3,
        "--variants",
        "baseline",
        "--backbone-weights",
        "none",
        "--height",
        64,
        "--width",
        32,
        "--progress",
        0,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "other settings" in out.stderr and "'num_train_ids': 3" in out.stderr
    assert len(_train_pids(tmp_path / "data" / "images")) == 3  # the data follow --synthetic-ids
