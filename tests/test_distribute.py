"""Multi-replica training computes the one-device step.

Each configuration trains in its own process (tests/workers/train_steps.py): a
float64 MMGA with synchronised BatchNorm, all losses on,
one global batch of 4 identities × 2 images with one unmasked image. Under
MirroredStrategy on 2 logical CPU devices the weights after the step must
equal the one-device weights to 1e-5 (see train_steps.py for why float64).
On a batch of 2 identities each replica holds one identity: per-replica mining
would find no negatives, so only global mining can match.
(4 replicas behave the same but cost 2.5 minutes of tracing: run
`train_steps.py OUT.npz --replicas 4` by hand.)
"""

import numpy as np
import pytest
import tensorflow as tf
from workers import runner

from keras_mmga.backends import distribute

CASES = {
    "one_device": [],
    "mirrored2": ["--replicas", "2", "--evaluate-mining"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distribute")
    # All at once: most of each run is single-threaded graph tracing.
    procs = [runner.start(tmp / f"{n}.npz", *args) for n, args in CASES.items()]
    runner.finish(procs, timeout=600)
    return {n: runner.result(tmp / f"{n}.npz") for n in CASES}


@pytest.mark.slow
def test_mirrored_step_equals_one_device(runs):
    weights, info = runs["mirrored2"]
    ref_weights, ref_info = runs["one_device"]
    assert ref_info["moved"] > 1e-3  # the step changed the weights
    assert runner.max_difference(weights, ref_weights) < 1e-5
    for key in ("loss", "triplet", "attention", "whole_softmax", "local_softmax"):
        np.testing.assert_allclose(info["history"][key], ref_info["history"][key], rtol=1e-6)


@pytest.mark.slow
def test_per_replica_mining_is_a_different_loss(runs):
    # Each of the 2 replicas sees one identity: per replica there are no
    # negatives, so no anchor counts and the triplet loss is 0; mined over the
    # global batch it is not. The other losses do not depend on the mining.
    mining = runs["mirrored2"][1]["mining"]
    assert mining["per_replica"]["triplet"] == 0.0
    assert mining["global"]["triplet"] > 0.0
    for key in ("attention", "whole_softmax", "local_softmax"):
        assert mining["per_replica"][key] == pytest.approx(mining["global"][key], rel=1e-9)


def test_helpers_are_identity_without_strategy():
    x = tf.constant([1.0, 2.0])
    assert distribute.num_replicas() == 1 and distribute.replica_id() == 0
    np.testing.assert_array_equal(distribute.all_reduce_sum(x), x)
    np.testing.assert_array_equal(distribute.all_gather(x), x)


def test_make_strategy_rejects_unknown_and_missing_tf_config(monkeypatch):
    with pytest.raises(ValueError, match="Unknown strategy"):
        distribute.make_strategy("tpu-pod")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.make_strategy("multiworker")
