"""`bertcli finetune`: train a sequence classifier from a table, or a token classifier (NER) from tagged text."""

from __future__ import annotations

import inspect
import sys
from typing import Annotated

import typer

from bertcli.cli.embedding_options import (
    HardNegativesOpt,
    LossScaleOpt,
    MatryoshkaDimsOpt,
    MiniBatchSizeOpt,
    NegativeMarginOpt,
    NegativeSkipOpt,
    RerankLossOpt,
    RetrieverOpt,
    SymmetricOpt,
)
from bertcli.cli.options import (
    AggregateOpt,
    AttentionDropoutOpt,
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
    LexicalOpt,
    LongTextOpt,
    LrOpt,
    MaxStepsOpt,
    MetricOpt,
    ModelOpt,
    OverwriteOpt,
    PatienceOpt,
    PrecisionOpt,
    ReportToOpt,
    ResumeOpt,
    SaveStepsOpt,
    SchemeOpt,
    SeedOpt,
    SeedsOpt,
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
    output_option,
)

NAME = "finetune"
OutputOpt = output_option("Output model directory.")
EXAMPLES = """\b
Examples:
  bertcli finetune train.csv -o runs/sentiment
  bertcli finetune train.jsonl --model runs/domain-bert --validation dev.jsonl -o runs/clf
  bertcli finetune tags.csv --label-sep ',' -o runs/tags   # multi-label
  bertcli finetune train.csv -o runs/sentiment --resume auto   # continue an interrupted run
  bertcli finetune train.conll --validation dev.conll -o runs/ner   # NER (CoNLL or JSONL tokens/spans)
  bertcli finetune pairs.csv -o runs/emb   # query,positive[,negative] columns: an embedding model
  bertcli finetune pairs.csv -o runs/emb --batch-size 256 --mini-batch-size 32 --matryoshka-dims 384,128
  bertcli finetune pairs.csv --task rerank -o runs/rerank --retriever runs/emb   # a cross-encoder reranker
"""


def command(
    train: Annotated[
        str | None,
        typer.Argument(
            help="Training data: .csv .tsv .jsonl .parquet, NER: .conll or .jsonl; or - for stdin.", show_default=False
        ),
    ] = None,
    output: OutputOpt = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    task: TaskOpt = None,
    validation: ValidationOpt = None,
    val_split: ValSplitOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    batch_size: FinetuneBatchSizeOpt = None,
    grad_accum: GradAccumOpt = None,
    warmup_ratio: WarmupOpt = None,
    weight_decay: WeightDecayOpt = None,
    attention_dropout: AttentionDropoutOpt = None,
    max_length: FinetuneMaxLengthOpt = None,
    max_steps: MaxStepsOpt = None,
    eval_steps: EvalStepsOpt = None,
    save_steps: SaveStepsOpt = None,
    patience: PatienceOpt = None,
    metric: MetricOpt = None,
    class_weights: ClassWeightsOpt = None,
    precision: PrecisionOpt = None,
    seed: SeedOpt = None,
    seeds: SeedsOpt = None,
    split_seed: SplitSeedOpt = None,
    gradient_checkpointing: GradientCheckpointingOpt = None,
    resume: ResumeOpt = None,
    report_to: ReportToOpt = None,
    overwrite: OverwriteOpt = None,
    format: FormatOpt = None,
    text_column: TextColumnOpt = None,
    text_pair_column: TextPairColumnOpt = None,
    label_column: LabelColumnOpt = None,
    label_sep: LabelSepOpt = None,
    scheme: SchemeOpt = None,
    stride: StrideOpt = None,
    long_text: LongTextOpt = None,
    lexical: LexicalOpt = None,
    aggregate: AggregateOpt = None,
    train_windows: TrainWindowsOpt = None,
    label_all_tokens: LabelAllTokensOpt = None,
    loss_scale: LossScaleOpt = None,
    symmetric: SymmetricOpt = None,
    mini_batch_size: MiniBatchSizeOpt = None,
    matryoshka_dims: MatryoshkaDimsOpt = None,
    hard_negatives: HardNegativesOpt = None,
    negative_skip: NegativeSkipOpt = None,
    negative_margin: NegativeMarginOpt = None,
    rerank_loss: RerankLossOpt = None,
    retriever: RetrieverOpt = None,
) -> None:
    """Fine-tune a BERT model for sequence classification (single-label, multi-label, regression), NER, or
    embeddings (contrastive, on query/positive pairs: a sentence-transformers model), or a reranker (a cross-encoder,
    on query/positive pairs with mined negatives, or query/document/label rows)."""
    values = {k: v for k, v in locals().items() if k != "config"}
    from bertcli.config import FinetuneConfig, build_config
    from bertcli.runtime.accelerator import is_main_process
    from bertcli.tuning.seeds import finetune_seeds

    result = finetune_seeds(build_config(FinetuneConfig, config, **values))
    if is_main_process():
        _summary(result.meta.to_json(), str(result.output))
        if result.meta.seeds:
            seeds_table(result.meta.seeds)


def parameters() -> dict[str, inspect.Parameter]:
    """finetune's options as its signature declares them: the one declaration `bertcli tune` takes them from."""
    return dict(inspect.signature(command, eval_str=True).parameters)


def seeds_table(seeds: dict) -> None:
    """Every validation metric per seed, then mean +- std (on stderr: progress and logs; stdout is for data)."""
    from rich.console import Console
    from rich.table import Table

    keys = [k for k in dict.fromkeys((seeds["metric"], "loss", "f1_macro", "accuracy", "f1")) if k in seeds["summary"]]
    table = Table(
        title=f"{len(seeds['runs'])} seeds (split seed {seeds['split_seed']}); kept: seed {seeds['best_seed']}",
        title_justify="left",
    )
    table.add_column("seed", justify="right")
    for key in keys:
        table.add_column(key, justify="right")
    for run in seeds["runs"]:
        table.add_row(
            str(run["seed"]),
            *(f"{run[k]:.4f}" for k in keys),
            style="bold green" if run["seed"] == seeds["best_seed"] else None,
        )
    table.add_row(
        "mean +- std",
        *(f"{seeds['summary'][k]['mean']:.4f} +- {seeds['summary'][k]['std']:.4f}" for k in keys),
        style="bold",
    )
    Console(stderr=True).print(table)


def _summary(meta: dict, output: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    metric = meta["metric"]
    table = Table(title=f"finetune: {output}", show_header=True, title_justify="left")
    table.add_column("step", justify="right")
    table.add_column("epoch", justify="right")
    keys = [k for k in ("loss", metric, "f1_macro") if any(k in h for h in meta["history"])]
    keys = list(dict.fromkeys(keys))
    for key in keys:
        table.add_column(key, justify="right")
    for record in meta["history"]:
        best = record["step"] == meta["best"]["step"]
        table.add_row(
            str(record["step"]),
            f"{record['epoch']:.2f}",
            *(f"{record.get(k, float('nan')):.4f}" for k in keys),
            style="bold green" if best else None,
        )
    if meta["history"]:
        console.print(table)
    labels = ", ".join(meta["labels"][:10]) + (" ..." if len(meta["labels"]) > 10 else "")
    console.print(
        f"task {meta['task']}{' (' + labels + ')' if labels else ''}; {meta['steps']} steps in {meta['train_seconds']:.0f}s "
        f"({meta['train_examples_per_second']:.0f} examples/s); saved to [bold]{output}[/bold]",
        highlight=False,
    )
    sys.stderr.flush()
