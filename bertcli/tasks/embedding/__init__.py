"""Encoders: texts in, vectors out (`bertcli embed`, /v1/embeddings, `bertcli.Embedder`); trained contrastively on
query/positive pairs by finetune, evaluated on retrieval and similarity data by evaluate."""

from __future__ import annotations

from typing import Any

from bertcli.config import VALIDATION_METRICS
from bertcli.errors import ModelError


class Embedding:
    name = "embedding"
    head = "encoder"
    default_space = None
    metrics = {"encoder": VALIDATION_METRICS["embedding"]}

    def trains(self, cfg: Any) -> bool:
        """--task embedding, or (no --task) a table with a query (or anchor) and a positive column."""
        if cfg.task is not None or cfg.train in (None, "-"):
            return cfg.task == "embedding"
        from bertcli.data.records import iter_records
        from bertcli.errors import DataError
        from bertcli.tasks.embedding.training import is_pairs_table

        try:
            first = next(iter_records(cfg.train, cfg.data), {})
        except DataError:
            return False  # not a table (CoNLL, a missing file): another task's reader says what is wrong
        return is_pairs_table(list(first))

    def default_metric(self, cfg: Any) -> str:
        from bertcli.config import DEFAULT_METRICS

        return DEFAULT_METRICS["embedding"]

    def finetune(self, cfg: Any, callbacks: Any = None) -> Any:
        from bertcli.tasks.embedding.training import train_embedding

        return train_embedding(cfg, callbacks)

    def gate_metric(self, bundle: Any, check: str) -> str | None:
        """NDCG@10 on retrieval data, Spearman on scored pairs; on plain texts, the int8 vectors' cosine to fp32."""
        from bertcli.config import DataOptions
        from bertcli.data.retrieval import encoder_data_kind

        return {"retrieval": "ndcg@10", "similarity": "spearman"}.get(encoder_data_kind(check, DataOptions()))

    def evaluate(self, cfg: Any, bundle: Any) -> dict[str, Any]:
        """Retrieval (a BEIR directory or query/positive pairs, beside BM25) or similarity (pairs with a score)."""
        from bertcli.tasks.embedding.evaluate import evaluate_encoder

        return evaluate_encoder(cfg, bundle)

    def predict(self, cfg: Any, bundle: Any) -> Any:
        raise _no_head(cfg.model_dir)

    def load(self, bundle: Any, **options: Any) -> Any:
        """An Embedder with the pooling and normalisation the model was trained with (sentence-transformers)."""
        from bertcli.config import EmbedOptions
        from bertcli.tasks.embedding.embedder import Embedder, sentence_transformers_pooling

        return Embedder(
            str(bundle.directory), EmbedOptions(**{**sentence_transformers_pooling(bundle.directory), **options})
        )


def _no_head(model_dir: str) -> ModelError:
    return ModelError(
        "an encoder has no classification head",
        file=model_dir,
        hint="fine-tune it first (bertcli finetune --model DIR), or use bertcli embed for its vectors",
    )


TASK = Embedding()
