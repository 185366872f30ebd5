"""Options declared once: tune takes finetune's options as finetune declares them (apart from the documented
exceptions) and passes them to every trial; one spelling, --output-format, for the form of every command's output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bertcli.cli import tune
from bertcli.cli.main import app

runner = CliRunner()
README = Path(__file__).resolve().parent.parent / "README.md"


def command(name: str):
    """One command as Typer builds it from the app (a click command)."""
    return typer.main.get_command(app).commands[name]


def options(name: str) -> dict:
    return {param.name: param for param in command(name).params}


def declared(name: str) -> dict:
    """Each option's flags, type and help, as --help shows them."""
    ctx = command(name).make_context(name, [], resilient_parsing=True)
    return {param.name: param.get_help_record(ctx) for param in command(name).params}


def test_tune_takes_every_finetune_option_apart_from_the_documented_exceptions():
    finetune, tuned = declared("finetune"), declared("tune")
    assert set(tune.LEFT_OUT) == {"seeds", "resume"}
    shared = set(finetune) - set(tune.LEFT_OUT)
    assert set(tuned) - shared == {"trials", "timeout", "space", "resume"}  # the search's own options
    assert shared <= set(tuned) and {"max_steps", "save_steps", "patience", "report_to"} <= shared
    # the same declaration: flags, type and help; -o says what tune's output directory holds
    assert {n: finetune[n] for n in shared - {"output"}} == {n: tuned[n] for n in shared - {"output"}}
    assert finetune["output"][0] == tuned["output"][0] == "-o, --output <str>"
    assert "study.db" in tuned["output"][1] and "study.db" not in finetune["output"][1]
    # tune's --resume is its own: a flag that continues the search, not finetune's checkpoint directory
    assert (finetune["resume"][0], tuned["resume"][0]) == ("--resume <str>", "--resume")


def test_the_exceptions_are_said_in_tune_help_and_the_readme():
    shown = runner.invoke(app, ["tune", "--help"], terminal_width=200)
    assert shown.exit_code == 0
    section = README.read_text(encoding="utf-8").split("### Seeds and tuning")[1].split("\n### ")[0]
    for name, reason in tune.LEFT_OUT.items():
        assert f"--{name}: {reason}" in shown.stdout
        assert f"`--{name}`" in section.split("It takes every option finetune takes")[1]


def test_a_tune_option_reaches_the_config_every_trial_runs_with(tmp_path, sentiment_csv):
    from bertcli.tuning import search

    captured = {}

    def capture(cfg):
        captured["cfg"] = cfg
        raise KeyboardInterrupt  # stop before any training: the configuration is what is tested

    argv = ["tune", str(sentiment_csv), "-o", str(tmp_path / "t"), "--resume", "--max-steps", "7", "--patience", "2",
            "--save-steps", "3", "--report-to", "tensorboard", "--lr", "0.01", "--seed", "5"]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(search, "tune", capture)
        result = runner.invoke(app, argv)
    assert result.exit_code == 130 and captured["cfg"].resume is True
    run = search._trial_config(captured["cfg"], {"lr": 0.002}, tmp_path / "t" / "trial-0000")
    training = run.training
    assert (training.max_steps, training.patience, training.save_steps, training.report_to) == (7, 2, 3, "tensorboard")
    assert training.lr == 0.002 and training.seed == 5  # the sampled value wins over the fixed one
    assert training.resume is None and run.seeds is None and run.output == str(tmp_path / "t" / "trial-0000")
    assert run.train == str(sentiment_csv)


@pytest.fixture
def classifier(tmp_path, tiny_model):
    from helpers import sentiment_rows, write_csv

    work = tmp_path
    train = write_csv(work / "train.csv", sentiment_rows(48))
    done = runner.invoke(
        app, ["finetune", str(train), "-o", str(work / "model"), "-m", str(tiny_model), "--max-steps", "2", "--precision", "no"]
    )  # fmt: skip
    assert done.exit_code == 0, done.stderr
    return work / "model", write_csv(work / "test.csv", sentiment_rows(20, seed=3))


def test_json_is_an_alias_of_output_format_json(classifier):
    model, test = classifier
    evaluate = ["evaluate", str(model), str(test), "--precision", "no"]
    old, new = (runner.invoke(app, [*evaluate, *flag]) for flag in (["--json"], ["--output-format", "json"]))
    assert old.exit_code == new.exit_code == 0
    assert old.stdout == new.stdout and json.loads(new.stdout)["n"] == 20
    table, default = (runner.invoke(app, [*evaluate, *flag]) for flag in (["--output-format", "table"], []))
    assert table.stdout == default.stdout and "accuracy" in table.stdout and not table.stdout.startswith("{")
    both = runner.invoke(app, [*evaluate, "--json", "--output-format", "table"])
    assert both.exit_code == 2 and "--json means --output-format json, not table" in both.stderr


def test_every_command_spells_its_output_form_output_format():
    names = typer.main.get_command(app).commands
    formats = {name for name in names if "output_format" in options(name)}
    assert formats == {"evaluate", "predict", "embed", "tokenize", "env"}
    assert {declared(name)["output_format"][0] for name in formats} == {"--output-format <str>"}
    spelled_json = {name for name in names if any("--json" in p.opts for p in options(name).values())}
    assert spelled_json == {"evaluate"}  # the one older spelling, kept as an alias
