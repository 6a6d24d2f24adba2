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
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", name), *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=timeout)


def test_help_lists_every_recipe_flag():
    out = script("train.py", "--help")
    assert out.returncode == 0, out.stderr[-2000:]
    for flag in ("-P", "-K", "--epochs", "--lr", "--backbone-lr-scale", "--weight-decay", "--momentum",
                 "--lr-decay-epochs", "--lr-decay-rate", "--margin", "--triplet-weight", "--attention-weight",
                 "--part-attention-weight", "--height", "--width", "--variant", "--backbone-weights", "--seed",
                 "--strategy", "--sync-batchnorm", "--mixed-precision", "--eval-every"):
        assert flag in out.stdout, flag
    for name in ("ablation.py", "demo.py"):  # evaluate.py runs in the next test
        out = script(name, "--help")
        assert out.returncode == 0 and "usage" in out.stdout, name


def test_train_then_evaluate_from_the_command_line(dataset, tmp_path):
    images, masks = dataset
    run = tmp_path / "run"
    out = script("train.py", "--data", images, "--masks", masks, "--output", run, "--height", 64, "--width", 32,
                 "-P", 4, "-K", 2, "--epochs", 1, "--steps-per-epoch", 2, "--backbone-weights", "none",
                 "--eval-every", 0, "--lr", 0.01, "--variant", "dmga", "--verbose", 0)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (run / "latest.keras").exists()

    out = script("evaluate.py", run / "latest.keras", "--data", images, "--json", tmp_path / "m.json",
                 "--pictures", tmp_path / "pics", "--num-pictures", 2, "--rerank", "--quiet")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| rank-1 | rank-5 | rank-10 | mAP | mINP |" in out.stdout and "re-ranking" in out.stdout
    metrics = json.load(open(tmp_path / "m.json"))
    assert metrics["rerank"] and 0 <= metrics["mAP"] <= 1 and len(os.listdir(tmp_path / "pics" / "rankings")) == 2


def test_bad_input_exits_with_a_message_not_a_traceback(dataset, tmp_path):
    images, masks = dataset
    out = script("train.py", "--data", images, "--masks", masks, "--output", tmp_path, "-P", 40,
                 "--backbone-weights", "none")
    assert out.returncode == 2 and "fewer than P=40" in out.stderr and "Traceback" not in out.stderr
    out = script("evaluate.py", tmp_path / "missing.keras", "--data", images)
    assert out.returncode == 2 and "Model file not found" in out.stderr


def test_ablation_table_layout():
    results = {"Market-1501": {"baseline": {"rank1": 0.927, "mAP": 0.835}, "mmga": {"rank1": 0.95, "mAP": 0.872}},
               "DukeMTMC-reID": {"mmga": {"rank1": 0.895, "mAP": 0.781}}}
    table = format_ablation_table(results, ["baseline", "mmga"]).splitlines()
    assert table[0] == ("| Model | Market-1501 Rank-1 | Market-1501 mAP | DukeMTMC-reID Rank-1 | "
                        "DukeMTMC-reID mAP |")
    assert table[2] == "| Baseline | 92.7 | 83.5 | – | – |"
    assert table[3] == "| MMGA | 95.0 | 87.2 | 89.5 | 78.1 |"


def test_ablation_runs_each_variant_once_and_resumes(dataset, tmp_path):
    images, masks = dataset
    ds = [AblationDataset("Synthetic", images, masks)]
    kw = dict(image_size=(64, 32), num_identities=4, num_instances=2, epochs=1, steps_per_epoch=1,
              learning_rate=0.01, backbone_weights=None, verbose=0)
    results, table = run_ablation(ds, tmp_path, variants=["baseline"], **kw)
    assert set(results["Synthetic"]) == {"baseline"}
    assert "| Baseline |" in table and (tmp_path / "ablation.md").read_text().strip() == table
    # Finished runs are read back, not retrained.
    stamp = os.path.getmtime(tmp_path / "synthetic" / "baseline" / "metrics.json")
    again, _ = run_ablation(ds, tmp_path, variants=["baseline"], **kw)
    assert again == results and os.path.getmtime(tmp_path / "synthetic" / "baseline" / "metrics.json") == stamp
    with pytest.raises(ValueError, match="variant"):
        run_ablation(ds, tmp_path, variant="mmga")


def test_demo_end_to_end_tiny(tmp_path):
    config = DemoConfig(out_dir=os.fspath(tmp_path / "demo"), export_dir=os.fspath(tmp_path / "exported"),
                        num_train_ids=5, num_test_ids=4, num_identities=4, num_instances=2, epochs=1,
                        steps_per_epoch=2)
    report = run_demo(config, export=True)
    assert set(report["results"]) == {"untrained", "trained mmga"}
    assert "| untrained |" in report["table"] and report["onnx"]["max_abs_diff"] < 1e-4
    assert (tmp_path / "exported" / "demo_mmga.onnx").exists()
    assert os.listdir(tmp_path / "demo" / "pictures" / "attention")
    assert json.load(open(tmp_path / "demo" / "results.json"))["wall_time_s"] > 0
