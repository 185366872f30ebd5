"""Open a model directory for inference: pick the backend (torch, or the ONNX export), and its text encoder.

An export (`bertcli export`) is a directory of its own, MODEL_DIR/onnx by default: the ONNX model(s), the
tokenizer and configs, and a bertcli.json whose `onnx` section names the model file. It serves alone, so a
deployment can ship it without the torch weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertcli.bundle import Bundle
from bertcli.errors import ModelError, UsageError
from bertcli.inference.encoding import TOKENIZER_FILE, TextEncoder

log = logging.getLogger("bertcli")
EXPORT_DIR = "onnx"
FP32, INT8 = "model.onnx", "model.int8.onnx"  # an export's files: the graph, and its int8 copy after --quantize


@dataclass(frozen=True)
class Export:
    directory: Path
    meta: dict[str, Any]  # bertcli.json's `onnx` section: file, opset, exporter, parity, outputs, int8 check

    def file(self, name: str | None = None) -> Path:
        return self.directory / (name or self.meta["file"])


def find_export(bundle: Bundle) -> Export | None:
    """The bundle itself when it is an export, else its onnx/ subdirectory when that is one."""
    from bertcli.bundle import has_meta, read_meta

    if bundle.meta.onnx and (bundle.directory / bundle.meta.onnx["file"]).is_file():
        return Export(bundle.directory, bundle.meta.onnx)
    candidate = bundle.directory / EXPORT_DIR
    if has_meta(candidate):
        section = read_meta(candidate).onnx
        if section and (candidate / section["file"]).is_file():
            return Export(candidate, section)
    return None


def choose_backend(bundle: Bundle, backend: str, precision: str = "auto", needs: tuple[str, ...] = ()) -> Export | None:
    """The export to run, or None for torch. `auto` takes the export when there is one and the options need nothing
    it lacks (an autocast precision; `needs`: outputs such as pooler_output). `--precision no` asks for full
    precision, so it runs an int8 export's fp32 graph, and torch when the export kept only int8."""
    found = find_export(bundle)
    export = _full_precision(found) if found and precision == "no" and found.meta.get("quantized") else found
    directory, has_torch = bundle.directory, bundle.has_torch_weights
    if backend == "torch":
        if not has_torch:
            raise ModelError(
                "no torch weights here: this directory is an ONNX export", file=directory, hint="drop --backend torch"
            )
        return None
    if backend == "onnx" or (found is not None and not has_torch):  # an export's own directory runs only on ONNX
        if export is None and found is not None:
            raise UsageError(
                "--precision no asks for full precision, and this ONNX export holds only its int8 graph",
                file=found.directory,
                hint="drop --precision, or export again without --quantize",
            )
        if export is None:
            raise ModelError("this model has no ONNX export", file=directory, hint=f"run: bertcli export {directory}")
        if precision not in ("auto", "no"):
            raise UsageError(
                f"--precision {precision} runs on torch; the ONNX export is fp32 (or int8)",
                hint="drop --precision or --backend onnx",
            )
        lacking = [name for name in needs if name not in export.meta["outputs"]]
        if lacking:
            raise UsageError(f"the ONNX export has no {lacking[0]} output", hint="use --backend torch, or re-export")
    elif export is None or precision not in ("auto", "no") or any(n not in export.meta["outputs"] for n in needs):
        return None
    if backend == "auto":
        log.info(
            "running the ONNX export %s (%s; --backend torch for torch)",
            export.file(),
            export.meta.get("quantized") or "fp32",
        )
    return export


def _full_precision(export: Export) -> Export | None:
    """An int8 export's fp32 graph (the export writes both), or None when it is gone."""
    if not (export.directory / FP32).is_file():
        return None
    return Export(export.directory, {**export.meta, "file": FP32, "quantized": None})


def open_model(
    model: Bundle | str | Path, head: str, max_length: int, backend: str = "auto", precision: str = "auto",
    threads: int | None = None, needs: tuple[str, ...] = (), onnx_file: str | None = None,
) -> tuple[Any, TextEncoder]:  # fmt: skip
    """The backend running `head` (see torch_backend.HEADS) and the encoder for its inputs. `threads` sizes ONNX
    Runtime's session; torch's thread pool is the process's, set once by the command (runtime.device.set_threads)."""
    bundle = model if isinstance(model, Bundle) else Bundle.open(model)
    # a named file (the int8 gate's) is run as it is, whatever the precision
    export = (
        choose_backend(bundle, "onnx", "auto", needs)
        if onnx_file
        else choose_backend(bundle, backend, precision, needs)
    )
    if export is not None:
        from bertcli.inference.onnx_backend import OnnxBackend

        _check_source(export, bundle.directory)
        return OnnxBackend(export.file(onnx_file), threads), text_encoder(export.directory, max_length)
    from bertcli.inference.torch_backend import TorchBackend, load_model

    torch_model = load_model(str(bundle.directory), head, keep_pooler="pooler_output" in needs)
    return TorchBackend(torch_model, precision), text_encoder(bundle.directory, max_length)


def _check_source(export: Export, directory: Path) -> None:
    """An export inside a model directory must come from that directory's weights (not an older or another model's)."""
    if export.directory == directory or not export.meta.get("source"):
        return
    from bertcli.bundle import weights_fingerprint

    if weights_fingerprint(directory) != export.meta["source"]:
        raise ModelError(
            "the ONNX export here was made from other weights than this model's", file=export.directory,
            hint=f"export again: bertcli export {directory} --overwrite",
        )  # fmt: skip


def text_encoder(directory: str | Path, max_length: int) -> TextEncoder:
    """The directory's tokenizer.json read by `tokenizers` itself; transformers only for a tokenizer without one."""
    if (Path(directory) / TOKENIZER_FILE).is_file():
        return TextEncoder.load(directory, max_length)
    from bertcli.hub import load_tokenizer

    return TextEncoder.of(load_tokenizer(str(directory)), max_length)
