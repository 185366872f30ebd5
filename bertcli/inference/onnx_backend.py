"""The ONNX Runtime backend: an exported model (`bertcli export`) run without torch or transformers.

The export names its outputs after the torch model's (`logits`; `hidden_states.0` .. `hidden_states.N` and
`pooler_output` for encoders), so the same batch loop and pooling code serve both backends.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bertcli.config import BATCH_TOKENS
from bertcli.errors import ModelError, UsageError
from bertcli.inference.encoding import Features
from bertcli.runtime.device import calling_threads, default_threads

INSTALL = 'pip install "onnxruntime>=1.23"'
# fused SkipLayerNorm measured slower than the unfused nodes on CPUs with AVX512-VNNI (fp32 and int8 alike)
DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise UsageError("the ONNX backend needs onnxruntime, which is not installed", hint=INSTALL) from None
    return onnxruntime


class OnnxBackend:
    """A session fixes its threads when it is made, so a forward asked to run on another count (`use_threads` on
    the calling thread: the server's streams) gets a session of its own, made on first use and then kept."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path, self.threads = Path(path), threads or default_threads()
        session = self._open(self.threads)
        self.sessions = {self.threads: session}
        self.opening = threading.Lock()
        self.inputs = frozenset(i.name for i in session.get_inputs())
        self.name = f"onnxruntime {Path(path).name}"
        self.batch_tokens = BATCH_TOKENS["cpu"]  # the session runs on CPUExecutionProvider
        self.threads_per_call = True  # a session per thread count
        self.unpadded = False  # the graph takes padded batches
        self.names = [o.name for o in session.get_outputs()]
        self.layers = sorted(int(n.split(".")[1]) for n in self.names if n.startswith("hidden_states."))

    def _open(self, threads: int) -> Any:
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS
            )
        except Exception as exc:  # a truncated or foreign file: onnxruntime says why in its first line
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"cannot load the ONNX model: {reason}", file=self.path, hint="export it again with bertcli export"
            ) from None

    def session_for(self, threads: int | None) -> Any:
        """The session running on `threads` threads (None: the backend's own count)."""
        threads = threads or self.threads
        if threads not in self.sessions:
            with self.opening:
                if threads not in self.sessions:
                    self.sessions[threads] = self._open(threads)
        return self.sessions[threads]

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
        values = dict(zip(wanted, self.session_for(calling_threads()).run(wanted, features)))
        result = {}
        for name in outputs:
            if name == "hidden_states":
                result[name] = np.stack([values[f"hidden_states.{i}"] for i in self.layers], axis=1)
            elif name == "last_hidden_state" and name not in values:
                result[name] = values[f"hidden_states.{self.layers[-1]}"]
            else:
                result[name] = values[name]
        return {k: np.asarray(v, dtype=np.float32) for k, v in result.items()}
