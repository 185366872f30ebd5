"""`bertcli embed`: sentence (or token) vectors for every input record, written as .npy, .parquet or .jsonl."""

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
    IncludeTextOpt,
    ModelOpt,
    PrecisionOpt,
    TextColumnOpt,
    ThreadsOpt,
    batch_size_option,
    default,
    max_length_option,
    output_format_option,
)
from bertcli.config import CHUNK_SIZE, LAYER_AGGS, POOLINGS, TOKEN_CHUNK_SIZE, EmbedOptions, VectorOptions

NAME = "embed"
POOLING = "Pooling"
OUTPUT = "Output"
OutputFormatOpt = output_format_option("npy, parquet or jsonl. [default: from the -o suffix]", OUTPUT)
BatchSizeOpt = batch_size_option(TOKEN_BUDGET)
MaxLengthOpt = max_length_option(
    "longer ones are truncated. [default: the model's, or its sentence-transformers max_seq_length]"
)
EXAMPLES = """\b
Examples:
  bertcli embed sentences.txt -o vectors.npy          # + vectors.ids.txt, row i = id on line i
  bertcli embed docs.csv --text-column body --id-column id -o docs.parquet --include-text
  bertcli embed corpus.txt -o vec.npy --pooling cls --layers -4: --layer-agg concat
  cat queries.txt | bertcli embed -m runs/domain-bert --normalize -o -   # JSONL on stdout
  bertcli embed big.jsonl -o big.npy --resume          # continue an interrupted export
  bertcli embed --config recipes/embeddings.toml       # settings from a recipe; options given here override it
"""


def command(
    input: Annotated[
        str | None,
        typer.Argument(
            help="Input: .txt (a line is one input) .csv .tsv .jsonl .parquet, or - / nothing for stdin.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Output file (.npy .parquet .jsonl), or - for JSONL on stdout.",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    pooling: Annotated[
        str | None,
        typer.Option(
            help=f"{', '.join(POOLINGS)} (the model's trained pooler). {default(EmbedOptions.pooling)}",
            rich_help_panel=POOLING,
        ),
    ] = None,
    layers: Annotated[
        str | None,
        typer.Option(
            help=f"Hidden layers to use: -1 (last), -4: (last four), -2,-1; 0 is the embedding layer. {default(EmbedOptions.layers)}",
            rich_help_panel=POOLING,
        ),
    ] = None,
    layer_agg: Annotated[
        str | None,
        typer.Option(
            help=f"How to combine several --layers: {' or '.join(LAYER_AGGS)}. {default(EmbedOptions.layer_agg)}",
            rich_help_panel=POOLING,
        ),
    ] = None,
    normalize: Annotated[
        bool | None,
        typer.Option(
            "--normalize",
            help="Scale each vector to unit length (cosine = dot product).",
            show_default=False,
            rich_help_panel=POOLING,
        ),
    ] = None,
    token_level: Annotated[
        bool | None,
        typer.Option(
            "--token-level",
            help="Write each input's token vectors, tokens and character offsets instead of one pooled vector.",
            show_default=False,
            rich_help_panel=POOLING,
        ),
    ] = None,
    output_format: OutputFormatOpt = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            help=f"float32 or float16 (half the size) for the stored vectors. {default(VectorOptions.dtype)}",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    include_text: IncludeTextOpt = None,
    resume: Annotated[
        bool | None,
        typer.Option(
            "--resume",
            help="Continue an interrupted export from its OUTPUT.partial file instead of starting over.",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    batch_size: BatchSizeOpt = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            help=f"Inputs read, sorted and written at a time (bounds memory). [default: {CHUNK_SIZE}; {TOKEN_CHUNK_SIZE} with --token-level]",
            rich_help_panel=RUNTIME,
        ),
    ] = None,
    max_length: MaxLengthOpt = None,
    precision: PrecisionOpt = None,
    backend: BackendOpt = None,
    threads: ThreadsOpt = None,
    format: FormatOpt = None,
    text_column: TextColumnOpt = None,
    id_column: IdColumnOpt = None,
) -> None:
    """Embed texts with a BERT model: one vector per input (or per token), in input order, streamed to a file."""
    values = {k: v for k, v in locals().items() if k != "config"}
    import logging

    from bertcli.config import EmbedConfig, build_config
    from bertcli.errors import UsageError
    from bertcli.io import ids_path
    from bertcli.tasks.embedding.embed import embed

    cfg = build_config(EmbedConfig, config, **values)
    if cfg.input in (None, "-") and sys.stdin.isatty():
        raise UsageError(
            "no input: pass a file, or pipe text into stdin", hint="bertcli embed sentences.txt -o vectors.npy"
        )
    result = embed(cfg)
    if cfg.output != "-":
        sidecar = f" + {ids_path(cfg.output)}" if result.format == "npy" else ""
        logging.getLogger("bertcli").info(
            "embedded %d inputs (dim %d) in %.1fs (%.0f sentences/s) -> %s%s",
            result.rows,
            result.dim,
            result.seconds,
            result.rate,
            cfg.output,
            sidecar,
        )
