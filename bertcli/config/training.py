"""The options of the commands that train: finetune and pretrain (and the training loop they share)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bertcli.config.common import PRECISIONS, TASKS, TRACKERS, DataOptions
from bertcli.config.fields import NON_NEGATIVE, OPEN_SHARE, POSITIVE, SHARE, checked, required, validate
from bertcli.errors import UsageError


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
        starts = [
            flag
            for flag, value in (
                ("--model", self.model),
                ("--preset", self.preset),
                ("--model-config", self.model_config),
            )
            if value
        ]
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
