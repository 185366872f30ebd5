"""`bertcli search`: the nearest texts of an index for each query, encoded with the index's own model."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bertcli.cli.options import (
    TOKEN_BUDGET,
    BackendOpt,
    ConfigOpt,
    FormatOpt,
    IdColumnOpt,
    PrecisionOpt,
    TextColumnOpt,
    ThreadsOpt,
    batch_size_option,
    default,
    texts_option,
)
from bertcli.config.search import RESCORED, SearchConfig

NAME = "search"
BatchSizeOpt = batch_size_option(f"Encoding queries. {TOKEN_BUDGET}")
EXAMPLES = """\b
Examples:
  bertcli search docs.index "how do I read a csv file"
  bertcli search docs.index -k 3 --input queries.txt -o hits.jsonl    # one line per query, in input order
  cat queries.txt | bertcli search docs.index --hybrid                # dense + BM25, fused by reciprocal rank
  bertcli search docs.index "read a csv" --exact                      # brute force: the reference
  bertcli search docs.index "read a csv" --no-texts -k 100            # ids and scores only
"""


def command(
    index_dir: Annotated[
        str, typer.Argument(metavar="INDEX_DIR", help="An index built by bertcli index.", show_default=False)
    ],
    query: Annotated[
        str | None,
        typer.Argument(help="The query; without it, queries come from --input or stdin.", show_default=False),
    ] = None,
    input: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            help="Queries: .txt (a line each), .csv .tsv .jsonl .parquet, or - for stdin.",
            show_default=False,
        ),  # fmt: skip
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Output file. [default: stdout]", show_default=False)
    ] = None,
    k: Annotated[int | None, typer.Option("--k", "-k", help=f"Hits per query. {default(SearchConfig.k)}")] = None,
    rescore: Annotated[
        bool | None,
        typer.Option(
            "--rescore/--no-rescore",
            help="Reorder more ANN candidates by their full-precision vectors (read from disk). "
            f"[default: on for {', '.join(RESCORED)} indexes]",
            show_default=False,
        ),
    ] = None,
    exact: Annotated[
        bool | None,
        typer.Option(
            "--exact",
            help="Scan every vector (brute force): the exact top k, the reference for the ANN.",
            show_default=False,
        ),  # fmt: skip
    ] = None,
    hybrid: Annotated[
        bool | None,
        typer.Option(
            "--hybrid",
            help="Fuse BM25 over the stored texts with the dense hits (reciprocal rank fusion).",
            show_default=False,
        ),  # fmt: skip
    ] = None,
    texts: texts_option("Print each hit's stored text (when the index keeps texts).") = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Only checked: a model other than the index's own is refused.", show_default=False
        ),  # fmt: skip
    ] = None,
    config: ConfigOpt = None,
    batch_size: BatchSizeOpt = None,
    precision: PrecisionOpt = None,
    backend: BackendOpt = None,
    threads: ThreadsOpt = None,
    format: FormatOpt = None,
    text_column: TextColumnOpt = None,
    id_column: IdColumnOpt = None,
) -> None:
    """Search an index: JSONL {"query", "hits": [{"id", "score", "text"}]} per query, best hits first."""
    values = {k: v for k, v in locals().items() if k != "config"}
    from bertcli.config import build_config
    from bertcli.errors import UsageError
    from bertcli.io import RecordWriter
    from bertcli.tasks import search_index

    cfg = build_config(SearchConfig, config, **values)
    if cfg.query is None and cfg.input in (None, "-") and sys.stdin.isatty():
        raise UsageError("no query: give one, or pass --input FILE, or pipe queries into stdin",
                         hint='bertcli search docs.index "what to look for"')  # fmt: skip
    prediction = search_index(cfg)
    with RecordWriter(cfg.output, prediction.format) as writer:
        for chunk in prediction.chunks:
            writer.write(chunk)
