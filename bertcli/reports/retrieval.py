"""Retrieval and similarity metrics: rank a corpus for each query, then NDCG@10, MRR@10, MAP@100, Recall@k.

The definitions are trec_eval's (what BEIR reports through pytrec_eval): graded relevance with linear gain in
NDCG, average precision over all of a query's relevant documents, and the mean over the queries that have at least
one relevant document. Ties are broken by corpus order, so a ranking is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bertcli.inference.scores import unit_rows

CUTOFFS = {"ndcg": 10, "mrr": 10, "map": 100}
RECALLS = (1, 10, 100)
DEPTH = 100  # documents ranked per query


def top_k(
    queries: np.ndarray, documents: np.ndarray, k: int = DEPTH, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """The k best documents of each query by dot product (cosine for unit vectors): (indices, scores), best first.
    Chunked over queries, so the score matrix never holds more than `chunk` rows."""
    k = min(k, len(documents))
    indices, scores = [], []
    for start in range(0, len(queries), chunk):
        sims = queries[start : start + chunk] @ documents.T
        part = (
            np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.tile(np.arange(k), (len(sims), 1))
        )
        part_scores = np.take_along_axis(sims, part, axis=1)
        order = np.lexsort((part, -part_scores), axis=1)  # by score, ties by corpus position
        indices.append(np.take_along_axis(part, order, axis=1))
        scores.append(np.take_along_axis(part_scores, order, axis=1))
    return np.concatenate(indices), np.concatenate(scores)


def bm25_rankings(data: Any, depth: int = DEPTH) -> dict[str, list[str]]:
    """The lexical baseline: bm25s (Okapi BM25, English stopwords removed) over the same corpus."""
    import bm25s

    doc_ids, query_ids = list(data.corpus), list(data.queries)
    retriever = bm25s.BM25()
    corpus_tokens = bm25s.tokenize([data.corpus[d] for d in doc_ids], stopwords="en", show_progress=False)
    retriever.index(corpus_tokens, show_progress=False)
    query_tokens = bm25s.tokenize([data.queries[q] for q in query_ids], stopwords="en", show_progress=False)
    found, _ = retriever.retrieve(query_tokens, k=min(depth, len(doc_ids)), show_progress=False, n_threads=1)
    return {q: [doc_ids[i] for i in row] for q, row in zip(query_ids, np.asarray(found))}


def query_metrics(ranked: Sequence[str], relevant: Mapping[str, float]) -> dict[str, float]:
    """One query's metrics from its ranked document ids and its judged documents (relevance > 0 counts)."""
    gains = {doc: float(rel) for doc, rel in relevant.items() if rel > 0}
    hits = [doc in gains for doc in ranked]
    ndcg_k, mrr_k, map_k = CUTOFFS["ndcg"], CUTOFFS["mrr"], CUTOFFS["map"]
    dcg = sum(gains.get(doc, 0.0) / math.log2(i + 2) for i, doc in enumerate(ranked[:ndcg_k]))
    ideal = sorted(gains.values(), reverse=True)[:ndcg_k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    first = next((i for i, hit in enumerate(hits[:mrr_k]) if hit), None)
    found, precision_sum = 0, 0.0
    for i, hit in enumerate(hits[:map_k]):
        if hit:
            found += 1
            precision_sum += found / (i + 1)
    metrics = {
        f"ndcg@{ndcg_k}": dcg / idcg if idcg else 0.0,
        f"mrr@{mrr_k}": 0.0 if first is None else 1.0 / (first + 1),
        f"map@{map_k}": precision_sum / len(gains) if gains else 0.0,
    }
    for k in RECALLS:
        metrics[f"recall@{k}"] = sum(hits[:k]) / len(gains) if gains else 0.0
    return metrics


def retrieval_metrics(
    rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """The mean of every query's metrics over the queries with a relevant document."""
    judged = [q for q, docs in qrels.items() if any(rel > 0 for rel in docs.values())]
    if not judged:
        return {}
    per = [query_metrics(rankings.get(q, []), qrels[q]) for q in judged]
    return {key: float(np.mean([m[key] for m in per])) for key in per[0]}


def validation_metrics(queries: np.ndarray, documents: np.ndarray) -> dict[str, float]:
    """Query i's one relevant document is document i (held-out pairs): NDCG@10, MRR@10 and Recall@10."""
    indices, _ = top_k(queries, documents, 10)
    rank = np.full(len(queries), np.inf)
    rows, cols = np.nonzero(indices == np.arange(len(queries))[:, None])
    rank[rows] = cols + 1
    return {
        "ndcg@10": float(np.mean(np.where(np.isfinite(rank), 1 / np.log2(rank + 1), 0.0))),
        "mrr@10": float(np.mean(np.where(np.isfinite(rank), 1 / rank, 0.0))),
        "recall@10": float(np.mean(np.isfinite(rank))),
    }


def positive_ranks(
    queries: np.ndarray, documents: np.ndarray, pairs: Sequence[tuple[int, int]]
) -> list[tuple[int, float]]:
    """(1-based rank among all documents, score) of each (query, relevant document) pair: how far down it was."""
    ranks = []
    for query, doc in pairs:
        sims = documents @ queries[query]
        ranks.append((int(np.sum(sims > sims[doc])) + 1, float(sims[doc])))
    return ranks


def similarity_metrics(first: np.ndarray, second: np.ndarray, gold: Sequence[float]) -> dict[str, Any]:
    """STS: Spearman and Pearson correlation of the pairs' cosine with the gold scores (None where undefined)."""
    from scipy import stats

    cosine = np.sum(unit_rows(first) * unit_rows(second), axis=1)
    gold = np.asarray(gold, dtype=np.float64)
    defined = len(gold) > 1 and np.std(gold) > 0 and np.std(cosine) > 0

    def value(x: float) -> float | None:
        return float(x) if defined and math.isfinite(x) else None

    return {
        "spearman": value(stats.spearmanr(cosine, gold).statistic) if defined else None,
        "pearson": value(stats.pearsonr(cosine, gold).statistic) if defined else None,
        "cosine_mean": float(cosine.mean()) if len(cosine) else None,
    }
