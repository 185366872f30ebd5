"""The export command's core: the graph, its parity with torch, int8 behind the gate, one self-contained directory.

The directory is written beside its target and renamed into place, so a killed export leaves nothing that looks
finished, and an export that fails its parity check is never written.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertcli.bundle import TORCH_WEIGHTS, Bundle, BundleMeta, weights_fingerprint
from bertcli.config import ExportConfig
from bertcli.errors import ModelError, UsageError
from bertcli.inference.loading import EXPORT_DIR, FP32, INT8

log = logging.getLogger("bertcli")
SKIPPED = {*TORCH_WEIGHTS, "training_curves.png", "bertcli.json"}  # files an export does not need


@dataclass
class OnnxExport:
    output: Path
    onnx: dict[str, Any]


def export(cfg: ExportConfig) -> OnnxExport:
    """Export cfg.model_dir to ONNX in cfg.output (default MODEL_DIR/onnx)."""
    from bertcli.bundle import write_meta
    from bertcli.io import replace_dir
    from bertcli.tasks import bundle_task

    cfg.validate()
    source, out = _paths(cfg)
    task = bundle_task(source)  # the head to export and the metric the int8 gate holds
    meta = source.meta
    staging = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        section = _graph(source.directory, staging, task.head, cfg.opset)
        refused = None
        if cfg.quantize == "int8":
            refused = _int8(cfg, staging, meta, section, task.gate_metric(source, cfg.check) if cfg.check else None)
        write_meta(staging, dataclasses.replace(meta, onnx=section))
        replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if refused:
        raise ModelError(refused, file=out, hint="--force keeps it anyway, or a larger --max-drop")
    return OnnxExport(out, section)


def _paths(cfg: ExportConfig) -> tuple[Bundle, Path]:
    from bertcli.hub import resolve_model

    source = Bundle.open(resolve_model(cfg.model_dir))
    if cfg.output is None and not Path(cfg.model_dir).is_dir():
        raise UsageError(f"{cfg.model_dir} is not a model directory of yours", hint="give -o DIR for the export")
    out = Path(cfg.output) if cfg.output else source.directory / EXPORT_DIR
    if out.exists() and not out.is_dir():
        raise UsageError("-o names a file; an export is a directory", file=out)
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise UsageError("the export directory exists", file=out, hint="pass --overwrite to replace it")
    if source.meta.onnx is not None:
        raise UsageError("this directory is an ONNX export; export the model it came from", file=source.directory)
    return source, out


def _graph(source: Path, staging: Path, head: str, opset: int) -> dict[str, Any]:
    """The fp32 graph and what serving it needs (tokenizer, configs), checked against torch."""
    from bertcli.bundle import model_max_length
    from bertcli.export.graph import PARITY, export_graph, load_for_export, parity, probe_features
    from bertcli.inference.encoding import TextEncoder

    for file in source.iterdir():
        if file.is_file() and file.name not in SKIPPED:
            shutil.copy2(file, staging / file.name)
    for module in ("1_Pooling", "2_Dense"):  # a sentence-transformers model's pooling and rotation, read at inference
        if (source / module).is_dir():
            shutil.copytree(source / module, staging / module)
    model = load_for_export(str(source), head)
    log.info("exporting %s (%s) to ONNX", source, head)
    info = export_graph(model, head, staging / FP32, opset)
    encoder = TextEncoder.load(staging, model_max_length(staging))
    difference = parity(model, staging / FP32, probe_features(encoder, info["inputs"]), info["outputs"])
    if difference > PARITY:
        raise ModelError(
            f"the ONNX graph differs from torch by {difference:.1e} (more than {PARITY:g}); nothing exported",
            file=source,
        )
    log.info("fp32 parity with torch on the probe batch: max |difference| %.1e", difference)
    return {
        "file": FP32,
        **info,
        "parity_max_abs_diff": difference,
        "source": weights_fingerprint(source),
        "quantized": None,
    }


def _int8(
    cfg: ExportConfig, staging: Path, meta: BundleMeta, section: dict[str, Any], gate_metric: str | None
) -> str | None:
    """Quantize, measure on --check (the task's gate metric), keep or drop; the reason when the gate refuses it."""
    from bertcli.bundle import write_meta
    from bertcli.data.formats import file_fingerprint
    from bertcli.export.int8 import SCHEME, measure, quantize, record

    quantize(staging / FP32, staging / INT8)
    if cfg.check is None:
        log.warning("keeping the int8 model unmeasured (--force without --check)")
        section.update(
            file=INT8, quantized=SCHEME, int8={"scheme": SCHEME, "kept": True, "forced": True, "measured": False}
        )
        return None
    write_meta(staging, dataclasses.replace(meta, onnx=section))  # the checks load the export being made
    check = measure(cfg, staging, gate_metric, INT8)
    kept = check.drop <= cfg.max_drop or cfg.force
    section["int8"] = record(check, kept, cfg, file_fingerprint(cfg.check))
    log.info(
        "int8 on %s: %s %.4f (fp32 %.4f), drop %.4f, limit %.4f",
        cfg.check,
        check.metric,
        check.int8,
        check.fp32,
        check.drop,
        cfg.max_drop,
    )
    if kept:
        section.update(file=INT8, quantized=SCHEME)
        return None
    (staging / INT8).unlink()
    return f"int8 model refused: {check.metric} drops {check.drop:.4f} ({check.fp32:.4f} -> {check.int8:.4f}), more than --max-drop {cfg.max_drop}; the fp32 export is kept"
