"""P identities × K images per batch, in identity epochs (MGN's sampler) or image epochs (torchreid's)."""

import math
from collections import defaultdict

import numpy as np

from keras_mmga.settings import check_epoch


class PKSampler:
    """Endless, seeded stream of P×K index batches.

    A batch holds P different identities, K images each, listed one identity
    after another, so with R replicas every contiguous block of `P·K / R`
    samples holds whole identities when P is a multiple of R. An identity with
    fewer than K images is sampled with replacement (or rejected when
    `replacement=False`). What one epoch is depends on `epoch`:

    - `"identities"` (default; MGN's sampler, the paper recipe): every
      training identity once, with K of its images drawn without
      replacement. The identities are shuffled and cut into batches of P:
      `ceil(N / P)` batches for N identities. When P does not divide N, the
      last batch holds the N mod P identities left over and is completed with
      P - N mod P other identities drawn at random from the rest of the
      epoch (each with a fresh draw of K images), so that every batch keeps
      P different identities: those identities appear twice in that epoch.
    - `"images"` (torchreid's RandomIdentitySampler): every identity's
      shuffled images are cut into groups of K and each batch takes one group
      from each of P identities drawn among those with groups left, until
      fewer than P identities have groups: about one pass over the images,
      `sum_i max(n_i, K) // K // P` batches (n_i: images of identity i).

    Args:
        pids: sequence of identity labels, one per image.
        num_identities: P (paper: 24).
        num_instances: K (paper: 4).
        num_replicas: R; P must be divisible by R.
        replacement: sample identities with fewer than K images with replacement.
        seed: int.
        epoch: `"identities"` or `"images"`, see above.

    Example:
    ```python
    sampler = PKSampler([0, 0, 1, 1, 2, 2], num_identities=2, num_instances=2)
    len(next(iter(sampler)))
    ```
    """

    def __init__(
        self, pids, num_identities=24, num_instances=4, num_replicas=1, replacement=True, seed=0, epoch="identities"
    ):
        self.pids = np.asarray(pids)
        if self.pids.ndim != 1 or not len(self.pids):
            raise ValueError(f"pids must be a non-empty 1-D sequence of labels, got shape {self.pids.shape}.")
        for name, value in (
            ("num_identities", num_identities),
            ("num_instances", num_instances),
            ("num_replicas", num_replicas),
            ("seed", seed),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be an int, got {value!r}.")
        self.P, self.K, self.R = int(num_identities), int(num_instances), int(num_replicas)
        self.replacement = bool(replacement)
        self.seed = int(seed)
        self.epoch_definition = check_epoch(epoch)
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
        """Batches in one epoch: `ceil(N / P)` identity epochs, or about one pass over the images."""
        if self.epoch_definition == "identities":
            return math.ceil(len(self.identities) / self.P)
        groups = sum(max(len(v), self.K) // self.K for v in self.index.values())
        return max(1, groups // self.P)

    def epoch(self, rng):
        """The batches of one epoch, as (P·K,) int arrays."""
        if self.epoch_definition == "identities":
            return self._identity_epoch(rng)
        return self._image_epoch(rng)

    def _draw(self, rng, pid):
        idx = np.array(self.index[pid])
        return rng.choice(idx, size=self.K, replace=len(idx) < self.K)

    def _identity_epoch(self, rng):
        order = rng.permutation(len(self.identities))
        batches = []
        for start in range(0, len(order), self.P):
            chosen = order[start : start + self.P]
            if len(chosen) < self.P:
                # Complete the last batch with other identities of the epoch.
                others = np.setdiff1d(order, chosen)
                chosen = np.concatenate([chosen, rng.choice(others, size=self.P - len(chosen), replace=False)])
            batches.append(np.concatenate([self._draw(rng, self.identities[c]) for c in chosen]))
        return batches

    def _image_epoch(self, rng):
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
