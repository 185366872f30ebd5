"""`bertcli index`: an approximate nearest-neighbour index of `embed`'s vectors, or of texts embedded here."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bertcli.cli.options import (
    RUNTIME,
    TOKEN_BUDGET,
    BackendOpt,
    ConfigOpt,
    FormatOpt,
    IdColumnOpt,
    ModelOpt,
    PrecisionOpt,
    TextColumnOpt,
    ThreadsOpt,
    batch_size_option,
    default,
    texts_option,
)
from bertcli.config.search import INDEX_DTYPES, RESCORED, IndexConfig

NAME = "index"
INDEX = "Index"
BatchSizeOpt = batch_size_option(f"Embedding texts. {TOKEN_BUDGET}")
EXAMPLES = """\b
Examples:
  bertcli index docs.jsonl -o docs.index                     # embed the texts with the default model, then index
  bertcli embed docs.csv --id-column id --include-text -o docs.parquet && bertcli index docs.parquet -o docs.index
  bertcli index vectors.npy -m runs/emb --dtype i6 -o docs.index   # under a third of the memory, rescored from disk
  bertcli index more.jsonl -o docs.index --add                # grow an existing index
  bertcli search docs.index "how do I read a csv file"
"""


def command(
    input: Annotated[
        str | None,
        typer.Argument(
            metavar="VECTORS_OR_DATA",
            help="Vectors from bertcli embed (.npy + .ids.txt, .parquet or .jsonl with a vector column), or data to "
            "embed (.txt .csv .tsv .jsonl .parquet); - or nothing: data on stdin.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="The index directory.", show_default=False)
    ] = None,
    model: ModelOpt = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            help=f"What the index holds per vector: {', '.join(INDEX_DTYPES)}. Search rescores "
            f"{', '.join(RESCORED)} by default, from the full-precision copy every index keeps on disk. "
            f"{default(IndexConfig.dtype)}",
            rich_help_panel=INDEX,
        ),
    ] = None,
    dim: Annotated[
        int | None,
        typer.Option(
            help="Keep the leading N dimensions, renormalised (a model trained with --matryoshka-dims). [default: all]",
            rich_help_panel=INDEX,
        ),
    ] = None,
    add: Annotated[
        bool | None,
        typer.Option(
            "--add",
            help="Add to the index at -o instead of building a new one.",
            show_default=False,
            rich_help_panel=INDEX,
        ),  # fmt: skip
    ] = None,
    texts: texts_option(
        "Keep each record's text in the index: search prints it, and --hybrid ranks it with BM25.", INDEX
    ) = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            help=f"Vectors read and added at a time (bounds memory). {default(IndexConfig.chunk_size)}",
            rich_help_panel=RUNTIME,
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
    """Build a vector index that `bertcli search` and `bertcli serve` search; it remembers the model that made its
    vectors, so queries are encoded the same way."""
    values = {k: v for k, v in locals().items() if k != "config"}
    import logging

    from bertcli.config import build_config
    from bertcli.errors import UsageError
    from bertcli.tasks import build_index

    cfg = build_config(IndexConfig, config, **values)
    if cfg.input in (None, "-") and sys.stdin.isatty():
        raise UsageError(
            "no input: pass a file, or pipe texts into stdin", hint="bertcli index docs.jsonl -o docs.index"
        )
    result = build_index(cfg)
    logging.getLogger("bertcli").info(
        "%s %d vectors in %.1fs: %s holds %d (%s, dim %d)",
        "embedded and indexed" if result.embedded else "indexed",
        result.added,
        result.seconds,
        result.output,
        result.count,
        result.dtype,
        result.dim,
    )
