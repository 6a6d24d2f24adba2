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
        assert np.all(blocks == blocks[:, :1])  # each block of K is one identity
        assert len(set(blocks[:, 0].tolist())) == 3  # P different identities


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


def test_image_epoch_steps_count_whole_groups():
    # Groups of K=2 per identity (at least one): 1, 1, 1, 2, 2, 3 -> 10 groups,
    # 10 // P=3 = 3 batches (torchreid's RandomIdentitySampler length).
    assert PKSampler(_pids(), 3, 2, epoch="images").steps_per_epoch == 3
    # An epoch without replacement uses every image at most once.
    pids = np.repeat(np.arange(4), 4)
    sampler = PKSampler(pids, 2, 2, seed=3, epoch="images")
    epoch = sampler.epoch(np.random.RandomState(0))
    used = np.concatenate(epoch)
    assert len(epoch) == sampler.steps_per_epoch == 4
    assert len(set(used.tolist())) == len(used) == 16


def test_batches_from_a_start_continue_the_stream_across_epochs():
    # Image epochs hold 2 or 3 batches here (identities run out of groups
    # unevenly), so starts 0..8 cross several epoch boundaries.
    sampler = PKSampler(_pids(), 3, 2, seed=7, epoch="images")
    stream = _take(sampler, 12)
    for start in range(9):
        for got, expected in zip(_take(sampler.batches(start), 3), stream[start : start + 3], strict=True):
            np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="start must be ≥ 0"):
        next(sampler.batches(-1))


def test_identity_epoch_steps_are_ceil_of_identities_over_p():
    # 6 identities (1..6 images): ceil(6 / P) whatever the image counts.
    for p, steps in ((1, 6), (2, 3), (3, 2), (4, 2), (5, 2), (6, 1)):
        assert PKSampler(_pids(), p, 2).steps_per_epoch == steps
        assert len(PKSampler(_pids(), p, 2).epoch(np.random.RandomState(0))) == steps
    # The paper recipe's counts, from identity counts alone: 751 (Market-1501)
    # and 702 (DukeMTMC-reID) identities at P = 24.
    assert PKSampler(np.arange(751), 24, 4).steps_per_epoch == 32
    assert PKSampler(np.arange(702), 24, 4).steps_per_epoch == 30
    with pytest.raises(ValueError, match="epoch must be one of"):
        PKSampler(_pids(), 3, 2, epoch="passes")


def test_identity_epoch_shows_every_identity_k_times():
    # 12 identities with 2..7 images each, P = 4 divides 12: over each epoch
    # every identity appears in exactly one batch, K = 3 times.
    counts = [2, 3, 4, 5, 6, 7] * 2
    pids = np.concatenate([np.full(n, pid) for pid, n in enumerate(counts)])
    sampler = PKSampler(pids, 4, 3, seed=11)
    stream = _take(sampler, 3 * sampler.steps_per_epoch)
    for e in range(3):
        epoch = stream[e * 3 : (e + 1) * 3]
        labels = pids[np.concatenate(epoch)]
        np.testing.assert_array_equal(np.bincount(labels, minlength=12), np.full(12, 3))
        for batch in epoch:
            blocks = pids[batch].reshape(4, 3)
            assert np.all(blocks == blocks[:, :1]) and len(set(blocks[:, 0].tolist())) == 4
            for block, pid in zip(batch.reshape(4, 3), blocks[:, 0]):
                # K different images when the identity has K or more (else with replacement).
                assert len(set(block.tolist())) == min(3, counts[pid])
                assert np.all(pids[block] == pid)


def test_identity_epoch_last_batch_is_completed_with_other_identities():
    # 7 identities, P = 3: batches of 3, 3 and 1 + 2 identities already drawn this epoch.
    pids = np.repeat(np.arange(7), 4)
    sampler = PKSampler(pids, 3, 2, seed=2)
    epoch = sampler.epoch(np.random.RandomState(5))
    assert len(epoch) == 3 == sampler.steps_per_epoch
    ids = [pids[b].reshape(3, 2)[:, 0] for b in epoch]
    assert all(len(set(i.tolist())) == 3 for i in ids)  # every batch: P different identities
    first = np.concatenate(ids[:2])
    assert len(set(first.tolist())) == 6  # the first two batches: no repeats
    left_over = set(range(7)) - set(first.tolist())
    assert len(left_over) == 1 and left_over <= set(ids[2].tolist())
    assert set(ids[2].tolist()) - left_over <= set(first.tolist())
    # Replica blocks still hold whole identities in the completed batch.
    sampler = PKSampler(pids, 4, 2, num_replicas=2, seed=2)
    for batch in sampler.epoch(np.random.RandomState(1)):
        halves = pids[batch].reshape(2, 4)
        assert not set(halves[0]) & set(halves[1])


def test_pk_arguments_must_be_ints():
    with pytest.raises(ValueError, match="num_instances must be an int, got 2.5"):
        PKSampler(_pids(), 3, 2.5)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        PKSampler([], 3, 2)
