"""Data-parallel evaluation and inference: each process takes a share of the examples, results come back in input order.

Accelerate's sharding of a prepared loader repeats examples to even out the last batch, and its batch
sharding assumes equal batch sizes; length-sorted batches are neither. Here every process gets the same
number of batches (sharded models, FSDP and ZeRO-3, need every process in every forward), a process short
of examples runs a filler batch whose results are dropped, and results are gathered by input index, so each
example counts exactly once whatever the number of processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Batch:
    """Indices of one forward pass; `real` False marks a filler whose results are dropped."""

    indices: list[int]
    real: bool = True


def shard_batches(lengths: Sequence[int], batch_size: int, rank: int = 0, world: int = 1) -> list[Batch]:
    """This process's length-sorted batches (longest first), as many on every process.

    Each global batch of `batch_size x world` examples of similar length is dealt out round-robin, so the
    processes get similar lengths (similar work) and together cover every example once.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches: list[Batch] = []
    for start in range(0, len(order), batch_size * world):
        share = order[start : start + batch_size * world][rank::world].tolist()
        batches.append(Batch(share) if share else Batch(order[start : start + 1].tolist(), real=False))
    return batches


def gather_in_order(accelerator: Any, indices: Sequence[int], rows: Sequence[Any]) -> list[Any]:
    """Every process's (index, row) results merged into index order, on every process."""
    pairs = list(zip(indices, rows))
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        pairs = gather_object(pairs)
    pairs.sort(key=lambda pair: pair[0])
    return [row for _, row in pairs]


def shared_map(accelerator: Any, items: Sequence[Any], compute: Callable[[list[Any]], Sequence[Any]]) -> list[Any]:
    """`compute(items)` (one result per item) with the items dealt out round-robin among the launch's processes;
    every process gets all results, in input order. Every process must call it, with the same items."""
    if accelerator.num_processes == 1:
        return list(compute(list(items)))
    own = list(range(accelerator.process_index, len(items), accelerator.num_processes))
    return gather_in_order(accelerator, own, list(compute([items[i] for i in own])))


def require_file_under_launch(source: str | None, command: str) -> None:
    """Every process of a launch reads the input itself: a file works, stdin (it reaches one process) does not."""
    from bertcli.errors import UsageError
    from bertcli.runtime.accelerator import launched_processes

    if launched_processes() > 1 and source in (None, "-"):
        raise UsageError(
            f"under a multi-process launch {command} reads a file, not stdin (each process reads the input)"
        )


def across_processes(compute: Callable[[list[Any]], Sequence[Any]], items: Sequence[Any]) -> list[Any]:
    """`compute` over `items` dealt out among this launch's processes (see `shared_map`); a plain run computes them
    all here. The one way predict, evaluate and embed share work under `accelerate launch`."""
    from bertcli.runtime.device import processes

    return shared_map(processes(), items, compute)
