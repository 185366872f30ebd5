"""`bertcli tokenize`: inspect tokenization, measure token lengths (--stats), or train a vocabulary (--train-vocab)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from bertcli.cli.options import (
    ConfigOpt,
    FormatOpt,
    IdColumnOpt,
    ModelOpt,
    OverwriteOpt,
    TextColumnOpt,
    TextPairColumnOpt,
    default,
    max_length_option,
    output_format_option,
    vocab_size_option,
)
from bertcli.config import TokenizeConfig

NAME = "tokenize"
OutputFormatOpt = output_format_option("table or jsonl (json for --stats). [default: table on a terminal, else jsonl]")
EXAMPLES = """\b
Examples:
  bertcli tokenize "Tokenizers split unfamiliar words."       # table on a terminal
  bertcli tokenize reviews.csv --output-format jsonl | head -1  # tokens, ids, offsets, word ids
  bertcli tokenize train.csv --stats                            # length percentiles, suggested --max-length
  bertcli tokenize corpus.txt --train-vocab -o my-tokenizer --vocab-size 16000 --cased
"""
VOCAB = "Vocabulary training (--train-vocab)"
MaxLengthOpt = max_length_option(
    "longer ones are truncated (--stats: also report the share past it). [default: no truncation]"
)


def command(
    input: Annotated[
        str | None,
        typer.Argument(
            help="A text, a data file (.txt .csv .tsv .jsonl .parquet), or - / nothing for stdin.", show_default=False
        ),
    ] = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    stats: Annotated[
        bool | None,
        typer.Option(
            "--stats",
            help="Token-length statistics of the input: percentiles, share truncated, [UNK] rate, a suggested --max-length.",
            show_default=False,
        ),
    ] = None,
    train_vocab: Annotated[
        bool | None,
        typer.Option(
            "--train-vocab",
            help="Train a BERT WordPiece tokenizer on the input corpus and save it to -o.",
            rich_help_panel=VOCAB,
            show_default=False,
        ),
    ] = None,
    output_format: OutputFormatOpt = None,
    max_length: MaxLengthOpt = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", help="Directory for the trained tokenizer.", show_default=False, rich_help_panel=VOCAB
        ),
    ] = None,
    vocab_size: vocab_size_option(VOCAB) = None,
    lowercase: Annotated[
        bool | None,
        typer.Option(
            "--lowercase/--cased",
            help=f"Lowercase (uncased model) or keep case. {default('lowercase' if TokenizeConfig.lowercase else 'cased')}",
            rich_help_panel=VOCAB,
            show_default=False,
        ),
    ] = None,
    min_frequency: Annotated[
        int | None,
        typer.Option(
            help=f"Keep only merges seen at least this often. {default(TokenizeConfig.min_frequency)}",
            rich_help_panel=VOCAB,
        ),
    ] = None,
    overwrite: OverwriteOpt = None,
    format: FormatOpt = None,
    text_column: TextColumnOpt = None,
    text_pair_column: TextPairColumnOpt = None,
    id_column: IdColumnOpt = None,
) -> None:
    """Show how a model's tokenizer splits text, measure token lengths of a dataset, or train a new WordPiece vocabulary."""
    values = {k: v for k, v in locals().items() if k != "config"}
    from bertcli.config import build_config
    from bertcli.errors import UsageError

    cfg = build_config(TokenizeConfig, config, **values)
    if cfg.input in (None, "-") and sys.stdin.isatty():
        raise UsageError(
            "no input: pass a text or a file, or pipe text into stdin", hint='bertcli tokenize "some text"'
        )
    fmt = cfg.output_format or ("table" if sys.stdout.isatty() else "jsonl")
    if cfg.train_vocab:
        import logging

        from bertcli.tasks.tokenization.tokenize import train_vocab

        summary = train_vocab(cfg)
        logging.getLogger("bertcli").info(
            "trained a %s WordPiece vocabulary of %d tokens on %d texts -> %s (load it with AutoTokenizer.from_pretrained)",
            "lowercase" if summary["lowercase"] else "cased",
            summary["vocab_size"],
            summary["texts"],
            summary["output"],
        )
    elif cfg.stats:
        from bertcli.tasks.tokenization.tokenize import length_stats

        report = length_stats(cfg)
        if fmt == "table":
            _stats_table(report)
        else:
            typer.echo(json.dumps(report))
    else:
        from bertcli.tasks.tokenization.tokenize import inspect_tokens

        for record in inspect_tokens(cfg):
            if fmt == "table":
                _token_table(record)
            else:
                typer.echo(json.dumps(record, ensure_ascii=False))


def _token_table(record: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text  # user text is shown as is, never read as rich markup

    text = record["text"] if len(record["text"]) <= 100 else record["text"][:97] + "..."
    heading = Text(f"{record['id']}: {text}" if "id" in record else text, style="bold")
    heading.append(f"  ({len(record['tokens'])} tokens)", style="not bold")
    table = Table(highlight=False)
    for name, justify in (
        ("#", "right"),
        ("token", "left"),
        ("id", "right"),
        ("chars", "right"),
        ("word", "right"),
        ("text", "left"),
    ):
        table.add_column(name, justify=justify)
    sequences = record.get("sequence_ids")
    for i, (token, token_id, (start, end), word) in enumerate(
        zip(record["tokens"], record["ids"], record["offsets"], record["word_ids"])
    ):
        surface = (record["text_pair"] if sequences and sequences[i] == 1 else record["text"])[start:end]
        span = f"{start}-{end}" if end > start else ""
        table.add_row(str(i), Text(token), str(token_id), span, "" if word is None else str(word), Text(surface))
    console = Console(soft_wrap=False)
    console.print(heading)
    console.print(table)


def _stats_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    length = report["length"]
    heading = Text(
        f"token lengths of {report['source']} (column {report['text_column']!r}) with {report['model']}", style="bold"
    )
    table = Table(show_header=False)
    table.add_column("statistic")
    table.add_column("value", justify="right")
    table.add_row("examples", f"{report['count']:,}")
    table.add_row("tokens (with special tokens)", f"{report['tokens']:,}")
    table.add_row("mean length", f"{length['mean']:.1f}")
    for key in ("min", "p50", "p90", "p95", "p99", "max"):
        table.add_row(f"{key} length", str(length[key]))
    for cutoff, share in report["truncated"].items():
        table.add_row(f"truncated at {cutoff}", f"{share:.2%}")
    table.add_row("[UNK] rate (of tokens)", f"{report['unk_rate']:.3%}")
    table.add_row("examples with [UNK]", f"{report['examples_with_unk']:.2%}")
    table.add_row("model limit", str(report["model_max_length"]))
    table.add_row(
        "suggested --max-length",
        f"[bold]{report['suggested_max_length']}[/bold] ({report['truncated_at_suggested']:.2%} truncated)",
    )
    console = Console(soft_wrap=False)
    console.print(heading)
    console.print(table)
