"""Multi-replica training computes the one-device step.

Each configuration trains in its own process (tests/workers/train_steps.py): a
float64 MMGA with synchronised BatchNorm, all losses on (or the triplet off),
one global batch of 4 identities × 2 images with one unmasked image. Under
MirroredStrategy on 2 and 4 logical CPU devices the weights after the step
must equal the one-device weights to 1e-5 (see train_steps.py for why float64).
With 4 replicas each replica holds one identity: per-replica mining would find
no negatives, so only global mining can match.
"""

import numpy as np
import pytest
import tensorflow as tf

from keras_mmga import distribute
from workers import runner

CASES = {
    "one_device": [],
    "one_device_no_triplet": ["--triplet-weight", "0"],
    "mirrored2_no_triplet": ["--replicas", "2", "--triplet-weight", "0"],
    "mirrored2": ["--replicas", "2"],
    "mirrored4": ["--replicas", "4"],
    "mirrored4_per_replica_triplet": ["--replicas", "4", "--per-replica-triplet"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distribute")
    names = list(CASES)
    # Two at a time: the machine has two cores.
    for i in range(0, len(names), 2):
        procs = [runner.start(tmp / f"{n}.npz", *CASES[n]) for n in names[i : i + 2]]
        runner.finish(procs, timeout=600)
    return {n: runner.result(tmp / f"{n}.npz") for n in names}


@pytest.mark.parametrize(
    "run, reference",
    [("mirrored2_no_triplet", "one_device_no_triplet"), ("mirrored2", "one_device"), ("mirrored4", "one_device")],
)
def test_mirrored_step_equals_one_device(runs, run, reference):
    weights, info = runs[run]
    ref_weights, ref_info = runs[reference]
    assert ref_info["moved"] > 1e-3  # the step changed the weights
    assert runner.max_difference(weights, ref_weights) < 1e-5
    for key in ("loss", "triplet", "attention", "whole_softmax", "local_softmax"):
        np.testing.assert_allclose(info["history"][key], ref_info["history"][key], rtol=1e-6)


def test_per_replica_mining_is_a_different_loss(runs):
    # Each of the 4 replicas sees one identity: no negatives, no triplet.
    assert runs["mirrored4_per_replica_triplet"][1]["history"]["triplet"] == [0.0]
    assert runs["one_device"][1]["history"]["triplet"][0] > 0.0


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
