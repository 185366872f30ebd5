"""`bertcli rerank`: order candidate texts by their relevance to a query with a reranker (a cross-encoder)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bertcli.cli.options import (
    TOKEN_BUDGET,
    AggregateOpt,
    BackendOpt,
    ConfigOpt,
    FormatOpt,
    LongTextOpt,
    ModelDirArg,
    PrecisionOpt,
    StrideOpt,
    TextColumnOpt,
    ThreadsOpt,
    batch_size_option,
    max_length_option,
)
from bertcli.config import RerankConfig

NAME = "rerank"
BatchSizeOpt = batch_size_option(TOKEN_BUDGET)
MaxLengthOpt = max_length_option(
    "longer (query, text) pairs are cut and flagged, or windowed (--long-text). [default: the model's training length]"
)
EXAMPLES = """\b
Examples:
  bertcli rerank runs/rerank --query "how to read a csv file" candidates.txt
  grep -i csv docs.txt | bertcli rerank runs/rerank --query "read a csv file" | head -3
  bertcli rerank runs/rerank queries.jsonl -o ranked.jsonl   # {"query": ..., "texts": [...]} per line
"""


def command(
    model_dir: ModelDirArg,
    input: Annotated[
        str | None,
        typer.Argument(
            help='The candidates (a .txt line or a record each), or with no --query a JSONL file of {"query", "texts"} '
            "records; - or nothing: stdin.",
            show_default=False,
        ),
    ] = None,
    query: Annotated[
        str | None, typer.Option("--query", help="The query to rank the candidates for.", show_default=False)
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Output file. [default: stdout]", show_default=False)
    ] = None,
    raw_scores: Annotated[
        bool | None,
        typer.Option(
            "--raw-scores", help="The model's logits instead of scores in 0..1 (TEI's raw_scores).", show_default=False
        ),
    ] = None,
    config: ConfigOpt = None,
    batch_size: BatchSizeOpt = None,
    max_length: MaxLengthOpt = None,
    precision: PrecisionOpt = None,
    backend: BackendOpt = None,
    threads: ThreadsOpt = None,
    long_text: LongTextOpt = None,
    stride: StrideOpt = None,
    aggregate: AggregateOpt = None,
    format: FormatOpt = None,
    text_column: TextColumnOpt = None,
) -> None:
    """Rerank candidate texts for a query: JSONL {"index", "score", "text"}, best first.

    Without --query, each input record is {"query": ..., "texts": [...]} and gets one output line with its ranked
    results.
    """
    values = {k: v for k, v in locals().items() if k != "config"}
    from bertcli.config import build_config
    from bertcli.errors import UsageError
    from bertcli.io import RecordWriter
    from bertcli.tasks import rerank_candidates

    cfg = build_config(RerankConfig, config, **values)
    if cfg.input in (None, "-") and sys.stdin.isatty():
        raise UsageError(
            "no input: pass a file, or pipe the candidates into stdin", hint=EXAMPLES.split("\n")[2].strip()
        )
    prediction = rerank_candidates(cfg)
    with RecordWriter(cfg.output, prediction.format) as writer:
        for chunk in prediction.chunks:
            writer.write(chunk)
