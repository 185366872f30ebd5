"""Encoders: texts in, vectors out (`bertcli embed`, /v1/embeddings, `bertcli.Embedder`)."""

from __future__ import annotations

from typing import Any

from bertcli.errors import ModelError


class Embedding:
    name = "embedding"
    head = "encoder"
    default_space = None

    def trains(self, cfg: Any) -> bool:
        return False  # an encoder comes from pretrain, or as a base model

    def gate_metric(self, bundle: Any) -> str | None:
        return None

    def evaluate(self, cfg: Any) -> dict[str, Any]:
        """Retrieval (a BEIR directory or query/positive pairs, beside BM25) or similarity (pairs with a score)."""
        from bertcli.tasks.embedding.evaluate import evaluate_encoder

        return evaluate_encoder(cfg)

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
