"""Every recipe in recipes/ runs as written, in a smoke size: real packaged data (few rows), a tiny model, few steps.

Each test prepares the recipe's data the way its comment says (bertcli.corpora), runs the command with
`--config recipes/X.toml` plus only the overrides that shrink it, and checks what the recipe promises.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import assert_png, front_matter
from typer.testing import CliRunner

from bertcli import corpora
from bertcli.cli.main import app

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
runner = CliRunner()
SMOKE = ["--max-steps", "2", "--batch-size", "8"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Recipes use paths relative to the working directory (data/..., runs/...)."""
    monkeypatch.chdir(tmp_path)


def run(*args: str) -> None:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def check_model(directory: str, task: str, pipeline_tag: str) -> dict:
    out = Path(directory)
    meta = json.loads((out / "bertcli.json").read_text())
    assert meta["task"] == task
    assert meta["steps"] == 2 or meta["steps"] == meta["config"]["training"]["max_steps"]
    assert front_matter((out / "README.md").read_text())["pipeline_tag"] == pipeline_tag
    assert_png(out / "training_curves.png")
    return meta


def test_every_recipe_is_smoke_tested():
    tested = set(re.findall(r'"recipes/([\w-]+\.toml)"|recipe\("([\w-]+\.toml)"\)', Path(__file__).read_text()))
    names = {name for pair in tested for name in pair if name}
    assert names == {p.name for p in RECIPES.glob("*.toml")}


def recipe(name: str) -> str:
    path = RECIPES / name
    text = path.read_text()
    assert text.startswith("#") and "bertcli" in text  # commented: what it shows and how to run it
    return str(path)


def test_sentiment(tiny_model):
    corpora.write_rotten_tomatoes("data/rt", 64, 32)
    run("finetune", "--config", recipe("sentiment.toml"), "-m", str(tiny_model), *SMOKE)
    meta = check_model("runs/sentiment", "single_label", "text-classification")
    assert meta["labels"] == ["fresh", "rotten"]
    assert meta["config"]["training"]["max_length"] == 128  # from the recipe
    assert meta["config"]["training"]["max_steps"] == 2  # the command line overrides it
    run("evaluate", "runs/sentiment", "data/rt/test.csv", "-o", "runs/sentiment-eval/")
    assert json.loads(Path("runs/sentiment-eval/report.json").read_text())["n"] == 32
    assert_png(Path("runs/sentiment-eval/confusion_matrix.png"))


def test_pairs(tiny_model):
    corpora.write_rt_pairs("data/pairs", 48, 16)
    run(
        "finetune", "--config", recipe("pairs.toml"), "-m", str(tiny_model), "--max-length", "128", *SMOKE
    )  # tiny model: 128 positions
    meta = check_model("runs/pairs", "single_label", "text-classification")
    assert meta["columns"] == {"text": "text", "pair": "text_pair", "label": "label"}
    assert sorted(meta["labels"]) == ["different", "same"]
    report = json.loads(run("evaluate", "runs/pairs", "data/pairs/test.csv", "--json").stdout)
    assert report["n"] == 16


def test_multilabel(tiny_model):
    corpora.COMMANDS["moral-foundations"]("data/mfd", 96, 32)
    run("finetune", "--config", recipe("multilabel.toml"), "-m", str(tiny_model), *SMOKE)
    meta = check_model("runs/multilabel", "multi_label", "text-classification")
    assert {"care", "fairness", "virtue", "vice"} <= set(meta["labels"])
    run("evaluate", "runs/multilabel", "data/mfd/test.csv", "-o", "runs/multilabel-eval/")
    assert_png(Path("runs/multilabel-eval/f1_per_type.png"))


def test_regression(tiny_model):
    corpora.COMMANDS["word-affect"]("data/affect", 64, 32)
    run("finetune", "--config", recipe("regression.toml"), "-m", str(tiny_model), *SMOKE)
    check_model("runs/regression", "regression", "text-classification")
    report = json.loads(run("evaluate", "runs/regression", "data/affect/test.csv", "--json").stdout)
    assert report["n"] == 32 and report["mse"] > 0


def test_ner(tiny_model):
    corpora.write_wnut16("data/wnut", 48, 16)
    run("finetune", "--config", recipe("ner.toml"), "-m", str(tiny_model), *SMOKE)
    meta = check_model("runs/ner", "ner", "token-classification")
    assert "B-person" in meta["labels"]
    run("evaluate", "runs/ner", "data/wnut/test.conll", "-o", "runs/ner-eval/")
    assert_png(Path("runs/ner-eval/f1_per_type.png"))


def test_domain_adaptive_pretraining_then_finetuning(tiny_model):
    corpora.write_rotten_tomatoes("data/rt", 64, 32)
    run("pretrain", "--config", recipe("dapt-pretrain.toml"), "-m", str(tiny_model), "--eval-steps", "1", *SMOKE)
    meta = check_model("runs/rt-dapt", "pretraining", "fill-mask")
    assert meta["start"] == {"model": str(tiny_model)}
    # step 2 reads the model step 1 wrote (runs/rt-dapt), as the recipe says
    run("finetune", "--config", recipe("dapt-finetune.toml"), *SMOKE)
    meta = check_model("runs/sentiment-dapt", "single_label", "text-classification")
    assert meta["base_model"] == "runs/rt-dapt"


def test_tiny_bert_from_scratch():
    from transformers import pipeline

    corpora.write_rotten_tomatoes("data/rt", 64, 8)
    run("pretrain", "--config", recipe("tiny-bert.toml"), "--vocab-size", "500", "--eval-steps", "1", *SMOKE)
    meta = check_model("runs/tiny-bert", "pretraining", "fill-mask")
    assert meta["architecture"]["layers"] == 2 and meta["architecture"]["hidden"] == 128
    assert len(pipeline("fill-mask", model="runs/tiny-bert")("the movie was [MASK].")) == 5


def test_embeddings_then_an_index_and_a_search(tiny_model):
    import pyarrow.parquet as pq

    corpora.write_rotten_tomatoes("data/rt", 8, 24)
    run("embed", "--config", recipe("embeddings.toml"), "-m", str(tiny_model))
    table = pq.read_table("runs/rt-vectors.parquet")
    assert table.num_rows == 24 and set(table.column_names) == {"id", "text", "vector"}
    run("index", "runs/rt-vectors.parquet", "-m", str(tiny_model), "-o", "runs/rt.index")
    # each snippet searched against all: it finds itself first, at cosine 1
    result = run("search", "runs/rt.index", "--input", "data/rt/test.csv", "-k", "3")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 24
    for line in lines:
        scores = [hit["score"] for hit in line["hits"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert line["hits"][0]["text"] == line["query"] and scores[0] == pytest.approx(1.0, abs=1e-4)
