"""Pictures, model cards and tracking: what lands beside a saved model and an evaluation report."""

from __future__ import annotations

import json
import sys

import pytest
from helpers import assert_png, front_matter, sentiment_rows, write_csv
from typer.testing import CliRunner

from bertcli.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def tracked_run(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tracked")
    train = write_csv(tmp / "train.csv", sentiment_rows(96))
    out = tmp / "clf"
    result = runner.invoke(
        app,
        [
            "finetune",
            str(train),
            "-m",
            str(tiny_model),
            "-o",
            str(out),
            "--epochs",
            "2",
            "--eval-steps",
            "3",
            "-b",
            "16",
            "--lr",
            "1e-3",
            "--report-to",
            "tensorboard",
        ],
    )
    assert result.exit_code == 0, result.output
    return out, train


def test_finetune_writes_training_curves(tracked_run):
    out, _ = tracked_run
    assert_png(out / "training_curves.png", min_width=900)  # three panels: loss, lr, validation metric
    meta = json.loads((out / "bertcli.json").read_text())
    steps = [point["step"] for point in meta["train_log"]]
    assert steps == list(range(1, meta["steps"] + 1))  # short run: a point per step
    assert all(point["loss"] > 0 and point["lr"] >= 0 for point in meta["train_log"])
    assert not out.with_name(out.name + ".incomplete").exists()


def test_model_card_front_matter_and_sections(tracked_run):
    out, train = tracked_run
    card = (out / "README.md").read_text()
    matter = front_matter(card)
    assert matter["library_name"] == "transformers"
    assert matter["pipeline_tag"] == "text-classification"
    assert "base_model" not in matter  # a local directory is no hub id
    assert matter["metrics"][0] == "accuracy"
    for section in (
        "## Labels",
        "## Training data",
        "## Hyperparameters",
        "## Evaluation",
        "## Reproduce",
        "## Intended use and limits",
    ):
        assert section in card
    meta = json.loads((out / "bertcli.json").read_text())
    assert meta["train_data"]["sha256"] in card
    assert "`neg`, `pos`" in card
    # run in-process (not as `bertcli`): the card gives an equivalent command built from the configuration
    assert f"bertcli finetune {train} --output {out}" in card and "--report-to tensorboard" in card


def test_saved_dir_with_card_loads_in_plain_pipeline(tracked_run):
    from transformers import pipeline

    out, _ = tracked_run
    prediction = pipeline("text-classification", model=str(out))("a great movie")[0]
    assert prediction["label"] in ("neg", "pos")


def test_tensorboard_logs_scalars_and_config(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = tracked_run
    events = sorted((out / "logs").rglob("events.out.tfevents.*"))
    assert events
    scalars = {}
    for event_file in events:
        accumulator = EventAccumulator(str(event_file))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars[tag] = [e.value for e in accumulator.Scalars(tag)]
    meta = json.loads((out / "bertcli.json").read_text())
    assert len(scalars["train/loss"]) == meta["steps"]
    assert len(scalars["eval/accuracy"]) == len(meta["history"])
    assert scalars["eval/accuracy"] == pytest.approx([h["accuracy"] for h in meta["history"]], abs=1e-6)
    hparams = next((out / "logs").rglob("hparams.yml")).read_text()
    assert "training/lr: 0.001" in hparams and "training/report_to: tensorboard" in hparams


def test_unknown_tracker_is_a_usage_error(tiny_model, sentiment_csv, tmp_path):
    result = runner.invoke(
        app, ["finetune", str(sentiment_csv), "-m", str(tiny_model), "-o", str(tmp_path / "o"), "--report-to", "comet"]
    )
    assert result.exit_code == 2
    assert "unknown --report-to 'comet'" in result.output


def test_missing_tracker_package_is_named(tiny_model, sentiment_csv, tmp_path, monkeypatch):
    import accelerate.utils

    monkeypatch.setattr(accelerate.utils, "is_wandb_available", lambda: False)
    result = runner.invoke(
        app, ["finetune", str(sentiment_csv), "-m", str(tiny_model), "-o", str(tmp_path / "o"), "--report-to", "wandb"]
    )
    assert result.exit_code == 2
    assert "--report-to wandb needs the wandb package" in result.output


def test_card_records_the_exact_launch_command(monkeypatch):
    from bertcli.reports.model_card import launch_command, render_card

    monkeypatch.setattr(
        sys, "argv", ["/usr/local/bin/bertcli", "finetune", "my data.csv", "-o", "runs/x", "--epochs", "1"]
    )
    command = launch_command()
    assert command == "bertcli finetune 'my data.csv' -o runs/x --epochs 1"
    card = render_card({"task": "single_label", "labels": ["a", "b"], "command": command, "history": []}, "x")
    assert (
        "The command this model was trained with:\n\n```\nbertcli finetune 'my data.csv' -o runs/x --epochs 1\n```"
        in card
    )
    monkeypatch.setattr(sys, "argv", ["/usr/bin/pytest", "-q"])
    assert launch_command() is None


def test_base_model_only_for_hub_ids(tmp_path):
    from bertcli.hub import DEFAULT_HUB_ID
    from bertcli.reports.model_card import front_matter as matter

    assert matter({"task": "ner", "base_model": DEFAULT_HUB_ID})["base_model"] == DEFAULT_HUB_ID
    assert matter({"task": "ner", "base_model": DEFAULT_HUB_ID})["pipeline_tag"] == "token-classification"
    assert "base_model" not in matter({"task": "single_label", "base_model": str(tmp_path)})
    assert "base_model" not in matter({"task": "pretraining", "start": {"preset": "tiny"}})
    assert matter({"task": "pretraining", "start": {"model": "bert-base-uncased/x"}})["pipeline_tag"] == "fill-mask"


def test_evaluate_output_directory_gets_report_and_confusion_matrix(tracked_run, tmp_path):
    out, _ = tracked_run
    test = write_csv(tmp_path / "test.csv", sentiment_rows(40, seed=3))
    result = runner.invoke(app, ["evaluate", str(out), str(test), "-o", str(tmp_path / "rep") + "/"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert sum(map(sum, report["confusion_matrix"])) == 40
    assert_png(tmp_path / "rep" / "confusion_matrix.png")
    assert "confusion matrix" in result.stdout  # the rich tables still go to the terminal


def test_evaluate_plots_flag_without_report_file(tracked_run, tmp_path):
    out, _ = tracked_run
    test = write_csv(tmp_path / "test.csv", sentiment_rows(20, seed=4))
    result = runner.invoke(app, ["evaluate", str(out), str(test), "--plots", str(tmp_path / "pics")])
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "pics").iterdir()] == ["confusion_matrix.png"]


def test_f1_bars_for_entity_types(tmp_path):
    from bertcli.reports.plots import report_plots

    per_type = {
        "person": {"precision": 0.6, "recall": 0.5, "f1": 0.545, "support": 40},
        "geo-loc": {"precision": 0.7, "recall": 0.6, "f1": 0.646, "support": 30},
        "product": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 5},
    }
    written = report_plots({"task": "ner", "per_type": per_type}, tmp_path)
    assert [p.name for p in written] == ["f1_per_type.png"]
    assert_png(written[0])
    assert report_plots({"task": "regression", "mse": 0.1}, tmp_path / "none") == []
