"""`bertcli tune`: search finetune's options with Optuna within a trial count and a time budget."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bertcli.cli.options import (
    AggregateOpt,
    ClassWeightsOpt,
    ConfigOpt,
    EpochsOpt,
    EvalStepsOpt,
    FinetuneBatchSizeOpt,
    FinetuneMaxLengthOpt,
    FormatOpt,
    GradAccumOpt,
    GradientCheckpointingOpt,
    LabelAllTokensOpt,
    LabelColumnOpt,
    LabelSepOpt,
    LongTextOpt,
    LrOpt,
    MetricOpt,
    ModelOpt,
    OverwriteOpt,
    PrecisionOpt,
    SchemeOpt,
    SeedOpt,
    SplitSeedOpt,
    StrideOpt,
    TaskOpt,
    TextColumnOpt,
    TextPairColumnOpt,
    TrainWindowsOpt,
    ValidationOpt,
    ValSplitOpt,
    WarmupOpt,
    WeightDecayOpt,
    default,
)
from bertcli.config import DEFAULT_SPACES, TuneConfig

NAME = "tune"
SEARCH = "Search"
EXAMPLES = f"""\b
Examples:
  bertcli tune train.csv -o runs/tuned --timeout 30m
  bertcli tune train.csv -o runs/tuned --trials 40 --space 'lr=1e-5..5e-4:log,epochs=2..4'
  bertcli tune train.csv -o runs/tuned --timeout 30m --resume   # continue an interrupted search
  bertcli tune train.conll -o runs/ner-tuned --validation dev.conll --metric strict_f1
\b
Default spaces:
  classification: {DEFAULT_SPACES["classification"]}
  NER:            {DEFAULT_SPACES["ner"]}
"""


def command(
    train: Annotated[
        str | None, typer.Argument(help="Training data, as finetune reads it.", show_default=False)
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Output directory: the best trial's model, study.db, trials.csv, tuning.png.",
            show_default=False,
        ),
    ] = None,
    trials: Annotated[
        int | None, typer.Option(help=f"Trials at most. {default(TuneConfig.trials)}", rich_help_panel=SEARCH)
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            help="Time budget: 600, 90s, 30m, 2h; a trial running when it ends stops there. [default: none]",
            rich_help_panel=SEARCH,
        ),
    ] = None,
    space: Annotated[
        str | None,
        typer.Option(
            help="Options to search: lr=1e-5..5e-4:log (a range, log-scaled), epochs=1..5 (integers), batch_size=16|32 (a choice). [default: the task's, below]",
            rich_help_panel=SEARCH,
        ),
    ] = None,
    resume: Annotated[
        bool | None,
        typer.Option(
            "--resume",
            help="Continue an interrupted search (OUTPUT.incomplete/study.db), or add trials to a finished one.",
            show_default=False,
            rich_help_panel=SEARCH,
        ),
    ] = None,
    metric: MetricOpt = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    task: TaskOpt = None,
    validation: ValidationOpt = None,
    val_split: ValSplitOpt = None,
    split_seed: SplitSeedOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    batch_size: FinetuneBatchSizeOpt = None,
    grad_accum: GradAccumOpt = None,
    warmup_ratio: WarmupOpt = None,
    weight_decay: WeightDecayOpt = None,
    max_length: FinetuneMaxLengthOpt = None,
    eval_steps: EvalStepsOpt = None,
    class_weights: ClassWeightsOpt = None,
    precision: PrecisionOpt = None,
    seed: SeedOpt = None,
    gradient_checkpointing: GradientCheckpointingOpt = None,
    overwrite: OverwriteOpt = None,
    format: FormatOpt = None,
    text_column: TextColumnOpt = None,
    text_pair_column: TextPairColumnOpt = None,
    label_column: LabelColumnOpt = None,
    label_sep: LabelSepOpt = None,
    long_text: LongTextOpt = None,
    stride: StrideOpt = None,
    aggregate: AggregateOpt = None,
    train_windows: TrainWindowsOpt = None,
    scheme: SchemeOpt = None,
    label_all_tokens: LabelAllTokensOpt = None,
) -> None:
    """Search finetune's options (Optuna: TPE sampling, median pruning) and keep the best trial's model."""
    values = {k: v for k, v in locals().items() if k != "config"}
    from bertcli.config import build_config
    from bertcli.tuning.search import tune

    result = tune(build_config(TuneConfig, config, **values))
    _summary(result)


def _summary(result) -> None:
    from rich.console import Console
    from rich.table import Table

    search = result.meta.search
    table = Table(title=f"tune: {result.output} ({search['metric']}, {search['direction']})", title_justify="left")
    names = list(search["best_params"])
    for column in ("trial", *names, search["metric"], "state"):
        table.add_column(column, justify="left" if column == "state" else "right")
    for row in result.trials:
        shown = row["value"] if row["value"] is not None else row["last"]
        cells = [
            f"{row['params'].get(n):.3g}" if isinstance(row["params"].get(n), float) else str(row["params"].get(n, ""))
            for n in names
        ]
        best = row["trial"] == search["best_trial"]
        table.add_row(
            str(row["trial"]),
            *cells,
            "" if shown is None else f"{shown:.4f}",
            row["state"],
            style="bold green" if best else None,
        )
    console = Console(stderr=True)
    console.print(table)
    console.print(
        f"best: trial {search['best_trial']}, {search['metric']} {search['best_value']:.4f}; saved to [bold]{result.output}[/bold] (trials.csv, tuning.png)",
        highlight=False,
    )
    sys.stderr.flush()
