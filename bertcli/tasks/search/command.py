"""`bertcli search`: each query's top-k hits as one JSONL line, in input order, streamed chunk by chunk."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bertcli.bundle import Bundle
from bertcli.config.search import SearchConfig
from bertcli.data.columns import cell_text, record_columns
from bertcli.data.records import chunked, iter_records
from bertcli.errors import DataError
from bertcli.io import Prediction

QUERY_CHUNK = 256  # queries encoded and searched at a time: output starts at once and memory stays flat


def search_records(cfg: SearchConfig, bundle: Bundle) -> Prediction:
    from bertcli.tasks.search.searcher import Searcher

    cfg.validate()
    searcher = Searcher(
        bundle, model=cfg.model, batch_size=cfg.batch_size, precision=cfg.precision, backend=cfg.backend,
        threads=cfg.threads,
    )  # fmt: skip
    options = {"rescore": cfg.rescore, "exact": cfg.exact, "hybrid": cfg.hybrid, "include_text": cfg.texts}
    return Prediction("jsonl", _chunks(cfg, searcher, options))


def _queries(cfg: SearchConfig) -> Iterator[list[tuple[Any, str]]]:
    """(query id, text) chunks: the one --query, or each input record (an id column is passed through)."""
    if cfg.query is not None:
        yield [(None, cfg.query)]
        return
    name = "<stdin>" if cfg.input in (None, "-") else cfg.input
    columns, done = None, 0
    for records in chunked(iter_records(cfg.input, cfg.data), QUERY_CHUNK):
        columns = columns or record_columns(records[0], cfg.data, name)
        chunk = []
        for row, record in enumerate(records, done + 1):
            text = cell_text(record.get(columns.text))
            if not text.strip():
                raise DataError("empty query", file=name, row=row, column=columns.text)
            chunk.append((record.get(columns.id) if columns.id else row - 1, text))
        done += len(records)
        yield chunk


def _chunks(cfg: SearchConfig, searcher: Any, options: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    for chunk in _queries(cfg):
        texts = [text for _, text in chunk]
        found = searcher.search(texts, cfg.k, **options)
        yield [
            {**({} if query_id is None else {"query_id": query_id}), "query": text, "hits": hits}
            for (query_id, text), hits in zip(chunk, found)
        ]
