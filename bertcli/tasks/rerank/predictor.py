"""A saved reranker ready for inference: (query, document) pairs in, relevance scores out; `rerank` orders a query's
candidates (`bertcli rerank`, `bertcli.load(dir).rerank`, serve's /rerank)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bertcli.bundle import Bundle, bundle_dir
from bertcli.config import AGGREGATE_DEFAULTS, WindowOptions
from bertcli.errors import UsageError
from bertcli.inference.batching import batches_for, run_batches
from bertcli.inference.encoding import Encoded
from bertcli.inference.loading import open_model
from bertcli.inference.long_text import aggregate, read_documents, saved_policy


def sigmoid(logit: float) -> float:
    """The score TEI and sentence-transformers' CrossEncoder give a one-output model (raw_scores: the logit)."""
    return float(1.0 / (1.0 + np.exp(-logit)))


class Reranker:
    """Scores (query, document) pairs with a cross-encoder: length-sorted batches (of the backend's token budget
    unless a batch size is given), dynamic padding, input order.
    A pair longer than the model's length is, as the bundle's long-text policy says (or --long-text): cut at its
    longer side (as transformers' tokenizers cut pairs) and flagged `truncated`; or read as the query with each
    overlapping window of the document, scored by the best window (or the mean: --aggregate)."""

    kind = "reranker"  # what /info calls it
    routes = frozenset({"rerank", "predict"})
    takes_pairs = True
    request_options: frozenset[str] = frozenset()
    labels: list[str] = []

    def __init__(
        self,
        model: Bundle | str,
        *,
        precision: str = "auto",
        batch_size: int | None = None,
        max_length: int | None = None,
        backend: str = "auto",
        threads: int | None = None,
        onnx_file: str | None = None,
        long_text: str | None = None,
        stride: int | None = None,
        aggregate: str | None = None,
    ) -> None:
        self.bundle = bundle = model if isinstance(model, Bundle) else Bundle.open(bundle_dir(model))
        self.meta = bundle.meta
        if max_length is not None and max_length > bundle.limit:
            raise UsageError(f"--max-length {max_length} exceeds the model's limit of {bundle.limit}")
        trained = min(self.meta.max_length or bundle.limit, bundle.limit)  # a bundle from before policies cuts here
        self.policy = saved_policy(self.meta.long_text, trained, AGGREGATE_DEFAULTS["reranker"]).overridden(
            WindowOptions(long_text, stride, aggregate), max_length
        )
        self.max_length = self.policy.max_length
        self.batch_size = batch_size
        self.backend, self.encoder = open_model(
            bundle, "sequence-classification", self.max_length, backend, precision, threads, onnx_file=onnx_file
        )

    @property
    def windowed(self) -> bool:
        """Whether a long document is read in windows rather than cut."""
        return self.policy.mode == "window"

    def first_cut(self, query: str, texts: Sequence[str]) -> str | None:
        """Why a pair of `query` with one of `texts` would be cut, before any forward (serve's 413 for truncate:
        false); None when none would be. Windows cut a pair only when the query leaves them no more than the stride."""
        lengths = self.encoder.lengths([query] * len(texts), list(texts))
        longest = max(range(len(texts)), key=lengths.__getitem__)
        if lengths[longest] <= self.max_length:
            return None
        if not self.windowed:
            return f"text {longest} with the query is {lengths[longest]} tokens; the limit is {self.max_length}"
        room = self.encoder.room([query])[0]
        if room > self.policy.stride:
            return None
        return (
            f"the query leaves {max(room, 0)} of the model's {self.max_length} tokens, no more than the {self.policy.stride} "
            f"its windows share, so text {longest} ({lengths[longest]} tokens with the query) would be cut"
        )

    def run(self, inputs: Sequence[tuple[str, str | None]], encoded: Encoded | None = None) -> list[tuple[float, bool]]:
        """Per (query, document), in order: the model's logit (windows: their aggregate) and whether the pair was
        cut (windows cut only a pair whose query leaves the document no room)."""
        if not inputs:
            return []
        has_pairs = any(pair is not None for _, pair in inputs)
        texts, pairs = [t for t, _ in inputs], [p or "" for _, p in inputs] if has_pairs else None
        documents = read_documents(self.encoder, texts, pairs, self.policy, encoded)
        batches = batches_for(
            documents.encoded.lengths, self.batch_size, self.backend.batch_tokens, self.backend.unpadded
        )
        logits = np.stack(run_batches(self.backend, documents.encoded, self.encoder.specials.pad, batches))[:, :1]
        if self.windowed:
            logits = aggregate(logits, documents, self.policy.aggregate)
        return [(float(row[0]), cut) for row, cut in zip(logits, documents.truncated)]

    def records(self, results: Sequence[tuple[float, bool]]) -> list[dict[str, Any]]:
        """`bertcli predict`'s record per pair: its relevance score (0..1)."""
        return [{"score": round(sigmoid(logit), 6), **({"truncated": True} if cut else {})} for logit, cut in results]

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[dict[str, Any]]:
        return self.records(self.run(list(zip(texts, pairs if pairs is not None else [None] * len(texts)))))

    def ranked(
        self, results: Sequence[tuple[float, bool]], texts: Sequence[str] | None = None, raw_scores: bool = False
    ) -> list[dict[str, Any]]:
        """`run`'s results for one query's candidates, best first (ties in input order): TEI's rerank answer,
        {"index", "score"[, "text"][, "truncated"]}; `texts` adds each candidate's text."""
        order = sorted(range(len(results)), key=lambda i: -results[i][0])
        answer = []
        for i in order:
            logit, cut = results[i]
            item: dict[str, Any] = {"index": i, "score": logit if raw_scores else sigmoid(logit)}
            if texts is not None:
                item["text"] = texts[i]
            if cut:
                item["truncated"] = True
            answer.append(item)
        return answer

    def rerank(
        self, query: str, texts: Sequence[str], raw_scores: bool = False, return_text: bool = False
    ) -> list[dict[str, Any]]:
        """The candidates `texts` ordered by their relevance to `query`, best first."""
        results = self.run([(query, text) for text in texts])
        return self.ranked(results, list(texts) if return_text else None, raw_scores)
