"""Retrieval and similarity evaluation of encoders: the metrics against hand-computed values, the data readers'
errors, and `bertcli evaluate` on a BEIR directory, a pairs file and STS pairs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import write_csv
from typer.testing import CliRunner

from bertcli.cli.main import app
from bertcli.config import DataOptions
from bertcli.data.retrieval import pairs_retrieval, read_beir, read_pairs
from bertcli.errors import DataError
from bertcli.reports.retrieval import query_metrics, retrieval_metrics, top_k, validation_metrics

runner = CliRunner()
PAIRS = [
    ("how do I sort a list", "Return a new sorted list from the items in iterable."),
    ("compute the mean of an array", "Compute the arithmetic mean along the specified axis."),
    ("open a file for reading", "Open file and return a stream. Raise OSError upon failure."),
    ("join path components", "Join two or more pathname components, inserting '/' as needed."),
    ("square root of each element", "Return the non-negative square-root of an array, element-wise."),
]


def test_metrics_equal_hand_computed_values_on_a_tiny_qrels():
    qrels = {"q1": {"d1": 1, "d3": 1, "d9": 0}, "q2": {"d2": 2}, "q3": {"d5": 0}}  # q3 has nothing relevant
    rankings = {"q1": ["d2", "d1", "d4", "d3"], "q2": ["d1", "d3", "d2"], "q3": ["d5"]}
    # q1: relevant at ranks 2 and 4: DCG 1/log2(3) + 1/log2(5), ideal 1 + 1/log2(3); RR 1/2; AP (1/2 + 2/4) / 2
    # q2: relevance 2 at rank 3: DCG 2/log2(4) = 1, ideal 2; RR 1/3; AP 1/3
    assert query_metrics(rankings["q1"], qrels["q1"]) == pytest.approx(
        {"ndcg@10": 0.6509209298, "mrr@10": 0.5, "map@100": 0.5, "recall@1": 0.0, "recall@10": 1.0, "recall@100": 1.0}
    )
    metrics = retrieval_metrics(rankings, qrels)
    assert metrics == pytest.approx(
        {
            "ndcg@10": (0.6509209298 + 0.5) / 2,
            "mrr@10": (1 / 2 + 1 / 3) / 2,
            "map@100": (0.5 + 1 / 3) / 2,
            "recall@1": 0.0,
            "recall@10": 1.0,
            "recall@100": 1.0,
        }
    )
    # past the cutoff a hit no longer counts
    late = query_metrics([f"x{i}" for i in range(10)] + ["d2"], {"d2": 1})
    assert (late["ndcg@10"], late["mrr@10"], late["recall@10"], late["map@100"]) == (
        0.0,
        0.0,
        0.0,
        pytest.approx(1 / 11),
    )


def test_top_k_breaks_ties_by_corpus_order_and_validation_metrics_rank_the_diagonal():
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    docs = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    indices, scores = top_k(queries, docs, 3)
    assert indices.tolist() == [[1, 2, 0], [0, 1, 2], [1, 2, 0]]
    assert scores[0].tolist() == [1.0, 1.0, 0.0]
    # query 0 finds doc 0 third, query 1 doc 1 second, query 2 doc 2 second
    metrics = validation_metrics(queries, docs)
    assert metrics == pytest.approx(
        {"ndcg@10": (0.5 + 2 / np.log2(3)) / 3, "mrr@10": (1 / 3 + 1 / 2 + 1 / 2) / 3, "recall@10": 1.0}
    )


def test_pairs_become_qrels_with_identical_texts_merged():
    data = pairs_retrieval(["a", "b", "a"], ["x", "y", "z"], [["y", "w", "w"]], "p.csv")
    assert data.queries == {"q0": "a", "q1": "b"}
    assert data.corpus == {"d0": "x", "d1": "y", "d2": "z", "d3": "w"}
    assert data.qrels == {"q0": {"d0": 1.0, "d2": 1.0}, "q1": {"d1": 1.0}}


def write_beir(root: Path, qrels: str = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i + 1}", "title": "", "text": p}) + "\n" for i, (_, p) in enumerate(PAIRS))
    )
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i + 1}", "text": q}) + "\n" for i, (q, _) in enumerate(PAIRS))
    )
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / "test.tsv").write_text(qrels)
    return root


def test_beir_reader_keeps_the_judged_queries(tmp_path):
    data = read_beir(str(write_beir(tmp_path / "beir")))
    assert list(data.queries) == ["q1", "q2"] and len(data.corpus) == 5
    assert data.qrels == {"q1": {"d1": 1.0}, "q2": {"d2": 1.0}}


def test_bad_retrieval_input_gives_one_line_errors(tmp_path):
    beir = write_beir(tmp_path / "beir", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td77\t1\n")
    with pytest.raises(DataError) as missing:
        read_beir(str(beir))
    assert str(missing.value).startswith(f"{beir / 'qrels' / 'test.tsv'}:3: corpus id 'd77' is not in corpus.jsonl")
    rows = [{"query": q, "positive": p} for q, p in PAIRS]
    rows[2]["positive"] = "  "
    pairs = write_csv(tmp_path / "pairs.csv", rows)
    with pytest.raises(DataError) as empty:
        read_pairs(str(pairs), DataOptions())
    assert str(empty.value).startswith(f"{pairs}:4, column 'positive': empty text")


def test_evaluate_an_encoder_on_beir_pairs_and_sts(tmp_path, tiny_model):
    beir = write_beir(tmp_path / "beir")
    result = runner.invoke(
        app, ["evaluate", str(tiny_model), str(beir), "--output-format", "json", "--errors", str(tmp_path / "e.jsonl")]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["task"], report["n"], report["corpus_size"], report["unit"]) == ("retrieval", 2, 5, "queries")
    assert set(report) >= {"ndcg@10", "mrr@10", "map@100", "recall@1", "recall@10", "recall@100"}
    assert 0 <= report["ndcg@10"] <= 1 and report["recall@100"] == 1.0  # 5 documents: every one is ranked
    # BM25 matches each query's words to its own positive
    assert report["baseline"]["name"] == "bm25" and report["baseline"]["recall@10"] == 1.0
    errors = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert len(errors) == 2 and errors[0]["rank"] >= errors[1]["rank"] >= 1
    assert {e["positive_id"] for e in errors} == {"d1", "d2"} and len(errors[0]["top"]) == 3
    sts = write_csv(
        tmp_path / "sts.csv", [{"sentence1": q, "sentence2": p, "score": float(i)} for i, (q, p) in enumerate(PAIRS)]
    )
    result = runner.invoke(app, ["evaluate", str(tiny_model), str(sts), "--output-format", "json"])
    report = json.loads(result.stdout)
    assert report["task"] == "similarity" and report["n"] == 5 and -1 <= report["spearman"] <= 1


def test_several_encoders_give_mean_and_std(tmp_path, tiny_model):
    pairs = write_csv(tmp_path / "pairs.csv", [{"query": q, "positive": p} for q, p in PAIRS])
    result = runner.invoke(app, ["evaluate", str(tiny_model), str(tiny_model), str(pairs), "--output-format", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    assert summary["ndcg@10"]["std"] == 0.0 and 0 <= summary["ndcg@10"]["mean"] <= 1


def test_the_default_model_finds_every_positive_of_clear_pairs(tmp_path):
    from bertcli.hub import default_model

    pairs = write_csv(tmp_path / "pairs.csv", [{"query": q, "positive": p} for q, p in PAIRS])
    result = runner.invoke(app, ["evaluate", default_model(), str(pairs), "--output-format", "json"])
    report = json.loads(result.stdout)
    assert (report["ndcg@10"], report["mrr@10"], report["recall@1"]) == (1.0, 1.0, 1.0)


def test_docstring_pairs_take_the_summary_line_as_query_and_the_rest_as_document(tmp_path):
    from bertcli.data.docstrings import docstring_pairs

    source = tmp_path / "mod.py"
    source.write_text(
        'def mean(x):\n    """Compute the arithmetic mean along an axis.\n\n    Returns the average of the array elements,'
        ' over the flattened array by default, otherwise over the specified axis.\n    """\n\n'
        'def _private():\n    """Hidden helpers are skipped even with a long docstring.\n\n' + "x " * 60 + '"""\n\n'
        'def short():\n    """Too short.\n\n' + "y " * 60 + '"""\n'
    )
    assert list(docstring_pairs(source)) == [
        (
            "Compute the arithmetic mean along an axis.",
            "Returns the average of the array elements, over the flattened array by default, otherwise over the"
            " specified axis.",
        )
    ]
