"""What a model must beat to have learned anything: the majority-class baseline, and the warning for a model that
does no better (all predictions one class, or macro-F1 no better than the constant prediction)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bertcli.tasks.classification.metrics import value
from bertcli.tasks.classification.scores import decisions

# 24 steps left 132 long political documents at the majority class; 152 reached 0.81 (config/training.py, MIN_STEPS)
TRY = "try more optimizer steps (e.g. --epochs 20), another --lr (e.g. 5e-5), or --class-weights auto"


def majority_probabilities(task: str, references: np.ndarray, n: int, prior: np.ndarray | None = None) -> np.ndarray:
    """n copies of the constant prediction: the most frequent class (single-label), each label's more frequent value
    (multi-label) or the mean (regression), of `prior` (the training targets) when given, else of the references."""
    source = np.asarray(references if prior is None else prior)
    if task == "single_label":
        k = int(max(source.max(), np.asarray(references).max())) + 1
        row = np.eye(k)[np.bincount(source.astype(np.int64), minlength=k).argmax()]
    elif task == "multi_label":
        row = (source.mean(0) > 0.5).astype(np.float64)
    else:
        row = np.array([source.astype(np.float64).mean()])
    return np.tile(row, (n, 1))


def majority_report(
    task: str, references: Sequence, label_names: list[str] | None, prior: Sequence | None = None
) -> dict:
    """The full evaluation report (bertcli.reports.metrics) of the constant prediction, for `evaluate` to show
    beside the model's. For single-label, `label_names` sets the classes."""
    from bertcli.reports.metrics import report_for_task

    refs = np.asarray(references)
    probs = majority_probabilities(task, refs, len(refs), None if prior is None else np.asarray(prior))
    if task == "single_label" and label_names:
        probs = np.pad(probs, ((0, 0), (0, len(label_names) - probs.shape[1])))
    gold = refs.astype(float).tolist() if task == "regression" else refs.astype(int).tolist()
    return report_for_task(task, gold, decisions(task, probs, 0.5), label_names)


@dataclass(frozen=True)
class Degenerate:
    """A model no better than the constant prediction on validation: why, the scores, and the one warning line."""

    reason: str  # "one class", "one label set", "constant" or "no better than the majority"
    metric: str
    model: float
    majority: float
    warning: str

    def record(self) -> dict:
        return {
            "reason": self.reason,
            self.metric: round(self.model, 6),
            f"majority_{self.metric}": round(self.majority, 6),
        }


def degenerate(
    task: str,
    references: np.ndarray,
    probs: np.ndarray,
    label_names: list[str] | None = None,
    threshold: float = 0.5,
    prior: np.ndarray | None = None,
) -> Degenerate | None:
    """None for a model that beats the constant prediction on these (validation) texts, else what went wrong.

    Classification compares macro-F1 (accuracy can look fine while every text gets the majority class); regression
    compares mean squared error with predicting the mean."""
    refs, probs = np.asarray(references), np.asarray(probs, dtype=np.float64)
    metric = "mse" if task == "regression" else "f1_macro"
    constant = majority_probabilities(task, refs, len(refs), prior)
    if task == "single_label":
        constant = np.pad(constant, ((0, 0), (0, probs.shape[1] - constant.shape[1])))
    model, majority = value(task, metric, refs, probs, threshold), value(task, metric, refs, constant, threshold)
    predicted = np.asarray(decisions(task, probs, threshold))
    n = len(refs)
    if task == "single_label" and len(set(predicted.tolist())) == 1 and len(set(refs.tolist())) > 1:
        name = label_names[predicted[0]] if label_names else str(predicted[0])
        reason, what = "one class", f"every one of the {n} validation texts is predicted {name!r}"
    elif task == "multi_label" and (predicted == predicted[0]).all() and not (refs == refs[0]).all():
        reason, what = "one label set", f"every one of the {n} validation texts gets the same labels"
    elif task == "regression" and np.ptp(predicted) <= 1e-6 * max(np.ptp(refs), 1e-12):
        reason, what = "constant", f"every one of the {n} validation texts gets the same value"
    elif (model >= majority) if task == "regression" else (model <= majority + 1e-12):
        reason = "no better than the majority"
        constant_name = "mean" if task == "regression" else "majority-class"
        what = f"validation {metric} {model:.4f} is no better than the {constant_name} prediction's {majority:.4f}"
    else:
        return None
    return Degenerate(reason, metric, model, majority, f"the model learned nothing: {what}; {TRY}")
