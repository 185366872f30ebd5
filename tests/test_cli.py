"""The CLI surface: fast help without heavy imports, the one error path, usage errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from bertcli import __version__
from bertcli.cli.main import app

runner = CliRunner()
HEAVY = ("torch", "transformers", "datasets", "accelerate", "evaluate")


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        *(
            [command, "--help"]
            for command in ("finetune", "tune", "evaluate", "predict", "embed", "tokenize", "pretrain", "env")
        ),
    ],
)
def test_help_imports_no_heavy_library(argv):
    code = (
        "import sys\n"
        "from bertcli.cli.main import app\n"
        f"try:\n    app({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_commands_have_examples():
    for command in ("finetune", "evaluate", "predict"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Examples:" in result.stdout and f"bertcli {command}" in result.stdout


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.stdout.strip() == f"bertcli {__version__}"


def test_unknown_option_is_a_usage_error():
    result = runner.invoke(app, ["finetune", "x.csv", "--epochz", "3"])
    assert result.exit_code == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["finetune", "{train}"], "missing --output"),
        (["finetune"], "missing TRAIN"),
        (["pretrain", "--preset", "tiny", "-o", "{tmp}/o"], "missing CORPUS"),
        (["finetune", "{train}", "-o", "{tmp}/o", "--precision", "fp8"], "unknown --precision 'fp8'"),
        (["finetune", "{train}", "-o", "{tmp}/o", "--task", "ranking"], "unknown --task 'ranking'"),
        (["predict", "{tmp}", "x.txt", "--output-format", "xml"], "unknown --output-format 'xml'"),
        (["finetune", "{train}", "-o", "{train}"], "{train}: -o names a file; a model is saved as a directory"),
        (["tokenize", "x", "--stats", "--train-vocab"], "--stats and --train-vocab are separate modes"),
    ],
)
def test_bad_usage_exits_2_with_one_line(tmp_path, sentiment_csv, argv, message):
    args = [a.format(train=sentiment_csv, tmp=tmp_path) for a in argv]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert (
        result.stderr.startswith("bertcli: error: ")
        and message.format(train=sentiment_csv, tmp=tmp_path) in result.stderr
    )
    assert result.stderr.count("\n") == 1


def test_the_output_directory_is_checked_before_the_data_is_read(tmp_path, tiny_model):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = runner.invoke(
        app, ["finetune", str(tmp_path / "not-read-yet.csv"), "-o", str(out), "--model", str(tiny_model)]
    )
    assert result.exit_code == 2 and result.stderr.startswith(f"bertcli: error: {out}: output directory already exists")
    assert "not-read-yet" not in result.stderr and (out / "keep.txt").read_text() == "precious"


def test_a_device_as_corpus_is_not_called_missing(tmp_path):
    result = runner.invoke(app, ["pretrain", "/dev/null", "--preset", "tiny", "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and "/dev/null: is not a regular file" in result.stderr


@pytest.mark.parametrize(
    "content, flags, expected",
    [
        (b"", [], "{file}: file is empty"),
        (
            b"text,label\ngood,pos\nbad,neg\n",
            ["--text-column", "body"],
            "column 'body' (from --text-column) not found (columns are: text, label)",
        ),
        (b"text,label\ngood,pos\n,neg\n", [], "{file}:3, column 'text': empty text"),
        (b"text,label\ngood,pos\nbad,\n", [], "{file}:3, column 'label': missing label"),
        (b"text,label\ngood,pos\ncaf\xe9,neg\n", [], "{file}:3: bytes are not valid UTF-8"),
        (b"text,label\ngood,pos\nbad,pos\n", [], "only one label ('pos') in the training data"),
        (b"text,label\n", [], "{file}: the file has a header line but no rows"),
    ],
)
def test_bad_training_data_is_one_clear_line(tmp_path, tiny_model, content, flags, expected):
    data = tmp_path / "train.csv"
    data.write_bytes(content)
    result = runner.invoke(
        app, ["finetune", str(data), "-o", str(tmp_path / "out"), "--model", str(tiny_model), *flags]
    )
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("bertcli: error: ") and expected.format(file=data) in line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_model_directory_and_uncached_hub_id(tmp_path, sentiment_csv, monkeypatch):
    result = runner.invoke(app, ["finetune", str(sentiment_csv), "-o", str(tmp_path / "o"), "--model", "./no/such/dir"])
    assert result.exit_code == 1 and "./no/such/dir: model directory not found" in result.stderr
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(
        app, ["finetune", str(sentiment_csv), "-o", str(tmp_path / "o"), "--model", "someone/not-cached-bert"]
    )
    assert result.exit_code == 1
    assert (
        "'someone/not-cached-bert' is not in the local Hugging Face cache" in result.stderr
        and "--model PATH" in result.stderr
    )


def test_evaluate_unknown_model_dir(tmp_path, sentiment_csv):
    result = runner.invoke(app, ["evaluate", str(tmp_path / "nope"), str(sentiment_csv)])
    assert result.exit_code == 1 and "model directory not found" in result.stderr


def test_debug_env_shows_the_real_exception(tmp_path, sentiment_csv, monkeypatch):
    from bertcli.errors import UsageError

    monkeypatch.setenv("BERTCLI_DEBUG", "1")
    result = runner.invoke(app, ["finetune", str(sentiment_csv)])
    assert isinstance(result.exception, UsageError)


def test_recipe_file_drives_finetune(tmp_path, tiny_model, sentiment_csv):
    recipe = tmp_path / "run.toml"
    recipe.write_text(
        f'train = "{sentiment_csv}"\noutput = "{tmp_path / "out"}"\nmodel = "{tiny_model}"\n[training]\nepochs = 1\nbatch_size = 16\n'
    )
    result = runner.invoke(app, ["finetune", "--config", str(recipe), "--lr", "0.002"])
    assert result.exit_code == 0, result.stderr
    meta = json.loads((tmp_path / "out" / "bertcli.json").read_text())
    assert meta["config"]["training"]["epochs"] == 1 and meta["config"]["training"]["lr"] == 0.002
    assert meta["config"]["training"]["batch_size"] == 16
