"""Token classification (NER): CoNLL/JSONL tags or character spans in, entities with character offsets out."""

from __future__ import annotations

from typing import Any

from bertcli.config import DEFAULT_METRICS, DEFAULT_SPACES, VALIDATION_METRICS


class Ner:
    name = "ner"
    head = "token-classification"
    default_space = DEFAULT_SPACES["ner"]
    metrics = {"ner": VALIDATION_METRICS["ner"]}

    def trains(self, cfg: Any) -> bool:
        """--task ner, or tagged input (CoNLL, JSONL tokens + tags or spans) when no --task is given."""
        from bertcli.tasks.ner.formats import ner_format

        return cfg.task == "ner" or (cfg.task is None and ner_format(cfg.train, cfg.data.format) is not None)

    def default_metric(self, cfg: Any) -> str:
        return DEFAULT_METRICS["ner"]

    def gate_metric(self, bundle: Any, check: str) -> str | None:
        return "f1"

    def finetune(self, cfg: Any, callbacks: Any = None) -> Any:
        from bertcli.tasks.ner.finetune import train_tagger

        return train_tagger(cfg, callbacks)

    def evaluate(self, cfg: Any, bundle: Any) -> dict[str, Any]:
        from bertcli.tasks.ner.evaluate import evaluate_tagger

        return evaluate_tagger(cfg, bundle)

    def predict(self, cfg: Any, bundle: Any) -> Any:
        from bertcli.tasks.ner.predict import predict_entities

        return predict_entities(cfg, bundle)

    def load(self, bundle: Any, **options: Any) -> Any:
        from bertcli.tasks.ner.predictor import Tagger

        return Tagger(bundle, **options)


TASK = Ner()
