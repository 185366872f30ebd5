"""The Python API: `bertcli.load(dir).predict(texts)` and `bertcli.Embedder(...).embed(texts)` give exactly what the
commands write, and importing bertcli loads nothing heavy."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import sentiment_rows, toy_corpus, write_conll, write_csv
from typer.testing import CliRunner

import bertcli
from bertcli.cli.main import app

runner = CliRunner()
TEXTS = ["the movie was great fun", "", "boring and dull , i hated it", "we met guitar in science with the code team"]


@pytest.fixture(scope="module")
def models(tiny_model, tmp_path_factory):
    """A tiny sentiment classifier and a tiny NER tagger, trained once for this module."""
    root = tmp_path_factory.mktemp("api")
    train = write_csv(root / "train.csv", sentiment_rows(96))
    conll = write_conll(root / "train.conll", toy_corpus(160, seed=0))
    for data, out in ((train, "clf"), (conll, "ner")):
        result = runner.invoke(
            app,
            [
                "finetune",
                str(data),
                "-o",
                str(root / out),
                "-m",
                str(tiny_model),
                "--epochs",
                "2",
                "--lr",
                "5e-3",
                "-b",
                "16",
            ],
        )
        assert result.exit_code == 0, result.stderr
    return {"clf": root / "clf", "ner": root / "ner"}


@pytest.mark.parametrize(
    "kind, flags, kwargs, empty",
    [
        ("clf", [], {}, {"label": None, "score": None, "scores": None}),
        ("clf", ["--top-k", "1"], {"top_k": 1}, {"label": None, "score": None, "scores": None}),
        ("ner", [], {}, {"entities": []}),
    ],
)
def test_load_predict_gives_the_records_predict_writes(models, kind, flags, kwargs, empty):
    cli = runner.invoke(app, ["predict", str(models[kind]), "--precision", "no", *flags], input="\n".join(TEXTS) + "\n")
    assert cli.exit_code == 0, cli.stderr
    written = [json.loads(line) for line in cli.stdout.splitlines()]
    assert len(written) == len(TEXTS) and written[1] == empty
    assert bertcli.load(str(models[kind]), precision="no", **kwargs).predict(TEXTS) == written


def test_load_of_an_encoder_gives_its_embedder(tiny_model):
    """An encoder's task loads an Embedder: the same contract (`predict`, `run`) as classifiers and taggers."""
    import numpy as np

    encoder = bertcli.load(str(tiny_model), precision="no")
    vectors = bertcli.Embedder(str(tiny_model), precision="no").embed(TEXTS).vectors
    assert encoder.routes == {"embeddings"} and not encoder.takes_pairs
    np.testing.assert_allclose(np.stack(encoder.predict(TEXTS)), vectors, rtol=1e-6, atol=1e-6)


def test_evaluate_refuses_a_bare_encoder(tiny_model, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("text,label\ngood,pos\n", encoding="utf-8")
    result = runner.invoke(app, ["evaluate", str(tiny_model), str(data)])
    assert result.exit_code == 1 and "an encoder is evaluated on retrieval or similarity pairs" in result.stderr
    assert "fine-tune it first" in result.stderr


def test_embedder_gives_the_vectors_embed_writes(tiny_model, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "v.npy"
    cli = runner.invoke(
        app,
        [
            "embed",
            str(source),
            "-m",
            str(tiny_model),
            "-o",
            str(out),
            "--pooling",
            "cls",
            "--normalize",
            "--precision",
            "no",
        ],
    )
    assert cli.exit_code == 0, cli.stderr
    vectors = bertcli.Embedder(str(tiny_model), pooling="cls", normalize=True, precision="no").embed(TEXTS).vectors
    np.testing.assert_array_equal(vectors, np.load(out))


def test_import_bertcli_is_light():
    code = "import sys, bertcli; print([m for m in ('torch', 'transformers', 'datasets', 'accelerate', 'numpy') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
