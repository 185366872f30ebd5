"""`bertcli predict`: stream predictions for text from stdin or a file."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bertcli.cli.options import (
    AggregateOpt,
    AggregationOpt,
    BackendOpt,
    ConfigOpt,
    FormatOpt,
    IdColumnOpt,
    IncludeTextOpt,
    LongTextOpt,
    ModelDirArg,
    PrecisionOpt,
    StrideOpt,
    TextColumnOpt,
    TextPairColumnOpt,
    ThreadsOpt,
    batch_size_option,
    default,
    max_length_option,
    output_format_option,
)
from bertcli.config import PredictConfig

NAME = "predict"
OutputFormatOpt = output_format_option("jsonl, csv or tsv. [default: from the -o suffix, else jsonl]")
BatchSizeOpt = batch_size_option(default(PredictConfig.batch_size))
MaxLengthOpt = max_length_option(
    "longer ones are truncated (NER: split into overlapping windows). [default: the model's]"
)
EXAMPLES = """\b
Examples:
  cat reviews.txt | bertcli predict runs/sentiment
  bertcli predict runs/sentiment reviews.jsonl --id-column id --top-k 2
  tail -f app.log | bertcli predict runs/sentiment --output-format tsv
  echo "I flew to New York" | bertcli predict runs/ner   # NER: entities with character offsets
  bertcli predict runs/ner test.conll -o tagged.conll     # pre-tokenized: a predicted tag column added
"""


def command(
    model_dir: ModelDirArg,
    input: Annotated[
        str | None,
        typer.Argument(
            help="Input file, or - / nothing to read stdin. A .txt line is one example.", show_default=False
        ),
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Output file. [default: stdout]", show_default=False)
    ] = None,
    output_format: OutputFormatOpt = None,
    top_k: Annotated[int | None, typer.Option(help="Only the K best labels in `scores`.")] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Multi-label decision threshold. [default: the model's]")
    ] = None,
    include_text: IncludeTextOpt = None,
    config: ConfigOpt = None,
    batch_size: BatchSizeOpt = None,
    max_length: MaxLengthOpt = None,
    precision: PrecisionOpt = None,
    backend: BackendOpt = None,
    threads: ThreadsOpt = None,
    format: FormatOpt = None,
    text_column: TextColumnOpt = None,
    text_pair_column: TextPairColumnOpt = None,
    id_column: IdColumnOpt = None,
    aggregation: AggregationOpt = None,
    stride: StrideOpt = None,
    long_text: LongTextOpt = None,
    aggregate: AggregateOpt = None,
) -> None:
    """Predict labels for each input record, one output record per input, in input order, as they arrive.

    For a token classifier (NER): the entities of each text line with character offsets, or for CoNLL/JSONL
    tokens input the same format back with a predicted tag column.
    """
    values = {k: v for k, v in locals().items() if k != "config"}
    from bertcli.config import build_config
    from bertcli.errors import UsageError
    from bertcli.io import RecordWriter
    from bertcli.runtime.accelerator import is_main_process
    from bertcli.tasks import predict

    cfg = build_config(PredictConfig, config, **values)
    if cfg.input in (None, "-") and sys.stdin.isatty():
        raise UsageError(
            "no input: pass a file, or pipe text into stdin", hint="cat texts.txt | bertcli predict MODEL_DIR"
        )
    prediction = predict(cfg)
    # under a multi-process launch only the main process writes; the others score their share and yield nothing
    with RecordWriter(cfg.output if is_main_process() else None, prediction.format) as writer:
        for chunk in prediction.chunks:
            writer.write(chunk)
