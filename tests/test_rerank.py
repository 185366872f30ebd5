"""Rerankers: training from pairs (mined negatives) and from labelled rows, the losses, scores equal to
sentence-transformers' CrossEncoder and plain pipeline(), `bertcli rerank` over argument/file/stdin, evaluate before
and after a first stage against hand-computed metrics, /rerank equal to the CLI, its 4xx errors, and the ONNX export
with its int8 gate."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import post_in_process, write_csv
from test_embedding_train import toy_pairs
from typer.testing import CliRunner

from bertcli.cli.main import app
from bertcli.config import EvaluateConfig, FinetuneConfig, build_config
from bertcli.tasks import finetune

runner = CliRunner()
FAST = {"lr": 2e-3, "batch_size": 8, "epochs": 3, "precision": "no", "hard_negatives": 3}
QUERY = "guitar"


@pytest.fixture(scope="module")
def reranker(tiny_model, tmp_path_factory) -> Path:
    """A tiny cross-encoder trained on keyword pairs with 3 mined negatives per query."""
    root = tmp_path_factory.mktemp("rerank")
    train = write_csv(root / "pairs.csv", toy_pairs(49))
    cfg = build_config(
        FinetuneConfig, None, train=str(train), output=str(root / "model"), model=str(tiny_model), task="rerank",
        **FAST,
    )  # fmt: skip
    finetune(cfg)
    return root / "model"


def candidates() -> list[str]:
    return [row["positive"] for row in toy_pairs(49)][:12]


def test_mining_excludes_every_known_positive_and_the_margin_band():
    from bertcli.training.negatives import mine

    rng = np.random.default_rng(0)
    docs = rng.normal(size=(30, 8))
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = docs[:5] + 0.1 * rng.normal(size=(5, 8))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    known = [{i, i + 10} for i in range(5)]  # each query's second positive
    mined = mine(queries, docs, list(range(5)), k=6, skip=0, margin=0.05, known=known)
    for row, found in enumerate(mined.negatives):
        positive = float(queries[row] @ docs[row])
        assert row not in found and row + 10 not in found and len(found) == 6
        assert all(float(queries[row] @ docs[i]) <= positive - 0.05 for i in found)


def test_training_mines_negatives_that_are_never_a_positive_of_their_query(tiny_model, tmp_path):
    from bertcli.tasks.rerank.data import first_stage, read_groups
    from bertcli.tasks.rerank.training import _mined_negatives

    rows = [{"query": r["query"], "document": r["positive"], "label": 1} for r in toy_pairs(20)]
    rows += [{"query": rows[0]["query"], "document": rows[5]["document"], "label": 1}]  # a second positive
    rows += [{"query": rows[1]["query"], "document": rows[6]["document"], "label": 0}]  # a given negative
    rows += [{"query": rows[0]["query"], "document": rows[5]["document"], "label": 0}]  # its own positive, as 0 too
    groups = read_groups(
        str(write_csv(tmp_path / "rows.csv", rows)), build_config(FinetuneConfig, None, train="x", output="y").data
    )
    assert len(groups.queries) == 20 and groups.positives[0] == [rows[0]["document"], rows[5]["document"]]
    assert groups.negatives[1] == [rows[6]["document"]] and groups.negatives[0] == []  # a positive is no negative
    cfg = build_config(FinetuneConfig, None, train="x", output="y", negative_skip=0, negative_margin=0.0)
    negatives, described = _mined_negatives(cfg, first_stage(str(tiny_model), "no"), groups, 4)
    assert negatives[1][0] == rows[6]["document"] and "mined with" in described
    for query_positives, found in zip(groups.positives, negatives):
        assert len(found) == 4 and not set(found) & set(query_positives) and len(set(found)) == 4


def test_the_losses_equal_hand_computed_values():
    import torch

    from bertcli.tasks.rerank.training import group_loss

    logits = torch.tensor([2.0, 0.5, -1.0, 1.0, 3.0])  # query 0: positive + 2 negatives; query 1: positive + 1

    class Fixed(torch.nn.Module):
        def forward(self, **inputs):
            return type("Out", (), {"logits": logits[:, None]})()

    batch = {
        "input_ids": torch.zeros(5, 2, dtype=torch.long),
        "labels": torch.tensor([1.0, 0, 0, 1, 0]),
        "group": torch.tensor([0, 0, 0, 1, 1]),
        "slot": torch.tensor([0, 1, 2, 0, 1]),
    }
    listwise = float(group_loss("listwise")(Fixed(), batch))
    expected = (
        -math.log(math.exp(2) / (math.exp(2) + math.exp(0.5) + math.exp(-1)))
        - math.log(math.exp(1) / (math.exp(1) + math.exp(3)))
    ) / 2
    assert listwise == pytest.approx(expected, rel=1e-6)

    def bce(x, y):
        return -(y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x))))

    weights = [2, 1, 1, 1, 1]  # positives weighed by their query's negatives
    terms = [w * bce(x, y) for w, x, y in zip(weights, [2.0, 0.5, -1.0, 1.0, 3.0], [1, 0, 0, 1, 0])]
    assert float(group_loss("bce")(Fixed(), batch)) == pytest.approx(sum(terms) / sum(weights), rel=1e-6)


def test_the_reranker_bundle_learns_and_loads_in_its_peers(reranker):
    from transformers import pipeline

    meta = json.loads((reranker / "bertcli.json").read_text())
    saved = json.loads((reranker / "tokenizer_config.json").read_text())
    assert saved["model_max_length"] == meta["max_length"]  # the peers cut pairs where training and bertcli do
    assert meta["task"] == "reranker" and meta["labels"] == ["relevance"] and meta["metric"] == "ndcg@10"
    assert "mined with" in meta["train_data"]["negatives"] and "binary cross-entropy" in meta["train_data"]["loss"]
    history = [h["ndcg@10"] for h in meta["history"] if "ndcg@10" in h]
    assert max(history) > 0.5  # 5 validation queries, 5 candidates: random order scores ~0.45
    scored = pipeline("text-classification", model=str(reranker))({"text": QUERY, "text_pair": "a guitar story"})
    from bertcli import load

    mine = load(str(reranker), precision="no").predict([QUERY], ["a guitar story"])[0]["score"]
    assert scored["label"] == "relevance" and scored["score"] == pytest.approx(mine, abs=1e-5)


def test_rerank_scores_equal_sentence_transformers_cross_encoder(reranker):
    from sentence_transformers import CrossEncoder

    from bertcli import load

    texts = candidates()
    model = load(str(reranker), precision="no")
    ranked = model.rerank(QUERY, texts, return_text=True)
    peer = CrossEncoder(str(reranker), device="cpu").predict([(QUERY, t) for t in texts])
    assert [r["index"] for r in ranked] == sorted(range(len(texts)), key=lambda i: -peer[i])
    by_index = {r["index"]: r["score"] for r in ranked}
    assert max(abs(by_index[i] - float(peer[i])) for i in range(len(texts))) < 1e-5
    assert all(r["text"] == texts[r["index"]] for r in ranked)
    raw = model.rerank(QUERY, texts, raw_scores=True)
    assert [r["index"] for r in raw] == [r["index"] for r in ranked]
    assert raw[0]["score"] == pytest.approx(math.log(ranked[0]["score"] / (1 - ranked[0]["score"])), abs=1e-4)


def test_without_a_batch_size_batches_hold_the_backends_token_budget(reranker):
    """The default batches are cut by the tokens the backend computes (its budget: 2048 real tokens for torch on a
    CPU, which runs unpadded; 1024 padded for ONNX Runtime; 4096 for torch on a GPU), not by count, and score exactly
    as fixed-size batches do."""
    from bertcli import load
    from bertcli.config import BATCH_TOKENS

    texts = [" ".join(candidates()[: 1 + i % 12]) for i in range(40)]  # 40 lengths from a few tokens to ~60
    budgeted, fixed = load(str(reranker), precision="no"), load(str(reranker), precision="no", batch_size=32)
    on_cpu = budgeted.backend.device.type == "cpu"
    unpadded = budgeted.backend.unpadded
    assert unpadded == on_cpu  # a BERT on a CPU runs unpadded
    assert budgeted.backend.batch_tokens == BATCH_TOKENS["cpu-unpadded" if unpadded else "accelerator"]
    budgeted.backend.batch_tokens = 96
    shapes, forward = [], budgeted.backend.forward
    budgeted.backend.forward = lambda features, outputs: (
        shapes.append((*features["input_ids"].shape, int(features["attention_mask"].sum())))
        or forward(features, outputs)
    )
    got, want = budgeted.run([(QUERY, t) for t in texts]), fixed.run([(QUERY, t) for t in texts])
    assert sum(rows for rows, _, _ in shapes) == len(texts) and len(shapes) > 2
    assert all((real if unpadded else rows * length) <= 96 or rows == 1 for rows, length, real in shapes)
    assert [cut for _, cut in got] == [cut for _, cut in want]
    assert max(abs(a - b) for (a, _), (b, _) in zip(got, want)) < 1e-5


@pytest.mark.parametrize("source", ["argument", "file", "stdin"])
def test_the_rerank_command_orders_candidates(reranker, tmp_path, source):
    from bertcli import load

    texts = candidates()
    expected = load(str(reranker), precision="no").rerank(QUERY, texts, return_text=True)
    file = tmp_path / "candidates.txt"
    file.write_text("\n".join(texts) + "\n", encoding="utf-8")
    args = ["rerank", str(reranker), "--query", QUERY, "--precision", "no"]
    if source == "stdin":
        result = runner.invoke(app, args, input=file.read_text())
    elif source == "file":
        result = runner.invoke(app, [*args, str(file), "-o", str(tmp_path / "out.jsonl")])
    else:
        result = runner.invoke(app, [*args, str(file)])
    assert result.exit_code == 0, result.stderr
    text = (tmp_path / "out.jsonl").read_text() if source == "file" else result.stdout
    got = [json.loads(line) for line in text.splitlines()]
    assert [g["index"] for g in got] == [e["index"] for e in expected]
    assert [g["score"] for g in got] == pytest.approx([e["score"] for e in expected], abs=1e-6)


def test_the_rerank_command_reads_a_query_file_and_names_a_bad_line(reranker, tmp_path):
    from bertcli import load

    model = load(str(reranker), precision="no")
    queries = [{"id": 7, "query": QUERY, "texts": candidates()[:4]}, {"query": "atom", "texts": candidates()[4:9]}]
    file = tmp_path / "queries.jsonl"
    file.write_text("".join(json.dumps(q) + "\n" for q in queries))
    result = runner.invoke(app, ["rerank", str(reranker), str(file), "--precision", "no"])
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["id"] == 7 and "id" not in lines[1]
    for line, query in zip(lines, queries):
        expected = model.rerank(query["query"], query["texts"], return_text=True)
        assert [r["index"] for r in line["results"]] == [e["index"] for e in expected]
    piped = runner.invoke(app, ["rerank", str(reranker), "--precision", "no"], input=file.read_text() + "\n")
    assert piped.exit_code == 0 and piped.stdout == result.stdout  # stdin is JSONL here; a blank line is skipped
    file.write_text(json.dumps(queries[0]) + "\n" + json.dumps({"query": "x", "texts": []}) + "\n")
    result = runner.invoke(app, ["rerank", str(reranker), str(file)])
    assert result.exit_code == 1 and f"{file}:2:" in result.stderr and "Traceback" not in result.stderr
    result = runner.invoke(app, ["rerank", str(reranker), "--query", " "], input="a\n")
    assert result.exit_code == 2 and "--query is empty" in result.stderr


def test_a_classifier_is_no_reranker(tiny_model, tmp_path):
    result = runner.invoke(app, ["rerank", str(tiny_model), "--query", "q"], input="a\n")
    assert result.exit_code == 2 and "not a reranker" in result.stderr and "--task rerank" in result.stderr


def _beir(root: Path, docs: dict[str, str], queries: dict[str, str], qrels: list[tuple[str, str, int]]) -> Path:
    root.mkdir()
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in docs.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items()))
    (root / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels))
    return root


def test_evaluate_before_and_after_equal_hand_computed_values(reranker, tmp_path):
    """BM25 picks the top 3 of 5 documents; the reranker reorders them; both NDCG@10 and MRR@10 by hand."""
    import bm25s

    from bertcli import load
    from bertcli.tasks import evaluate

    docs = {
        "d0": "guitar song music",
        "d1": "guitar code team",
        "d2": "atom science",
        "d3": "vote election",
        "d4": "phone tech guitar",
    }
    queries = {"q0": "guitar music", "q1": "atom science news"}
    data = _beir(tmp_path / "beir", docs, queries, [("q0", "d4", 1), ("q1", "d2", 1)])
    report = evaluate(EvaluateConfig(model_dir=str(reranker), input=str(data), candidates=3, precision="no"))
    ids = list(docs)
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(list(docs.values()), stopwords="en", show_progress=False), show_progress=False)
    model = load(str(reranker), precision="no")

    def dcg(ranked, relevant):
        rank = ranked.index(relevant) + 1 if relevant in ranked else None
        return (1 / math.log2(rank + 1), 1 / rank) if rank and rank <= 10 else (0.0, 0.0)

    before, after = [], []
    for q, relevant in (("q0", "d4"), ("q1", "d2")):
        found, _ = retriever.retrieve(
            bm25s.tokenize([queries[q]], stopwords="en", show_progress=False), k=3, show_progress=False
        )
        first = [ids[i] for i in found[0]]
        scores = [r[0] for r in model.run([(queries[q], docs[d]) for d in first])]
        second = [first[i] for i in np.argsort(-np.asarray(scores), kind="stable")]
        before.append(dcg(first, relevant))
        after.append(dcg(second, relevant))
    assert report["task"] == "reranking" and report["first_stage"] == "bm25" and report["candidates"] == 3
    assert report["ndcg@10"] == pytest.approx(np.mean([a[0] for a in after]))
    assert report["mrr@10"] == pytest.approx(np.mean([a[1] for a in after]))
    assert report["baseline"]["ndcg@10"] == pytest.approx(np.mean([b[0] for b in before]))
    assert report["baseline"]["mrr@10"] == pytest.approx(np.mean([b[1] for b in before]))


def test_evaluate_with_an_encoder_first_stage_and_a_non_encoder_retriever(reranker, tiny_model, tmp_path):
    from bertcli.errors import UsageError
    from bertcli.tasks import evaluate

    pairs = write_csv(tmp_path / "pairs.csv", toy_pairs(20, seed=3))
    report = evaluate(
        EvaluateConfig(
            model_dir=str(reranker), input=str(pairs), retriever=str(tiny_model), candidates=20, precision="no"
        )
    )
    assert (
        report["first_stage"] == str(tiny_model) and report["n"] == 20 and report["baseline"]["name"].endswith("alone")
    )
    assert report["recall@100"] == pytest.approx(report["baseline"]["recall@100"])  # the same candidates, reordered
    with pytest.raises(UsageError, match="not an encoder"):
        evaluate(EvaluateConfig(model_dir=str(reranker), input=str(pairs), retriever=str(reranker)))


def test_the_rerank_route_answers_as_the_command_and_refuses_bad_requests(reranker, tmp_path):
    texts = candidates()[:4]
    long_text = " ".join(["guitar"] * 300)
    answers = post_in_process(
        reranker,
        "/rerank",
        [
            {"query": QUERY, "texts": texts, "return_text": True},
            {"query": QUERY, "texts": texts, "raw_scores": True},
            {"query": QUERY, "texts": [long_text]},
            {"query": QUERY, "texts": [long_text], "truncate": False},
            {"query": QUERY, "texts": []},
            {"query": " ", "texts": ["a"]},
            {"query": QUERY, "texts": ["a"] * 5},
            {"query": QUERY},
            {"query": QUERY, "texts": ["a", " "]},
        ],
        max_inputs=4,
    )
    file = tmp_path / "c.txt"
    file.write_text("\n".join(texts) + "\n")
    cli = runner.invoke(app, ["rerank", str(reranker), str(file), "--query", QUERY, "--precision", "no"])
    expected = [json.loads(line) for line in cli.stdout.splitlines()]
    ranked = answers[0].json()
    assert answers[0].status_code == 200 and [r["index"] for r in ranked] == [e["index"] for e in expected]
    assert [r["score"] for r in ranked] == pytest.approx([e["score"] for e in expected], abs=1e-6)
    assert [r["text"] for r in ranked] == [e["text"] for e in expected] and "text" not in answers[1].json()[0]
    assert answers[1].json()[0]["score"] == pytest.approx(
        math.log(ranked[0]["score"] / (1 - ranked[0]["score"])), abs=1e-4
    )
    assert answers[2].status_code == 200 and answers[2].json()[0]["truncated"] is True
    assert answers[3].status_code == 413 and answers[3].json()["error"]["code"] == "input_too_long"
    for response, status, code in zip(
        answers[4:], (422, 422, 413, 422, 422), ("empty_input", "empty_input", "too_many_inputs", None, "empty_input")
    ):
        assert response.status_code == status and "error" in response.json()
        if code:
            assert response.json()["error"]["code"] == code


def test_export_keeps_scores_and_gates_int8_on_reranking_ndcg(reranker, tmp_path):
    from bertcli import load

    pairs = write_csv(tmp_path / "check.csv", toy_pairs(30, seed=5))
    out = tmp_path / "onnx"
    result = runner.invoke(
        app, ["export", str(reranker), "-o", str(out), "--quantize", "int8", "--check", str(pairs), "--max-drop", "0.5"]
    )
    assert result.exit_code == 0, result.stderr
    check = json.loads((out / "bertcli.json").read_text())["onnx"]["int8"]
    assert check["metric"] == "ndcg@10" and check["examples"] == 30 and 0 <= check["int8"] <= 1
    texts = candidates()
    fp32 = load(str(out), onnx_file="model.onnx").rerank(QUERY, texts)
    torch_ranked = load(str(reranker), precision="no").rerank(QUERY, texts)
    assert [r["index"] for r in fp32] == [r["index"] for r in torch_ranked]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(fp32, torch_ranked)) < 1e-4
    file = tmp_path / "candidates.txt"
    file.write_text("\n".join(texts) + "\n")
    heavy = ("torch", "transformers", "datasets", "accelerate")
    code = (
        "import sys\nfrom bertcli.cli.main import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        f"print('loaded:', [m for m in {heavy!r} if m in sys.modules], file=sys.stderr)"
    )
    args = ["rerank", str(out), str(file), "--query", QUERY]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "loaded: []" in done.stderr, done.stderr[-2000:]
    assert len(done.stdout.splitlines()) == len(texts)  # the torch-free path reranks every candidate


def test_labelled_rows_are_detected_evaluated_and_bad_labels_are_named(reranker, tiny_model, tmp_path):
    from bertcli.errors import DataError
    from bertcli.tasks import evaluate, training_task

    rows = [{"query": r["query"], "document": r["positive"], "label": 1} for r in toy_pairs(10)]
    cfg = build_config(
        FinetuneConfig, None, train=str(write_csv(tmp_path / "rows.csv", rows)), output=str(tmp_path / "o")
    )
    assert training_task(cfg).name == "rerank"
    report = evaluate(EvaluateConfig(model_dir=str(reranker), input=str(tmp_path / "rows.csv"), precision="no"))
    assert report["n"] == 10 and report["corpus_size"] == 10 and report["first_stage"] == "bm25"
    assert report["recall@100"] == report["baseline"]["recall@100"] == 1.0  # all 10 documents reranked, none lost
    bad = write_csv(tmp_path / "bad.csv", [{**r, "label": "yes"} for r in rows])
    with pytest.raises(DataError, match="bad.csv:2, column 'label': relevance must be a number or true/false"):
        finetune(
            build_config(
                FinetuneConfig, None, train=str(bad), output=str(tmp_path / "o2"), model=str(tiny_model), task="rerank"
            )
        )
    empty = write_csv(tmp_path / "empty.csv", [{**rows[0], "document": ""}, *rows[1:]])
    result = runner.invoke(app, ["finetune", str(empty), "-o", str(tmp_path / "o3"), "--model", str(tiny_model)])
    assert result.exit_code == 1 and "row" in result.stderr and "document" in result.stderr


def test_predict_scores_each_query_document_record(reranker, tmp_path):
    from bertcli import load

    rows = [{"query": QUERY, "document": text} for text in candidates()[:5]]
    result = runner.invoke(
        app, ["predict", str(reranker), str(write_csv(tmp_path / "pairs.csv", rows)), "--precision", "no"]
    )
    assert result.exit_code == 0, result.stderr
    expected = load(str(reranker), precision="no").predict([QUERY] * 5, [r["document"] for r in rows])
    assert [json.loads(line)["score"] for line in result.stdout.splitlines()] == [e["score"] for e in expected]
    assert all(0 < e["score"] < 1 for e in expected)


def _windowed_copy(reranker: Path, root: Path, **policy) -> Path:
    """The trained reranker with another long-text policy in its bertcli.json (what finetune --long-text records)."""
    import shutil

    copy = root / "windowed"
    shutil.copytree(reranker, copy)
    meta = json.loads((copy / "bertcli.json").read_text())
    meta["long_text"] = {**meta["long_text"], **policy}
    (copy / "bertcli.json").write_text(json.dumps(meta))
    return copy


def _peer_window_logits(model_dir: Path, query: str, document: str, max_length: int, stride: int) -> list[float]:
    """Each window's logit the transformers way: the tokenizer's overflowing windows of the document (query whole),
    each scored by the plain sequence classifier."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    windows = tokenizer(
        query, document, truncation="only_second", max_length=max_length, stride=stride,
        return_overflowing_tokens=True, padding=True, return_tensors="pt",
    )  # fmt: skip
    with torch.no_grad():
        logits = model(input_ids=windows["input_ids"], attention_mask=windows["attention_mask"],
                       token_type_ids=windows["token_type_ids"]).logits  # fmt: skip
    return logits[:, 0].tolist()


def test_a_long_document_is_read_in_windows_and_scored_by_its_best_one(reranker, tmp_path):
    from bertcli import load

    meta = json.loads((reranker / "bertcli.json").read_text())
    length = meta["max_length"]
    assert meta["long_text"] == {"mode": "truncate", "max_length": length, "stride": length // 4, "aggregate": "max"}
    texts = candidates()
    cutting = load(str(reranker), precision="no")
    alone = [logit for logit, _ in cutting.run([(QUERY, t) for t in texts])]
    worst, best = texts[int(np.argmin(alone))], texts[int(np.argmax(alone))]
    document = " ".join([worst] * 30 + [best] * 30)  # the best passage is past the training length
    peer = _peer_window_logits(reranker, QUERY, document, length, length // 4)
    assert len(peer) > 2 and int(np.argmax(peer)) > 0 and max(peer) - peer[0] > 1e-5
    cut = cutting.run([(QUERY, document), (QUERY, best)])
    scores = load(str(reranker), precision="no", long_text="window").run([(QUERY, document), (QUERY, best)])
    assert cut[0][1] is True and scores[0][1] is False
    assert scores[0][0] == pytest.approx(max(peer), abs=1e-6)
    assert cut[0][0] == pytest.approx(peer[0], abs=1e-6)  # truncating reads the first window only
    assert scores[1] == pytest.approx(cut[1], abs=1e-6)  # a pair that fits reads the same either way
    mean = load(str(reranker), precision="no", long_text="window", aggregate="mean").run([(QUERY, document)])
    assert mean[0][0] == pytest.approx(float(np.mean(peer)), abs=1e-6)


def test_a_windowing_bundle_reranks_long_documents_alike_in_the_command_and_the_route(reranker, tmp_path):
    windowed = _windowed_copy(reranker, tmp_path, mode="window")
    texts = candidates()
    documents = [" ".join(texts[5:] * 6), texts[0], " ".join(texts[2:4] * 20)]
    file = tmp_path / "docs.jsonl"
    file.write_text("".join(json.dumps({"text": d}) + "\n" for d in documents))
    cli = runner.invoke(app, ["rerank", str(windowed), str(file), "--query", QUERY, "--precision", "no"])
    expected = [json.loads(line) for line in cli.stdout.splitlines()]
    flag = runner.invoke(
        app, ["rerank", str(reranker), str(file), "--query", QUERY, "--precision", "no", "--long-text", "window"]
    )
    assert cli.exit_code == 0 and flag.exit_code == 0
    assert [json.loads(line) for line in flag.stdout.splitlines()] == expected
    cut = runner.invoke(app, ["rerank", str(reranker), str(file), "--query", QUERY, "--precision", "no"])
    assert {e["index"] for e in map(json.loads, cut.stdout.splitlines()) if e.get("truncated")} == {0, 2}
    assert not any("truncated" in e for e in expected)  # windows read the long documents whole
    answers = post_in_process(windowed, "/rerank", [{"query": QUERY, "texts": documents, "truncate": False}])
    ranked = answers[0].json()
    assert answers[0].status_code == 200 and [r["index"] for r in ranked] == [e["index"] for e in expected]
    assert [r["score"] for r in ranked] == pytest.approx([e["score"] for e in expected], abs=1e-6)
    long_query = " ".join(["guitar"] * 400)  # leaves the document no room: cut, so refused when asked not to cut
    refused = post_in_process(windowed, "/rerank", [{"query": long_query, "texts": ["a guitar"], "truncate": False}])
    assert refused[0].status_code == 413 and refused[0].json()["error"]["code"] == "input_too_long"


def test_finetune_records_the_window_policy_it_is_given(tiny_model, tmp_path):
    train = write_csv(tmp_path / "pairs.csv", toy_pairs(24))
    cfg = build_config(
        FinetuneConfig, None, train=str(train), output=str(tmp_path / "m"), model=str(tiny_model), task="rerank",
        long_text="window", stride=8, **{**FAST, "epochs": 1, "hard_negatives": 1},
    )  # fmt: skip
    finetune(cfg)
    meta = json.loads((tmp_path / "m" / "bertcli.json").read_text())
    assert meta["long_text"] == {"mode": "window", "max_length": meta["max_length"], "stride": 8, "aggregate": "max"}


def test_the_run_records_its_first_stage_and_warns_only_when_reranking_does_not_beat_it(reranker):
    """The tiny reranker's record holds its first stage's validation scores; the `degenerate` verdict is there exactly
    when the kept model's validation NDCG@10 does not beat them."""
    meta = json.loads((reranker / "bertcli.json").read_text())
    first = meta["train_data"]["first_stage_validation"]
    assert set(first) == {"ndcg@10", "mrr@10", "recall@10"} and all(0 <= v <= 1 for v in first.values())
    kept = meta["best"]["ndcg@10"]
    assert ("degenerate" in meta) == (kept <= first["ndcg@10"])


@pytest.mark.parametrize(("after", "before", "warned"), [(0.9, 0.85, False), (0.85, 0.85, True), (0.8, 0.85, True)])
def test_a_reranker_no_better_than_its_first_stage_is_named_with_both_scores(after, before, warned):
    from bertcli.tasks.rerank.training import no_better_than_first_stage

    found = no_better_than_first_stage(after, {"ndcg@10": before, "mrr@10": 0.4, "recall@10": 0.9}, "ndcg@10", 150)
    assert (found is not None) == warned
    if warned:
        assert found["reason"] == "no better than the first stage"
        assert found["ndcg@10"] == after and found["first_stage_ndcg@10"] == before
        assert f"validation ndcg@10 {after:.4f} reranked vs {before:.4f} as retrieved (150 queries)" in found["warning"]
        assert "more training queries" in found["warning"]


def test_a_reranker_below_a_strong_first_stage_says_so_in_the_run_the_record_and_the_card(tiny_model, tmp_path, caplog):
    """all-MiniLM-L6-v2 finds each toy query's one shared key word; a tiny reranker barely trained cannot beat it."""
    from bertcli.hub import default_model

    train = write_csv(tmp_path / "pairs.csv", toy_pairs(49))
    cfg = build_config(
        FinetuneConfig, None, train=str(train), output=str(tmp_path / "model"), model=str(tiny_model), task="rerank",
        retriever=default_model(), **{**FAST, "lr": 1e-7, "epochs": 1},
    )  # fmt: skip
    logger = logging.getLogger("bertcli")  # a CLI test earlier may have stopped it propagating to the root
    logger.addHandler(caplog.handler)
    try:
        finetune(cfg)
    finally:
        logger.removeHandler(caplog.handler)
    meta = json.loads((tmp_path / "model" / "bertcli.json").read_text())
    first, verdict = meta["train_data"]["first_stage_validation"], meta["degenerate"]
    assert verdict["first_stage_ndcg@10"] == first["ndcg@10"] == 1.0  # every key word found first
    assert first["mrr@10"] == 1.0 and verdict["ndcg@10"] < 1.0
    assert verdict["ndcg@10"] == pytest.approx(meta["best"]["ndcg@10"], abs=1e-6)
    warnings = [r.getMessage() for r in caplog.records if "no better than its first stage" in r.getMessage()]
    assert warnings == [verdict["warning"]]
    assert f"**Warning:** {verdict['warning']}." in (tmp_path / "model" / "README.md").read_text()
