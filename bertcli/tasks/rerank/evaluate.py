"""`bertcli evaluate` on a reranker: a first stage (BM25, or the --retriever encoder) retrieves each query's top
candidates, the reranker reorders them; the report gives the metrics after, and the first stage's beside them."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from bertcli.bundle import Bundle
from bertcli.config import EvaluateConfig
from bertcli.data.retrieval import Retrieval, is_beir, pairs_retrieval, read_beir
from bertcli.reports.retrieval import bm25_rankings, retrieval_metrics, top_k
from bertcli.runtime.device import use_threads
from bertcli.tasks.contract import options_for
from bertcli.tasks.rerank.data import first_stage, read_groups
from bertcli.tasks.rerank.predictor import Reranker

log = logging.getLogger("bertcli")


def evaluate_reranker(cfg: EvaluateConfig, bundle: Bundle) -> dict[str, Any]:
    data = read_beir(cfg.input) if is_beir(cfg.input) else _table_retrieval(cfg)
    reranker = Reranker(bundle, **options_for(Reranker, cfg))
    use_threads(cfg.threads)
    name, candidates = first_stage_rankings(cfg, data)
    log.info(
        "reranking the top %d of %s for %d queries (%d documents)", cfg.candidates, name, len(candidates),
        len(data.corpus),
    )  # fmt: skip
    pairs = [(data.queries[q], data.corpus[d]) for q, docs in candidates.items() for d in docs]
    results = reranker.run(pairs)
    reranked, at = {}, 0
    for query, docs in candidates.items():
        scores = np.asarray([logit for logit, _ in results[at : at + len(docs)]])
        reranked[query] = [docs[j] for j in np.argsort(-scores, kind="stable")]
        at += len(docs)
    return {
        "task": "reranking",
        "model": str(cfg.model_dir),
        "data": cfg.input,
        "n": len(candidates),
        "unit": "queries",
        **retrieval_metrics(reranked, data.qrels),
        "baseline": {"name": f"{name} alone", **retrieval_metrics(candidates, data.qrels)},
        "first_stage": name,
        "candidates": cfg.candidates,
        "corpus_size": len(data.corpus),
        "truncated_pairs": int(sum(cut for _, cut in results)),
    }


def _table_retrieval(cfg: EvaluateConfig) -> Retrieval:
    """A table as retrieval data, read as finetune reads it: each query's relevant documents (a positive column, or
    rows with a label above 0); every document of the table is in the corpus, identical texts once."""
    groups = read_groups(cfg.input, cfg.data)
    pairs = [(query, doc) for query, docs in zip(groups.queries, groups.positives) for doc in docs]
    negatives = [doc for docs in groups.negatives for doc in docs]
    return pairs_retrieval([q for q, _ in pairs], [d for _, d in pairs], [negatives], cfg.input)


def first_stage_rankings(cfg: EvaluateConfig, data: Retrieval) -> tuple[str, dict[str, list[str]]]:
    """What the first stage is called, and each query's top --candidates documents from it, best first."""
    if cfg.retriever is None:
        return "bm25", bm25_rankings(data, cfg.candidates)
    encoder = first_stage(cfg.retriever, cfg.precision)
    query_ids, doc_ids = list(data.queries), list(data.corpus)
    found, _ = top_k(
        encoder.embed([data.queries[q] for q in query_ids]).vectors,
        encoder.embed([data.corpus[d] for d in doc_ids]).vectors,
        cfg.candidates,
    )
    return str(cfg.retriever), {q: [doc_ids[i] for i in row] for q, row in zip(query_ids, found)}
