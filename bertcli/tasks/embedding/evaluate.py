"""`bertcli evaluate` on an encoder: retrieval (BEIR or pairs) beside a BM25 baseline, or similarity (STS pairs)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from bertcli.bundle import Bundle
from bertcli.config import EmbedOptions, EvaluateConfig
from bertcli.data.retrieval import Retrieval, Similarity, is_beir, read_beir, read_pairs
from bertcli.inference.scores import unit_rows
from bertcli.reports.retrieval import DEPTH, bm25_rankings, positive_ranks, retrieval_metrics, similarity_metrics, top_k
from bertcli.runtime.device import use_threads
from bertcli.tasks.embedding.embedder import Embedder, embed_shared, sentence_transformers_pooling

log = logging.getLogger("bertcli")
WORST_SHOWN = 3  # the top documents an --errors record shows beside the positive


def evaluate_encoder(cfg: EvaluateConfig, bundle: Bundle) -> dict[str, Any]:
    """Retrieval metrics (and BM25's on the same data) or STS correlations of an encoder's cosine similarity."""
    data = read_beir(cfg.input) if is_beir(cfg.input) else read_pairs(cfg.input, cfg.data)
    options = EmbedOptions(
        **sentence_transformers_pooling(bundle.directory),
        batch_size=cfg.batch_size,
        precision=cfg.precision,
        backend=cfg.backend,
        threads=cfg.threads,
    )
    embedder = Embedder(bundle, options, onnx_file=cfg.onnx_file)
    use_threads(cfg.threads)
    head = {"model": str(cfg.model_dir), "data": cfg.input}
    if isinstance(data, Similarity):
        first, second = (
            unit_rows(embed_shared(embedder, data.first).vectors),
            unit_rows(embed_shared(embedder, data.second).vectors),
        )
        report = {"task": "similarity", **head, "n": len(data.scores), "unit": "pairs"}
        return {**report, **similarity_metrics(first, second, data.scores)}
    return _retrieval(cfg, embedder, data, head)


def _retrieval(cfg: EvaluateConfig, embedder: Embedder, data: Retrieval, head: dict[str, Any]) -> dict[str, Any]:
    query_ids, doc_ids = list(data.queries), list(data.corpus)
    log.info("retrieval: %d queries against %d documents (%s)", len(query_ids), len(doc_ids), embedder.describe())
    queries = unit_rows(embed_shared(embedder, [data.queries[q] for q in query_ids]).vectors)
    documents = embed_shared(embedder, [data.corpus[d] for d in doc_ids])
    docs = unit_rows(documents.vectors)
    indices, _ = top_k(queries, docs, DEPTH)
    rankings = {q: [doc_ids[i] for i in row] for q, row in zip(query_ids, indices)}
    report = {
        "task": "retrieval",
        **head,
        "n": len(query_ids),
        "unit": "queries",
        **retrieval_metrics(rankings, data.qrels),
        "baseline": {"name": "bm25", **retrieval_metrics(bm25_rankings(data), data.qrels)},
        "corpus_size": len(doc_ids),
        "truncated_documents": int(sum(documents.truncated)),
    }
    if cfg.errors:
        _write_errors(cfg.errors, data, query_ids, doc_ids, queries, docs)
        report["errors_file"] = cfg.errors
    return report


def _write_errors(path: str, data: Retrieval, query_ids, doc_ids, queries: np.ndarray, docs: np.ndarray) -> None:
    """One JSONL record per query: its worst-ranked relevant document and what ranked above it; worst first."""
    from bertcli.io import atomic_write, dumps

    position = {d: i for i, d in enumerate(doc_ids)}
    pairs = [(qi, position[d]) for qi, q in enumerate(query_ids) for d, rel in data.qrels[q].items() if rel > 0]
    ranks = positive_ranks(queries, docs, pairs)
    worst: dict[int, tuple[int, int, float]] = {}
    for (qi, di), (rank, score) in zip(pairs, ranks):
        if qi not in worst or rank > worst[qi][1]:
            worst[qi] = (di, rank, score)
    top, top_scores = top_k(queries, docs, WORST_SHOWN)
    with atomic_write(path) as handle:
        for qi, (di, rank, score) in sorted(worst.items(), key=lambda item: (-item[1][1], item[0])):
            record = {
                "query_id": query_ids[qi],
                "query": data.queries[query_ids[qi]],
                "positive_id": doc_ids[di],
                "positive": data.corpus[doc_ids[di]],
                "rank": rank,
                "score": round(score, 6),
                "top": [
                    {"id": doc_ids[i], "score": round(float(s), 6), "text": data.corpus[doc_ids[i]]}
                    for i, s in zip(top[qi], top_scores[qi])
                ],
            }
            handle.write(dumps(record) + "\n")
