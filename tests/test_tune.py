"""--seeds (mean +- std over runs on one split) and bertcli tune (Optuna: pruning, resume, failures, the budget)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import assert_png, sentiment_rows, write_csv
from typer.testing import CliRunner

from bertcli.cli.main import app

runner = CliRunner()
FAST = ["--lr", "5e-3", "-b", "16", "--precision", "no"]


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.stderr
    return result


@pytest.fixture
def data(tmp_path):
    return write_csv(tmp_path / "train.csv", sentiment_rows(96)), write_csv(
        tmp_path / "test.csv", sentiment_rows(40, seed=1)
    )


def test_seeds_record_every_run_and_the_mean_and_std(data, tiny_model, tmp_path):
    train, _ = data
    result = invoke(
        "finetune",
        str(train),
        "-o",
        str(tmp_path / "m"),
        "-m",
        str(tiny_model),
        "--epochs",
        "2",
        "--seeds",
        "3",
        "--seed",
        "7",
        *FAST,
    )
    meta = json.loads((tmp_path / "m" / "bertcli.json").read_text())
    seeds = meta["seeds"]
    assert seeds["seeds"] == [7, 8, 9] and seeds["split_seed"] == 7 and [r["seed"] for r in seeds["runs"]] == [7, 8, 9]
    for key, value in seeds["summary"].items():
        column = np.array([r[key] for r in seeds["runs"]])
        assert value["mean"] == pytest.approx(column.mean()) and value["std"] == pytest.approx(column.std(ddof=1))
    accuracies = {r["seed"]: r["accuracy"] for r in seeds["runs"]}
    assert (
        accuracies[seeds["best_seed"]] == max(accuracies.values())
        and meta["config"]["training"]["seed"] == seeds["best_seed"]
    )
    assert meta["config"]["split_seed"] == 7  # the kept run, whatever its seed, validated on the first seed's split
    assert meta["config"]["output"] == str(tmp_path / "m") and not (tmp_path / "m.seeds").exists()
    assert "## Seeds" in (tmp_path / "m" / "README.md").read_text() and "mean +- std" in result.stderr
    assert result.stderr.count("bertcli: seed ") == 3


def test_evaluate_several_bundles_reports_mean_and_std(data, tiny_model, tmp_path):
    train, test = data
    for seed in ("1", "2"):
        invoke(
            "finetune",
            str(train),
            "-o",
            str(tmp_path / seed),
            "-m",
            str(tiny_model),
            "--epochs",
            "2",
            "--seed",
            seed,
            *FAST,
        )
    single = [json.loads(invoke("evaluate", str(tmp_path / s), str(test), "--json").stdout) for s in ("1", "2")]
    both = json.loads(invoke("evaluate", str(tmp_path / "1"), str(tmp_path / "2"), str(test), "--json").stdout)
    assert [m["accuracy"] for m in both["models"]] == [s["accuracy"] for s in single]
    assert both["summary"]["accuracy"]["mean"] == pytest.approx(np.mean([s["accuracy"] for s in single]))
    assert both["summary"]["accuracy"]["std"] == pytest.approx(np.std([s["accuracy"] for s in single], ddof=1))
    table = invoke("evaluate", str(tmp_path / "1"), str(tmp_path / "2"), str(test))
    assert "mean +- std" in table.stdout and "2 models on" in table.stdout
    tagger = tmp_path / "tagger"  # a bundle of another task: its metrics cannot be averaged with a classifier's
    shutil.copytree(tmp_path / "2", tagger)
    meta = json.loads((tagger / "bertcli.json").read_text())
    (tagger / "bertcli.json").write_text(json.dumps({**meta, "task": "ner"}))
    mixed = runner.invoke(app, ["evaluate", str(tmp_path / "1"), str(tagger), str(test)])
    assert mixed.exit_code == 2 and "models of different tasks cannot be averaged" in mixed.stderr


def tune(train, tiny_model, out, *extra: str):
    return runner.invoke(app, ["tune", str(train), "-o", str(out), "-m", str(tiny_model), "--space", "lr=0.005|1e-9", "--epochs", "6",
                               "-b", "16", "--precision", "no", "--seed", "0", *extra])  # fmt: skip


def test_tune_prunes_keeps_the_best_and_writes_the_record(data, tiny_model, tmp_path):
    """Seed 0 samples lr 1e-9, 5e-3, 1e-9: the third trial learns nothing while the median of the first two rises."""
    from transformers import pipeline

    train, _ = data
    out = tmp_path / "tuned"
    result = tune(train, tiny_model, out, "--trials", "3")
    assert result.exit_code == 0, result.stderr
    meta = json.loads((out / "bertcli.json").read_text())
    search = meta["search"]
    assert (
        search["states"] == {"complete": 2, "pruned": 1}
        and search["best_params"] == {"lr": 0.005}
        and search["best_trial"] == 1
    )
    assert meta["config"]["training"]["lr"] == 0.005 and meta["config"]["output"] == str(out)
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 4 and "PRUNED" in rows[3]
    assert_png(out / "tuning.png")
    assert "## Hyperparameter search" in (out / "README.md").read_text() and not (out / "trials").exists()
    classify = pipeline("text-classification", model=str(out))
    assert classify("a great film")[0]["label"] in ("neg", "pos")
    assert "trial 2 pruned" in result.stderr and "state" in result.stderr


def test_finetune_options_new_to_tune_reach_the_trials(data, tiny_model, tmp_path):
    """--max-steps and --patience were finetune's alone; now every trial runs with them."""
    train, _ = data
    out = tmp_path / "tuned"
    result = tune(train, tiny_model, out, "--trials", "1", "--max-steps", "3", "--patience", "1")
    assert result.exit_code == 0, result.stderr
    meta = json.loads((out / "bertcli.json").read_text())
    assert meta["steps"] == 3  # 6 epochs of 86 examples in batches of 16 would be 36 steps
    assert (meta["config"]["training"]["max_steps"], meta["config"]["training"]["patience"]) == (3, 1)


def test_a_resumed_search_keeps_its_finished_trials(data, tiny_model, tmp_path):
    import optuna

    train, _ = data
    out = tmp_path / "tuned"
    assert tune(train, tiny_model, out, "--trials", "2").exit_code == 0
    first = optuna.load_study(study_name="bertcli-tune", storage=f"sqlite:///{out / 'study.db'}")
    before = [(t.number, t.params, t.value) for t in first.trials]
    refused = tune(train, tiny_model, out, "--trials", "3")
    assert refused.exit_code == 2 and "--resume continues its search" in refused.stderr
    assert tune(train, tiny_model, out, "--trials", "3", "--resume").exit_code == 0
    after = optuna.load_study(study_name="bertcli-tune", storage=f"sqlite:///{out / 'study.db'}")
    assert [(t.number, t.params, t.value) for t in after.trials][:2] == before and len(after.trials) == 3
    meta = json.loads((out / "bertcli.json").read_text())
    assert meta["search"]["trials"] == 3 and meta["search"]["best_value"] == after.best_value
    assert not (tmp_path / "tuned.incomplete").exists()


def test_overwrite_keeps_the_earlier_model_until_the_new_search_finishes(data, tiny_model, tmp_path):
    train, _ = data
    out = tmp_path / "tuned"
    assert tune(train, tiny_model, out, "--trials", "2").exit_code == 0
    before = (out / "bertcli.json").read_text()
    failed = tune(train, tiny_model, out, "--trials", "5", "--timeout", "2s", "--epochs", "200", "--overwrite")
    assert failed.exit_code == 1 and "no trial finished" in failed.stderr
    assert (out / "bertcli.json").read_text() == before and (out / "model.safetensors").is_file()
    assert (tmp_path / "tuned.incomplete" / "study.db").is_file()  # the failed search, resumable
    refused = tune(train, tiny_model, out, "--trials", "2")
    assert refused.exit_code == 2 and "an interrupted search is in" in refused.stderr


def test_a_failing_trial_is_recorded_and_the_search_goes_on(data, tiny_model, tmp_path, monkeypatch):
    from bertcli.config import TuneConfig, build_config
    from bertcli.tuning import search, seeds

    real = seeds.finetune_seeds

    def out_of_memory_at_tiny_lr(cfg, callbacks=None):
        if cfg.training.lr < 1e-6:
            raise RuntimeError("CPU out of memory (a stand-in)")
        return real(cfg, callbacks)

    monkeypatch.setattr(seeds, "finetune_seeds", out_of_memory_at_tiny_lr)
    train, _ = data
    cfg = build_config(TuneConfig, None, train=str(train), output=str(tmp_path / "t"), model=str(tiny_model), space="lr=0.005|1e-9",
                       epochs=2.0, batch_size=16, precision="no", seed=0, trials=3)  # fmt: skip
    result = search.tune(cfg)
    assert [row["state"] for row in result.trials] == ["fail", "complete", "fail"]
    assert result.meta.search["best_params"] == {"lr": 0.005}


def test_the_time_budget_is_honoured(data, tiny_model, tmp_path):
    import time

    train, _ = data
    start = time.monotonic()
    result = tune(train, tiny_model, tmp_path / "t", "--trials", "50", "--timeout", "2s", "--epochs", "200")
    assert time.monotonic() - start < 60  # 200 epochs would take minutes: the budget stopped the trial
    assert result.exit_code == 1 and "no trial finished" in result.stderr and "--resume continues" in result.stderr
    assert "pruned" in result.stderr and "the time budget ran out" in result.stderr
    assert (tmp_path / "t.incomplete" / "study.db").is_file() and not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    "space, message",
    [
        ("lr=1e-2..1e-5", "needs low < high"),
        ("speed=1..2", "'speed' is not a numeric training option"),
        ("lr=a..b", "cannot read"),
    ],
)
def test_bad_spaces_are_usage_errors(data, tiny_model, tmp_path, space, message):
    train, _ = data
    result = runner.invoke(
        app, ["tune", str(train), "-o", str(tmp_path / "t"), "-m", str(tiny_model), "--space", space]
    )
    assert result.exit_code == 2 and message in result.stderr


@pytest.mark.parametrize("command", [["tune"], ["finetune", "--seeds", "2"]])
def test_runs_compared_on_validation_need_validation_data(data, tiny_model, tmp_path, command):
    train, _ = data
    out = tmp_path / "t"
    result = runner.invoke(app, [*command, str(train), "-o", str(out), "-m", str(tiny_model), "--val-split", "0"])
    assert result.exit_code == 2 and "on validation data, and there is none" in result.stderr
    assert not out.exists() and not out.with_name("t.incomplete").exists()  # refused before anything ran


def test_a_mistyped_metric_stops_tune_before_any_trial(data, tiny_model, tmp_path):
    train, _ = data
    result = tune(train, tiny_model, tmp_path / "t", "--metric", "f1macro", "--trials", "2")
    assert result.exit_code == 2 and "unknown --metric 'f1macro' for classification" in result.stderr
    assert "f1_macro" in result.stderr and not (tmp_path / "t").exists() and not (tmp_path / "t.incomplete").exists()
