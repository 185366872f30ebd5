"""Length-grouped training batches: little padding, a seeded order that changes every epoch."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


class LengthGroupedBatches:
    """Batches of similar length (little padding), in a seeded random order that changes per epoch.

    Examples are shuffled, cut into mega-batches of 50 batches, sorted by length inside each,
    split into batches, and the batch order is shuffled; deterministic for (seed, epoch).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, mega: int = 50) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.mega = mega
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.lengths))
        size = self.batch_size * self.mega
        batches: list[list[int]] = []
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size))
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self):
        return iter(self._batches())

    def __len__(self) -> int:
        size = self.batch_size * self.mega
        n = len(self.lengths)
        full, rest = divmod(n, size)
        return full * self.mega + math.ceil(rest / self.batch_size)
