"""The options of the commands that deploy a model: export and serve."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bertcli.config.common import BACKENDS, PRECISIONS
from bertcli.config.fields import NON_NEGATIVE, POSITIVE, SHARE, checked, required, validate
from bertcli.errors import UsageError

QUANTIZATIONS = ("none", "int8")
ONNX_OPSET = 23  # the first with a standard Attention op: one node per layer (export/attention.py)


@dataclass
class ExportConfig:
    model_dir: str = required("MODEL_DIR")
    output: str | None = None  # None: MODEL_DIR/onnx
    quantize: str = checked("none", choices=QUANTIZATIONS)
    check: str | None = None  # labelled data for the int8 gate (encoders: retrieval data, scored pairs or texts)
    max_drop: float = checked(0.01, SHARE)  # the int8 model is kept if its metric drops at most this much
    force: bool = False
    opset: int = checked(ONNX_OPSET, POSITIVE)
    overwrite: bool = False
    batch_size: int = checked(32, POSITIVE)  # for --check

    def validate(self) -> None:
        validate(self)
        if self.quantize == "int8" and self.check is None and not self.force:
            raise UsageError(
                "--quantize int8 needs --check DATA to measure the int8 model against fp32",
                hint="pass labelled data (texts for an encoder), or --force to keep it unmeasured",
            )
        if self.check is not None and self.quantize == "none":
            raise UsageError("--check measures the int8 model; it needs --quantize int8")


@dataclass
class ServeConfig:
    models: list[str] = required("MODEL_DIR")  # DIR or NAME=DIR; served under NAME (default: the directory's name)
    host: str = "127.0.0.1"
    port: int = checked(8080, POSITIVE)
    api_key: str | None = None  # None: $BERTCLI_API_KEY, else no key
    backend: str = checked("auto", choices=BACKENDS)
    precision: str = checked("auto", choices=PRECISIONS)
    threads: int | None = checked(None, POSITIVE)  # None: the cores this process may use, shared by the forwards
    streams: int = checked(2, POSITIVE)  # forwards at once under load (on a CPU), each on threads / streams
    max_batch_tokens: int = checked(8192, POSITIVE)  # tokens of the inputs merged into one forward batch
    # how long a batch waits to fill once it has its first input (a lone request after a quiet moment: see batcher)
    max_wait_ms: float = checked(5.0, NON_NEGATIVE)
    max_queue: int = checked(1024, POSITIVE)  # inputs waiting per model; beyond: 503 with Retry-After
    max_inputs: int = checked(256, POSITIVE)  # inputs per request; beyond: 413
    max_body_bytes: int = checked(2_000_000, POSITIVE)  # request body; beyond: 413
    log_format: str = checked("text", choices=("text", "json"))

    def validate(self) -> None:
        validate(self)
        names = [served_name(spec)[0] for spec in self.models]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise UsageError(f"two models would both be served as {duplicated[0]!r}", hint="name them: NAME=DIR")


def served_name(spec: str) -> tuple[str, str]:
    """(name, model) of a served model: NAME=DIR_OR_HUB_ID, or the directory (hub id) under its last part's name."""
    name, _, model = spec.partition("=") if "=" in spec else ("", "", spec)
    return name or Path(model).resolve().name, model
