"""A lone surrogate (`"\\ud800"` in JSON: half of an emoji) becomes U+FFFD with one warning naming the file and line,
in every command that reads text; bytes that are not UTF-8 stay refused with the line they are on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import sentiment_rows, toy_corpus
from typer.testing import CliRunner

from bertcli.cli.main import app
from bertcli.config import DataOptions
from bertcli.data.text import repair, repair_inputs

runner = CliRunner()
BAD = "bad \ud800 text"  # what json.loads makes of the line {"text": "bad \ud800 text"}


def test_repair_replaces_lone_surrogates_and_keeps_everything_else():
    assert repair(BAD) == "bad \ufffd text"
    assert repair("\udc00 low first, then high \udbff") == "\ufffd low first, then high \ufffd"
    assert repair("a split pair \ud83d\ude00 whole again") == "a split pair \U0001f600 whole again"
    for text in ("plain", "café 😀 ok", ""):
        assert repair(text) is text  # valid text is passed through, not copied


def test_repair_inputs_names_pairs_and_keeps_the_order():
    inputs = ["fine", ["ok", "x \udfff"], BAD]
    assert repair_inputs(inputs, "/test-route") == ["fine", ["ok", "x \ufffd"], "bad \ufffd text"]


def jsonl(path: Path, rows: list[dict], bad_line: int) -> Path:
    """Rows as JSONL (escaped the way json.dumps writes them), line `bad_line` holding a lone surrogate."""
    rows = [dict(row) for row in rows]
    rows[bad_line - 1]["text"] = BAD
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    assert "\\ud800" in path.read_text(encoding="utf-8").splitlines()[bad_line - 1]
    return path


def warned(stderr: str, path: Path, line: int) -> bool:
    return f"{path}:{line}: a lone UTF-16 surrogate" in stderr and "U+FFFD" in stderr


@pytest.fixture(scope="module")
def classifier(tiny_model, tmp_path_factory):
    """A classifier fine-tuned on JSONL whose line 5 holds a lone surrogate (the warning is checked here)."""
    root = tmp_path_factory.mktemp("surrogate")
    train = jsonl(root / "train.jsonl", sentiment_rows(64), bad_line=5)
    args = ["finetune", str(train), "-o", str(root / "clf"), "-m", str(tiny_model), "--epochs", "1", "-b", "16"]
    result = runner.invoke(app, [*args, "--precision", "no"])
    assert result.exit_code == 0, result.stderr
    assert warned(result.stderr, train, 5)
    return root / "clf"


def test_finetune_trains_on_every_row(classifier):
    meta = json.loads((classifier / "bertcli.json").read_text())
    assert meta["task"] == "single_label" and meta["labels"] == ["neg", "pos"]


def test_evaluate_scores_every_row(classifier, tmp_path):
    data = jsonl(tmp_path / "test.jsonl", sentiment_rows(12, seed=3), bad_line=2)
    result = runner.invoke(app, ["evaluate", str(classifier), str(data), "--precision", "no", "--json"])
    assert result.exit_code == 0, result.stderr
    assert warned(result.stderr, data, 2)
    report = json.loads(result.stdout)
    assert report["n"] == 12 and np.array(report["confusion_matrix"]).sum() == 12


def test_predict_answers_every_line_including_the_repaired_one(classifier, tmp_path):
    data = jsonl(tmp_path / "in.jsonl", sentiment_rows(6, seed=4), bad_line=3)
    result = runner.invoke(app, ["predict", str(classifier), str(data), "--precision", "no"])
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 6 and all(r["label"] in ("neg", "pos") for r in records)
    assert warned(result.stderr, data, 3) and result.stderr.count("lone UTF-16 surrogate") == 1


def test_predict_warns_once_for_many_bad_lines(classifier, tmp_path):
    rows = sentiment_rows(5, seed=5)
    for row in rows[1:]:
        row["text"] = BAD
    data = tmp_path / "many.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = runner.invoke(app, ["predict", str(classifier), str(data), "--precision", "no"])
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 5
    assert warned(result.stderr, data, 2) and result.stderr.count("lone UTF-16 surrogate") == 1


def test_a_surrogate_written_as_bytes_in_a_csv_is_refused_with_its_line(classifier, tmp_path):
    """A CSV cannot spell a surrogate except as bytes that are not UTF-8 (CESU-8/WTF-8): the encoding is wrong."""
    data = tmp_path / "in.csv"
    data.write_bytes(b"text,label\ngood,pos\nbad \xed\xa0\x80 text,neg\n")
    result = runner.invoke(app, ["predict", str(classifier), str(data), "--precision", "no"])
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"bertcli: error: {data}:3: bytes are not valid UTF-8 (at byte 4 of the line)")


def test_embed_writes_a_vector_for_every_line(tiny_model, tmp_path):
    data = jsonl(tmp_path / "in.jsonl", sentiment_rows(4, seed=6), bad_line=4)
    out = tmp_path / "v.npy"
    result = runner.invoke(app, ["embed", str(data), "-m", str(tiny_model), "-o", str(out), "--precision", "no"])
    assert result.exit_code == 0, result.stderr
    vectors = np.load(out)
    assert vectors.shape[0] == 4 and np.isfinite(vectors).all()
    assert warned(result.stderr, data, 4)


def test_tokenize_shows_the_replacement(tiny_model, tmp_path):
    data = jsonl(tmp_path / "in.jsonl", sentiment_rows(3, seed=7), bad_line=1)
    result = runner.invoke(app, ["tokenize", str(data), "-m", str(tiny_model)])
    assert result.exit_code == 0, result.stderr
    first = json.loads(result.stdout.splitlines()[0])
    assert first["tokens"] == ["[CLS]", "bad", "t", "##e", "##x", "##t", "[SEP]"]  # BERT's normaliser drops U+FFFD
    assert len(result.stdout.splitlines()) == 3 and warned(result.stderr, data, 1)


def test_ner_finetune_and_predict_read_a_lone_surrogate(tiny_model, tmp_path):
    sentences = toy_corpus(48, seed=1)
    lines = [json.dumps({"tokens": words, "tags": tags}) for words, tags in sentences]
    lines[6] = json.dumps({"tokens": ["x\ud800", "guitar"], "tags": ["O", "B-PER"]})
    train = tmp_path / "ner.jsonl"
    train.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    args = ["finetune", str(train), "-o", str(tmp_path / "ner"), "-m", str(tiny_model), "--epochs", "1"]
    result = runner.invoke(app, [*args, "--precision", "no"])
    assert result.exit_code == 0, result.stderr
    assert warned(result.stderr, train, 7)
    texts = tmp_path / "texts.jsonl"
    texts.write_text(json.dumps({"text": "a guitar \ud83d"}) + "\n" + json.dumps({"text": "the vote"}) + "\n")
    result = runner.invoke(app, ["predict", str(tmp_path / "ner"), str(texts), "--precision", "no"])
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2 and all(isinstance(r["entities"], list) for r in records)
    assert warned(result.stderr, texts, 1)


@pytest.mark.parametrize("streaming", [[], ["--streaming"]])
def test_pretrain_reads_a_corpus_with_a_lone_surrogate(tiny_model, tmp_path, streaming):
    """Arrow's JSON reader refuses a whole file over one lone surrogate; both of pretrain's readers repair it."""
    from bertcli.tasks.pretraining.data import read_documents

    rows = [{"text": f"the movie number {i} was good and fun"} for i in range(40)]
    corpus = jsonl(tmp_path / "corpus.jsonl", rows, bad_line=4)
    args = ["pretrain", str(corpus), "-m", str(tiny_model), "-o", str(tmp_path / "out"), "--max-steps", "2"]
    result = runner.invoke(app, [*args, *streaming, "--precision", "no"])
    assert result.exit_code == 0, result.stderr
    assert warned(result.stderr, corpus, 4) and (tmp_path / "out" / "bertcli.json").is_file()
    documents = list(read_documents([corpus], DataOptions(), streaming=bool(streaming)))
    assert len(documents) == 40 and documents[3] == ["bad \ufffd text"]
