"""The classification reports' scalar metrics in numpy, from probabilities: fast enough to score a grid of weights and
a thousand bootstrap resamples, with no `datasets`/`evaluate` import (bertcli.reports.metrics keeps the full
reports). Each value equals the same key of `report_for_task` on the same decisions (tests/test_lexical.py)."""

from __future__ import annotations

import math

import numpy as np

from bertcli.tasks.classification.scores import decisions

LOWER_IS_BETTER = ("loss", "mse", "mae", "rmse", "hamming")  # bertcli.reports.metrics' rule, for these names
EPS = 1e-12  # probabilities are clipped here in the log-loss


def value(task: str, metric: str, references: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> float:
    """`metric` of these probabilities against the references (class ids, 0/1 rows or values); NaN if undefined."""
    refs, probs = np.asarray(references), np.asarray(probs, dtype=np.float64)
    if metric == "loss":
        return log_loss(task, refs, probs)
    return of_decisions(task, metric, refs, np.asarray(decisions(task, probs, threshold)), probs.shape[1])


def of_decisions(task: str, metric: str, refs: np.ndarray, preds: np.ndarray, classes: int) -> float:
    """`metric` of the decisions (class ids, 0/1 rows or values); `classes`: the single-label class count."""
    if task == "single_label":
        scores = _single_label(refs.astype(np.int64), preds.astype(np.int64), classes)
    elif task == "multi_label":
        scores = _multi_label(refs.astype(np.int64), preds.astype(np.int64))
    else:
        scores = _regression(refs.astype(np.float64), preds.astype(np.float64))
    if metric not in scores:
        raise ValueError(f"unknown metric {metric!r} for {task}; known: loss, {', '.join(scores)}")
    return scores[metric]


def higher_is_better(metric: str) -> bool:
    return not any(word in metric.lower() for word in LOWER_IS_BETTER)


def log_loss(task: str, refs: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log-likelihood (single-label), binary cross-entropy (multi-label) or squared error."""
    if task == "single_label":
        return float(-np.log(np.clip(probs[np.arange(len(refs)), refs.astype(np.int64)], EPS, 1.0)).mean())
    if task == "multi_label":
        p = np.clip(probs, EPS, 1.0 - EPS)
        return float(-(refs * np.log(p) + (1 - refs) * np.log(1 - p)).mean())
    return float(((probs[:, 0] - refs) ** 2).mean())


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1; 0 where undefined (scikit-learn's zero_division=0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    return precision, recall, f1


def _averages(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, keys: tuple[str, ...]) -> dict[str, float]:
    per = _prf(tp, fp, fn)
    micro = _prf(tp.sum(keepdims=True), fp.sum(keepdims=True), fn.sum(keepdims=True))
    support = tp + fn
    scores = {}
    for name, values, total in zip(("precision", "recall", "f1"), per, micro):
        weighted = float(values @ support / support.sum()) if support.sum() else 0.0
        scores |= {
            f"{name}_macro": float(values.mean()),
            f"{name}_micro": float(total[0]),
            f"{name}_weighted": weighted,
        }
    return {k: v for k, v in scores.items() if k in keys}


SINGLE = tuple(f"{m}_{a}" for m in ("precision", "recall", "f1") for a in ("macro", "micro", "weighted"))
MULTI = ("precision_micro", "recall_micro", "f1_micro", "precision_macro", "recall_macro", "f1_macro", "f1_weighted")


def _single_label(refs: np.ndarray, preds: np.ndarray, k: int) -> dict[str, float]:
    """Averages over the classes seen in the references or predictions, as scikit-learn (and bertcli) report them."""
    matrix = np.bincount(refs * k + preds, minlength=k * k).reshape(k, k).astype(np.float64)
    seen = np.union1d(refs, preds)
    tp = np.diag(matrix)[seen]
    scores = {"accuracy": float((refs == preds).mean())}
    scores |= _averages(tp, matrix.sum(0)[seen] - tp, matrix.sum(1)[seen] - tp, SINGLE)
    return scores | {"mcc": _mcc(matrix)}


def _mcc(matrix: np.ndarray) -> float:
    true, predicted, n = matrix.sum(1), matrix.sum(0), matrix.sum()
    cov_tp = np.trace(matrix) * n - true @ predicted
    cov_pp, cov_tt = n * n - predicted @ predicted, n * n - true @ true
    return 0.0 if cov_pp * cov_tt == 0 else float(cov_tp / math.sqrt(cov_tt * cov_pp))


def _multi_label(refs: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    tp = (refs & preds).sum(0).astype(np.float64)
    fp, fn = (preds & (1 - refs)).sum(0).astype(np.float64), (refs & (1 - preds)).sum(0).astype(np.float64)
    scores = {
        "subset_accuracy": float((refs == preds).all(1).mean()),
        "hamming_loss": float((refs != preds).mean()),
    }
    return scores | _averages(tp, fp, fn, MULTI)


def _regression(refs: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    error = preds - refs
    mse = float((error**2).mean())
    spread = float(((refs - refs.mean()) ** 2).sum())
    r2 = 1.0 - float((error**2).sum()) / spread if spread > 0 else (1.0 if mse == 0 else 0.0)
    return {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": float(np.abs(error).mean()),
        "r2": r2,
        "pearson": _correlation(refs, preds),
        "spearman": _correlation(_ranks(refs), _ranks(preds)),
    }


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    scale = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / scale if len(a) >= 2 and scale > 0 else math.nan


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank (as scipy's rankdata)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks
