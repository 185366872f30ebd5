"""Sequence classification end to end with a tiny random BERT: finetune -> evaluate -> predict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same_weights, sentiment_rows, write_csv
from typer.testing import CliRunner

from bertcli.cli.main import app
from bertcli.config import FinetuneConfig, build_config
from bertcli.errors import Interrupted
from bertcli.tasks.classification.finetune import train_classifier as finetune
from bertcli.training.loop import Callbacks

runner = CliRunner()
FAST = dict(epochs=6, lr=5e-3, batch_size=16)


def _config(train: Path, output: Path, model: Path, **overrides) -> FinetuneConfig:
    return build_config(
        FinetuneConfig, None, train=str(train), output=str(output), model=str(model), **{**FAST, **overrides}
    )


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    """One tiny sentiment model shared by the round-trip tests (trained once, ~5 s)."""
    root = tmp_path_factory.mktemp("trained")
    train = write_csv(root / "train.csv", sentiment_rows(160))
    test = write_csv(root / "test.csv", sentiment_rows(40, seed=1))
    result = finetune(_config(train, root / "model", tiny_model))
    return result.output, train, test


def test_bundle_is_a_standard_model_directory(trained):
    from transformers import AutoModelForSequenceClassification

    model_dir, _, _ = trained
    assert {"config.json", "model.safetensors", "tokenizer.json", "bertcli.json"} <= {
        p.name for p in model_dir.iterdir()
    }
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert model.config.problem_type == "single_label_classification"
    meta = json.loads((model_dir / "bertcli.json").read_text())
    assert meta["task"] == "single_label" and meta["labels"] == ["neg", "pos"]
    assert meta["columns"]["text"] == "text" and len(meta["train_data"]["sha256"]) == 64
    assert meta["history"][-1]["accuracy"] >= 0.9  # the toy task is learnt
    assert meta["versions"]["transformers"] and meta["train_examples_per_second"] > 0
    assert not Path(str(model_dir) + ".incomplete").exists()


def test_evaluate_reports_metrics_and_errors(trained, tmp_path):
    model_dir, _, test = trained
    report_path, errors_path = tmp_path / "report.json", tmp_path / "errors.jsonl"
    result = runner.invoke(
        app, ["evaluate", str(model_dir), str(test), "--json", "-o", str(report_path), "--errors", str(errors_path)]
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == json.loads(report_path.read_text())
    assert report["n"] == 40 and report["accuracy"] >= 0.9
    matrix = np.array(report["confusion_matrix"])
    assert matrix.sum() == 40 and matrix.trace() == round(report["accuracy"] * 40)
    errors = [json.loads(line) for line in errors_path.read_text().splitlines()]
    assert len(errors) == 40 - matrix.trace()
    assert all(e["label"] != e["predicted"] and e["score"] == max(e["scores"].values()) for e in errors)


def test_evaluate_tables_on_stdout(trained):
    model_dir, _, test = trained
    result = runner.invoke(app, ["evaluate", str(model_dir), str(test)])
    assert result.exit_code == 0
    assert "accuracy" in result.stdout and "confusion matrix" in result.stdout and "per class" in result.stdout


TEXTS = ["the movie was great", "awful boring film", "", "i loved it"]


@pytest.mark.parametrize("how", ["file", "dash", "implicit-stdin"])
def test_predict_input_modes_agree_with_pipeline(trained, tmp_path, how):
    from transformers import pipeline

    model_dir, _, _ = trained
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    args = {"file": [str(source)], "dash": ["-"], "implicit-stdin": []}[how]
    # fp32 like the pipeline: on a machine with fast bf16 (e.g. a GPU) `auto` would pick bf16 and move scores by ~2e-4
    command = ["predict", str(model_dir), *args, "--precision", "no"]
    result = runner.invoke(app, command, input=None if how == "file" else source.read_text())
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == len(TEXTS)  # line N in, record N out
    assert records[2] == {"label": None, "score": None, "scores": None}
    reference = pipeline("text-classification", model=str(model_dir))
    live = [t for t in TEXTS if t]
    expected = reference(live)
    got = [r for r in records if r["label"] is not None]
    assert [r["label"] for r in got] == [e["label"] for e in expected]
    assert np.allclose([r["score"] for r in got], [e["score"] for e in expected], atol=1e-4)
    assert all(abs(sum(r["scores"].values()) - 1) < 1e-4 for r in got)


def test_predict_columns_ids_topk_and_csv_output(trained, tmp_path):
    model_dir, _, _ = trained
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"uid": f"u{i}", "review": t or " "}) + "\n" for i, t in enumerate(TEXTS)))
    out = tmp_path / "out.csv"
    args = [
        "predict",
        str(model_dir),
        str(source),
        "--id-column",
        "uid",
        "--text-column",
        "review",
        "--top-k",
        "1",
        "-o",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    lines = out.read_text().splitlines()
    assert lines[0] == "id,label,score,scores" and len(lines) == 5
    import csv

    rows = list(csv.DictReader(lines))
    assert [r["id"] for r in rows] == ["u0", "u1", "u2", "u3"]
    assert rows[2] == {"id": "u2", "label": "", "score": "", "scores": ""}  # the blank review
    for row in (rows[0], rows[1], rows[3]):
        scores = json.loads(row["scores"])
        assert list(scores) == [row["label"]] and scores[row["label"]] == float(row["score"]) >= 0.5


def test_predict_marks_truncated_inputs(trained):
    model_dir, _, _ = trained
    long_text = " ".join(["great"] * 40)
    result = runner.invoke(
        app, ["predict", str(model_dir), "--max-length", "16"], input=f"{long_text}\nshort and good\n"
    )
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0].get("truncated") is True and "truncated" not in records[1]


def _tiny_task(tmp_path, tiny_model, rows, **overrides):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return finetune(_config(train, tmp_path / "model", tiny_model, **overrides))


def test_multi_label_bundle_and_predictions(tmp_path, tiny_model):
    from transformers import AutoModelForSequenceClassification

    rows = [
        {
            "text": r["text"] + (" sports" if i % 3 == 0 else ""),
            "labels": [r["label"]] + (["sport"] if i % 3 == 0 else []),
        }
        for i, r in enumerate(sentiment_rows(120))
    ]
    result = _tiny_task(tmp_path, tiny_model, rows, epochs=8)
    assert result.meta.task == "multi_label" and result.meta.labels == ["neg", "pos", "sport"]
    model = AutoModelForSequenceClassification.from_pretrained(str(result.output))
    assert model.config.problem_type == "multi_label_classification"
    out = runner.invoke(app, ["predict", str(result.output)], input="great movie sports\n")
    record = json.loads(out.stdout)
    assert set(record["scores"]) == {"neg", "pos", "sport"} and isinstance(record["labels"], list)
    assert set(record["labels"]) == {
        n for n, p in record["scores"].items() if p >= 0.5
    }  # labels in label order, scores ranked


def test_regression_bundle_and_predictions(tmp_path, tiny_model):
    rows = [
        {"text": r["text"], "score": (4.5 if r["label"] == "pos" else 1.5) + 0.25 * (i % 3)}
        for i, r in enumerate(sentiment_rows(120))
    ]
    result = _tiny_task(tmp_path, tiny_model, rows, epochs=8)
    assert result.meta.task == "regression" and result.meta.labels == []
    assert result.meta.metric == "mse" and result.meta.history[-1]["mse"] < result.meta.history[0]["mse"]
    out = runner.invoke(app, ["predict", str(result.output)], input="great movie\n")
    assert isinstance(json.loads(out.stdout)["score"], float)


@pytest.mark.parametrize("val_split", [0.1, 0.0], ids=["best", "last"])
def test_resume_equals_uninterrupted_run(tmp_path, tiny_model, val_split):
    """Stop after k steps (Ctrl-C), resume with --resume auto: the weights equal an uninterrupted run's, both the
    best-on-validation ones and, with nothing held out, the last ones (which show the order of every later epoch)."""

    train = write_csv(tmp_path / "train.csv", sentiment_rows(96))
    settings = dict(epochs=3, batch_size=16, lr=5e-3, val_split=val_split)  # 6 steps per epoch: stop mid-epoch 2
    whole = finetune(_config(train, tmp_path / "whole", tiny_model, **settings))

    def stop_at_8(step):
        if step == 8:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="interrupted at step 8"):
        finetune(_config(train, tmp_path / "split", tiny_model, **settings), Callbacks(on_step=stop_at_8))
    assert not (tmp_path / "split").exists()  # nothing that looks finished
    assert (tmp_path / "split.incomplete" / "checkpoints" / "step-0000008").is_dir()
    resumed = finetune(_config(train, tmp_path / "split", tiny_model, resume="auto", **settings))
    assert resumed.meta.run["steps"] == whole.meta.run["steps"] == 18
    assert_same_weights(tmp_path / "whole", tmp_path / "split")
    assert [h["accuracy"] for h in resumed.meta.history] == [h["accuracy"] for h in whole.meta.history]


def test_existing_output_needs_overwrite(tmp_path, tiny_model, sentiment_csv):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = runner.invoke(app, ["finetune", str(sentiment_csv), "-o", str(out), "--model", str(tiny_model)])
    assert result.exit_code == 2
    assert "output directory already exists" in result.stderr and "--overwrite" in result.stderr
    assert (out / "keep.txt").read_text() == "precious"


def _bertcli(*args: str) -> list[str]:
    return [sys.executable, "-m", "bertcli", *args]


def test_predict_streams_before_stdin_closes(trained):
    """The first result appears while the producer is still writing (tail -f | bertcli predict)."""
    model_dir, _, _ = trained
    proc = subprocess.Popen(
        _bertcli("predict", str(model_dir)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        proc.stdin.write("what a great film\n")
        proc.stdin.flush()
        first = proc.stdout.readline()  # blocks until bertcli answers; stdin is still open
        assert json.loads(first)["label"] in ("pos", "neg")
        assert proc.poll() is None
        proc.stdin.write("so boring\n")
        proc.stdin.close()
        rest = proc.stdout.read().splitlines()
        assert len(rest) == 1 and proc.wait(timeout=60) == 0
    finally:
        proc.kill()


def test_predict_into_closed_pipe_exits_quietly(trained, tmp_path):
    model_dir, _, _ = trained
    big = tmp_path / "big.txt"
    big.write_text("a great movie\n" * 3000)
    shell = f"{' '.join(_bertcli('predict', str(model_dir), str(big)))} | head -1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] in ("pos", "neg")
    assert "Traceback" not in done.stderr and "Broken pipe" not in done.stderr


def test_sentence_pairs_train_and_evaluate(tmp_path, tiny_model):
    """sentence1/sentence2 columns are detected and encoded as one pair (token type ids 0 then 1)."""

    rows = [
        {"sentence1": r["text"], "sentence2": "it was " + ("great" if i % 4 < 2 else "awful"), "label": int(i % 4 < 2)}
        for i, r in enumerate(sentiment_rows(120))
    ]
    result = _tiny_task(tmp_path, tiny_model, rows, epochs=8)
    assert result.meta.columns == {"text": "sentence1", "pair": "sentence2", "label": "label"}
    assert result.meta.labels == ["0", "1"]
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps(r) + "\n" for r in rows[:40]))
    out = runner.invoke(app, ["evaluate", str(result.output), str(test), "--json"])
    assert out.exit_code == 0, out.stderr
    assert json.loads(out.stdout)["n"] == 40 and "pair='sentence2'" in json.loads(out.stdout)["columns"]


def test_class_weights_are_inverse_frequencies():
    from bertcli.tasks.classification.finetune import class_weights

    weights = class_weights("single_label", [0, 0, 0, 1], 2)
    assert weights.tolist() == pytest.approx([4 / 6, 4 / 2])
    pos_weight = class_weights("multi_label", [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]], 2)
    assert pos_weight.tolist() == pytest.approx([1 / 3, 3.0])


@pytest.mark.parametrize("class_weights", ["none", "auto"])
def test_class_weights_reach_the_training_loss(tmp_path, tiny_model, class_weights):
    """The loss the loop minimises is cross-entropy weighted by the training split's inverse frequencies."""
    import torch
    import torch.nn.functional as F

    from bertcli.hub import load_tokenizer
    from bertcli.runtime.accelerator import make_accelerator
    from bertcli.tasks.classification.finetune import ClassifierTraining

    rows = [r for i, r in enumerate(sentiment_rows(120)) if r["label"] == "pos" or i % 4 == 1]  # 60 pos : 30 neg
    cfg = _config(
        write_csv(tmp_path / "t.csv", rows),
        tmp_path / "out",
        tiny_model,
        val_split=0.0,
        class_weights=class_weights,
        precision="no",
    )
    task = ClassifierTraining()
    data = task.read(cfg)
    model = task.load_model(str(tiny_model), data)
    prepared = task.prepare(cfg, data, load_tokenizer(str(tiny_model)), model, make_accelerator("no"))
    batch = prepared.collate(prepared.examples[:40])
    labels = batch["labels"].clone()
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        loss = prepared.loss(model, dict(batch))
    inverse = torch.tensor([90 / (2 * 30), 90 / (2 * 60)])  # neg is rarer: it weighs twice as much as pos
    expected, other = (inverse, None) if class_weights == "auto" else (None, inverse)
    torch.testing.assert_close(loss, F.cross_entropy(logits.float(), labels, weight=expected))
    assert abs(loss.item() - F.cross_entropy(logits.float(), labels, weight=other).item()) > 1e-4


def test_class_weights_auto_is_recorded_and_trains(tmp_path, tiny_model):
    rows = sentiment_rows(120)
    rows = [r for i, r in enumerate(rows) if r["label"] == "pos" or i % 4 == 1]  # 3:1 imbalance
    result = _tiny_task(tmp_path, tiny_model, rows, epochs=2, class_weights="auto")
    assert result.meta.run["config"]["training"]["class_weights"] == "auto" and result.meta.run["steps"] > 0
