"""Length-grouped training batches: little padding, a seeded order that changes every epoch."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


class LengthGroupedBatches:
    """Batches of similar length (little padding), in a seeded random order that changes per epoch.

    Examples are shuffled, cut into mega-batches of 50 batches, sorted by length inside each,
    split into batches, and the batch order is shuffled; deterministic for (seed, epoch).
    With `groups` (the text each example comes from) and `per_group`, an epoch takes at most that many
    examples of each text, drawn afresh every epoch (a long text's windows take turns).
    """

    def __init__(
        self, lengths: Sequence[int], batch_size: int, seed: int, mega: int = 50,
        groups: Sequence[int] | None = None, per_group: int | None = None,
    ) -> None:  # fmt: skip
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.mega = mega
        self.epoch = 0
        self.groups = None if groups is None or per_group is None else np.asarray(groups)
        self.per_group = per_group
        counts = np.bincount(self.groups) if self.groups is not None else None
        self.size = len(self.lengths) if counts is None else int(np.minimum(counts, per_group).sum())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _pool(self, rng: np.random.Generator) -> np.ndarray:
        """This epoch's examples: all, or up to per_group of each text."""
        if self.groups is None:
            return np.arange(len(self.lengths))
        shuffled = rng.permutation(len(self.lengths))
        rank = np.zeros(len(shuffled), dtype=np.int64)
        seen: dict[int, int] = {}
        for position, index in enumerate(shuffled):
            group = int(self.groups[index])
            rank[position] = seen.get(group, 0)
            seen[group] = rank[position] + 1
        return np.sort(shuffled[rank < self.per_group])

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        pool = self._pool(rng)
        order = pool[rng.permutation(len(pool))]
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
        full, rest = divmod(self.size, size)
        return full * self.mega + math.ceil(rest / self.batch_size)
