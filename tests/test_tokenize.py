"""bertcli tokenize: per-input tokens/ids/offsets/word ids, --stats figures on a known input, and WordPiece training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bertcli.cli.main import app
from bertcli.inference.encoding import suggest_max_length

runner = CliRunner()


def _tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


@pytest.mark.parametrize("how", ["argument", "file", "stdin"])
def test_tokens_ids_offsets_and_word_ids(tiny_model, tmp_path, how):
    texts = ["The movie was wonderfulx", "bad, boring acting!"]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    args, stdin = {
        "argument": ([texts[0]], None),
        "file": ([str(source)], None),
        "stdin": ([], source.read_text()),
    }[how]
    result = runner.invoke(app, ["tokenize", *args, "-m", str(tiny_model)], input=stdin)
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == (1 if how == "argument" else 2)
    tokenizer = _tokenizer(tiny_model)
    for record, text in zip(records, texts):
        assert record["text"] == text and record["ids"] == tokenizer(text)["input_ids"]
        assert record["tokens"] == tokenizer.convert_ids_to_tokens(record["ids"])
        assert record["tokens"][0] == "[CLS]" and record["word_ids"][0] is None and record["offsets"][0] == [0, 0]
        for token, (start, end) in zip(record["tokens"][1:-1], record["offsets"][1:-1]):
            assert text[start:end].lower() == token.removeprefix("##")
    first = records[0]
    assert first["tokens"][1:-1] == ["the", "movie", "was", "wonderful", "##x"]
    assert first["word_ids"] == [None, 0, 1, 2, 3, 3, None]


def test_table_output(tiny_model):
    result = runner.invoke(
        app, ["tokenize", "the movie was wonderfulx", "-m", str(tiny_model), "--output-format", "table"]
    )
    assert result.exit_code == 0, result.stderr
    assert "(7 tokens)" in result.stdout and "##x" in result.stdout and "14-23" in result.stdout


def test_a_missing_data_file_is_not_taken_for_text(tiny_model):
    result = runner.invoke(app, ["tokenize", "reviews.csv", "-m", str(tiny_model)])
    assert result.exit_code == 1 and "reviews.csv: file not found" in result.stderr


# known lengths with the tiny vocabulary: k words of "good" -> k + 2 tokens; the snowman is [UNK]
STATS_TEXTS = [" ".join(["good"] * k) for k in range(1, 10)] + ["good \u2603 \u2603"]


@pytest.mark.parametrize("how", ["txt", "jsonl-column", "stdin"])
def test_stats_on_a_known_input(tiny_model, tmp_path, how):
    if how == "jsonl-column":
        source = tmp_path / "in.jsonl"
        source.write_text(
            "".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in enumerate(STATS_TEXTS)), encoding="utf-8"
        )
        args = [str(source), "--text-column", "body"]
    else:
        source = tmp_path / "in.txt"
        source.write_text("\n".join(STATS_TEXTS) + "\n", encoding="utf-8")
        args = [str(source)] if how == "txt" else []
    stdin = source.read_text() if how == "stdin" else None
    result = runner.invoke(app, ["tokenize", *args, "--stats", "-m", str(tiny_model), "--max-length", "8"], input=stdin)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    # lengths 3..11 and 5: sorted 3 4 5 5 6 7 8 9 10 11 (nearest-rank percentiles)
    assert report["count"] == 10 and report["tokens"] == 68
    assert report["length"] == {"mean": 6.8, "min": 3, "p50": 6, "p90": 10, "p95": 11, "p99": 11, "max": 11}
    assert report["truncated"] == {"8": 0.3, "128": 0.0, "256": 0.0, "512": 0.0}
    assert report["unk_rate"] == round(2 / 48, 6) and report["examples_with_unk"] == 0.1
    assert (
        report["model_max_length"] == 128
        and report["suggested_max_length"] == 32
        and report["truncated_at_suggested"] == 0.0
    )
    assert report["text_column"] == ("body" if how == "jsonl-column" else "text")


def test_stats_table(tiny_model, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(STATS_TEXTS) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["tokenize", str(source), "--stats", "-m", str(tiny_model), "--output-format", "table"])
    assert result.exit_code == 0, result.stderr
    assert "suggested --max-length" in result.stdout and "p95 length" in result.stdout and "4.167%" in result.stdout


def test_suggested_max_length():
    assert suggest_max_length(11, 512) == 32
    assert suggest_max_length(32, 512) == 32 and suggest_max_length(33, 512) == 64
    assert suggest_max_length(700, 512) == 512


# --- vocabulary training -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from bertcli.corpora import rotten_tomatoes

    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    texts = [" ".join(t.split()) for t in rotten_tomatoes()[0]["text"].tolist()[:3000]]  # one snippet per line
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("case", ["--lowercase", "--cased"])
def test_trained_vocabulary_round_trips(corpus, tmp_path, case):
    import transformers

    out = tmp_path / "tok"
    args = ["tokenize", str(corpus), "--train-vocab", "-o", str(out), "--vocab-size", "2000", case]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "on 3000 texts" in result.stderr
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
    assert isinstance(tokenizer, transformers.BertTokenizerFast) and tokenizer.is_fast
    assert 1000 < len(tokenizer) <= 2000
    assert tokenizer.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [0, 1, 2, 3, 4]
    assert (
        tokenizer.pad_token,
        tokenizer.unk_token,
        tokenizer.cls_token,
        tokenizer.sep_token,
        tokenizer.mask_token,
    ) == (
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    )
    text = "The film was a wonderful surprise."
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id and tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == (text.lower() if case == "--lowercase" else text)
    pair = tokenizer("a film", "a movie")
    assert pair["input_ids"].count(tokenizer.sep_token_id) == 2 and pair["token_type_ids"][-1] == 1

    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "pass --overwrite" in again.stderr
    stats = runner.invoke(app, ["tokenize", str(corpus), "--stats", "-m", str(out)])
    assert stats.exit_code == 0, stats.stderr
    assert json.loads(stats.stdout)["count"] == 3000


def test_train_vocab_refuses_to_replace_other_directories(corpus, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["tokenize", str(corpus), "--train-vocab", "-o", str(tmp_path), "--overwrite"])
    assert result.exit_code == 2 and "holds no tokenizer" in result.stderr and (tmp_path / "notes.txt").exists()
    both = runner.invoke(app, ["tokenize", str(corpus), "--train-vocab", "--stats", "-o", str(tmp_path / "t")])
    assert both.exit_code == 2 and "separate modes" in both.stderr
