"""P identities × K images per batch (torchreid's RandomIdentitySampler)."""

from collections import defaultdict

import numpy as np


class PKSampler:
    """Endless, seeded stream of P×K index batches.

    Each epoch shuffles every identity's images and cuts them into groups of
    K (an identity with fewer than K images is sampled with replacement, or
    rejected when `replacement=False`); batches take one group from each of P
    identities drawn at random among those with groups left. A batch lists its
    identities one after another, K images each, so with R replicas every
    contiguous block of `P·K / R` samples holds whole identities when P is a
    multiple of R.

    Args:
        pids: sequence of identity labels, one per image.
        num_identities: P (paper: 24).
        num_instances: K (paper: 4).
        num_replicas: R; P must be divisible by R.
        replacement: sample identities with fewer than K images with replacement.
        seed: int.

    Example:
    >>> sampler = PKSampler([0, 0, 1, 1, 2, 2], num_identities=2, num_instances=2)
    >>> len(next(iter(sampler)))
    4
    """

    def __init__(self, pids, num_identities=24, num_instances=4, num_replicas=1, replacement=True, seed=0):
        self.pids = np.asarray(pids)
        self.P, self.K, self.R = int(num_identities), int(num_instances), int(num_replicas)
        self.replacement = bool(replacement)
        self.seed = int(seed)
        if self.P < 1 or self.K < 1 or self.R < 1:
            raise ValueError("num_identities, num_instances and num_replicas must be ≥ 1.")
        if self.P % self.R:
            raise ValueError(
                f"num_identities (P={self.P}) must be divisible by the number of replicas ({self.R}) "
                "so that each replica receives whole identities."
            )
        self.index = defaultdict(list)
        for i, pid in enumerate(self.pids.tolist()):
            self.index[pid].append(i)
        self.identities = sorted(self.index)
        if len(self.identities) < self.P:
            raise ValueError(
                f"The training set has {len(self.identities)} identities, fewer than P={self.P} "
                "per batch: lower num_identities."
            )
        if not self.replacement:
            short = [pid for pid in self.identities if len(self.index[pid]) < self.K]
            if short:
                raise ValueError(
                    f"{len(short)} identities (e.g. {short[:5]}) have fewer than K={self.K} images and "
                    "replacement is off: lower num_instances or allow replacement."
                )

    @property
    def batch_size(self):
        return self.P * self.K

    @property
    def steps_per_epoch(self):
        """Batches in one epoch (every identity's images used about once)."""
        groups = sum(max(len(v), self.K) // self.K for v in self.index.values())
        return max(1, groups // self.P)

    def epoch(self, rng):
        """The batches of one epoch, as (P·K,) int arrays."""
        groups = {}
        for pid in self.identities:
            idx = np.array(self.index[pid])
            if len(idx) < self.K:
                idx = rng.choice(idx, size=self.K, replace=True)
            else:
                idx = rng.permutation(idx)
            n = len(idx) // self.K
            groups[pid] = [idx[j * self.K : (j + 1) * self.K] for j in range(n)]
        batches = []
        available = [pid for pid in self.identities if groups[pid]]
        while len(available) >= self.P:
            chosen = rng.choice(len(available), size=self.P, replace=False)
            batch = []
            for c in chosen:
                batch.append(groups[available[c]].pop())
            batches.append(np.concatenate(batch))
            available = [pid for pid in available if groups[pid]]
        return batches

    def batches(self, start=0):
        """The endless stream from batch `start` on (0-based, counted over epochs).

        Skipping happens here, on index arrays, so a resumed run is positioned
        without decoding the images of the batches it skips. Epochs hold a
        varying number of batches, so every skipped epoch is still drawn: the
        random state must advance exactly as in an uninterrupted run.
        """
        start = int(start)
        if start < 0:
            raise ValueError(f"start must be ≥ 0, got {start}.")
        rng = np.random.RandomState(self.seed)
        while True:
            epoch = self.epoch(rng)
            if start >= len(epoch):
                start -= len(epoch)
                continue
            yield from epoch[start:]
            start = 0

    def __iter__(self):
        return self.batches()
