"""`bertcli predict` for sequence classifiers: records in as they arrive, one prediction record out per input, in order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bertcli.bundle import Bundle
from bertcli.config import PredictConfig
from bertcli.data.columns import Columns, cell_text, record_columns
from bertcli.data.records import iter_records
from bertcli.inference.streaming import input_batches
from bertcli.io import Prediction
from bertcli.runtime.device import processes, use_threads
from bertcli.runtime.distributed import across_processes
from bertcli.tasks.classification.predictor import Classifier
from bertcli.tasks.contract import options_for


def predict_labels(cfg: PredictConfig, bundle: Bundle) -> Prediction:
    return Prediction(cfg.format, _stream(cfg, bundle))


def _stream(cfg: PredictConfig, bundle: Bundle) -> Iterator[list[dict[str, Any]]]:
    """Micro-batches of output records in input order. Under a multi-process launch every process reads the file in
    the same fixed chunks and scores its share; only the main process yields records (the others empty lists)."""
    classifier = Classifier(bundle, **options_for(Classifier, cfg))
    use_threads(cfg.threads)
    launch = processes()
    source = cfg.input or "<stdin>"
    columns: Columns | None = None
    for batch in input_batches(iter_records(cfg.input, cfg.data), cfg.batch_size * 8, launch):
        columns = columns or record_columns(batch[0], cfg.data, source, saved=classifier.meta.columns)
        texts = [cell_text(r.get(columns.text)) for r in batch]
        pairs = [cell_text(r.get(columns.pair)) for r in batch] if columns.pair else [None] * len(texts)
        records = classifier.records(across_processes(classifier.run, list(zip(texts, pairs))))
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
