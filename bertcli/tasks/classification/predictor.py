"""A saved sequence classifier ready for inference: texts (and pairs) in, the records `bertcli predict` writes out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertcli.bundle import Bundle, bundle_dir
from bertcli.config import AGGREGATE_DEFAULTS, WindowOptions
from bertcli.data.labels import LabelSpec
from bertcli.errors import UsageError
from bertcli.inference.batching import length_sorted_batches, run_batches
from bertcli.inference.encoding import Encoded
from bertcli.inference.loading import open_model
from bertcli.inference.long_text import aggregate, read_documents, saved_policy
from bertcli.tasks.classification.combine import mix
from bertcli.tasks.classification.lexical import saved_lexical
from bertcli.tasks.classification.scores import probabilities


@dataclass
class Scored:
    """Per input: class probabilities (or regression values), whether it was cut, how many windows read it."""

    probs: np.ndarray
    truncated: list[bool]
    windows: list[int]


class Classifier:
    """Tokenizes (truncating or windowing, as the model's long-text policy says), batches, and turns logits into
    scores; `predict` gives one record per text, in order."""

    kind = "classifier"  # what /info calls it
    routes = frozenset({"predict"})
    takes_pairs = True
    request_options = frozenset({"top_k", "threshold"})

    def __init__(
        self,
        model: Bundle | str,
        *,
        precision: str = "auto",
        batch_size: int = 32,
        max_length: int | None = None,
        backend: str = "auto",
        threads: int | None = None,
        onnx_file: str | None = None,
        long_text: str | None = None,
        stride: int | None = None,
        aggregate: str | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
    ) -> None:
        self.bundle = bundle = model if isinstance(model, Bundle) else Bundle.open(bundle_dir(model))
        self.meta = bundle.meta
        self.spec = LabelSpec(self.meta.task, list(self.meta.labels))
        self.labels = self.spec.names
        if max_length is not None and max_length > bundle.limit:
            raise UsageError(f"--max-length {max_length} exceeds the model's limit of {bundle.limit}")
        self.policy = saved_policy(self.meta.long_text, bundle.limit, AGGREGATE_DEFAULTS["classifier"]).overridden(
            WindowOptions(long_text, stride, aggregate), max_length
        )
        self.max_length = self.policy.max_length
        self.batch_size, self.top_k = batch_size, top_k
        self.backend, self.encoder = open_model(
            bundle, "sequence-classification", self.max_length, backend, precision, threads, onnx_file=onnx_file
        )
        self.threshold = (self.meta.threshold or 0.5) if threshold is None else threshold
        self.lexical, self.lexical_weight = saved_lexical(self.meta.lexical, bundle.directory)

    def scores(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None, encoded: Encoded | None = None
    ) -> Scored:
        """Per input, in input order: its probabilities (windows: from the aggregated window logits)."""
        documents = read_documents(
            self.encoder, list(texts), list(pairs) if pairs is not None else None, self.policy, encoded
        )
        batches = length_sorted_batches(documents.encoded.lengths, self.batch_size)
        rows = run_batches(self.backend, documents.encoded, self.encoder.specials.pad, batches)
        logits = np.stack(rows) if rows else np.zeros((0, self.spec.num_labels), dtype=np.float32)
        if self.policy.mode == "window":
            logits = aggregate(logits, documents, self.policy.aggregate)
        probs = probabilities(logits, self.spec.task)
        if self.lexical is not None:  # the combination chosen on validation (bertcli.json's lexical weight)
            probs = mix(probs, self.lexical.probabilities(texts, pairs), self.lexical_weight)
        return Scored(probs, documents.truncated, documents.counts.tolist())

    def score_rows(
        self, inputs: Sequence[tuple[str, str | None]], encoded: Encoded | None = None
    ) -> list[tuple[np.ndarray, bool, int]]:
        """Per (text, pair), in order: its probabilities, whether it was cut, and how many windows read it."""
        has_pairs = any(pair is not None for _, pair in inputs)
        scored = self.scores([t for t, _ in inputs], [p or "" for _, p in inputs] if has_pairs else None, encoded)
        return list(zip(scored.probs, scored.truncated, scored.windows))

    def run(
        self, inputs: Sequence[tuple[str, str | None]], encoded: Encoded | None = None
    ) -> list[tuple[np.ndarray, bool, int] | None]:
        """`score_rows`, with None for an empty text (nothing to classify: its record has null scores)."""
        live = [i for i, (text, _) in enumerate(inputs) if text.strip()]
        results: list[tuple[np.ndarray, bool, int] | None] = [None] * len(inputs)
        rows = self.score_rows([inputs[i] for i in live], None if encoded is None else encoded.subset(live))
        for i, row in zip(live, rows):
            results[i] = row
        return results

    def records(
        self, results: Sequence[tuple[np.ndarray, bool, int] | None], top_k: int | None = None,
        threshold: float | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """One record per result: label and scores (multi-label: labels; regression: score); an empty text gets nulls."""
        top_k = self.top_k if top_k is None else top_k
        return [self.record(*(result or (None, False, 1)), top_k, threshold) for result in results]

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One record per text, in order (the records `bertcli predict` writes)."""
        return self.records(self.run(list(zip(texts, pairs if pairs is not None else [None] * len(texts)))))

    def record(
        self, p: np.ndarray | None, truncated: bool, windows: int, top_k: int | None = None,
        threshold: float | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        task, names = self.spec.task, self.spec.names
        if task == "regression":
            record: dict[str, Any] = {"score": None if p is None else float(p[0])}
        elif p is None:
            record = (
                {"label": None, "score": None, "scores": None}
                if task == "single_label"
                else {"labels": None, "scores": None}
            )
        else:
            ranked = np.argsort(-p, kind="stable")[: top_k or len(p)]
            scores = {names[i]: round(float(p[i]), 6) for i in ranked}
            if task == "single_label":
                record = {"label": names[ranked[0]], "score": round(float(p[ranked[0]]), 6), "scores": scores}
            else:
                cut = self.threshold if threshold is None else threshold
                record = {"labels": [names[i] for i in np.flatnonzero(p >= cut)], "scores": scores}
        if truncated:
            record["truncated"] = True
        if windows > 1:
            record["windows"] = windows
        return record
