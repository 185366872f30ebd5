"""The options of the commands that deploy a model: export."""

from __future__ import annotations

from dataclasses import dataclass

from bertcli.config.fields import POSITIVE, SHARE, checked, required, validate
from bertcli.errors import UsageError

QUANTIZATIONS = ("none", "int8")


@dataclass
class ExportConfig:
    model_dir: str = required("MODEL_DIR")
    output: str | None = None  # None: MODEL_DIR/onnx
    quantize: str = checked("none", choices=QUANTIZATIONS)
    check: str | None = None  # labelled data (texts for an encoder) the int8 model is measured on against fp32
    max_drop: float = checked(0.01, SHARE)  # the int8 model is kept if its metric drops at most this much
    force: bool = False
    opset: int | None = checked(None, POSITIVE)  # None: the exporter's default
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
