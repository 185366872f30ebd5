"""`bertcli evaluate`: metrics of a saved model on labelled data (entity-level scores for NER models)."""

from __future__ import annotations

from json import dumps
from pathlib import Path
from typing import Annotated, Any

import typer

from bertcli.cli.embedding_options import CandidatesOpt, RetrieverOpt
from bertcli.cli.options import (
    AggregateOpt,
    BackendOpt,
    ConfigOpt,
    FormatOpt,
    JsonOpt,
    LabelColumnOpt,
    LabelSepOpt,
    LongTextOpt,
    PrecisionOpt,
    ReportFormatOpt,
    SchemeOpt,
    StrideOpt,
    TextColumnOpt,
    TextPairColumnOpt,
    ThreadsOpt,
    batch_size_option,
    default,
)
from bertcli.config import EvaluateConfig

NAME = "evaluate"
BatchSizeOpt = batch_size_option(default(EvaluateConfig.batch_size))
EXAMPLES = """\b
Examples:
  bertcli evaluate runs/sentiment test.csv
  bertcli evaluate runs/sentiment test.csv --output report.json --errors errors.jsonl
  bertcli evaluate runs/sentiment test.csv --output-format json | jq .f1_macro
  bertcli evaluate runs/ner test.conll --errors ner-errors.jsonl   # entity P/R/F1 per type
  bertcli evaluate runs/sentiment test.csv --plots reports/   # + confusion_matrix.png
  bertcli evaluate runs/ner test.conll -o reports/ner/   # a directory: report.json + f1_per_type.png
  bertcli evaluate runs/emb data/docstrings/test --errors worst.jsonl   # an encoder: retrieval (BEIR or pairs) vs BM25
  bertcli evaluate runs/rerank data/docstrings/test --retriever runs/emb   # a reranker: before/after its first stage
"""


def command(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="MODEL_DIR... DATA",
            help="One model directory or several (e.g. the runs of several seeds: mean +- std), then the labelled data: .csv .tsv .jsonl .parquet, NER: .conll or .jsonl; or - for stdin.",
            show_default=False,
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the full report as JSON here; a directory (existing, or ending in /) gets report.json and the plots.",
        ),
    ] = None,
    plots: Annotated[
        str | None,
        typer.Option(
            "--plots",
            help="Write confusion_matrix.png (classification) or f1_per_type.png (NER, multi-label) into this directory.",
        ),
    ] = None,
    errors: Annotated[
        str | None,
        typer.Option(help="Write misclassified examples with their scores (JSONL; NER: gold vs predicted spans)."),
    ] = None,
    output_format: ReportFormatOpt = None,
    json: JsonOpt = None,
    config: ConfigOpt = None,
    batch_size: BatchSizeOpt = None,
    precision: PrecisionOpt = None,
    backend: BackendOpt = None,
    threads: ThreadsOpt = None,
    format: FormatOpt = None,
    text_column: TextColumnOpt = None,
    text_pair_column: TextPairColumnOpt = None,
    label_column: LabelColumnOpt = None,
    label_sep: LabelSepOpt = None,
    scheme: SchemeOpt = None,
    long_text: LongTextOpt = None,
    stride: StrideOpt = None,
    aggregate: AggregateOpt = None,
    retriever: RetrieverOpt = None,
    candidates: CandidatesOpt = None,
) -> None:
    """Evaluate a fine-tuned model: accuracy, precision/recall/F1, MCC, per-class table and confusion matrix.

    For a token classifier (NER): entity-level precision/recall/F1 (seqeval, default and strict mode) overall and per type.
    For an encoder: NDCG@10, MRR@10, MAP@100, Recall@1/10/100 beside BM25 on a BEIR directory or query/positive pairs;
    Spearman/Pearson of the cosine on sentence pairs with a score.
    For a reranker: NDCG@10, MRR@10 and Recall@10 of the first stage (BM25 or --retriever) before and after reranking.
    """
    values = {k: v for k, v in locals().items() if k not in ("config", "paths")}
    from bertcli.config import build_config
    from bertcli.reports.evaluation import write_report
    from bertcli.runtime.accelerator import is_main_process
    from bertcli.tasks import evaluate

    models, data = (paths[:-1], paths[-1]) if len(paths) > 1 else (paths, None)
    cfg = build_config(EvaluateConfig, config, model_dir=models[0], others=models[1:], input=data, **values)
    report = evaluate(cfg)
    if not is_main_process():
        return  # under a launch, one report: the main process writes and prints it
    write_report(cfg, report)
    if cfg.report_format == "json":
        typer.echo(dumps(report, indent=2))
    elif "models" in report:
        render_many(report)
    else:
        render(report)


def render_many(report: dict[str, Any]) -> None:
    """One row per model, then mean +- std (sample std) of every metric."""
    from rich.console import Console
    from rich.table import Table

    wanted = (
        "accuracy",
        "f1_macro",
        "f1_micro",
        "subset_accuracy",
        "mcc",
        "f1",
        "strict_f1",
        "precision",
        "recall",
        "mse",
        "mae",
        "pearson",
        "ndcg@10",
        "mrr@10",
        "recall@10",
        "spearman",
    )
    keys = [k for k in wanted if k in report["summary"]][:5]
    table = Table(
        title=f"{len(report['models'])} models on {report['data']} ({report['n']} {report['unit']})",
        title_justify="left",
    )
    table.add_column("model")
    for key in keys:
        table.add_column(key, justify="right")
    for model in report["models"]:
        table.add_row(Path(model["model"]).name, *(f"{model[k]:.4f}" for k in keys))
    table.add_row(
        "mean +- std",
        *(f"{report['summary'][k]['mean']:.4f} +- {report['summary'][k]['std']:.4f}" for k in keys),
        style="bold",
    )
    Console().print(table)


def _baseline_table(report: dict[str, Any]) -> Any:
    """The model's headline metrics beside the baselines' on the same data."""
    from rich.table import Table

    baselines = report["baselines"]
    headline = ("accuracy", "f1_macro", "f1_micro", "subset_accuracy", "mcc", "mse", "mae", "pearson", "spearman")
    keys = [k for k in headline if isinstance(report.get(k), float) and all(k in b for b in baselines.values())]
    table = Table(title="against the baselines (same data)", title_justify="left")
    for column in ("metric", "model", *baselines):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key in keys:
        table.add_row(key, f"{report[key]:.4f}", *(f"{b[key]:.4f}" for b in baselines.values()))
    return table


def render(report: dict[str, Any]) -> None:
    """The report as rich tables on stdout (it is this command's result)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{report['model']}[/bold] on [bold]{report['data']}[/bold]: {report['n']} {report['unit']}",
        highlight=False,
    )
    summary = Table()
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    baseline = report.get("baseline") or {}
    if baseline:  # a reference on the same data (retrieval: BM25), side by side
        summary.add_column(baseline["name"], justify="right")
    for key, value in report.items():
        if isinstance(value, float) or (value is None and key in ("pearson", "spearman", "r2")):
            shown = [] if not baseline else [f"{baseline[key]:.4f}" if key in baseline else ""]
            summary.add_row(key, "n/a" if value is None else f"{value:.4f}", *shown)
    console.print(summary)
    if report.get("baselines"):
        console.print(_baseline_table(report))
    per = report.get("per_class") or report.get("per_label") or report.get("per_type")
    if per:
        title = (
            "per class"
            if "per_class" in report
            else "per label"
            if "per_label" in report
            else "per entity type (default mode)"
        )
        table = Table(title=title, title_justify="left")
        for col in ("label", "precision", "recall", "f1", "support"):
            table.add_column(col, justify="left" if col == "label" else "right")
        for name, row in per.items():
            table.add_row(
                name, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(row["support"])
            )
        console.print(table)
    matrix = report.get("confusion_matrix")
    if matrix and len(matrix) <= 20:
        labels = report["labels"]
        table = Table(title="confusion matrix (rows: gold, columns: predicted)", title_justify="left")
        table.add_column("")
        for name in labels:
            table.add_column(name, justify="right")
        for name, row in zip(labels, matrix):
            table.add_row(
                name,
                *(f"[bold]{v}[/bold]" if i == j else str(v) for j, v in enumerate(row) for i in [labels.index(name)]),
            )
        console.print(table)
