"""The lexical baseline inside a classification bundle: fitted on the training split only, combined when it helps,
applied the same way by every path that predicts (torch, ONNX, serve, the Python API), stored without pickle."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import sentiment_rows, write_csv
from typer.testing import CliRunner

import bertcli
from bertcli.cli.main import app

runner = CliRunner()
HEAVY = ("torch", "transformers", "datasets", "accelerate")
TEXTS = ["so good and fun", "awful boring film", "the acting was great", "dull and terrible"]


def finetune(*args: str) -> None:
    result = runner.invoke(app, ["finetune", *args, "--precision", "no"])
    assert result.exit_code == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def weak(tiny_model, tmp_path_factory):
    """A fine-tuned model that learns nothing (lr 1e-9): its words still tell the labels, so the lexical baseline
    carries the predictions. Validation is a file of its own, with a word no training text has."""
    root = tmp_path_factory.mktemp("lexical")
    train = write_csv(root / "train.csv", sentiment_rows(96))
    rows = [{"text": f"{r['text']} zzvalidationonly", "label": r["label"]} for r in sentiment_rows(40, seed=7)]
    validation = write_csv(root / "validation.csv", rows)
    run = finetune(str(train), "-o", str(root / "m"), "-m", str(tiny_model), "--validation", str(validation),
                   "--lr", "1e-9", "--epochs", "1")  # fmt: skip
    return root / "m", run.stderr


def test_the_baseline_sees_only_the_training_split(weak):
    model_dir, _ = weak
    with np.load(model_dir / "lexical.npz", allow_pickle=False) as arrays:
        terms = arrays["terms"].tobytes().decode("utf-8").split("\n")
    assert "good" in terms and "zzvalidationonly" not in terms
    assert not any("zzvalidationonly" in t for t in terms)


def test_the_combination_is_never_worse_than_either_part_on_validation(weak):
    model_dir, log = weak
    lexical = json.loads((model_dir / "bertcli.json").read_text())["lexical"]
    scores = lexical["validation"]
    assert scores["combined"] >= max(scores["bert"], scores["lexical"])
    assert lexical["mode"] == "auto" and lexical["weight"] > 0 and scores["lexical"] > scores["bert"]
    assert (
        lexical["regularisation"]["C"] in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0) and "chosen_by" in lexical["regularisation"]
    )
    assert f"validation accuracy: BERT {scores['bert']:.4f}, lexical baseline {scores['lexical']:.4f}" in log


def test_a_collapse_is_reported_in_the_log_the_bundle_and_the_card(weak):
    model_dir, log = weak
    meta = json.loads((model_dir / "bertcli.json").read_text())
    collapse = meta["degenerate"]
    assert collapse["reason"] in ("one class", "no better than the majority") and collapse["combined_learns"]
    assert "warning: the model learned nothing" in log and "try more optimizer steps" in log
    card = (model_dir / "README.md").read_text()
    assert "**Warning:** the model learned nothing" in card and "A plain `pipeline()` loads the" in card
    assert "chosen by cross-validation on the training split)" in card


def test_no_pickle_is_written(weak):
    model_dir, _ = weak
    for path in model_dir.rglob("*"):
        assert path.suffix not in (".pkl", ".pickle", ".joblib")
        if path.is_file():
            assert not path.read_bytes().startswith(b"\x80"), path  # a pickle stream's protocol opcode


def test_torch_onnx_serve_and_the_api_apply_the_same_combination(weak, tmp_path):
    from fastapi.testclient import TestClient

    from bertcli.config import ServeConfig
    from bertcli.serve.app import create_app
    from bertcli.serve.models import load_model

    model_dir, _ = weak
    assert runner.invoke(app, ["export", str(model_dir)]).exit_code == 0
    torch_side = bertcli.load(str(model_dir), backend="torch", precision="no").predict(TEXTS)
    onnx_side = bertcli.load(str(model_dir), backend="onnx").predict(TEXTS)
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    cli = runner.invoke(app, ["predict", str(model_dir), str(source), "--backend", "torch", "--precision", "no"])
    assert [json.loads(line) for line in cli.stdout.splitlines()] == torch_side
    cfg = ServeConfig(models=[f"m={model_dir}"], precision="no", backend="torch")
    with TestClient(create_app({"m": load_model(f"m={model_dir}", cfg)}, cfg)) as client:
        served = client.post("/predict", json={"inputs": TEXTS}).json()
    assert served == torch_side
    assert [r["label"] for r in onnx_side] == [r["label"] for r in torch_side] == ["pos", "neg", "pos", "neg"]
    for ours, theirs in zip(onnx_side, torch_side):
        assert ours["scores"] == pytest.approx(theirs["scores"], abs=1e-5)


def test_the_onnx_path_stays_torch_free_with_a_lexical_part(weak, tmp_path):
    model_dir, _ = weak
    export = tmp_path / "export"
    assert runner.invoke(app, ["export", str(model_dir), "-o", str(export)]).exit_code == 0
    assert (export / "lexical.npz").is_file()
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    code = (
        "import sys\nfrom bertcli.cli.main import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        f"print('loaded:', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code, "predict", str(export), str(source)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and "loaded: []" in done.stderr, done.stderr[-2000:]
    assert [json.loads(line)["label"] for line in done.stdout.splitlines()] == ["pos", "neg", "pos", "neg"]


def test_off_keeps_the_model_alone_and_evaluate_shows_the_baselines(tiny_model, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(96))
    finetune(str(train), "-o", str(tmp_path / "off"), "-m", str(tiny_model), "--lexical", "off", "--epochs", "1")
    meta = json.loads((tmp_path / "off" / "bertcli.json").read_text())
    assert meta["lexical"]["mode"] == "off" and meta["lexical"]["weight"] == 0.0
    assert meta["lexical"]["validation"]["lexical"] >= 0.9  # measured and reported, never applied
    assert not (tmp_path / "off" / "lexical.npz").exists()
    result = runner.invoke(app, ["evaluate", str(tmp_path / "off"), str(train), "--json", "--precision", "no"])
    report = json.loads(result.stdout)
    assert set(report["baselines"]) == {"majority class"} and report["baselines"]["majority class"]["accuracy"] == 0.5


def test_evaluate_reports_the_lexical_baseline_beside_the_model(weak, tmp_path):
    model_dir, _ = weak
    test = write_csv(tmp_path / "test.csv", sentiment_rows(30, seed=11))
    result = runner.invoke(app, ["evaluate", str(model_dir), str(test), "--json", "--precision", "no"])
    report = json.loads(result.stdout)
    baselines = report["baselines"]
    assert set(baselines) == {"majority class", "lexical baseline"}
    assert baselines["lexical baseline"]["accuracy"] >= 0.9 and report["accuracy"] >= 0.9
    table = runner.invoke(app, ["evaluate", str(model_dir), str(test), "--precision", "no"]).stdout
    assert "against the baselines" in table and "lexical baseline" in table
