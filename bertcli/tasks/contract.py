"""What every task offers the commands, and what every predictor offers the API and the server.

Commands, `serve`, `export` and `tune` see tasks only through these two shapes, so none of them branches on a
task's kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Predictor(Protocol):
    """A loaded model ready for inference, built by keyword from the predict options (`Task.load`)."""

    kind: str  # what it is, for people (/info): classifier, tagger, encoder
    labels: list[str]
    max_length: int
    encoder: Any  # the TextEncoder: the server counts tokens with it and serves /tokenize
    backend: Any  # the Backend that runs the model (torch or ONNX Runtime)
    routes: frozenset[str]  # what the server answers with it: "predict", "embeddings", "rerank" (then `ranked` too)
    takes_pairs: bool  # whether an input may be a (text, second text) pair
    request_options: frozenset[str]  # per-request options `records` takes (classifiers: top_k, threshold)

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[Any]:
        """One result per text, in order: the records `bertcli predict` writes (encoders: vectors)."""

    def run(self, inputs: Sequence[tuple[str, str | None]], encoded: Any = None) -> list[Any]:
        """The batch entry: one raw result per (text, pair) input, in order; the server's forward thread calls it
        with many requests' inputs at once. `encoded`: the inputs as `encoder.encode` tokenized them (the server
        counts tokens with it), read as they are by a predictor that would tokenize them the same way."""

    def records(self, results: Sequence[Any], **options: Any) -> list[Any]:
        """`run`'s results as the records the API answers with, shaped by per-request options."""

    # rerankers (routes has "rerank") add `ranked(results, texts=None, raw_scores=False)`: one query's candidates'
    # results as /rerank's answer, best first


class Task(Protocol):
    name: str
    head: str  # the model head an export writes (inference/torch_backend.HEADS)
    default_space: str | None  # `bertcli tune`'s search space when --space is not given
    metrics: dict[str, tuple[str, ...]]  # per kind of model it saves: the validation metrics --metric may name

    def trains(self, cfg: Any) -> bool:
        """Whether a finetune configuration (its --task, or its data when --task is not given) is this task's."""

    def gate_metric(self, bundle: Any, check: str) -> str | None:
        """What the int8 export gate holds on the --check data (None: the vectors' cosine to fp32)."""

    def default_metric(self, cfg: Any) -> str:
        """The validation metric that picks the best model of a finetune configuration when --metric is not given."""

    def finetune(self, cfg: Any, callbacks: Any = None) -> Any: ...

    def evaluate(self, cfg: Any, bundle: Any) -> dict[str, Any]:
        """The metrics report of the opened `bundle` (cfg.model_dir) on cfg.input."""

    def predict(self, cfg: Any, bundle: Any) -> Any: ...

    def load(self, bundle: Any, **options: Any) -> Predictor: ...


def options_for(predictor: type, cfg: Any) -> dict[str, Any]:
    """The keyword options of a predictor's constructor that a command's configuration sets (predict, evaluate):
    every predictor is built from its command's config the same way, by name."""
    import inspect

    names = [p.name for p in inspect.signature(predictor).parameters.values() if p.kind is p.KEYWORD_ONLY]
    return {name: getattr(cfg, name) for name in names if hasattr(cfg, name)}
