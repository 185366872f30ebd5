"""`bertcli pretrain`: masked-LM (and optionally NSP) pretraining from scratch or continued on a text corpus."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bertcli.cli.options import (
    DATA,
    TRAINING,
    AttentionDropoutOpt,
    ConfigOpt,
    EpochsOpt,
    EvalStepsOpt,
    FormatOpt,
    GradAccumOpt,
    GradientCheckpointingOpt,
    MaxStepsOpt,
    OverwriteOpt,
    PatienceOpt,
    PrecisionOpt,
    ReportToOpt,
    ResumeOpt,
    SeedOpt,
    TextColumnOpt,
    WarmupOpt,
    WeightDecayOpt,
    batch_size_option,
    default,
    max_length_option,
    shown,
    vocab_size_option,
)
from bertcli.config import PRESETS, PRETRAIN_LR, PretrainConfig, PretrainOptions

NAME = "pretrain"
BatchSizeOpt = batch_size_option(default(PretrainOptions.batch_size))
MaxLengthOpt = max_length_option(f"the block size of packed examples. {default(PretrainOptions.max_length)}")
MODEL = "Model"
OBJECTIVE = "Objective"
EXAMPLES = """\b
Examples:
  bertcli pretrain corpus/*.txt --preset mini -o runs/mini-bert          # from scratch: WordPiece vocab, then MLM
  bertcli pretrain domain.jsonl --model runs/base -o runs/domain-bert    # continued (domain-adaptive) pretraining
  bertcli pretrain books.txt --preset base --nsp --whole-word-mask -o runs/bert   # as in the BERT paper
  bertcli pretrain 'shards/*.parquet' --preset small --streaming --max-steps 100000 -o runs/big
  bertcli finetune train.csv --model runs/domain-bert -o runs/clf        # the result fine-tunes like any BERT
"""


def command(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="CORPUS",
            help="Corpus files or globs: .txt (a sentence per line, blank line between documents), .jsonl .csv .tsv .parquet.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Output model directory.", show_default=False)
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Continue pretraining this BERT (directory or hub id).",
            show_default=False,
            rich_help_panel=MODEL,
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help=f"Train from scratch with a BERT miniature's shape: {', '.join(f'{name} ({layers}/{hidden})' for name, (layers, hidden) in PRESETS.items())} layers/hidden.",
            rich_help_panel=MODEL,
        ),
    ] = None,
    model_config: Annotated[
        str | None, typer.Option(help="Train from scratch with this BERT config.json.", rich_help_panel=MODEL)
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="Tokenizer directory for a new model. [default: train a WordPiece vocabulary on the corpus]",
            rich_help_panel=MODEL,
        ),
    ] = None,
    vocab_size: vocab_size_option(MODEL) = None,
    config: ConfigOpt = None,
    mlm_probability: Annotated[
        float | None,
        typer.Option(
            help=f"Share of tokens to predict (80% [MASK], 10% random, 10% kept). {default(PretrainConfig.mlm_probability)}",
            rich_help_panel=OBJECTIVE,
        ),
    ] = None,
    whole_word_mask: Annotated[
        bool | None,
        typer.Option(
            "--whole-word-mask",
            help="Mask all WordPieces of a word together.",
            show_default=False,
            rich_help_panel=OBJECTIVE,
        ),
    ] = None,
    nsp: Annotated[
        bool | None,
        typer.Option(
            "--nsp",
            help="Add next-sentence prediction (sentence pairs: 50% real next, 50% from another document).",
            show_default=False,
            rich_help_panel=OBJECTIVE,
        ),
    ] = None,
    line_by_line: Annotated[
        bool | None,
        typer.Option(
            "--line-by-line",
            help="One example per line instead of packing text into full blocks.",
            show_default=False,
            rich_help_panel=DATA,
        ),
    ] = None,
    streaming: Annotated[
        bool | None,
        typer.Option(
            "--streaming",
            help="Stream the corpus from disk (larger than memory); needs --max-steps.",
            show_default=False,
            rich_help_panel=DATA,
        ),
    ] = None,
    val_split: Annotated[
        float | None,
        typer.Option(
            help=f"Share of the corpus held out for validation (at most 1000 examples). {default(PretrainConfig.val_split)}",
            rich_help_panel=DATA,
        ),
    ] = None,
    text_column: TextColumnOpt = None,
    format: FormatOpt = None,
    epochs: EpochsOpt = None,
    max_steps: MaxStepsOpt = None,
    lr: Annotated[
        float | None,
        typer.Option(
            help=f"Peak learning rate. [default: {shown(PRETRAIN_LR['scratch'])} from scratch, {shown(PRETRAIN_LR['continued'])} with --model]",
            rich_help_panel=TRAINING,
        ),
    ] = None,
    batch_size: BatchSizeOpt = None,
    grad_accum: GradAccumOpt = None,
    warmup_ratio: WarmupOpt = None,
    weight_decay: WeightDecayOpt = None,
    attention_dropout: AttentionDropoutOpt = None,
    max_length: MaxLengthOpt = None,
    eval_steps: EvalStepsOpt = None,
    save_steps: Annotated[
        int | None,
        typer.Option(help=f"Checkpoint every N steps. {default(PretrainOptions.save_steps)}", rich_help_panel=TRAINING),
    ] = None,
    patience: PatienceOpt = None,
    precision: PrecisionOpt = None,
    seed: SeedOpt = None,
    gradient_checkpointing: GradientCheckpointingOpt = None,
    resume: ResumeOpt = None,
    report_to: ReportToOpt = None,
    overwrite: OverwriteOpt = None,
) -> None:
    """Pretrain a BERT with masked-LM (and optionally next-sentence prediction), from scratch or continued."""
    values = {k: v for k, v in locals().items() if k != "config"}
    from bertcli.config import build_config
    from bertcli.tasks.pretraining.pretrain import pretrain

    values["inputs"] = values["inputs"] or None
    result = pretrain(build_config(PretrainConfig, config, **values))
    _summary(result.meta.to_json(), str(result.output))


def _summary(meta: dict, output: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    keys = [k for k in ("loss", "perplexity", "accuracy", "nsp_accuracy") if any(k in h for h in meta["history"])]
    table = Table(title=f"pretrain: {output}", title_justify="left")
    for column in ("step", *keys):
        table.add_column("masked-token accuracy" if column == "accuracy" else column, justify="right")
    for record in meta["history"]:
        best = record["step"] == meta["best"]["step"]
        table.add_row(str(record["step"]), *(f"{record[k]:.4f}" for k in keys), style="bold green" if best else None)
    if meta["history"]:
        console.print(table)
    console.print(
        f"{meta['objective']}; {meta['steps']} steps, {meta['train_tokens']:,} tokens in {meta['train_seconds']:.0f}s "
        f"({meta['train_tokens_per_second']:,.0f} tokens/s); saved to [bold]{output}[/bold]",
        highlight=False,
    )
    sys.stderr.flush()
