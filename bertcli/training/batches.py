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


def collate_examples(pad_id: int, label_dtype: str = "long", token_labels: bool = False):
    """The one collate of every fine-tuning task: input ids padded to the batch's longest, with the attention mask
    (and token type ids when the examples carry them); `labels` as they are (`label_dtype`), or per token and padded
    with IGNORE (`token_labels`); per-example `weight` when the examples carry one."""
    import torch

    from bertcli.training import IGNORE

    dtype = getattr(torch, label_dtype)

    def collate(examples: list[dict]) -> dict:
        width = max(len(e["input_ids"]) for e in examples)
        shape = (len(examples), width)
        ids, mask = torch.full(shape, pad_id, dtype=torch.long), torch.zeros(shape, dtype=torch.long)
        batch = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in examples[0]:
            batch["token_type_ids"] = torch.zeros(shape, dtype=torch.long)
        if token_labels:
            batch["labels"] = torch.full(shape, IGNORE, dtype=dtype)
        for row, example in enumerate(examples):
            n = len(example["input_ids"])
            ids[row, :n], mask[row, :n] = torch.as_tensor(example["input_ids"]), 1
            if "token_type_ids" in batch:
                batch["token_type_ids"][row, :n] = torch.as_tensor(example["token_type_ids"])
            if token_labels:
                batch["labels"][row, :n] = torch.as_tensor(example["labels"])
        if not token_labels:
            batch["labels"] = torch.tensor([e["label"] for e in examples], dtype=dtype)
        if "weight" in examples[0]:
            batch["weight"] = torch.tensor([e["weight"] for e in examples], dtype=torch.float)
        return batch

    return collate


class NoDuplicateBatches:
    """Shuffled batches in which no text occurs twice (contrastive training: a copy of an example's positive
    elsewhere in the batch would count as a negative). Deterministic for (seed, epoch).

    Examples are taken in a seeded random order; one that shares a text with the batch being filled waits for the
    next batch. `texts` holds each example's texts (query, positive, negatives).
    """

    def __init__(self, texts: Sequence[Sequence[str]], batch_size: int, seed: int) -> None:
        self.texts, self.batch_size, self.seed, self.epoch = [tuple(t) for t in texts], batch_size, seed, 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.texts)).tolist()
        batches: list[list[int]] = []
        while order:
            batch, seen, waiting = [], set(), []
            for index in order:
                own = set(self.texts[index])
                if len(batch) < self.batch_size and not own & seen:
                    batch.append(index)
                    seen |= own
                else:
                    waiting.append(index)
            batches.append(batch)
            order = waiting
        self._cache = (self.epoch, batches)
        return batches

    def __iter__(self):
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())
