"""`bertcli predict` for sequence classifiers: stream records in, one prediction record out per input, in order.

Kept apart from training and evaluation because its concern is the stream: a reader thread, micro-batches cut
when full or when input pauses, column resolution on the first record, and flushing as results are ready.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertcli.classification import Classifier
from bertcli.config import DataOptions
from bertcli.data.columns import Columns, cell_text, record_columns
from bertcli.data.labels import LabelSpec
from bertcli.data.records import chunked, iter_records
from bertcli.runtime.device import processes
from bertcli.errors import DataError, UsageError


@dataclass
class PredictOptions:
    batch_size: int = 32
    top_k: int | None = None
    threshold: float | None = None
    include_text: bool = False
    max_length: int | None = None
    precision: str = "auto"


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


def predict_stream(model_dir: str, source: str | None, data: DataOptions, opts: PredictOptions) -> Iterator[list[dict[str, Any]]]:
    """Predict a record stream in micro-batches; yields output records in input order, one per input.

    Under a multi-process launch every process reads the file in the same fixed-size chunks, scores its
    share of each and gathers the scores; only the main process yields records (the others yield empty lists).
    """
    classifier = Classifier(model_dir, opts.precision, opts.batch_size, opts.max_length)
    launch = processes()
    spec = classifier.spec
    threshold = opts.threshold if opts.threshold is not None else classifier.threshold
    columns: Columns | None = None
    for batch in input_batches(iter_records(source, data), opts.batch_size * 8, launch):
        if columns is None:
            columns = record_columns(batch[0], data, source or "<stdin>", saved=classifier.bundle.meta.get("columns"))
        texts = [cell_text(r.get(columns.text)) for r in batch]
        pairs = [cell_text(r.get(columns.pair)) for r in batch] if columns.pair else None
        live = [i for i, t in enumerate(texts) if t.strip()]
        probs, truncated = classifier.shared_scores([texts[i] for i in live], [pairs[i] for i in live] if pairs else None)
        if not launch.is_main_process:
            yield []
            continue
        out: list[dict[str, Any]] = [_record(spec, None, False, opts, threshold) for _ in batch]
        for j, i in enumerate(live):
            out[i] = _record(spec, probs[j], truncated[j], opts, threshold)
        for record, source_record, text in zip(out, batch, texts):
            extra = {}
            if columns.id:
                extra["id"] = source_record.get(columns.id)
            if opts.include_text:
                extra["text"] = text
            record_items = {**extra, **record}
            record.clear()
            record.update(record_items)
        yield out


def _record(spec: LabelSpec, p: np.ndarray | None, truncated: bool, opts: PredictOptions, threshold: float) -> dict[str, Any]:
    if spec.task == "regression":
        record: dict[str, Any] = {"score": None if p is None else float(p[0])}
    elif p is None:
        record = {"label": None, "score": None, "scores": None} if spec.task == "single_label" else {"labels": None, "scores": None}
    else:
        ranked = np.argsort(-p, kind="stable")[: opts.top_k or len(p)]
        scores = {spec.names[i]: round(float(p[i]), 6) for i in ranked}
        if spec.task == "single_label":
            record = {"label": spec.names[ranked[0]], "score": round(float(p[ranked[0]]), 6), "scores": scores}
        else:
            record = {"labels": [spec.names[i] for i in np.flatnonzero(p >= threshold)], "scores": scores}
    if truncated:
        record["truncated"] = True
    return record


def check_predict_options(opts: PredictOptions) -> None:
    if opts.top_k is not None and opts.top_k < 1:
        raise UsageError("--top-k must be at least 1")
    if opts.threshold is not None and not 0.0 < opts.threshold < 1.0:
        raise UsageError("--threshold must be between 0 and 1")
    if opts.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
