"""The options of the commands that train: finetune and pretrain (and the training loop they share)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from bertcli.config.common import AGGREGATES, LEXICAL, LONG_TEXT, PRECISIONS, TASKS, TRACKERS, DataOptions
from bertcli.config.embedding import EMBEDDING_DEFAULTS, EmbeddingOptions, MiningOptions
from bertcli.config.fields import NON_NEGATIVE, OPEN_SHARE, POSITIVE, SHARE, checked, required, validate
from bertcli.config.rerank import RERANK_DEFAULTS, RerankOptions
from bertcli.errors import UsageError

# Each task's training defaults, for the options left unset (None). Classification: tuned on Rotten Tomatoes with
# all-MiniLM-L6-v2 (bench/classify.py). NER: tuned on WNUT-16; sparse entity tags need a higher rate and more,
# smaller steps, or one epoch at the classification settings ends with entity F1 0.
TASK_DEFAULTS = {
    "classification": {"lr": 1e-4},  # epochs: classification_epochs (3, or more on small data)
    "ner": {"lr": 3e-4, "batch_size": 16, "epochs": 3.0},
    "embedding": EMBEDDING_DEFAULTS,
    "rerank": RERANK_DEFAULTS,
}
# Classification's batch size: 32, or 16 when 32 would give the run fewer than MIN_STEPS optimizer steps. Measured
# (bench/long.py, 3 seeds): 24 steps of 32 left 248 movie documents at 0.69 accuracy, 42 steps of 16 reached 0.81.
BATCH_SIZE, SMALL_DATA_BATCH_SIZE, MIN_STEPS = 32, 16, 150
# the validation metric that picks the best model when --metric is not given, by kind of labels
DEFAULT_METRICS = {
    "single_label": "accuracy", "multi_label": "f1_micro", "regression": "mse", "ner": "f1", "embedding": "ndcg@10",
    "reranker": "ndcg@10",
}  # fmt: skip
# what each kind of model's validation reports during training (reports/metrics.py, tasks/ner/entities.py): --metric
# names one of them, checked before any training
VALIDATION_METRICS = {
    "single_label": ("loss", "accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_micro", "recall_micro",
                     "f1_micro", "precision_weighted", "recall_weighted", "f1_weighted", "mcc"),
    "multi_label": ("loss", "subset_accuracy", "hamming_loss", "f1_micro", "precision_micro", "recall_micro", "f1_macro",
                    "precision_macro", "recall_macro", "f1_weighted"),
    "regression": ("loss", "mse", "rmse", "mae", "r2", "pearson", "spearman"),
    "ner": ("loss", "f1", "precision", "recall", "accuracy", "strict_f1"),
    "embedding": ("ndcg@10", "mrr@10", "recall@10"),  # each validation query against every validation positive
    "reranker": ("ndcg@10", "mrr@10", "recall@10"),  # each validation query's first-stage candidates, reranked
}  # fmt: skip
# pretrain --preset: the BERT miniatures' shapes (Turc et al. 2019): layers, hidden size; heads = hidden/64,
# feed-forward = 4 x hidden
PRESETS = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512), "medium": (8, 512), "base": (12, 768)}
# `bertcli tune`'s search spaces: around the defaults above (and 3 epochs, 10% warmup), wide enough to matter
DEFAULT_SPACES = {
    "classification": "lr=1e-5..5e-4:log,epochs=1..5,batch_size=16|32|64,warmup_ratio=0..0.2",
    "ner": "lr=5e-5..1e-3:log,epochs=1..6,batch_size=8|16|32,warmup_ratio=0..0.2",
}


@dataclass
class TrainOptions:
    """Optimisation settings shared by finetune and pretrain (the one training loop)."""

    epochs: float | None = checked(None, POSITIVE)  # None: the task's default (classification: classification_epochs)
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
    attention_dropout: float | None = checked(None, SHARE)  # None: the model's own (a task may set it)


def with_defaults(opts: TrainOptions, defaults: dict[str, Any]) -> TrainOptions:
    """The options with the fields the user left unset (None) filled from a task's defaults."""
    return dataclasses.replace(opts, **{k: v for k, v in defaults.items() if getattr(opts, k) is None})


@dataclass
class NerOptions:
    """Token classification only: the input's tagging scheme and sub-token labels."""

    scheme: str | None = None
    label_all_tokens: bool = False


# Small data: at least MIN_STEPS optimizer steps, in more epochs when --epochs is left unset; the best validation
# checkpoint is kept as ever. Measured on 132 long political statements (the 189 longest Democratic/Republican ones
# of the debates corpus, 132 train / 57 test; 119 + 14 validation, one 128-token window per text an epoch, batch 16,
# seed 42): 3 epochs = 24 steps ended at 0.596 test accuracy (macro-F1 0.526; validation at the majority class),
# 19 epochs = 152 steps at 0.807 (0.801). No early stopping by default: the validation loss rose from step 24 while
# test accuracy climbed, and patience 5 on validation accuracy (14 texts) would have stopped at step 56 and kept
# step 16's near-majority model. Sets that already make MIN_STEPS steps (2,000 snippets: 171) train as before.
EPOCHS = 3.0


def classification_epochs(
    examples_per_epoch: int,
    batch_size: int,
    grad_accum: int,
    processes: int,
    epochs: float | None,
    max_steps: int | None = None,
) -> float:
    """The epochs to train: as given; unset (None), EPOCHS, or more on small data so the run makes MIN_STEPS
    optimizer steps. --max-steps decides alone."""
    if epochs is not None or max_steps:
        return EPOCHS if epochs is None else epochs
    per_epoch = math.ceil(examples_per_epoch / (batch_size * grad_accum * processes))
    return max(EPOCHS, MIN_STEPS / per_epoch)


def classification_batch_size(
    examples_per_epoch: int, epochs: float, grad_accum: int, processes: int, max_steps: int | None = None
) -> int:
    """The batch size when none is given: small data gets more, smaller steps (MIN_STEPS); --max-steps decides alone."""
    steps = max_steps or math.ceil(examples_per_epoch / (BATCH_SIZE * grad_accum * processes)) * epochs
    return BATCH_SIZE if steps >= MIN_STEPS else SMALL_DATA_BATCH_SIZE


# Long texts (classification), measured with bench/long.py on real long documents (movies, all > 512 tokens) and
# real long-tail statements (debates, p50 20 and p99 503 tokens): windows of 128 tokens beat windows of 256
# (0.82 vs 0.77; 0.75 vs 0.73) at 40-70% of the time, and truncating at 512 (0.82 vs 0.76; 0.75 vs 0.73); so
# training reads at most LENGTH_CAP tokens at a time (less when 99% of the texts are shorter), and windows when more
# than WINDOW_SHARE of the texts are longer than that.
LENGTH_CAP = 128
WINDOW_SHARE = 0.01
# Training windows per text and epoch, when not given: all of them while the texts have at most WINDOWS_PER_TEXT
# windows on average (the debates: 1.3; every window 0.74 accuracy, one per epoch 0.71), else one, drawn afresh
# every epoch (the movie documents: 9 per text; one per epoch 0.81 in 28 s, every window 0.86 in 166 s). Either
# way training costs at most twice what truncation costs; prediction always reads every window.
WINDOWS_PER_TEXT = 2


@dataclass
class WindowOptions:
    """Inputs longer than --max-length: cut (truncate) or read in overlapping windows (NER always windows).

    None leaves the choice to the data: the tokens' real lengths decide max length and mode (LongTextPolicy).
    """

    long_text: str | None = checked(None, choices=LONG_TEXT)
    stride: int | None = checked(None, NON_NEGATIVE)  # tokens shared by neighbouring windows (None: a quarter)
    aggregate: str | None = checked(None, choices=AGGREGATES)  # mean or elementwise max; None: AGGREGATE_DEFAULTS
    train_windows: int | None = checked(None, NON_NEGATIVE)  # per text and epoch, drawn afresh; 0: all; None: auto


def train_windows(given: int | None, windows: int, texts: int) -> int | None:
    """Windows each text trains on per epoch (None: all): as given (0: all), else by WINDOWS_PER_TEXT."""
    if given is not None:
        return given or None
    return None if windows <= WINDOWS_PER_TEXT * texts else 1


@dataclass
class FinetuneConfig:
    train: str = required("TRAIN")
    output: str = required("--output")
    model: str | None = None
    task: str | None = checked(None, choices=TASKS)
    validation: str | None = None
    val_split: float = checked(0.1, SHARE)
    split_seed: int | None = None  # the validation split's seed (None: --seed); --seeds keeps it fixed
    seeds: str | None = None  # N runs (--seed, --seed + 1, ...) or a list "1,2,3": mean +- std, the best one kept
    lexical: str = checked("auto", choices=LEXICAL)  # classifiers: the TF-IDF + linear baseline, combined when it helps
    overwrite: bool = False
    data: DataOptions = field(default_factory=DataOptions)
    training: TrainOptions = field(default_factory=TrainOptions)
    ner: NerOptions = field(default_factory=NerOptions)
    windows: WindowOptions = field(default_factory=WindowOptions)
    embedding: EmbeddingOptions = field(default_factory=EmbeddingOptions)
    mining: MiningOptions = field(default_factory=MiningOptions)
    rerank: RerankOptions = field(default_factory=RerankOptions)

    def validate(self) -> None:
        validate(self)
        self.embedding.validate()
        if self.seeds is not None:
            seed_list(str(self.seeds), self.training.seed)
            self.require_validation("--seeds compares its runs")

    def require_validation(self, what: str) -> None:
        """Runs compared on validation metrics need validation data: say so before the first run, not after it."""
        if not self.validation and self.val_split <= 0:
            raise UsageError(
                f"{what} on validation data, and there is none", hint="--validation FILE or --val-split > 0"
            )

    @property
    def validation_seed(self) -> int:
        return self.training.seed if self.split_seed is None else self.split_seed


def seed_list(spec: str, first: int) -> list[int]:
    """--seeds N (first, first + 1, ...) or --seeds 1,2,3."""
    text = str(spec).strip()
    try:
        seeds = [int(part) for part in text.split(",")] if "," in text else list(range(first, first + int(text)))
    except ValueError:
        raise UsageError(f"--seeds takes a count or a list such as 1,2,3, got {spec!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds needs at least one seed and no repeats, got {spec!r}")
    return seeds


@dataclass
class PretrainOptions(TrainOptions):
    """TrainOptions with pretraining defaults: 128-token blocks (BERT's phase 1), and a checkpoint every 1000 steps
    (a pretraining run is long; its one epoch may be the whole run). lr None: 1e-4 from scratch (BERT), 5e-5 continued."""

    epochs: float | None = checked(3.0, POSITIVE)
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


@dataclass
class TuneConfig(FinetuneConfig):
    """finetune's options, and the search: every trial is a finetune with the space's options set."""

    trials: int = checked(20, POSITIVE)
    timeout: str | None = None  # a time budget: 600, 90s, 30m, 2h (None: until --trials)
    space: str | None = None  # None: the task's default (DEFAULT_SPACES)
    resume: bool = False  # continue the search in OUT.incomplete/study.db, or add trials to a finished OUT

    def validate(self) -> None:
        super().validate()
        if self.seeds is not None:
            raise UsageError("--seeds is for finetune; tune a search, then run its best parameters with --seeds")
        budget_seconds(self.timeout)
        self.require_validation("tune ranks its trials")


def budget_seconds(text: str | None) -> float | None:
    """600, 90s, 30m, 2h -> seconds."""
    if text is None:
        return None
    value = str(text).strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(value[-1:], None)
    try:
        seconds = float(value[:-1] if scale else value) * (scale or 1)
    except ValueError:
        raise UsageError(f"--timeout takes seconds or a duration such as 90s, 30m, 2h; got {text!r}") from None
    if seconds <= 0:
        raise UsageError(f"--timeout must be positive, got {text!r}")
    return seconds
