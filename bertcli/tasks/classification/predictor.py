"""A saved sequence classifier ready for inference: texts (and pairs) in, the records `bertcli predict` writes out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertcli.bundle import bundle_dir, model_max_length, read_meta
from bertcli.config import WindowOptions
from bertcli.data.labels import LabelSpec
from bertcli.errors import UsageError
from bertcli.inference.batching import length_sorted_batches, run_batches
from bertcli.inference.loading import open_model
from bertcli.tasks.classification.scores import probabilities
from bertcli.tasks.classification.windows import aggregate, read_documents, saved_policy


@dataclass
class Scored:
    """Per input: class probabilities (or regression values), whether it was cut, how many windows read it."""

    probs: np.ndarray
    truncated: list[bool]
    windows: list[int]


class Classifier:
    """Tokenizes (truncating or windowing, as the model's long-text policy says), batches, and turns logits into
    scores; `predict` gives one record per text, in order."""

    def __init__(
        self,
        model_dir: str,
        precision: str = "auto",
        batch_size: int = 32,
        max_length: int | None = None,
        backend: str = "auto",
        threads: int | None = None,
        onnx_file: str | None = None,
        long_text: str | None = None,
        stride: int | None = None,
        aggregate: str | None = None,
    ) -> None:
        directory = bundle_dir(model_dir)
        self.meta = read_meta(directory)
        self.spec = LabelSpec(self.meta["task"], list(self.meta.get("labels", [])))
        limit = model_max_length(directory)
        if max_length is not None and max_length > limit:
            raise UsageError(f"--max-length {max_length} exceeds the model's limit of {limit}")
        self.policy = saved_policy(self.meta, limit).overridden(WindowOptions(long_text, stride, aggregate), max_length)
        self.max_length = self.policy.max_length
        self.batch_size = batch_size
        self.backend, self.encoder = open_model(
            directory, "sequence-classification", self.max_length, backend, precision, threads, onnx_file=onnx_file
        )
        self.threshold = self.meta.get("threshold") or 0.5

    def scores(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> Scored:
        """Per input, in input order: its probabilities (windows: from the aggregated window logits)."""
        documents = read_documents(self.encoder, list(texts), list(pairs) if pairs is not None else None, self.policy)
        batches = length_sorted_batches(documents.encoded.lengths, self.batch_size)
        rows = run_batches(self.backend, documents.encoded, self.encoder.specials.pad, batches)
        logits = np.stack(rows) if rows else np.zeros((0, self.spec.num_labels), dtype=np.float32)
        if self.policy.mode == "window":
            logits = aggregate(logits, documents, self.policy.aggregate)
        return Scored(probabilities(logits, self.spec.task), documents.truncated, documents.counts.tolist())

    def shared_scores(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> Scored:
        """`scores` with the texts dealt out among a launch's processes; every process gets all scores, in input order."""
        from bertcli.runtime.device import processes
        from bertcli.runtime.distributed import shared_map

        def score(items: list[tuple[str, str | None]]) -> list[tuple[np.ndarray, bool, int]]:
            scored = self.scores([t for t, _ in items], [p for _, p in items] if pairs else None)
            return list(zip(scored.probs, scored.truncated, scored.windows))

        rows = shared_map(processes(), list(zip(texts, pairs or [None] * len(texts))), score)
        if not rows:
            return Scored(np.zeros((0, self.spec.num_labels), dtype=np.float32), [], [])
        return Scored(np.stack([p for p, _, _ in rows]), [t for _, t, _ in rows], [w for _, _, w in rows])

    def predict(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
        shared: bool = False,
    ) -> list[dict[str, Any]]:
        """One record per text: label and scores (multi-label: labels; regression: score); an empty text gets nulls."""
        live = [i for i, text in enumerate(texts) if text.strip()]
        score = self.shared_scores if shared else self.scores
        scored = score([texts[i] for i in live], [pairs[i] for i in live] if pairs is not None else None)
        records = [self.record(None, False, 1, top_k, threshold) for _ in texts]
        for j, i in enumerate(live):
            records[i] = self.record(scored.probs[j], scored.truncated[j], scored.windows[j], top_k, threshold)
        return records

    def record(
        self, p: np.ndarray | None, truncated: bool, windows: int, top_k: int | None, threshold: float | None
    ) -> dict[str, Any]:
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


def load(model_dir: str, **options: Any) -> Classifier:
    """The Python API's entry (`bertcli.load`): the options are the constructor's."""
    return Classifier(model_dir, **options)
