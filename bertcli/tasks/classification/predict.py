"""`bertcli predict` for sequence classifiers: records in as they arrive, one prediction record out per input, in order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bertcli.config import PredictConfig
from bertcli.data.columns import Columns, cell_text, record_columns
from bertcli.data.records import iter_records
from bertcli.inference.streaming import input_batches
from bertcli.io import Prediction
from bertcli.runtime.device import processes
from bertcli.tasks.classification.predictor import Classifier


def predict(cfg: PredictConfig) -> Prediction:
    return Prediction(cfg.format, _stream(cfg))


def _stream(cfg: PredictConfig) -> Iterator[list[dict[str, Any]]]:
    """Micro-batches of output records in input order. Under a multi-process launch every process reads the file in
    the same fixed chunks and scores its share; only the main process yields records (the others empty lists)."""
    classifier = Classifier(
        cfg.model_dir,
        cfg.precision,
        cfg.batch_size,
        cfg.max_length,
        cfg.backend,
        cfg.threads,
        long_text=cfg.long_text,
        stride=cfg.stride,
        aggregate=cfg.aggregate,
    )
    launch = processes()
    source = cfg.input or "<stdin>"
    columns: Columns | None = None
    for batch in input_batches(iter_records(cfg.input, cfg.data), cfg.batch_size * 8, launch):
        columns = columns or record_columns(batch[0], cfg.data, source, saved=classifier.meta.get("columns"))
        texts = [cell_text(r.get(columns.text)) for r in batch]
        pairs = [cell_text(r.get(columns.pair)) for r in batch] if columns.pair else None
        records = classifier.predict(texts, pairs, cfg.top_k, cfg.threshold, shared=True)
        if not launch.is_main_process:
            yield []
            continue
        yield [
            {**_passed_through(source_record, text, columns, cfg), **record}
            for source_record, text, record in zip(batch, texts, records)
        ]


def _passed_through(record: dict[str, Any], text: str, columns: Columns, cfg: PredictConfig) -> dict[str, Any]:
    extra = {}
    if columns.id:
        extra["id"] = record.get(columns.id)
    if cfg.include_text:
        extra["text"] = text
    return extra
