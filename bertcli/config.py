"""Run configuration: dataclasses that hold every default once, filled from a recipe file and the CLI.

Precedence: dataclass default < recipe file (`--config run.toml|yaml`) < options given on the command line.
The CLI passes every option as None unless the user typed it, so a recipe is never silently overridden.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bertcli.errors import UsageError

TASKS = ("single_label", "multi_label", "regression", "ner")
PRECISIONS = ("auto", "no", "bf16", "fp16")
TRACKERS = ("none", "tensorboard", "wandb", "mlflow")


@dataclass
class DataOptions:
    """How to read a table: format and which columns hold text, pair text, labels and ids."""

    format: str | None = None
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    label_sep: str | None = None
    id_column: str | None = None


@dataclass
class TrainOptions:
    """Optimisation settings shared by finetune and pretrain (the one training loop)."""

    epochs: float = 3.0
    lr: float | None = None  # None: the task's default (TASK_DEFAULTS)
    batch_size: int | None = None
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    precision: str = "auto"
    seed: int = 42
    max_length: int | None = None
    max_steps: int | None = None
    eval_steps: int | None = None
    save_steps: int | None = None
    patience: int | None = None
    metric: str | None = None
    class_weights: str = "none"
    resume: str | None = None
    report_to: str = "none"
    gradient_checkpointing: bool = False

    def check_report_to(self) -> None:
        if self.report_to not in TRACKERS:
            raise UsageError(f"unknown --report-to {self.report_to!r}", hint=f"choose one of {', '.join(TRACKERS)}")


# Tuned on real data with all-MiniLM-L6-v2 (Rotten Tomatoes; WNUT-16): NER's sparse entity tags need a higher
# rate and more, smaller steps, or one epoch at the classification settings ends with entity F1 0.
TASK_DEFAULTS = {"classification": {"lr": 1e-4, "batch_size": 32}, "ner": {"lr": 3e-4, "batch_size": 16}}


def with_task_defaults(opts: TrainOptions, task: str) -> TrainOptions:
    """The options with lr/batch size the user left unset filled from the task's defaults."""
    unset = {name: value for name, value in TASK_DEFAULTS[task].items() if getattr(opts, name) is None}
    return dataclasses.replace(opts, **unset)


@dataclass
class NerOptions:
    """Token classification only: the input's tagging scheme, window overlap for long sentences, sub-token labels."""

    scheme: str | None = None
    stride: int | None = None
    label_all_tokens: bool = False


@dataclass
class FinetuneConfig:
    train: str
    output: str
    model: str | None = None
    task: str | None = None
    validation: str | None = None
    val_split: float = 0.1
    overwrite: bool = False
    data: DataOptions = field(default_factory=DataOptions)
    training: TrainOptions = field(default_factory=TrainOptions)
    ner: NerOptions = field(default_factory=NerOptions)

    def validate(self) -> None:
        if self.task is not None and self.task not in TASKS:
            raise UsageError(f"unknown --task {self.task!r}", hint=f"choose one of {', '.join(TASKS)}")
        if self.training.precision not in PRECISIONS:
            raise UsageError(
                f"unknown --precision {self.training.precision!r}", hint=f"choose one of {', '.join(PRECISIONS)}"
            )
        if self.training.class_weights not in ("none", "auto"):
            raise UsageError("--class-weights takes 'auto' or 'none'")
        self.training.check_report_to()
        if not 0.0 <= self.val_split < 1.0:
            raise UsageError(f"--val-split must be in [0, 1), got {self.val_split}")
        if self.ner.stride is not None and self.ner.stride < 0:
            raise UsageError("--stride must be 0 or more")
        for name in ("lr", "epochs", "batch_size", "grad_accum"):
            if (getattr(self.training, name) or 1) <= 0:
                raise UsageError(f"--{name.replace('_', '-')} must be positive")


# the BERT miniatures' shapes (Turc et al. 2019): layers, hidden size; heads = hidden/64, feed-forward = 4 x hidden
PRESETS = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512), "medium": (8, 512), "base": (12, 768)}


@dataclass
class PretrainOptions(TrainOptions):
    """TrainOptions with pretraining defaults: 128-token blocks (BERT's phase 1), an lr chosen by the start point,
    and a checkpoint every 1000 steps (a pretraining run is long; its one epoch may be the whole run).

    lr None resolves to 1e-4 from scratch (BERT) or 5e-5 when continuing an existing model.
    """

    lr: float | None = None
    batch_size: int | None = 32
    max_length: int | None = 128
    save_steps: int | None = 1000


@dataclass
class PretrainConfig:
    inputs: list[str]
    output: str
    model: str | None = None
    preset: str | None = None
    model_config: str | None = None
    tokenizer: str | None = None
    vocab_size: int | None = None
    mlm_probability: float = 0.15
    whole_word_mask: bool = False
    nsp: bool = False
    line_by_line: bool = False
    streaming: bool = False
    val_split: float = 0.02
    overwrite: bool = False
    data: DataOptions = field(default_factory=DataOptions)
    training: PretrainOptions = field(default_factory=PretrainOptions)

    def validate(self) -> None:
        starts = [flag for flag, value in (("--model", self.model), ("--preset", self.preset), ("--model-config", self.model_config)) if value]
        if len(starts) != 1:
            raise UsageError(
                "choose exactly one start: --preset or --model-config (from scratch) or --model (continue pretraining)"
                + (f"; got {', '.join(starts)}" if starts else ""),
                hint=f"e.g. --preset mini; presets: {', '.join(PRESETS)}",
            )
        if self.preset is not None and self.preset not in PRESETS:
            raise UsageError(f"unknown --preset {self.preset!r}", hint=f"choose one of {', '.join(PRESETS)}")
        if self.model and (self.tokenizer or self.vocab_size):
            raise UsageError("--tokenizer/--vocab-size are for training from scratch; --model brings its own tokenizer")
        if self.tokenizer and self.vocab_size:
            raise UsageError("--vocab-size trains a new vocabulary; it cannot be combined with --tokenizer")
        if self.training.precision not in PRECISIONS:
            raise UsageError(f"unknown --precision {self.training.precision!r}", hint=f"choose one of {', '.join(PRECISIONS)}")
        self.training.check_report_to()
        if not 0.0 < self.mlm_probability < 1.0:
            raise UsageError(f"--mlm-probability must be in (0, 1), got {self.mlm_probability}")
        if not 0.0 <= self.val_split < 1.0:
            raise UsageError(f"--val-split must be in [0, 1), got {self.val_split}")
        if self.nsp and self.line_by_line:
            raise UsageError("--nsp builds its own sentence pairs; it cannot be combined with --line-by-line")
        if self.streaming and not self.training.max_steps:
            raise UsageError("--streaming needs --max-steps (the length of a stream is not known in advance)")
        if self.training.max_length is not None and self.training.max_length < 8:
            raise UsageError("--max-length must be at least 8")
        for name in ("lr", "epochs", "batch_size", "grad_accum"):
            value = getattr(self.training, name)
            if value is not None and value <= 0:
                raise UsageError(f"--{name.replace('_', '-')} must be positive")


C = TypeVar("C")


def read_recipe(path: str | Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON recipe into a dict."""
    path = Path(path)
    if not path.is_file():
        raise UsageError("recipe file not found", file=path)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text) or {}
        if path.suffix == ".json":
            return json.loads(text)
    except Exception as exc:  # parser errors carry their own position
        raise UsageError(f"cannot parse recipe: {exc}", file=path) from None
    raise UsageError("recipe must be .toml, .yaml/.yml or .json", file=path)


def build_config(cls: type[C], recipe: str | Path | None = None, **cli: Any) -> C:
    """Merge defaults, a recipe and CLI values into `cls`.

    Recipe keys may be flat (`lr = 3e-5`) or grouped in the nested sections (`[training] lr = 3e-5`);
    unknown keys are an error so a typo never goes unnoticed.
    """
    source = str(recipe) if recipe else "command line"
    return _instantiate(cls, recipe_values(recipe, **cli), source)


def recipe_values(recipe: str | Path | None = None, **cli: Any) -> dict[str, Any]:
    """A recipe's settings (sections flattened, dashes as underscores) updated by the CLI values that were given."""
    values: dict[str, Any] = {}
    if recipe:
        for key, value in read_recipe(recipe).items():
            if isinstance(value, dict):
                values.update({k.replace("-", "_"): v for k, v in value.items()})
            else:
                values[key.replace("-", "_")] = value
    values.update({k: v for k, v in cli.items() if v is not None})
    return values


def take(cls: type[C], values: dict[str, Any]) -> C:
    """Instantiate the dataclass `cls` from the keys of `values` it has (removing them); its defaults fill the rest."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: values.pop(k) for k in list(values) if k in names})


def _instantiate(cls: type[C], values: dict[str, Any], source: str) -> C:
    nested = {f.name: f for f in dataclasses.fields(cls) if dataclasses.is_dataclass(f.default_factory)}
    own = {f.name for f in dataclasses.fields(cls)} - set(nested)
    kwargs = {k: values.pop(k) for k in list(values) if k in own}
    for name, f in nested.items():
        sub_fields = {sf.name for sf in dataclasses.fields(f.default_factory)}
        kwargs[name] = f.default_factory(**{k: values.pop(k) for k in list(values) if k in sub_fields})
    if values:
        raise UsageError(f"unknown setting(s) {', '.join(sorted(values))}", file=source)
    required = [f.name for f in dataclasses.fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if kwargs.get(name) is None]
    if missing:
        flags = ", ".join(f"--{name}" for name in missing)
        raise UsageError(f"missing required setting(s): {flags}", hint="give them on the command line or in the recipe")
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
