"""Configuration: one source of defaults, recipe files for every command, CLI overrides, one validation."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bertcli.cli.main import app
from bertcli.config import (
    TASK_DEFAULTS,
    EmbedConfig,
    EvaluateConfig,
    FinetuneConfig,
    PredictConfig,
    PretrainConfig,
    TokenizeConfig,
    TrainOptions,
    build_config,
    classification_batch_size,
    train_windows,
    with_defaults,
)
from bertcli.errors import UsageError

runner = CliRunner()


def test_unset_training_options_are_left_to_the_task():
    cfg = build_config(FinetuneConfig, None, train="t.csv", output="o")
    assert (cfg.training.warmup_ratio, cfg.val_split) == (0.1, 0.1)
    assert cfg.training.lr is None and cfg.training.batch_size is None and cfg.training.epochs is None


@pytest.mark.parametrize("task", ["classification", "ner", "embedding"])
def test_task_defaults_fill_only_what_the_user_left_unset(task):
    defaults = TASK_DEFAULTS[task]
    filled = with_defaults(TrainOptions(), defaults)
    assert (filled.lr, filled.batch_size) == (defaults["lr"], defaults.get("batch_size"))
    assert filled.epochs == {"classification": None, "ner": 3.0, "embedding": 1.0}[task]  # classifiers: from the data
    given = with_defaults(TrainOptions(lr=2e-5, batch_size=8), defaults)
    assert (given.lr, given.batch_size) == (2e-5, 8)


def test_small_data_gets_the_smaller_batch():
    # 1,800 texts x 3 epochs in batches of 32: 171 steps, enough; 760 texts: 72 steps, too few
    assert classification_batch_size(1800, 3.0, 1, 1) == 32
    assert classification_batch_size(760, 3.0, 1, 1) == 16
    assert classification_batch_size(1800, 3.0, 1, 2) == 16  # two processes halve the steps
    assert classification_batch_size(760, 10.0, 1, 1) == 32
    assert classification_batch_size(760, 3.0, 1, 1, max_steps=500) == 32  # --max-steps says how many steps


def test_training_windows_per_text():
    assert train_windows(None, 1135, 844) is None  # 1.3 windows per text: all of them
    assert train_windows(None, 2227, 248) == 1  # 9 per text: one per epoch
    assert (train_windows(0, 2227, 248), train_windows(3, 2227, 248)) == (None, 3)


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_recipe_then_cli_override(tmp_path, suffix):
    recipe = tmp_path / f"run{suffix}"
    if suffix == ".toml":
        recipe.write_text(
            'train = "a.csv"\noutput = "runs/x"\n[training]\nlr = 3e-5\nepochs = 2\n[data]\ntext_column = "body"\n'
        )
    else:
        recipe.write_text(
            "train: a.csv\noutput: runs/x\ntraining:\n  lr: 3.0e-5\n  epochs: 2\ndata:\n  text_column: body\n"
        )
    cfg = build_config(FinetuneConfig, recipe, epochs=5.0, lr=None)
    assert cfg.train == "a.csv" and cfg.data.text_column == "body"
    assert cfg.training.lr == 3e-5  # recipe value kept: the CLI did not give --lr
    assert cfg.training.epochs == 5.0  # CLI wins


@pytest.mark.parametrize(
    "cls, recipe, expected",
    [
        (EvaluateConfig, 'model_dir = "m"\ninput = "t.csv"\nbatch_size = 8\ntext_column = "body"\n', {"batch_size": 8}),
        (PredictConfig, 'model_dir = "m"\ntop_k = 2\nthreshold = 0.3\n', {"top_k": 2, "threshold": 0.3}),
        (TokenizeConfig, "stats = true\nmax_length = 64\n", {"stats": True, "max_length": 64}),
        (
            PretrainConfig,
            'inputs = ["c.txt"]\noutput = "o"\npreset = "tiny"\nmlm_probability = 0.2\n',
            {"mlm_probability": 0.2},
        ),
    ],
)
def test_every_command_reads_a_recipe(tmp_path, cls, recipe, expected):
    path = tmp_path / "r.toml"
    path.write_text(recipe)
    cfg = build_config(cls, path)
    assert {k: getattr(cfg, k) for k in expected} == expected


def test_embed_recipe_fills_the_nested_sections(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(
        'input = "c.txt"\noutput = "v.npy"\n[embed]\npooling = "cls"\nnormalize = true\n[vectors]\ndtype = "float16"\n'
    )
    cfg = build_config(EmbedConfig, path, normalize=None, batch_size=4)
    assert (cfg.embed.pooling, cfg.embed.normalize, cfg.embed.batch_size, cfg.vectors.dtype) == (
        "cls",
        True,
        4,
        "float16",
    )


def test_unknown_recipe_key_is_an_error(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('train = "a.csv"\noutput = "o"\nlearning_rate = 1\n')
    with pytest.raises(UsageError, match="unknown setting.*learning_rate"):
        build_config(FinetuneConfig, recipe)


@pytest.mark.parametrize(
    "cls, required, values, message",
    [
        (FinetuneConfig, {"train": "t", "output": "o"}, {"batch_size": 0}, "--batch-size must be positive, got 0"),
        (FinetuneConfig, {"train": "t", "output": "o"}, {"lr": 0.0}, "--lr must be positive, got 0"),
        (FinetuneConfig, {"train": "t", "output": "o"}, {"epochs": -1.0}, "--epochs must be positive, got -1"),
        (FinetuneConfig, {"train": "t", "output": "o"}, {"grad_accum": 0}, "--grad-accum must be positive, got 0"),
        (
            FinetuneConfig,
            {"train": "t", "output": "o"},
            {"warmup_ratio": 1.0},
            "--warmup-ratio must be in [0, 1), got 1",
        ),
        (FinetuneConfig, {"train": "t", "output": "o"}, {"val_split": -0.1}, "--val-split must be in [0, 1), got -0.1"),
        (FinetuneConfig, {"train": "t", "output": "o"}, {"stride": -1}, "--stride must be 0 or more, got -1"),
        (FinetuneConfig, {"train": "t", "output": "o"}, {"precision": "fp8"}, "unknown --precision 'fp8'"),
        (FinetuneConfig, {"train": "t", "output": "o"}, {"lr": "fast"}, "--lr must be a number, got 'fast'"),
        (
            PretrainConfig,
            {"inputs": ["c"], "output": "o", "preset": "tiny"},
            {"batch_size": 0},
            "--batch-size must be positive, got 0",
        ),
        (
            PretrainConfig,
            {"inputs": ["c"], "output": "o", "preset": "tiny"},
            {"lr": 0.0},
            "--lr must be positive, got 0",
        ),
        (EvaluateConfig, {"model_dir": "m", "input": "t"}, {"batch_size": 0}, "--batch-size must be positive, got 0"),
        (PredictConfig, {"model_dir": "m"}, {"top_k": 0}, "--top-k must be positive, got 0"),
        (PredictConfig, {"model_dir": "m"}, {"threshold": 1.0}, "--threshold must be between 0 and 1, got 1"),
        (EmbedConfig, {"output": "v.npy"}, {"chunk_size": 0}, "--chunk-size must be positive, got 0"),
        (EmbedConfig, {"output": "v.npy"}, {"pooling": "sum"}, "unknown --pooling 'sum'"),
        (TokenizeConfig, {}, {"max_length": 0}, "--max-length must be positive, got 0"),
    ],
)
def test_one_validation_for_every_numeric_option(cls, required, values, message):
    with pytest.raises(UsageError) as err:
        build_config(cls, None, **required, **values)
    assert str(err.value).startswith(message) and err.value.exit_code == 2


@pytest.mark.parametrize(
    "flag, value", [("--batch-size", "0"), ("--lr", "0"), ("--epochs", "0"), ("--max-steps", "-3")]
)
def test_bad_numbers_are_usage_errors_before_any_work(tmp_path, flag, value):
    """Exit 2 with one line, and nothing read or written: the data file does not even exist."""
    result = runner.invoke(app, ["finetune", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "out"), flag, value])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"bertcli: error: {flag} must be positive, got {float(value):g}"
    assert not (tmp_path / "out").exists()


def test_help_shows_the_defaults_the_commands_use():
    shown = {
        cmd: runner.invoke(app, [cmd, "--help"], terminal_width=200).stdout
        for cmd in ("finetune", "evaluate", "predict", "pretrain")
    }
    assert f"[default: {EvaluateConfig.batch_size}]" in shown["evaluate"]
    assert f"[default: {PredictConfig.batch_size}]" in shown["predict"]
    assert "[default: 32, or 16 when that gives under 150 steps; NER 16]" in shown["finetune"]
    assert "[default: 1e-4; NER 3e-4]" in shown["finetune"] and "[default: 32]" in shown["pretrain"]


def test_no_default_is_written_twice():
    """Typer options all default to None: the value a command uses comes from its config dataclass alone."""
    import inspect

    from bertcli.cli import main

    for command in main.app.registered_commands:
        for parameter in inspect.signature(command.callback).parameters.values():
            assert parameter.default in (None, inspect.Parameter.empty), (
                command.name,
                parameter.name,
                parameter.default,
            )
