"""Two MultiWorkerMirroredStrategy workers on 127.0.0.1 train like one process.

Keras 3.15's `fit` needs keras_mmga.backends.distribute's workarounds under this
strategy (keras-team/keras#20585); this test is what shows they work.
"""

import csv
import json
import os
import socket

import numpy as np
import pytest
from workers import runner

from keras_mmga.data import synthetic

pytestmark = pytest.mark.slow  # workers in subprocesses: not in `make test-fast`

STEPS = "2"


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_match_single_process(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = [
        runner.start(
            tmp_path / f"worker{i}.npz",
            "--steps",
            STEPS,
            "--tf-config",
            json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
        )
        for i in range(2)
    ]
    runner.finish(procs, timeout=480)
    reference = runner.start(tmp_path / "single.npz", "--steps", STEPS)
    runner.finish([reference], timeout=300)

    (w0, i0), (w1, _), (ws, iref) = (runner.result(tmp_path / f"{n}.npz") for n in ("worker0", "worker1", "single"))
    # The workers hold replicas of one model: equal up to the last bits of a
    # float64 all-reduce, whose summation order may differ per worker.
    assert runner.max_difference(w0, w1) < 1e-12, "the workers ended with different weights"
    assert iref["moved"] > 1e-3
    assert runner.max_difference(w0, ws) < 1e-5
    np.testing.assert_allclose(i0["history"]["loss"], iref["history"]["loss"], rtol=1e-6)


def _h5_arrays(path):
    """The datasets of a Keras `.weights.h5` file by their path in it."""
    import h5py

    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return arrays


def _read_log(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_engine_trains_the_synthetic_dataset_on_two_workers(tmp_path):
    # scripts/train.py --strategy multiworker, as the README launches it: every
    # worker generates the same seeded PK stream and keeps its contiguous half
    # of each global batch (whole identities); only the chief writes the run
    # folder's checkpoints and logs, each other worker its own resume state.
    images, masks = synthetic.write_dataset(
        tmp_path / "data", num_train_ids=5, num_test_ids=4, seed=0, num_distractors=2, num_junk=1
    )
    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "train.py")

    def command(out, strategy):
        return [
            script,
            "--data",
            images,
            "--masks",
            masks,
            "--output",
            out,
            "--variant",
            "mmga",
            "--height",
            "64",
            "--width",
            "32",
            "-P",
            "4",
            "-K",
            "2",
            "--epochs",
            "2",
            "--steps-per-epoch",
            "1",
            "--lr",
            "0.01",
            "--backbone-weights",
            "none",
            "--eval-every",
            "0",
            "--seed",
            "5",
            "--sync-batchnorm",
            "--strategy",
            strategy,
            "--progress",
            "0",
        ]

    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = [
        runner.spawn(
            command(tmp_path / "run", "multiworker"),
            tmp_path / f"worker{i}.log",
            tf_config={"cluster": cluster, "task": {"type": "worker", "index": i}},
        )
        for i in range(2)
    ]
    runner.finish(procs, timeout=480)
    for i, p in enumerate(procs):
        assert p.returncode == 0, (tmp_path / f"worker{i}.log").read_text()[-3000:]
    single = runner.spawn(command(tmp_path / "single", "one"), tmp_path / "single.log")
    runner.finish([single], timeout=300)
    assert single.returncode == 0, (tmp_path / "single.log").read_text()[-3000:]

    run = tmp_path / "run"
    assert (run / "latest.keras").exists() and (run / "config.json").exists()
    # Worker 1 keeps a full resume state of its own.
    assert sorted(os.listdir(run / "backup" / "worker1")) == sorted(
        n for n in os.listdir(run / "backup") if n != "worker1"
    )
    rows, reference = _read_log(run / "log.csv"), _read_log(tmp_path / "single" / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    # Epoch 1 is one step: the losses of the initial weights on the first
    # global batch, which the two workers must compute exactly as one process
    # does (synchronised BatchNorm, triplets mined over the global batch, the
    # attention RMSE over the global batch).
    # float32 "exactly": the workers' feature matmuls run at half the batch, and oneDNN blocks (so
    # rounds) them differently from one process's; the triplet term, a difference of 2048-d distances,
    # then moves by a few 1e-6 absolute (4.6e-6 on AVX-512 machines, where rtol 1e-5 alone was exceeded).
    for key in ("loss", "triplet", "attention", "whole_softmax", "local_softmax"):
        np.testing.assert_allclose(float(rows[0][key]), float(reference[0][key]), rtol=1e-5, atol=1e-5, err_msg=key)
    # Both workers applied the same all-reduced updates.
    chief = _h5_arrays(run / "backup" / "latest.weights.h5")
    other = _h5_arrays(run / "backup" / "worker1" / "latest.weights.h5")
    assert chief.keys() == other.keys() and len(chief) > 300
    assert runner.max_difference([chief[k] for k in chief], [other[k] for k in chief]) < 1e-6
