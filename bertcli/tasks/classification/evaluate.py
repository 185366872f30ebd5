"""Evaluating a saved sequence classifier on labelled data: the full report, and optionally the errors file."""

from __future__ import annotations

from typing import Any

import numpy as np

from bertcli.bundle import Bundle
from bertcli.config import DataOptions, EvaluateConfig
from bertcli.data.labels import LabelSpec, encode_labels
from bertcli.data.tables import load_table
from bertcli.runtime.device import use_threads
from bertcli.runtime.distributed import across_processes
from bertcli.tasks.classification.predictor import Classifier
from bertcli.tasks.classification.scores import decisions
from bertcli.tasks.contract import options_for


def evaluate_classifier(cfg: EvaluateConfig, bundle: Bundle) -> dict[str, Any]:
    """Score a saved model on labelled data. Under a launch the examples are dealt out and each is scored once."""
    from bertcli.reports.metrics import report_for_task

    classifier = Classifier(bundle, **options_for(Classifier, cfg))
    use_threads(cfg.threads)
    spec = classifier.spec
    options = cfg.data
    if options.label_sep is None and classifier.meta.label_sep:
        options = DataOptions(**{**options.__dict__, "label_sep": classifier.meta.label_sep})
    table = load_table(cfg.input, options)
    columns = table.columns(options, need_label=True, saved=classifier.meta.columns)
    texts, pairs = table.texts(columns)
    labels = encode_labels(table, columns.label, spec, options)
    rows = across_processes(classifier.score_rows, list(zip(texts, pairs or [None] * len(texts))))
    probs = np.stack([p for p, _, _ in rows]) if rows else np.zeros((0, spec.num_labels), dtype=np.float32)
    truncated, windows = [t for _, t, _ in rows], [w for _, _, w in rows]
    refs = np.asarray(labels).astype(float if spec.task == "regression" else int).tolist()
    preds = decisions(spec.task, probs, classifier.threshold)
    report = report_for_task(spec.task, refs, preds, spec.names)
    report.update(
        {
            "task": spec.task,
            "unit": "examples",
            "model": str(cfg.model_dir),
            "data": cfg.input,
            "columns": columns.describe(),
            "truncated": int(sum(truncated)),
            "windows": int(sum(windows)),
            "baselines": _baselines(classifier, spec, texts, pairs, refs),
        }
    )
    if cfg.errors:
        _write_errors(cfg.errors, spec, texts, refs, preds, probs)
        report["errors_file"] = cfg.errors
    return report


def _baselines(classifier: Classifier, spec: LabelSpec, texts, pairs, refs) -> dict[str, dict[str, float]]:
    """What the model must beat on this data: the majority class (its constant prediction), and the lexical baseline
    the bundle holds (fitted on the training split), scored like the model."""
    from bertcli.reports.metrics import report_for_task
    from bertcli.tasks.classification.baselines import majority_report
    from bertcli.tasks.classification.lexical import bundled

    found = {"majority class": majority_report(spec.task, refs, spec.names)}
    fitted = bundled(classifier.bundle.directory)
    if fitted is not None:
        probs = fitted.probabilities(texts, pairs)
        found["lexical baseline"] = report_for_task(
            spec.task, refs, decisions(spec.task, probs, classifier.threshold), spec.names
        )
    return {name: _flat(report) for name, report in found.items()}


def _flat(report: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v) for k, v in report.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "n"
    }


def _write_errors(path: str, spec: LabelSpec, texts, refs, preds, probs) -> None:
    from bertcli.io import atomic_write, dumps

    with atomic_write(path) as handle:
        for row, (text, gold, pred, p) in enumerate(zip(texts, refs, preds, probs)):
            if spec.task == "regression":
                record = {"row": row + 1, "text": text, "label": gold, "predicted": pred, "error": pred - gold}
            elif gold == pred:
                continue
            elif spec.task == "single_label":
                record = {
                    "row": row + 1,
                    "text": text,
                    "label": spec.names[gold],
                    "predicted": spec.names[pred],
                    "score": float(p[pred]),
                    "scores": {n: round(float(s), 6) for n, s in zip(spec.names, p)},
                }
            else:
                record = {
                    "row": row + 1,
                    "text": text,
                    "labels": [n for n, g in zip(spec.names, gold) if g],
                    "predicted": [n for n, g in zip(spec.names, pred) if g],
                    "scores": {n: round(float(s), 6) for n, s in zip(spec.names, p)},
                }
            handle.write(dumps(record) + "\n")
