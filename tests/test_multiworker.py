"""Two MultiWorkerMirroredStrategy workers on 127.0.0.1 train like one process.

Keras 3.15's `fit` needs keras_mmga.distribute's workarounds under this
strategy (keras-team/keras#20585); this test is what shows they work.
"""

import json
import socket

import numpy as np

from workers import runner

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
            "--steps", STEPS,
            "--tf-config", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
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
