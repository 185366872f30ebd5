"""A model the server serves: its predictor from the shared inference path, and the one batch function its
batcher calls (off the event loop) with the inputs of many requests at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertcli.config import EmbedOptions, ServeConfig
from bertcli.config.deploy import served_name
from bertcli.errors import UsageError

CLASSIFIER, TAGGER, ENCODER = "classifier", "tagger", "encoder"
WARM_UP = ["A warm-up sentence, so the first request does not pay for lazy initialisation.", "ok"]


@dataclass
class ServedModel:
    name: str
    directory: Path
    kind: str  # classifier (POST /predict), tagger (POST /predict: entities) or encoder (POST /v1/embeddings)
    task: str
    predictor: Any  # Classifier, Tagger or Embedder
    labels: list[str]

    @property
    def encoder(self) -> Any:
        return self.predictor.encoder

    @property
    def max_length(self) -> int:
        return self.predictor.max_length

    def tokens(self, texts: Sequence[str], pairs: Sequence[str | None] | None = None) -> list[int]:
        """How many tokens each input takes (truncated as the model will): the batch budget and `usage`."""
        has_pairs = pairs is not None and any(p is not None for p in pairs)
        encoded = self.encoder.encode(list(texts), [p or "" for p in pairs] if has_pairs else None)
        return encoded.lengths

    def run(self, inputs: Sequence[tuple[str, str | None]]) -> list[Any]:
        """One forward over many requests' inputs: a result per input, in order (the thread's only work)."""
        texts = [text for text, _ in inputs]
        if self.kind == CLASSIFIER:
            pairs = [pair or "" for _, pair in inputs] if any(pair is not None for _, pair in inputs) else None
            scored = self.predictor.scores(texts, pairs)
            return list(zip(scored.probs, scored.truncated, scored.windows))
        if self.kind == TAGGER:
            return self.predictor.predict(texts)
        embedded = self.predictor.embed(texts)
        return list(zip(embedded.vectors, embedded.truncated))

    def info(self) -> dict[str, Any]:
        return {
            "id": self.name, "object": "model", "task": self.task, "kind": self.kind, "labels": self.labels,
            "max_length": self.max_length, "backend": self.predictor.backend.name, "directory": str(self.directory),
        }  # fmt: skip


def load_model(spec: str, cfg: ServeConfig) -> ServedModel:
    """The predictor for one served directory, warmed up."""
    from bertcli import tasks
    from bertcli.bundle import read_meta, resolve_model
    from bertcli.tasks.embedding.embedder import Embedder, sentence_transformers_pooling

    name, given = served_name(spec)
    directory = Path(resolve_model(given))
    task = read_meta(directory).get("task")
    runtime = {"backend": cfg.backend, "precision": cfg.precision, "threads": cfg.threads}
    if task == "ner" or task in tasks.CLASSIFICATION_TASKS:
        predictor = tasks.load(str(directory), **runtime)
        kind, labels = (TAGGER, predictor.labels) if task == "ner" else (CLASSIFIER, predictor.spec.names)
    elif task in ("encoder", "pretraining", None):
        options = EmbedOptions(**sentence_transformers_pooling(directory), **runtime)
        predictor, kind, labels = Embedder(str(directory), options), ENCODER, []
    else:
        raise UsageError(f"cannot serve a {task} model", file=directory)
    model = ServedModel(name, directory, kind, task or "encoder", predictor, list(labels))
    model.run([(text, None) for text in WARM_UP])
    return model
