"""Options shared by several commands, declared once (defaults shown come from bertcli.config)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from bertcli.config import TASK_DEFAULTS, FinetuneConfig, TrainOptions

DATA = "Data"
TRAINING = "Training"
RUNTIME = "Runtime"

ModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="Model directory or hub id. [default: all-MiniLM-L6-v2]", show_default=False),
]
ModelDirArg = Annotated[str, typer.Argument(metavar="MODEL_DIR", help="A model directory written by `bertcli finetune`.")]
ConfigOpt = Annotated[
    Optional[str], typer.Option("--config", "-c", help="Recipe file (.toml/.yaml/.json); options given here override it.")
]

FormatOpt = Annotated[
    Optional[str],
    typer.Option("--format", help="Input format: csv, tsv, jsonl, parquet, txt, conll. [default: from the suffix]", rich_help_panel=DATA),
]
TextColumnOpt = Annotated[
    Optional[str], typer.Option(help="Column with the text. [default: text, sentence, review, ...]", rich_help_panel=DATA)
]
TextPairColumnOpt = Annotated[
    Optional[str], typer.Option(help="Column with the second text of sentence pairs.", rich_help_panel=DATA)
]
LabelColumnOpt = Annotated[
    Optional[str], typer.Option(help="Column with the labels. [default: label, labels, category, ...]", rich_help_panel=DATA)
]
LabelSepOpt = Annotated[
    Optional[str], typer.Option(help="Separator of several labels in one cell (multi-label), e.g. ','.", rich_help_panel=DATA)
]
IdColumnOpt = Annotated[Optional[str], typer.Option(help="Column passed through to the output as `id`.", rich_help_panel=DATA)]

_CLS, _NER = TASK_DEFAULTS["classification"], TASK_DEFAULTS["ner"]


def _rate(value: float) -> str:
    return f"{value:.0e}".replace("e-0", "e-")


BatchSizeOpt = Annotated[
    Optional[int], typer.Option("--batch-size", "-b", help=f"Examples per batch. [default: {_CLS['batch_size']}; NER training {_NER['batch_size']}]", rich_help_panel=RUNTIME)
]
PrecisionOpt = Annotated[
    Optional[str],
    typer.Option(help="no, bf16, fp16 or auto (bf16 where the hardware runs it fast). [default: auto]", rich_help_panel=RUNTIME),
]
MaxLengthOpt = Annotated[
    Optional[int], typer.Option(help="Longest input in tokens; longer ones are truncated (NER: split into overlapping windows). [default: from data/model]", rich_help_panel=RUNTIME)
]

# training
TaskOpt = Annotated[
    Optional[str],
    typer.Option(help="single_label, multi_label, regression or ner. [default: inferred from the labels / input format]", rich_help_panel=TRAINING),
]
ValidationOpt = Annotated[Optional[str], typer.Option(help="Validation data file.", rich_help_panel=DATA)]
ValSplitOpt = Annotated[
    Optional[float],
    typer.Option(help=f"Share of training data held out for validation when no --validation is given. [default: {FinetuneConfig.val_split}]", rich_help_panel=DATA),
]
EpochsOpt = Annotated[Optional[float], typer.Option(help=f"[default: {TrainOptions.epochs:g}]", rich_help_panel=TRAINING)]
LrOpt = Annotated[Optional[float], typer.Option(help=f"Peak learning rate. [default: {_rate(_CLS['lr'])}; NER {_rate(_NER['lr'])}; pretrain 1e-4 from scratch, 5e-5 continued]", rich_help_panel=TRAINING)]
GradAccumOpt = Annotated[Optional[int], typer.Option(help="Gradient accumulation steps. [default: 1]", rich_help_panel=TRAINING)]
WarmupOpt = Annotated[Optional[float], typer.Option(help=f"Warmup share of steps. [default: {TrainOptions.warmup_ratio:g}]", rich_help_panel=TRAINING)]
WeightDecayOpt = Annotated[Optional[float], typer.Option(help=f"[default: {TrainOptions.weight_decay:g}]", rich_help_panel=TRAINING)]
SeedOpt = Annotated[Optional[int], typer.Option(help=f"[default: {TrainOptions.seed}]", rich_help_panel=TRAINING)]
MaxStepsOpt = Annotated[Optional[int], typer.Option(help="Stop after this many optimizer steps (overrides --epochs).", rich_help_panel=TRAINING)]
EvalStepsOpt = Annotated[Optional[int], typer.Option(help="Evaluate every N steps. [default: each epoch]", rich_help_panel=TRAINING)]
SaveStepsOpt = Annotated[Optional[int], typer.Option(help="Checkpoint every N steps. [default: each epoch]", rich_help_panel=TRAINING)]
PatienceOpt = Annotated[Optional[int], typer.Option(help="Early stopping after N evaluations without improvement.", rich_help_panel=TRAINING)]
MetricOpt = Annotated[
    Optional[str], typer.Option(help="Validation metric for the best model, e.g. f1_macro. [default: accuracy / f1_micro / mse]", rich_help_panel=TRAINING)
]
GradientCheckpointingOpt = Annotated[
    Optional[bool],
    typer.Option(
        "--gradient-checkpointing", help="Recompute activations in the backward pass: much less memory for long sequences, ~30% slower.",
        rich_help_panel=TRAINING, show_default=False,
    ),
]
ResumeOpt = Annotated[
    Optional[str], typer.Option(help="Continue an interrupted run: 'auto' or a checkpoint directory.", rich_help_panel=TRAINING)
]
ReportToOpt = Annotated[
    Optional[str],
    typer.Option(help="Log metrics and the run's config to tensorboard, wandb or mlflow (files under OUTPUT/logs). [default: none]", rich_help_panel=TRAINING),
]
OverwriteOpt = Annotated[Optional[bool], typer.Option("--overwrite", help="Replace an existing output directory.", show_default=False)]

# token classification (NER)
NER = "NER"
SchemeOpt = Annotated[
    Optional[str], typer.Option(help="Tagging scheme of the input: IO, BIO (IOB2), IOB1 or BIOES. [default: detected]", rich_help_panel=NER)
]
StrideOpt = Annotated[
    Optional[int],
    typer.Option(help="Sub-tokens shared by the overlapping windows of sentences longer than --max-length. [default: max length / 4]", rich_help_panel=NER),
]
