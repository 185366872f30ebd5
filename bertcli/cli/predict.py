"""`bertcli predict`: stream predictions for text from stdin or a file."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from bertcli.cli.options import (
    NER, BatchSizeOpt, FormatOpt, IdColumnOpt, MaxLengthOpt, ModelDirArg, PrecisionOpt, StrideOpt, TextColumnOpt, TextPairColumnOpt,
)  # fmt: skip

NAME = "predict"
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
    input: Annotated[Optional[str], typer.Argument(help="Input file, or - / nothing to read stdin. A .txt line is one example.", show_default=False)] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Output file. [default: stdout]", show_default=False)] = None,
    output_format: Annotated[Optional[str], typer.Option(help="jsonl, csv or tsv. [default: from -o suffix, else jsonl]")] = None,
    top_k: Annotated[Optional[int], typer.Option(help="Only the K best labels in `scores`.")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Multi-label decision threshold. [default: from the model]")] = None,
    include_text: Annotated[bool, typer.Option("--include-text", help="Copy the input text into each record.")] = False,
    batch_size: BatchSizeOpt = None,
    max_length: MaxLengthOpt = None,
    precision: PrecisionOpt = None,
    format: FormatOpt = None,
    text_column: TextColumnOpt = None,
    text_pair_column: TextPairColumnOpt = None,
    id_column: IdColumnOpt = None,
    aggregation: Annotated[
        Optional[str], typer.Option(help="NER: how a word's sub-tokens decide its tag: first, average or max. [default: first]", rich_help_panel=NER)
    ] = None,
    stride: StrideOpt = None,
) -> None:
    """Predict labels for each input record, one output record per input, in input order, as they arrive.

    For a token classifier (NER): the entities of each text line with character offsets, or for CoNLL/JSONL
    tokens input the same format back with a predicted tag column.
    """
    from bertcli.runtime.accelerator import is_main_process
    from bertcli.config import DataOptions
    from bertcli.runtime.distributed import require_file_under_launch
    from bertcli.errors import UsageError
    from bertcli.io import RecordWriter
    from bertcli.ner_data import is_token_classifier

    require_file_under_launch(input, "predict")
    if input in (None, "-") and sys.stdin.isatty():
        raise UsageError("no input: pass a file, or pipe text into stdin", hint="cat texts.txt | bertcli predict MODEL_DIR")
    if is_token_classifier(model_dir):
        if output_format not in (None, "jsonl"):
            raise UsageError("NER predictions are JSONL (CoNLL for CoNLL input)", hint="drop --output-format")
        from bertcli.ner import NerPredictOptions, predict_stream as predict_ner

        ner_opts = NerPredictOptions(
            batch_size=batch_size or 32, aggregation=aggregation or "first", max_length=max_length, stride=stride,
            precision=precision or "auto", include_text=include_text,
        )  # fmt: skip
        data = DataOptions(format=format, text_column=text_column, id_column=id_column)
        with RecordWriter(output if is_main_process() else None, "jsonl") as writer:
            for chunk in predict_ner(model_dir, input, data, ner_opts):
                writer.handle.write(chunk)
                writer.handle.flush()
        return
    from bertcli.prediction import PredictOptions, check_predict_options, predict_stream

    fmt = output_format or (output.rsplit(".", 1)[-1].lower() if output and "." in output else "jsonl")
    if fmt not in ("jsonl", "csv", "tsv"):
        raise UsageError(f"unknown output format {fmt!r}", hint="choose jsonl, csv or tsv")
    opts = PredictOptions(
        batch_size=batch_size or 32, top_k=top_k, threshold=threshold, include_text=include_text,
        max_length=max_length, precision=precision or "auto",
    )  # fmt: skip
    check_predict_options(opts)
    data = DataOptions(format=format, text_column=text_column, text_pair_column=text_pair_column, id_column=id_column)
    # under a multi-process launch only the main process writes; the others score their share and yield nothing
    with RecordWriter(output if is_main_process() else None, fmt) as writer:
        for records in predict_stream(model_dir, input, data, opts):
            writer.write(records)
