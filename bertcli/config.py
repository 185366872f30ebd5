"""Every command's options as dataclasses: the one source of their defaults, their checks and their help.

Precedence: dataclass default < recipe file (`--config run.toml|yaml|json`) < options given on the command line.
The CLI passes every option as None unless the user typed it, so a recipe is never silently overridden.
A field's metadata says how it is checked (`positive`, `fraction`, `choice`, ...); `validate()` checks every
field of a configuration, nested sections included, with one wording.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bertcli.errors import UsageError

TASKS = ("single_label", "multi_label", "regression", "ner")
PRECISIONS = ("auto", "no", "bf16", "fp16")
BACKENDS = ("auto", "torch", "onnx")
TRACKERS = ("none", "tensorboard", "wandb", "mlflow")
POOLINGS = ("mean", "cls", "max", "pooler")
LAYER_AGGS = ("mean", "concat")
AGGREGATIONS = ("first", "average", "max")
BERT_VOCAB_SIZE = 30522
# Padded tokens per inference batch when no batch size is given: batches of short inputs hold more of them, which
# keeps the matrix products large (measured fastest on CPU; see bench/embed.py).
BATCH_TOKENS = 4096
CHUNK_SIZE = 10_000  # inputs embed reads, sorts and writes at a time
TOKEN_CHUNK_SIZE = 1000  # the same with --token-level (every token's vector is kept)

# --- field checks ---------------------------------------------------------------------------------------------

Check = tuple[Callable[[Any], bool], str]
POSITIVE: Check = (lambda v: v > 0, "must be positive")
NON_NEGATIVE: Check = (lambda v: v >= 0, "must be 0 or more")
SHARE: Check = (lambda v: 0 <= v < 1, "must be in [0, 1)")
OPEN_SHARE: Check = (lambda v: 0 < v < 1, "must be between 0 and 1")


def checked(default: Any = None, check: Check | None = None, *, choices: tuple | None = None, arg: str | None = None) -> Any:
    """A field with its check: a range (POSITIVE, SHARE, ...) or `choices`; `arg` names a positional argument."""
    return field(default=default, metadata={"check": check, "choices": choices, "arg": arg})


def required(arg: str) -> Any:
    """A field the command needs (a positional argument, or an option such as -o), with no default."""
    return field(default=None, metadata={"arg": arg, "required": True})


def validate(config: Any) -> None:
    """Check every field of `config` (and its nested sections) against its metadata; None means unset and passes."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            validate(value)
            continue
        flag = "--" + f.name.replace("_", "-")
        if value is None:
            continue
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise UsageError(f"unknown {flag} {value!r}", hint=f"choose one of {', '.join(str(c) for c in choices)}")
        check = f.metadata.get("check")
        if check is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UsageError(f"{flag} must be a number, got {value!r}")
        if check is not None and not check[0](value):
            raise UsageError(f"{flag} {check[1]}, got {value:g}")


# --- shared sections ------------------------------------------------------------------------------------------


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

    epochs: float = checked(3.0, POSITIVE)
    lr: float | None = checked(None, POSITIVE)  # None: the task's default
    batch_size: int | None = checked(None, POSITIVE)  # None: the task's default
    grad_accum: int = checked(1, POSITIVE)
    warmup_ratio: float = checked(0.1, SHARE)
    weight_decay: float = checked(0.01, NON_NEGATIVE)
    max_grad_norm: float = checked(1.0, NON_NEGATIVE)
    precision: str = checked("auto", choices=PRECISIONS)
    seed: int = 42
    max_length: int | None = checked(None, POSITIVE)
    max_steps: int | None = checked(None, POSITIVE)
    eval_steps: int | None = checked(None, POSITIVE)
    save_steps: int | None = checked(None, POSITIVE)
    patience: int | None = checked(None, POSITIVE)
    metric: str | None = None
    class_weights: str = checked("none", choices=("none", "auto"))
    resume: str | None = None
    report_to: str = checked("none", choices=TRACKERS)
    gradient_checkpointing: bool = False


def with_defaults(opts: TrainOptions, defaults: dict[str, Any]) -> TrainOptions:
    """The options with the fields the user left unset (None) filled from a task's defaults."""
    return dataclasses.replace(opts, **{k: v for k, v in defaults.items() if getattr(opts, k) is None})


@dataclass
class NerOptions:
    """Token classification only: the input's tagging scheme, window overlap for long sentences, sub-token labels."""

    scheme: str | None = None
    stride: int | None = checked(None, NON_NEGATIVE)
    label_all_tokens: bool = False


# --- commands -------------------------------------------------------------------------------------------------


@dataclass
class FinetuneConfig:
    train: str = required("TRAIN")
    output: str = required("--output")
    model: str | None = None
    task: str | None = checked(None, choices=TASKS)
    validation: str | None = None
    val_split: float = checked(0.1, SHARE)
    overwrite: bool = False
    data: DataOptions = field(default_factory=DataOptions)
    training: TrainOptions = field(default_factory=TrainOptions)
    ner: NerOptions = field(default_factory=NerOptions)

    def validate(self) -> None:
        validate(self)


@dataclass
class PretrainOptions(TrainOptions):
    """TrainOptions with pretraining defaults: 128-token blocks (BERT's phase 1), and a checkpoint every 1000 steps
    (a pretraining run is long; its one epoch may be the whole run). lr None: 1e-4 from scratch (BERT), 5e-5 continued."""

    batch_size: int | None = checked(32, POSITIVE)
    max_length: int | None = checked(128, POSITIVE)
    save_steps: int | None = checked(1000, POSITIVE)


PRETRAIN_LR = {"scratch": 1e-4, "continued": 5e-5}


@dataclass
class PretrainConfig:
    inputs: list[str] = required("CORPUS")
    output: str = required("--output")
    model: str | None = None
    preset: str | None = None
    model_config: str | None = None
    tokenizer: str | None = None
    vocab_size: int | None = checked(None, POSITIVE)  # None: BERT_VOCAB_SIZE
    mlm_probability: float = checked(0.15, OPEN_SHARE)
    whole_word_mask: bool = False
    nsp: bool = False
    line_by_line: bool = False
    streaming: bool = False
    val_split: float = checked(0.02, SHARE)
    overwrite: bool = False
    data: DataOptions = field(default_factory=DataOptions)
    training: PretrainOptions = field(default_factory=PretrainOptions)

    def validate(self) -> None:
        from bertcli.bundle import PRESETS

        validate(self)
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
        if self.nsp and self.line_by_line:
            raise UsageError("--nsp builds its own sentence pairs; it cannot be combined with --line-by-line")
        if self.streaming and not self.training.max_steps:
            raise UsageError("--streaming needs --max-steps (the length of a stream is not known in advance)")
        if self.training.max_length < 8:
            raise UsageError("--max-length must be at least 8")


@dataclass
class EvaluateConfig:
    model_dir: str = required("MODEL_DIR")
    input: str = required("DATA")
    output: str | None = None
    plots: str | None = None
    errors: str | None = None
    json: bool = False
    batch_size: int = checked(64, POSITIVE)
    precision: str = checked("auto", choices=PRECISIONS)
    scheme: str | None = None
    data: DataOptions = field(default_factory=DataOptions)

    def validate(self) -> None:
        validate(self)


@dataclass
class PredictConfig:
    model_dir: str = required("MODEL_DIR")
    input: str | None = None  # None or '-': stdin
    output: str | None = None  # None: stdout
    output_format: str | None = checked(None, choices=("jsonl", "csv", "tsv"))  # None: from the -o suffix, else jsonl
    top_k: int | None = checked(None, POSITIVE)
    threshold: float | None = checked(None, OPEN_SHARE)  # None: the model's
    include_text: bool = False
    batch_size: int = checked(32, POSITIVE)
    max_length: int | None = checked(None, POSITIVE)  # None: the model's
    precision: str = checked("auto", choices=PRECISIONS)
    aggregation: str = checked("first", choices=AGGREGATIONS)
    stride: int | None = checked(None, NON_NEGATIVE)  # None: the model's
    data: DataOptions = field(default_factory=DataOptions)

    def validate(self) -> None:
        validate(self)

    @property
    def format(self) -> str:
        """The output format: --output-format, else the -o suffix, else JSONL."""
        if self.output_format:
            return self.output_format
        suffix = Path(self.output).suffix.lower().lstrip(".") if self.output else ""
        return suffix if suffix in ("csv", "tsv") else "jsonl"


@dataclass
class EmbedOptions:
    """How to turn a model's hidden states into vectors, and how to batch the forward passes."""

    pooling: str = checked("mean", choices=POOLINGS)
    layers: str = "-1"
    layer_agg: str = checked("mean", choices=LAYER_AGGS)
    normalize: bool = False
    token_level: bool = False
    max_length: int | None = checked(None, POSITIVE)  # None: the model's (or its sentence-transformers max_seq_length)
    batch_size: int | None = checked(None, POSITIVE)  # None: batches of about BATCH_TOKENS padded tokens
    precision: str = checked("auto", choices=PRECISIONS)

    def validate(self) -> None:
        validate(self)
        if self.pooling == "pooler" and self.layers.strip() != "-1":
            raise UsageError("--pooling pooler reads the pooler output and takes no --layers", hint="use --pooling mean, cls or max")
        if self.pooling == "pooler" and self.token_level:
            raise UsageError("--token-level exports token vectors; it takes no --pooling pooler")


@dataclass
class VectorOptions:
    """Where and how the vectors are written."""

    output_format: str | None = checked(None, choices=("npy", "parquet", "jsonl"))  # None: from the -o suffix
    dtype: str = checked("float32", choices=("float32", "float16"))
    include_text: bool = False
    chunk_size: int | None = checked(None, POSITIVE)  # None: CHUNK_SIZE, or TOKEN_CHUNK_SIZE with --token-level
    resume: bool = False


@dataclass
class EmbedConfig:
    input: str | None = None  # None or '-': stdin
    output: str = required("--output")
    model: str | None = None
    embed: EmbedOptions = field(default_factory=EmbedOptions)
    vectors: VectorOptions = field(default_factory=VectorOptions)
    data: DataOptions = field(default_factory=DataOptions)

    def validate(self) -> None:
        validate(self)
        self.embed.validate()


@dataclass
class TokenizeConfig:
    input: str | None = None  # a text, a file, or None / '-' for stdin
    model: str | None = None
    stats: bool = False
    train_vocab: bool = False
    output_format: str | None = checked(None, choices=("table", "jsonl", "json"))  # None: table on a terminal, else jsonl
    max_length: int | None = checked(None, POSITIVE)
    output: str | None = None
    vocab_size: int = checked(BERT_VOCAB_SIZE, POSITIVE)
    lowercase: bool = True
    min_frequency: int = checked(2, POSITIVE)
    overwrite: bool = False
    data: DataOptions = field(default_factory=DataOptions)

    def validate(self) -> None:
        validate(self)
        if self.stats and self.train_vocab:
            raise UsageError("--stats and --train-vocab are separate modes; pass one")
        if self.output is not None and not self.train_vocab:
            raise UsageError("-o names the --train-vocab output directory", hint="redirect stdout to save tokens or stats")
        if self.train_vocab and self.output is None:
            raise UsageError("--train-vocab needs -o DIR for the tokenizer")


# --- building a configuration ---------------------------------------------------------------------------------

C = TypeVar("C")


def default_of(cls: type, name: str) -> Any:
    """A field's default, also inside a nested section (for help texts)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.default_factory() if f.default_factory is not MISSING else f.default
        if dataclasses.is_dataclass(f.default_factory):
            found = {sf.name: sf for sf in dataclasses.fields(f.default_factory)}
            if name in found:
                return default_of(f.default_factory, name)
    raise KeyError(name)


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
    """Merge defaults, a recipe and CLI values into `cls`, and validate the result.

    Recipe keys may be flat (`lr = 3e-5`) or grouped in the nested sections (`[training] lr = 3e-5`);
    unknown keys are an error so a typo never goes unnoticed.
    """
    values: dict[str, Any] = {}
    if recipe:
        for key, value in read_recipe(recipe).items():
            if isinstance(value, dict):
                values.update({k.replace("-", "_"): v for k, v in value.items()})
            else:
                values[key.replace("-", "_")] = value
    values.update({k: v for k, v in cli.items() if v is not None})
    config = _instantiate(cls, values, str(recipe) if recipe else "command line")
    config.validate()
    return config


def _instantiate(cls: type[C], values: dict[str, Any], source: str) -> C:
    nested = {f.name: f for f in dataclasses.fields(cls) if dataclasses.is_dataclass(f.default_factory)}
    own = {f.name for f in dataclasses.fields(cls)} - set(nested)
    kwargs = {k: values.pop(k) for k in list(values) if k in own}
    for name, f in nested.items():
        sub_fields = {sf.name for sf in dataclasses.fields(f.default_factory)}
        kwargs[name] = f.default_factory(**{k: values.pop(k) for k in list(values) if k in sub_fields})
    if values:
        raise UsageError(f"unknown setting(s) {', '.join(sorted(values))}", file=source)
    missing = [f.metadata["arg"] for f in dataclasses.fields(cls) if f.metadata.get("required") and kwargs.get(f.name) in (None, [])]
    if missing:
        raise UsageError(f"missing {', '.join(missing)}", hint="give it on the command line or in the recipe (--config)")
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
