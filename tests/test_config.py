"""Configuration: one source of defaults, recipe files, CLI overrides."""

from __future__ import annotations

import pytest

from bertcli.config import TASK_DEFAULTS, FinetuneConfig, TrainOptions, build_config, with_task_defaults
from bertcli.errors import UsageError


def test_defaults_come_from_the_dataclasses():
    cfg = build_config(FinetuneConfig, None, train="t.csv", output="o")
    assert cfg.training.epochs == TrainOptions.epochs and cfg.val_split == 0.1
    assert cfg.training.lr is None and cfg.training.batch_size is None  # left to the task's defaults


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_task_defaults_fill_only_what_the_user_left_unset(task):
    filled = with_task_defaults(TrainOptions(), task)
    assert (filled.lr, filled.batch_size) == (TASK_DEFAULTS[task]["lr"], TASK_DEFAULTS[task]["batch_size"])
    given = with_task_defaults(TrainOptions(lr=2e-5), task)
    assert given.lr == 2e-5 and given.batch_size == TASK_DEFAULTS[task]["batch_size"]
    assert TASK_DEFAULTS["ner"]["lr"] > TASK_DEFAULTS["classification"]["lr"]


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_recipe_then_cli_override(tmp_path, suffix):
    recipe = tmp_path / f"run{suffix}"
    if suffix == ".toml":
        recipe.write_text('train = "a.csv"\noutput = "runs/x"\n[training]\nlr = 3e-5\nepochs = 2\n[data]\ntext_column = "body"\n')
    else:
        recipe.write_text("train: a.csv\noutput: runs/x\ntraining:\n  lr: 3.0e-5\n  epochs: 2\ndata:\n  text_column: body\n")
    cfg = build_config(FinetuneConfig, recipe, epochs=5.0, lr=None)
    assert cfg.train == "a.csv" and cfg.data.text_column == "body"
    assert cfg.training.lr == 3e-5  # recipe value kept: the CLI did not give --lr
    assert cfg.training.epochs == 5.0  # CLI wins


def test_unknown_recipe_key_is_an_error(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('train = "a.csv"\noutput = "o"\nlearning_rate = 1\n')
    with pytest.raises(UsageError, match="unknown setting.*learning_rate"):
        build_config(FinetuneConfig, recipe)


def test_validate_rejects_bad_values():
    cfg = build_config(FinetuneConfig, None, train="t", output="o", precision="fp8")
    with pytest.raises(UsageError, match="--precision"):
        cfg.validate()
