"""`bertcli embed`: sentence (or token) vectors for every input record, written as .npy, .parquet or .jsonl."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from bertcli.cli.options import ConfigOpt, FormatOpt, IdColumnOpt, MaxLengthOpt, ModelOpt, PrecisionOpt, RUNTIME, TextColumnOpt

NAME = "embed"
EXAMPLES = """\b
Examples:
  bertcli embed sentences.txt -o vectors.npy          # + vectors.ids.txt, row i = id on line i
  bertcli embed docs.csv --text-column body --id-column id -o docs.parquet --include-text
  bertcli embed corpus.txt -o vec.npy --pooling cls --layers -4: --layer-agg concat
  cat queries.txt | bertcli embed -m runs/domain-bert --normalize -o -   # JSONL on stdout
  bertcli embed big.jsonl -o big.npy --resume          # continue an interrupted export
  bertcli embed --config recipes/embeddings.toml       # settings from a recipe; options given here override it
"""
POOLING = "Pooling"
OUTPUT = "Output"


def command(
    input: Annotated[
        Optional[str], typer.Argument(help="Input: .txt (a line is one input) .csv .tsv .jsonl .parquet, or - / nothing for stdin.", show_default=False)
    ] = None,
    output: Annotated[
        Optional[str], typer.Option("--output", "-o", help="Output file (.npy .parquet .jsonl), or - for JSONL on stdout.", show_default=False, rich_help_panel=OUTPUT)
    ] = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    pooling: Annotated[Optional[str], typer.Option(help="mean (over real tokens), cls, max, or pooler (the model's trained pooler). [default: mean]", rich_help_panel=POOLING)] = None,
    layers: Annotated[
        Optional[str], typer.Option(help="Hidden layers to use: -1 (last), -4: (last four), -2,-1; 0 is the embedding layer. [default: -1]", rich_help_panel=POOLING)
    ] = None,
    layer_agg: Annotated[Optional[str], typer.Option(help="How to combine several --layers: mean or concat. [default: mean]", rich_help_panel=POOLING)] = None,
    normalize: Annotated[Optional[bool], typer.Option("--normalize", help="Scale each vector to unit length (cosine = dot product).", show_default=False, rich_help_panel=POOLING)] = None,
    token_level: Annotated[
        Optional[bool], typer.Option("--token-level", help="Write each input's token vectors, tokens and character offsets instead of one pooled vector.", show_default=False, rich_help_panel=POOLING)
    ] = None,
    output_format: Annotated[Optional[str], typer.Option(help="npy, parquet or jsonl. [default: from the -o suffix]", rich_help_panel=OUTPUT)] = None,
    dtype: Annotated[Optional[str], typer.Option(help="float32 or float16 (half the size) for the stored vectors. [default: float32]", rich_help_panel=OUTPUT)] = None,
    include_text: Annotated[Optional[bool], typer.Option("--include-text", help="Copy the input text into .parquet/.jsonl output.", show_default=False, rich_help_panel=OUTPUT)] = None,
    resume: Annotated[
        Optional[bool], typer.Option("--resume", help="Continue an interrupted export from its OUTPUT.partial file instead of starting over.", show_default=False, rich_help_panel=OUTPUT)
    ] = None,
    batch_size: Annotated[
        Optional[int],
        typer.Option("--batch-size", "-b", help="Inputs per batch. [default: batches of about 4096 padded tokens, faster on CPU]", rich_help_panel=RUNTIME, show_default=False),
    ] = None,
    chunk_size: Annotated[
        Optional[int], typer.Option(help="Inputs read, sorted and written at a time (bounds memory). [default: 10000; 1000 with --token-level]", rich_help_panel=RUNTIME)
    ] = None,
    max_length: MaxLengthOpt = None,
    precision: PrecisionOpt = None,
    format: FormatOpt = None,
    text_column: TextColumnOpt = None,
    id_column: IdColumnOpt = None,
) -> None:
    """Embed texts with a BERT model: one vector per input (or per token), in input order, streamed to a file."""
    values = {k: v for k, v in locals().items() if k != "config"}
    from bertcli.config import DataOptions, recipe_values, take
    from bertcli.embedding import EmbedOptions, ExportOptions, export_embeddings
    from bertcli.errors import UsageError

    settings = recipe_values(config, **values)
    input, output, model = settings.pop("input", None), settings.pop("output", None), settings.pop("model", None)
    opts, export, data = take(EmbedOptions, settings), take(ExportOptions, settings), take(DataOptions, settings)
    if settings:
        raise UsageError(f"unknown setting(s) {', '.join(sorted(settings))}", file=config)

    if input in (None, "-") and sys.stdin.isatty():
        raise UsageError("no input: pass a file, or pipe text into stdin", hint="bertcli embed sentences.txt -o vectors.npy")
    if output is None:
        if sys.stdout.isatty():
            raise UsageError("missing --output/-o", hint="-o vectors.npy, or -o - for JSONL on stdout")
        output = "-"
    result = export_embeddings(model, input, output, data, opts, export)
    if output != "-":
        import logging

        from bertcli.vector_io import ids_path

        sidecar = f" + {ids_path(output)}" if result.format == "npy" else ""
        logging.getLogger("bertcli").info(
            "embedded %d inputs (dim %d) in %.1fs (%.0f sentences/s) -> %s%s",
            result.rows, result.dim, result.seconds, result.rate, output, sidecar,
        )  # fmt: skip
