"""Metric reports checked against direct scikit-learn / scipy / seqeval calls and hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy import stats
from seqeval import metrics as sm
from seqeval.scheme import IOB2
from sklearn import metrics as skm

from bertcli.reports import metrics

LABELS = ["a", "b", "c"]
# Class "b" is never predicted.
REFS = [0, 0, 1, 1, 2, 2, 2]
PREDS = [0, 2, 0, 2, 2, 2, 0]


def roundtrip(report: dict) -> dict:
    """JSON must accept the report as is (no numpy types, no NaN)."""
    return json.loads(json.dumps(report, allow_nan=False))


def test_classification_report_matches_sklearn():
    report = metrics.classification_report(REFS, PREDS, LABELS)
    assert roundtrip(report) == report
    assert report["n"] == 7
    assert report["labels"] == LABELS
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(REFS, PREDS)) == pytest.approx(3 / 7)
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(REFS, PREDS, average=avg, zero_division=0)
        assert report[f"precision_{avg}"] == pytest.approx(p)
        assert report[f"recall_{avg}"] == pytest.approx(r)
        assert report[f"f1_{avg}"] == pytest.approx(f)
    assert report["mcc"] == pytest.approx(skm.matthews_corrcoef(REFS, PREDS))


def test_classification_per_class_includes_never_predicted_class():
    per = metrics.classification_report(REFS, PREDS, LABELS)["per_class"]
    assert list(per) == LABELS
    assert per["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    # "a": 1 of 3 predictions right, 1 of 2 gold found.
    assert per["a"]["precision"] == pytest.approx(1 / 3)
    assert per["a"]["recall"] == pytest.approx(1 / 2)
    assert per["a"]["f1"] == pytest.approx(0.4)
    assert per["a"]["support"] == 2
    # "c": 2 of 4 predictions right, 2 of 3 gold found.
    assert per["c"]["precision"] == pytest.approx(1 / 2)
    assert per["c"]["recall"] == pytest.approx(2 / 3)
    assert per["c"]["support"] == 3


def test_confusion_matrix_cell_by_cell():
    cm = metrics.classification_report(REFS, PREDS, LABELS)["confusion_matrix"]
    # rows = gold, columns = predicted
    assert cm == [
        [1, 0, 1],
        [1, 0, 1],
        [1, 0, 2],
    ]
    assert cm == skm.confusion_matrix(REFS, PREDS).tolist()


def test_confusion_matrix_keeps_label_absent_everywhere():
    report = metrics.classification_report([0, 1], [0, 1], ["a", "b", "c"])
    assert report["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert report["per_class"]["c"]["support"] == 0
    # Averages cover the classes seen, so an absent class does not lower macro F1.
    assert report["f1_macro"] == 1.0


def test_classification_rejects_label_id_outside_label_names():
    with pytest.raises(ValueError, match="label ids"):
        metrics.classification_report([0, 3], [0, 1], LABELS)


def test_multilabel_report_matches_sklearn():
    names = ["x", "y", "z"]
    refs = [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]
    preds = [[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 1]]
    report = metrics.multilabel_report(refs, preds, names)
    assert roundtrip(report) == report
    assert report["n"] == 4
    assert report["labels"] == names
    assert report["subset_accuracy"] == pytest.approx(0.5)
    assert report["hamming_loss"] == pytest.approx(3 / 12)
    for avg in ("micro", "macro", "weighted"):
        assert report[f"f1_{avg}"] == pytest.approx(skm.f1_score(refs, preds, average=avg, zero_division=0))
    for avg in ("micro", "macro"):
        assert report[f"precision_{avg}"] == pytest.approx(skm.precision_score(refs, preds, average=avg))
        assert report[f"recall_{avg}"] == pytest.approx(skm.recall_score(refs, preds, average=avg))
    # micro: 4 true positives, 5 predicted, 6 gold
    assert report["precision_micro"] == pytest.approx(4 / 5)
    assert report["recall_micro"] == pytest.approx(4 / 6)
    assert report["per_label"]["y"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert report["per_label"]["z"]["precision"] == pytest.approx(0.5)
    assert report["per_label"]["z"]["support"] == 2


def test_multilabel_rejects_wrong_width():
    with pytest.raises(ValueError, match="columns"):
        metrics.multilabel_report([[1, 0]], [[1, 0]], ["x", "y", "z"])


def test_regression_report_known_values():
    refs = [1.0, 2.0, 3.0, 4.0, 5.0]
    preds = [1.0, 3.0, 2.0, 5.0, 4.0]
    report = metrics.regression_report(refs, preds)
    assert roundtrip(report) == report
    assert report["n"] == 5
    assert report["mse"] == pytest.approx(0.8)
    assert report["rmse"] == pytest.approx(0.8**0.5)
    assert report["mae"] == pytest.approx(0.8)
    assert report["r2"] == pytest.approx(0.6)  # 1 - 4/10
    assert report["pearson"] == pytest.approx(0.8)
    assert report["spearman"] == pytest.approx(0.8)  # 1 - 6*4 / (5*24)
    assert report["pearson"] == pytest.approx(stats.pearsonr(refs, preds)[0])
    assert report["spearman"] == pytest.approx(stats.spearmanr(refs, preds)[0])


def test_regression_constant_prediction_gives_none_correlation():
    report = metrics.regression_report([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    assert roundtrip(report) == report
    assert report["pearson"] is None
    assert report["spearman"] is None
    assert report["mse"] == pytest.approx(2 / 3)
    assert report["r2"] == pytest.approx(0.0)


def test_regression_single_example_has_no_r2_or_correlation():
    report = metrics.regression_report([1.0], [1.5])
    assert roundtrip(report) == report
    assert report["r2"] is report["pearson"] is report["spearman"] is None
    assert report["mae"] == pytest.approx(0.5)


# Sentence 1: the prediction starts LOC with a stray I- tag; sentence 3 predicts a stray I-MISC.
NER_REFS = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"], ["O", "O"]]
NER_PREDS = [["B-PER", "I-PER", "O", "I-LOC"], ["B-ORG", "O"], ["I-MISC", "O"]]


def test_ner_default_mode_counts_stray_inside_tags_as_entities():
    report = metrics.ner_report(NER_REFS, NER_PREDS)
    assert roundtrip(report) == report
    assert report["mode"] == "default"
    assert report["scheme"] is None
    assert report["n"] == 3
    # predicted PER, LOC, ORG, MISC; gold PER, LOC, ORG; 3 correct
    assert report["precision"] == pytest.approx(3 / 4)
    assert report["recall"] == pytest.approx(1.0)
    assert report["f1"] == pytest.approx(6 / 7)
    assert report["accuracy"] == pytest.approx(6 / 8)
    assert report["f1"] == pytest.approx(sm.f1_score(NER_REFS, NER_PREDS))
    assert report["per_type"]["LOC"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert report["per_type"]["MISC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_ner_strict_iob2_ignores_entities_without_begin_tag():
    report = metrics.ner_report(NER_REFS, NER_PREDS, mode="strict", scheme="IOB2")
    assert roundtrip(report) == report
    assert report["mode"] == "strict"
    assert report["scheme"] == "IOB2"
    # predicted PER, ORG only; gold PER, LOC, ORG; 2 correct
    assert report["precision"] == pytest.approx(1.0)
    assert report["recall"] == pytest.approx(2 / 3)
    assert report["f1"] == pytest.approx(0.8)
    assert report["accuracy"] == pytest.approx(6 / 8)
    assert report["f1"] == pytest.approx(sm.f1_score(NER_REFS, NER_PREDS, mode="strict", scheme=IOB2))
    assert report["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert "MISC" not in report["per_type"]


def test_ner_scheme_implies_strict_and_strict_defaults_to_iob2():
    by_scheme = metrics.ner_report(NER_REFS, NER_PREDS, scheme="iob2")
    by_mode = metrics.ner_report(NER_REFS, NER_PREDS, mode="strict")
    assert by_scheme == by_mode
    assert by_mode["scheme"] == "IOB2"
    assert by_mode["f1"] == pytest.approx(0.8)


def test_ner_without_entities_scores_zero():
    report = metrics.ner_report([["O", "O"]], [["O", "O"]])
    assert roundtrip(report) == report
    assert report["f1"] == 0.0
    assert report["accuracy"] == 1.0
    assert report["per_type"] == {}


@pytest.mark.parametrize(("mode", "scheme"), [("lenient", None), (None, "IOB3"), ("default", "IOB2")])
def test_ner_rejects_bad_mode_or_scheme(mode, scheme):
    with pytest.raises(ValueError):
        metrics.ner_report(NER_REFS, NER_PREDS, mode=mode, scheme=scheme)


def test_empty_input_is_an_error():
    with pytest.raises(ValueError, match="no examples"):
        metrics.regression_report([], [])


def test_report_for_task_dispatches():
    assert metrics.report_for_task("single_label", REFS, PREDS, LABELS) == metrics.classification_report(
        REFS, PREDS, LABELS
    )
    assert "hamming_loss" in metrics.report_for_task("multi_label", [[1, 0]], [[1, 1]], ["x", "y"])
    assert "pearson" in metrics.report_for_task("regression", [1.0, 2.0], [1.0, 2.5], None)
    with pytest.raises(ValueError, match="unknown task"):
        metrics.report_for_task("ranking", [1], [1], None)


def test_modules_write_no_cache_files():
    import evaluate.config

    metrics.classification_report(REFS, PREDS, LABELS)
    cache = Path(evaluate.config.HF_METRICS_CACHE) / "classification_metric"
    assert not [p for p in cache.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("eval_loss", False),
        ("mse", False),
        ("eval_rmse", False),
        ("mae", False),
        ("perplexity", False),
        ("hamming_loss", False),
        ("accuracy", True),
        ("f1_macro", True),
        ("eval_pearson", True),
        ("mcc", True),
    ],
)
def test_greater_is_better(name, expected):
    assert metrics.greater_is_better(name) is expected
