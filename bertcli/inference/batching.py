"""The one batch loop: length-sorted (or token-budget) batches, dynamic padding, results back in input order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from bertcli.inference.encoding import Encoded, Features, pad

MAX_BATCH = 256
MIN_EQUAL_LENGTH = 8


class Backend(Protocol):
    """What runs a model: torch or ONNX Runtime. `inputs` are the feature names the model takes."""

    inputs: frozenset[str]
    name: str  # what the logs, /info and bertcli.json say ran the model
    batch_tokens: int  # tokens per batch when no batch size is given (config BATCH_TOKENS; real ones when unpadded)
    threads_per_call: bool  # whether a forward runs on its calling thread's count (runtime.device.use_threads)
    unpadded: bool  # whether a forward costs its inputs' real tokens, not batch x longest (inference/unpadded.py)

    def provides(self, output: str) -> bool:
        """Whether `forward` can return this output."""

    def forward(self, features: Features, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Run the model on one padded batch; return the requested outputs as float32 arrays."""


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Index batches of similar length, longest first (a too-large batch fails at once, not at the end)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def token_budget_batches(
    lengths: Sequence[int],
    max_tokens: int,
    max_batch: int = MAX_BATCH,
    min_equal: int = MIN_EQUAL_LENGTH,
) -> list[np.ndarray]:
    """Index batches, longest first, each holding at most `max_tokens` padded tokens (and `max_batch` inputs).

    A length shared by at least `min_equal` inputs gets batches of its own: no padding at all, which measured
    ~8% faster on CPU than batches cut across lengths (bench/embed.py corpus); rarer lengths share mixed batches.
    """
    lengths = np.asarray(lengths)
    values, counts = np.unique(lengths, return_counts=True)
    common = values[counts >= min_equal]
    groups = [np.flatnonzero(lengths == value) for value in common]
    mixed = np.flatnonzero(~np.isin(lengths, common))
    groups.append(mixed[np.argsort(-lengths[mixed], kind="stable")])
    batches = []
    for group in groups:
        start = 0
        while start < len(group):
            size = max(1, min(max_batch, max_tokens // max(1, int(lengths[group[start]]))))
            batches.append(group[start : start + size])
            start += size
    batches.sort(key=lambda batch: -int(lengths[batch[0]]))
    return batches


def unpadded_batches(lengths: Sequence[int], max_tokens: int, max_batch: int = MAX_BATCH) -> list[np.ndarray]:
    """Index batches, longest first, each holding at most `max_tokens` real tokens (and `max_batch` inputs): what a
    batch costs a backend that runs unpadded. A long-tail batch then runs in fewer forwards than padded budgets cut."""
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        fits = np.cumsum(lengths[order[start : start + max_batch]]) <= max_tokens
        size = max(1, int(fits.sum()))  # sorted longest first, so the ones that fit are a prefix
        batches.append(order[start : start + size])
        start += size
    return batches


def batches_for(
    lengths: Sequence[int], batch_size: int | None, max_tokens: int, unpadded: bool = False
) -> list[np.ndarray]:
    """A fixed batch size when one is given, else token-budget batches (`max_tokens`: the backend's batch_tokens,
    counted as the backend computes them: real tokens when it runs unpadded, else padded)."""
    if batch_size:
        return length_sorted_batches(lengths, batch_size)
    return unpadded_batches(lengths, max_tokens) if unpadded else token_budget_batches(lengths, max_tokens)


def run_batches(
    backend: Backend,
    encoded: Encoded,
    pad_id: int,
    batches: Sequence[Sequence[int]],
    outputs: Sequence[str] = ("logits",),
    reduce: Callable[[dict[str, np.ndarray], Features], Sequence[Any]] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> list[Any]:
    """Forward every batch of example indices; return per-example results in input order.

    `reduce` turns one batch's outputs into one result per example (default: the rows of the first output).
    """
    results: list[Any] = [None] * len(encoded)
    for indices in batches:
        features = pad(encoded, indices, pad_id)
        out = backend.forward({k: v for k, v in features.items() if k in backend.inputs}, outputs)
        rows = reduce(out, features) if reduce is not None else out[outputs[0]]
        for i, row in zip(indices, rows):
            results[i] = row
        if on_batch is not None:
            on_batch(len(indices))
    return results
