"""`bertcli export`: the model as ONNX (fp32, or int8 behind an accuracy gate), served without torch."""

from __future__ import annotations

from typing import Annotated

import typer

from bertcli.cli.options import ModelDirArg, OverwriteOpt, batch_size_option, default, listed
from bertcli.config import QUANTIZATIONS, ExportConfig

NAME = "export"
BatchSizeOpt = batch_size_option(f"(for --check) {default(ExportConfig.batch_size)}")
EXAMPLES = """\b
Examples:
  bertcli export runs/sentiment                      # runs/sentiment/onnx/model.onnx: predict picks it up
  bertcli export runs/sentiment --quantize int8 --check data/rt/test.csv   # int8 kept if accuracy drops <= 1 point
  bertcli export runs/ner -o deploy/ner               # a directory that serves alone (no torch weights)
  echo 'great movie' | bertcli predict runs/sentiment --backend onnx
"""


def command(
    model_dir: ModelDirArg,
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="Export directory. [default: MODEL_DIR/onnx]", show_default=False),
    ] = None,
    quantize: Annotated[
        str | None,
        typer.Option(help=f"{listed(QUANTIZATIONS)}: also write model.int8.onnx. {default(ExportConfig.quantize)}"),
    ] = None,
    check: Annotated[
        str | None,
        typer.Option(
            help="Labelled data to measure the int8 model on against fp32. Encoders: retrieval data (a BEIR directory"
            " or query/positive pairs: NDCG@10), scored pairs (Spearman) or plain texts (cosine to the fp32 vectors).",
            show_default=False,
        ),
    ] = None,
    max_drop: Annotated[
        float | None,
        typer.Option(
            help=f"Keep int8 only if its metric drops at most this much (accuracy, F1, NDCG@10; encoders on plain texts: 1 - mean cosine). {default(ExportConfig.max_drop)}"
        ),
    ] = None,
    force: Annotated[
        bool | None, typer.Option("--force", help="Keep the int8 model whatever it measures.", show_default=False)
    ] = None,
    opset: Annotated[
        int | None,
        typer.Option(
            help=f"ONNX opset (below 23, attention exports as plain MatMul/Softmax nodes). {default(ExportConfig.opset)}"
        ),
    ] = None,
    batch_size: BatchSizeOpt = None,
    overwrite: OverwriteOpt = None,
) -> None:
    """Export a model to ONNX for fast, torch-free predict, embed, evaluate and serve."""
    values = dict(locals())
    import logging

    from bertcli.config import build_config
    from bertcli.export.run import export

    result = export(build_config(ExportConfig, None, **values))
    onnx = result.onnx
    logging.getLogger("bertcli").info(
        "exported to %s: %s (opset %d, parity %.1e)%s",
        result.output, onnx["file"], onnx["opset"], onnx["parity_max_abs_diff"],
        "; int8 kept" if "int8" in onnx else "",  # a refused int8 is an error, not a result
    )  # fmt: skip
