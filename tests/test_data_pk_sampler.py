import numpy as np
import pytest

from keras_mmga.data import PKSampler


def _pids():
    # 6 identities with 1..6 images each.
    return np.concatenate([np.full(n, pid) for pid, n in enumerate([1, 2, 3, 4, 5, 6])])


def _take(sampler, n):
    return [b for b, _ in zip(sampler, range(n))]


def test_pk_batches_have_p_identities_of_k_images():
    pids = _pids()
    for batch in _take(PKSampler(pids, num_identities=3, num_instances=2, seed=0), 20):
        assert len(batch) == 6
        blocks = pids[batch].reshape(3, 2)
        assert np.all(blocks == blocks[:, :1])           # each block of K is one identity
        assert len(set(blocks[:, 0].tolist())) == 3      # P different identities


def test_replica_blocks_hold_whole_identities():
    pids = _pids()
    for batch in _take(PKSampler(pids, num_identities=4, num_instances=3, num_replicas=2, seed=1), 10):
        halves = pids[batch].reshape(2, 6)
        assert not set(halves[0]) & set(halves[1])
        assert all(len(set(h)) == 2 for h in halves)
    with pytest.raises(ValueError, match="divisible"):
        PKSampler(pids, num_identities=3, num_instances=2, num_replicas=2)


def test_sampler_is_seeded_and_reproducible():
    pids = _pids()
    a, b, c = (_take(PKSampler(pids, 3, 4, seed=s), 5) for s in (5, 5, 6))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_small_identities_use_replacement_or_raise():
    pids = _pids()
    seen = set()
    for batch in _take(PKSampler(pids, 6, 4, seed=0), 3):
        labels = pids[batch].reshape(6, 4)
        # Identity 0 has one image: its block is that image four times.
        block = batch.reshape(6, 4)[labels[:, 0] == 0]
        seen.update(block.ravel().tolist())
    assert seen == {0}
    with pytest.raises(ValueError, match="fewer than K=4"):
        PKSampler(pids, 3, 4, replacement=False)
    with pytest.raises(ValueError, match="fewer than P"):
        PKSampler(pids, 7, 2)


def test_steps_per_epoch_counts_whole_groups():
    # Groups of K=2 per identity (at least one): 1, 1, 1, 2, 2, 3 -> 10 groups,
    # 10 // P=3 = 3 batches (torchreid's RandomIdentitySampler length).
    assert PKSampler(_pids(), 3, 2).steps_per_epoch == 3
    # An epoch without replacement uses every image at most once.
    pids = np.repeat(np.arange(4), 4)
    sampler = PKSampler(pids, 2, 2, seed=3)
    epoch = sampler.epoch(np.random.RandomState(0))
    used = np.concatenate(epoch)
    assert len(epoch) == sampler.steps_per_epoch == 4
    assert len(set(used.tolist())) == len(used) == 16


def test_batches_from_a_start_continue_the_stream_across_epochs():
    # Epochs hold 2 or 3 batches here (identities run out of groups unevenly),
    # so starts 0..8 cross several epoch boundaries.
    sampler = PKSampler(_pids(), 3, 2, seed=7)
    stream = _take(sampler, 12)
    for start in range(9):
        for got, expected in zip(_take(sampler.batches(start), 3), stream[start:start + 3], strict=True):
            np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="start must be ≥ 0"):
        next(sampler.batches(-1))
