"""Streamed input in batches: cut when full or when input pauses, so `tail -f log | bertcli predict` answers each line."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from bertcli.data.records import chunked

_END = object()


def micro_batches(records: Iterator[dict[str, Any]], size: int, wait: float = 0.05) -> Iterator[list[dict[str, Any]]]:
    """Group a record stream into batches without waiting on a slow producer.

    A reader thread feeds a queue; a batch is cut when full or when no record arrives within
    `wait` seconds, so `tail -f log | bertcli predict` answers each line promptly.
    """
    pipe: queue.Queue = queue.Queue(maxsize=size * 4)

    def read() -> None:
        try:
            for record in records:
                pipe.put(record)
            pipe.put(_END)
        except BaseException as exc:  # surfaced in the consumer, e.g. a DataError with its line
            pipe.put(exc)

    threading.Thread(target=read, daemon=True).start()
    while True:
        item = pipe.get()
        batch: list[dict[str, Any]] = []
        while True:
            if item is _END or isinstance(item, BaseException):
                if batch:
                    yield batch
                if isinstance(item, BaseException):
                    raise item
                return
            batch.append(item)
            if len(batch) >= size:
                break
            try:
                item = pipe.get(timeout=wait)
            except queue.Empty:
                break
        yield batch


def input_batches(records: Iterator[Any], size: int, launch: Any) -> Iterator[list[Any]]:
    """Predict's input batches: cut as input arrives (micro_batches) in one process; under a launch, fixed chunks
    so that every process, reading the same file, cuts at the same records."""
    return micro_batches(records, size) if launch.num_processes == 1 else chunked(records, size)
