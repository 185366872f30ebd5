"""Sequence classification: single-label, multi-label and regression, on single texts or sentence pairs."""

from __future__ import annotations

from typing import Any

from bertcli.config import DEFAULT_METRICS, DEFAULT_SPACES, VALIDATION_METRICS

KINDS = ("single_label", "multi_label", "regression")
GATE_METRICS = {"single_label": "accuracy", "multi_label": "f1_micro", "regression": "pearson"}  # int8 export gate


class Classification:
    name = "classification"
    head = "sequence-classification"
    default_space = DEFAULT_SPACES["classification"]
    metrics = {kind: VALIDATION_METRICS[kind] for kind in KINDS}

    def trains(self, cfg: Any) -> bool:
        return cfg.task is None or cfg.task in KINDS

    def default_metric(self, cfg: Any) -> str:
        from bertcli.data.labels import infer_labels
        from bertcli.data.tables import load_table

        table = load_table(cfg.train, cfg.data)
        columns = table.columns(cfg.data, need_label=True)
        return DEFAULT_METRICS[infer_labels(table, columns.label, cfg.data, cfg.task).task]

    def gate_metric(self, bundle: Any, check: str) -> str | None:
        return GATE_METRICS[bundle.meta.task]

    def finetune(self, cfg: Any, callbacks: Any = None) -> Any:
        from bertcli.tasks.classification.finetune import train_classifier

        return train_classifier(cfg, callbacks)

    def evaluate(self, cfg: Any, bundle: Any) -> dict[str, Any]:
        from bertcli.tasks.classification.evaluate import evaluate_classifier

        return evaluate_classifier(cfg, bundle)

    def predict(self, cfg: Any, bundle: Any) -> Any:
        from bertcli.tasks.classification.predict import predict_labels

        return predict_labels(cfg, bundle)

    def load(self, bundle: Any, **options: Any) -> Any:
        from bertcli.tasks.classification.predictor import Classifier

        return Classifier(bundle, **options)


TASK = Classification()
