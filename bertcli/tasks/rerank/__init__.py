"""Rerankers: cross-encoders that score a (query, document) pair, trained by finetune on query/document data with
negatives mined by a first-stage encoder, measured by evaluate after a first stage, run by `bertcli rerank` and
serve's /rerank."""

from __future__ import annotations

from typing import Any

from bertcli.config import VALIDATION_METRICS


class Rerank:
    name = "rerank"
    head = "sequence-classification"
    default_space = None
    metrics = {"reranker": VALIDATION_METRICS["reranker"]}

    def trains(self, cfg: Any) -> bool:
        """--task rerank, or (no --task) a table with a query and a document (or passage) column."""
        if cfg.task is not None or cfg.train in (None, "-"):
            return cfg.task == "rerank"
        from bertcli.data.records import iter_records
        from bertcli.errors import DataError
        from bertcli.tasks.rerank.data import is_rerank_table

        try:
            first = next(iter_records(cfg.train, cfg.data), {})
        except DataError:
            return False  # not a table: another task's reader says what is wrong
        return is_rerank_table(list(first))

    def default_metric(self, cfg: Any) -> str:
        from bertcli.config import DEFAULT_METRICS

        return DEFAULT_METRICS["reranker"]

    def finetune(self, cfg: Any, callbacks: Any = None) -> Any:
        from bertcli.tasks.rerank.training import train_reranker

        return train_reranker(cfg, callbacks)

    def gate_metric(self, bundle: Any, check: str) -> str | None:
        return "ndcg@10"  # reranking BM25's candidates on the --check retrieval data

    def evaluate(self, cfg: Any, bundle: Any) -> dict[str, Any]:
        from bertcli.tasks.rerank.evaluate import evaluate_reranker

        return evaluate_reranker(cfg, bundle)

    def predict(self, cfg: Any, bundle: Any) -> Any:
        """Each (query, document) record's relevance score."""
        from bertcli.tasks.rerank.command import predict_scores

        return predict_scores(cfg, bundle)

    def rerank(self, cfg: Any, bundle: Any) -> Any:
        from bertcli.tasks.rerank.command import rerank_records

        return rerank_records(cfg, bundle)

    def load(self, bundle: Any, **options: Any) -> Any:
        from bertcli.tasks.rerank.predictor import Reranker

        return Reranker(bundle, **options)


TASK = Rerank()
