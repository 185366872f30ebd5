"""The ONNX Runtime backend: an exported model (`bertcli export`) run without torch or transformers.

The export names its outputs after the torch model's (`logits`; `hidden_states.0` .. `hidden_states.N` and
`pooler_output` for encoders), so the same batch loop and pooling code serve both backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bertcli.config import BATCH_TOKENS
from bertcli.errors import ModelError, UsageError
from bertcli.inference.encoding import Features
from bertcli.runtime.device import default_threads

INSTALL = 'pip install "onnxruntime>=1.20"'
# fused SkipLayerNorm measured slower than the unfused nodes on CPUs with AVX512-VNNI (fp32 and int8 alike)
DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise UsageError("the ONNX backend needs onnxruntime, which is not installed", hint=INSTALL) from None
    return onnxruntime


class OnnxBackend:
    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS
            )
        except Exception as exc:  # a truncated or foreign file: onnxruntime says why in its first line
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"cannot load the ONNX model: {reason}", file=path, hint="export it again with bertcli export"
            ) from None
        self.inputs = frozenset(i.name for i in self.session.get_inputs())
        self.name = f"onnxruntime {Path(path).name}"
        self.batch_tokens = BATCH_TOKENS["cpu"]  # the session runs on CPUExecutionProvider
        self.threads_per_call = False  # the session fixed its threads when it was made
        self.names = [o.name for o in self.session.get_outputs()]
        self.layers = sorted(int(n.split(".")[1]) for n in self.names if n.startswith("hidden_states."))

    def provides(self, output: str) -> bool:
        return output in self.names or (output in ("hidden_states", "last_hidden_state") and bool(self.layers))

    def forward(self, features: Features, outputs: Sequence[str] = ("logits",)) -> dict[str, np.ndarray]:
        wanted: list[str] = []
        for name in outputs:
            if name == "hidden_states":
                wanted += [f"hidden_states.{i}" for i in self.layers]
            elif name == "last_hidden_state" and name not in self.names:
                wanted.append(f"hidden_states.{self.layers[-1]}")
            else:
                wanted.append(name)
        missing = [name for name in wanted if name not in self.names]
        if missing:
            raise ModelError(
                f"the ONNX export has no output {missing[0]!r}", hint="export it again with bertcli export"
            )
        values = dict(zip(wanted, self.session.run(wanted, features)))
        result = {}
        for name in outputs:
            if name == "hidden_states":
                result[name] = np.stack([values[f"hidden_states.{i}"] for i in self.layers], axis=1)
            elif name == "last_hidden_state" and name not in values:
                result[name] = values[f"hidden_states.{self.layers[-1]}"]
            else:
                result[name] = values[name]
        return {k: np.asarray(v, dtype=np.float32) for k, v in result.items()}
