"""`bertcli rerank`: the candidates of one query (--query; texts from a file or stdin) or of every query in a JSONL
file of {"query", "texts"} records, ordered by the reranker, as JSONL."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from bertcli.bundle import Bundle
from bertcli.config import RerankConfig
from bertcli.data.columns import cell_text, record_columns
from bertcli.data.records import iter_records
from bertcli.errors import DataError
from bertcli.io import Prediction
from bertcli.runtime.device import use_threads
from bertcli.tasks.contract import options_for
from bertcli.tasks.rerank.predictor import Reranker

TEXTS_KEYS = ("texts", "candidates", "documents")


def rerank_records(cfg: RerankConfig, bundle: Bundle) -> Prediction:
    reranker = Reranker(bundle, **options_for(Reranker, cfg))
    use_threads(cfg.threads)
    chunks = _one_query(cfg, reranker) if cfg.query is not None else _query_file(cfg, reranker)
    return Prediction("jsonl", chunks)


def _one_query(cfg: RerankConfig, reranker: Reranker) -> Iterator[list[dict[str, Any]]]:
    """Every candidate once, best first: {"index", "score", "text"} (index: its position in the input)."""
    source = cfg.input or "<stdin>"
    records = list(iter_records(cfg.input, cfg.data))
    if not records:
        raise DataError("no candidate texts to rerank", file=source)
    column = record_columns(records[0], cfg.data, source).text
    texts = [cell_text(r.get(column)) for r in records]
    for row, text in enumerate(texts, 1):
        if not text.strip():
            raise DataError("empty candidate text", file=source, line=row, hint="remove the line or fill it in")
    yield reranker.rerank(cfg.query, texts, raw_scores=cfg.raw_scores, return_text=True)


def _query_file(cfg: RerankConfig, reranker: Reranker) -> Iterator[list[dict[str, Any]]]:
    """Per input record, in order: {"query", "results": [{"index", "score", "text"}, ...]} (and its id)."""
    source = cfg.input or "<stdin>"
    options = cfg.data if cfg.data.format else dataclasses.replace(cfg.data, format="jsonl")  # stdin: JSONL here
    for row, record in enumerate(iter_records(cfg.input, options), 1):
        if not record:
            continue  # a blank line
        query, texts = record.get("query"), next((record[k] for k in TEXTS_KEYS if k in record), None)
        if not isinstance(query, str) or not query.strip() or not isinstance(texts, list) or not texts:
            raise DataError(
                'expected {"query": text, "texts": [candidate, ...]}',
                file=source,
                line=row,
                hint="or pass --query TEXT and the candidates one per line",
            )
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise DataError("a candidate is empty or not text", file=source, line=row)
        results = reranker.rerank(query, texts, raw_scores=cfg.raw_scores, return_text=True)
        yield [{**({"id": record["id"]} if "id" in record else {}), "query": query, "results": results}]


def predict_scores(cfg: Any, bundle: Bundle) -> Prediction:
    """`bertcli predict` on a reranker: each (query, document) record's relevance score, in order."""
    from bertcli.data.records import chunked
    from bertcli.data.retrieval import pair_columns

    reranker = Reranker(bundle, **options_for(Reranker, cfg))
    use_threads(cfg.threads)
    source = cfg.input or "<stdin>"

    def chunks() -> Iterator[list[dict[str, Any]]]:
        columns = None
        for batch in chunked(iter_records(cfg.input, cfg.data), cfg.batch_size * 8):
            columns = columns or pair_columns(list(batch[0]), cfg.data, source)
            if columns is None:
                raise DataError(
                    "a reranker scores (query, document) pairs, and these records have no such columns",
                    file=source,
                    hint=f"fields are: {', '.join(batch[0])}; pass --text-column and --text-pair-column",
                )
            inputs = [(cell_text(r.get(columns.query)), cell_text(r.get(columns.positive))) for r in batch]
            yield reranker.records(reranker.run(inputs))

    return Prediction(cfg.format, chunks())
