"""Evaluation metrics as local `evaluate` modules, so scoring works offline (no hub scripts).

Each module computes with scikit-learn, scipy or seqeval; the thin `*_report` functions are what the
rest of bertcli calls. Reports hold only plain Python numbers (or None where a value is undefined),
so they can be written straight to JSON.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import datasets
import evaluate
import numpy as np
from scipy import stats
from sklearn import metrics as skm

_LOWER_IS_BETTER = ("loss", "mse", "mae", "rmse", "perplexity", "hamming")
NER_SCHEMES = ("IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU")


def _num(x: Any) -> float | None:
    """Plain float, or None for NaN/inf: JSON has no NaN, and an undefined score is not a zero."""
    x = float(x)
    return x if math.isfinite(x) else None


def _prf(p: Any, r: Any, f: Any, s: Any) -> dict:
    return {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}


def _features(value: datasets.Value, per_example_sequence: bool = False) -> datasets.Features:
    feature = datasets.Sequence(value) if per_example_sequence else value
    return datasets.Features({"predictions": feature, "references": feature})


def _metric_info(description: str, features: datasets.Features) -> evaluate.MetricInfo:
    return evaluate.MetricInfo(
        description=description,
        citation="",
        inputs_description="predictions and references, one entry per example",
        features=features,
    )


class ClassificationMetric(evaluate.Metric):
    """Single-label classification: accuracy, P/R/F1 (macro, micro, weighted), MCC, confusion matrix."""

    def _info(self) -> evaluate.MetricInfo:
        return _metric_info(self.__doc__, _features(datasets.Value("int32")))

    def _compute(self, predictions, references, label_names: list[str]) -> dict:
        k = len(label_names)
        ids = set(predictions) | set(references)
        if ids and (min(ids) < 0 or max(ids) >= k):
            # The confusion matrix would silently drop such rows; a label map mismatch must be loud.
            raise ValueError(f"label ids must lie in [0, {k}), got {sorted(ids)}")
        report = {"n": len(references), "accuracy": float(skm.accuracy_score(references, predictions))}
        # Averages use sklearn's default label set (classes seen in gold or predictions), so a class
        # absent from this evaluation set does not drag the macro average down with a 0/0 score.
        for avg in ("macro", "micro", "weighted"):
            p, r, f, _ = skm.precision_recall_fscore_support(references, predictions, average=avg, zero_division=0)
            report |= {f"precision_{avg}": float(p), f"recall_{avg}": float(r), f"f1_{avg}": float(f)}
        report["mcc"] = float(skm.matthews_corrcoef(references, predictions))
        every = list(range(k))
        per = skm.precision_recall_fscore_support(references, predictions, labels=every, average=None, zero_division=0)
        report["per_class"] = {name: _prf(*row) for name, row in zip(label_names, zip(*per))}
        cm = skm.confusion_matrix(references, predictions, labels=every)
        report["confusion_matrix"] = cm.tolist()
        report["labels"] = list(label_names)
        return report


class MultiLabelMetric(evaluate.Metric):
    """Multi-label classification on 0/1 indicator rows: subset accuracy, Hamming loss, P/R/F1."""

    def _info(self) -> evaluate.MetricInfo:
        return _metric_info(self.__doc__, _features(datasets.Value("int32"), per_example_sequence=True))

    def _compute(self, predictions, references, label_names: list[str]) -> dict:
        y_true, y_pred = np.asarray(references), np.asarray(predictions)
        if y_true.shape != y_pred.shape or y_true.shape[1] != len(label_names):
            raise ValueError(
                f"indicator rows must have {len(label_names)} columns; "
                f"got references {y_true.shape}, predictions {y_pred.shape}"
            )
        report = {
            "n": len(y_true),
            "subset_accuracy": float(skm.accuracy_score(y_true, y_pred)),
            "hamming_loss": float(skm.hamming_loss(y_true, y_pred)),
        }
        for avg in ("micro", "macro", "weighted"):
            p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
            report[f"f1_{avg}"] = float(f)
            if avg != "weighted":
                report |= {f"precision_{avg}": float(p), f"recall_{avg}": float(r)}
        per = skm.precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
        report["per_label"] = {name: _prf(*row) for name, row in zip(label_names, zip(*per))}
        report["labels"] = list(label_names)
        return report


class RegressionMetric(evaluate.Metric):
    """Regression: MSE, RMSE, MAE, R², Pearson and Spearman correlation (None where undefined)."""

    def _info(self) -> evaluate.MetricInfo:
        return _metric_info(self.__doc__, _features(datasets.Value("float64")))

    def _compute(self, predictions, references) -> dict:
        y_true, y_pred = np.asarray(references, dtype=float), np.asarray(predictions, dtype=float)
        n = len(y_true)
        mse = float(skm.mean_squared_error(y_true, y_pred))
        with warnings.catch_warnings():
            # Constant input or n < 2 leaves R²/correlations undefined; we report None instead of warning.
            warnings.simplefilter("ignore")
            r2 = _num(skm.r2_score(y_true, y_pred)) if n >= 2 else None
            pearson = _num(stats.pearsonr(y_true, y_pred)[0]) if n >= 2 else None
            spearman = _num(stats.spearmanr(y_true, y_pred)[0]) if n >= 2 else None
        return {
            "n": n,
            "mse": mse,
            "rmse": math.sqrt(mse),
            "mae": float(skm.mean_absolute_error(y_true, y_pred)),
            "r2": r2,
            "pearson": pearson,
            "spearman": spearman,
        }


class SeqevalMetric(evaluate.Metric):
    """Entity-level NER scores from seqeval (micro P/R/F1 and per type) plus token accuracy."""

    def _info(self) -> evaluate.MetricInfo:
        return _metric_info(self.__doc__, _features(datasets.Value("string"), per_example_sequence=True))

    def _compute(self, predictions, references, mode: str | None = None, scheme: str | None = None) -> dict:
        from seqeval import metrics as sm
        from seqeval import scheme as schemes

        kwargs = {"mode": "strict", "scheme": getattr(schemes, scheme)} if mode == "strict" else {}
        with warnings.catch_warnings():
            # With no entities at all seqeval averages empty arrays; micro scores are still 0.
            warnings.simplefilter("ignore", RuntimeWarning)
            table = sm.classification_report(references, predictions, output_dict=True, zero_division=0, **kwargs)
        micro = table["micro avg"]
        return {
            "n": len(references),
            "precision": float(micro["precision"]),
            "recall": float(micro["recall"]),
            "f1": float(micro["f1-score"]),
            "accuracy": float(sm.accuracy_score(references, predictions)),
            "per_type": {
                t: _prf(v["precision"], v["recall"], v["f1-score"], v["support"])
                for t, v in table.items()
                if not t.endswith(" avg")
            },
            "mode": mode or "default",
            "scheme": scheme,
        }


def _run(metric_class: type[evaluate.Metric], references, predictions, **kwargs: Any) -> dict:
    """One fresh in-memory module per call: no cache files on disk, no state shared between runs."""
    if len(references) == 0:
        raise ValueError("no examples to score")
    module = metric_class(keep_in_memory=True)
    return module.compute(predictions=list(predictions), references=list(references), **kwargs)


def _int_rows(rows) -> list[list[int]]:
    """Plain int rows, so numpy arrays or bool matrices fit the int32 features."""
    return [[int(v) for v in row] for row in rows]


def classification_report(references: Sequence[int], predictions: Sequence[int], label_names: list[str]) -> dict:
    """Single-label report; label ids index `label_names`."""
    refs, preds = [int(v) for v in references], [int(v) for v in predictions]
    return _run(ClassificationMetric, refs, preds, label_names=list(label_names))


def multilabel_report(
    references: Sequence[Sequence[int]], predictions: Sequence[Sequence[int]], label_names: list[str]
) -> dict:
    """Multi-label report on 0/1 indicator rows of length len(label_names)."""
    return _run(MultiLabelMetric, _int_rows(references), _int_rows(predictions), label_names=list(label_names))


def regression_report(references: Sequence[float], predictions: Sequence[float]) -> dict:
    """Regression report; correlations are None when undefined (constant input, fewer than 2 examples)."""
    return _run(RegressionMetric, [float(v) for v in references], [float(v) for v in predictions])


def ner_report(
    references: list[list[str]],
    predictions: list[list[str]],
    mode: str | None = None,
    scheme: str | None = None,
) -> dict:
    """Entity-level NER report.

    Default mode is conlleval-style (a stray I- tag starts an entity). `mode="strict"` only counts
    entities valid under `scheme`; naming a scheme implies strict, and strict without one means IOB2,
    because seqeval would otherwise fall back to default mode without a word.
    """
    if mode not in (None, "default", "strict"):
        raise ValueError(f"unknown NER mode {mode!r}; use 'default' or 'strict'")
    if scheme is not None and scheme.upper() not in NER_SCHEMES:
        raise ValueError(f"unknown NER scheme {scheme!r}; use one of {', '.join(NER_SCHEMES)}")
    if mode == "default" and scheme is not None:
        raise ValueError("a tagging scheme only applies in strict mode")
    if scheme is not None or mode == "strict":
        mode, scheme = "strict", (scheme or "IOB2").upper()
    return _run(SeqevalMetric, references, predictions, mode=mode, scheme=scheme)


def greater_is_better(metric_name: str) -> bool:
    """Whether a higher value of `metric_name` is an improvement (for best-checkpoint selection)."""
    name = metric_name.lower()
    return not any(word in name for word in _LOWER_IS_BETTER)


def report_for_task(task: str, references, predictions, label_names: list[str] | None = None) -> dict:
    """The report that fits `task`: "single_label", "multi_label" or "regression"."""
    if task == "single_label":
        return classification_report(references, predictions, label_names)
    if task == "multi_label":
        return multilabel_report(references, predictions, label_names)
    if task == "regression":
        return regression_report(references, predictions)
    raise ValueError(f"unknown task {task!r}; use single_label, multi_label or regression")


def spread(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value)."""
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0}


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """mean +- std of every numeric metric the records share."""
    keys = [
        k
        for k, v in records[0].items()
        if isinstance(v, (int, float))
        and not isinstance(v, bool)
        and k not in ("step", "epoch", "seed", "examples", "n")
    ]
    return {
        k: spread([r[k] for r in records]) for k in keys if all(isinstance(r.get(k), (int, float)) for r in records)
    }
