"""A model the server serves: the predictor its task loads, and the one batch function its batcher calls (off the
event loop) with the inputs of many requests at once. What a model answers comes from its predictor (`routes`,
`takes_pairs`, `request_options`), so the server never asks what kind of model it holds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertcli.config import ServeConfig
from bertcli.config.deploy import served_name
from bertcli.inference.encoding import Encoded, joined
from bertcli.runtime.device import use_threads

WARM_UP = ["A warm-up sentence, so the first request does not pay for lazy initialisation.", "ok"]


@dataclass
class Queued:
    """An input as a batcher holds it: its text (and pair) with its tokens, encoded as its own request asked."""

    text: str
    pair: str | None
    encoded: Encoded


@dataclass
class ServedModel:
    name: str
    directory: Path
    task: str  # the bundle's task (bertcli.json), shown by /info
    predictor: Any  # a tasks.contract.Predictor

    @property
    def encoder(self) -> Any:
        return self.predictor.encoder

    @property
    def max_length(self) -> int:
        return self.predictor.max_length

    def prepare(self, inputs: Sequence[tuple[str, str | None]]) -> tuple[list[Queued], list[int]]:
        """One request's inputs as its batcher queues them, tokenized once here (truncated as the model will), and
        each one's token count: the batch budget and `usage`. The forward then reads these tokens: tokenizing the
        batch again took about 4% of the forward thread."""
        texts, pairs = [text for text, _ in inputs], [pair for _, pair in inputs]
        has_pairs = any(pair is not None for pair in pairs)
        encoded = self.encoder.encode(texts, [pair or "" for pair in pairs] if has_pairs else None)
        return [Queued(text, pair, row) for (text, pair), row in zip(inputs, encoded.rows())], encoded.lengths

    def run(self, queued: Sequence[Queued], threads: int | None = None) -> list[Any]:
        """One forward over many requests' inputs, on `threads` of the cores: a result per input, in order (a
        forward thread's only work)."""
        use_threads(threads)
        return self.predictor.run([(q.text, q.pair) for q in queued], joined([q.encoded for q in queued]))

    def info(self) -> dict[str, Any]:
        return {
            "id": self.name, "object": "model", "task": self.task, "kind": self.predictor.kind,
            "labels": list(self.predictor.labels), "max_length": self.max_length,
            "backend": self.predictor.backend.name, "directory": str(self.directory),
        }  # fmt: skip


def load_model(spec: str, cfg: ServeConfig, thread_counts: Sequence[int | None] = (None,)) -> ServedModel:
    """The predictor for one served directory, from its task, warmed up on each thread count its forwards will use
    (an ONNX model makes its session for a stream's share then, not on the first request under load)."""
    from bertcli.hub import resolve_model
    from bertcli.tasks import open_bundle

    name, given = served_name(spec)
    bundle, task = open_bundle(given if Path(given).is_dir() else resolve_model(given))  # a directory says what it is
    predictor = task.load(bundle, backend=cfg.backend, precision=cfg.precision, threads=cfg.threads)
    model = ServedModel(name, bundle.directory, bundle.meta.task or "encoder", predictor)
    queued = model.prepare([(text, None) for text in WARM_UP])[0]
    for threads in thread_counts:
        model.run(queued, threads)
    return model
