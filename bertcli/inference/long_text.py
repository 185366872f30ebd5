"""Inputs longer than a model's max length: cut (truncate), or read every token in overlapping windows and decide
per input from its windows' logits (mean, or elementwise max).

The policy (mode, max length, stride, aggregation) is saved in bertcli.json when a model is trained, so evaluate,
predict, the Python API and the server apply it without flags. Classifiers and rerankers share it: a reranker's
pair keeps its query whole and windows the document.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bertcli.config import WindowOptions
from bertcli.errors import UsageError
from bertcli.inference.encoding import Encoded, TextEncoder


@dataclass(frozen=True)
class LongTextPolicy:
    mode: str  # truncate | window
    max_length: int
    stride: int
    aggregate: str  # mean | max (of the windows' logits)

    def meta(self) -> dict[str, Any]:
        return asdict(self)

    def overridden(self, options: WindowOptions | Any, max_length: int | None = None) -> LongTextPolicy:
        """This policy with what a command line gave (evaluate/predict may change mode, stride, aggregation, length)."""
        length = max_length or self.max_length
        mode = options.long_text or self.mode
        stride = (
            options.stride
            if options.stride is not None
            else (self.stride if length == self.max_length else length // 4)
        )
        return checked(LongTextPolicy(mode, length, stride, options.aggregate or self.aggregate))


def checked(policy: LongTextPolicy) -> LongTextPolicy:
    if policy.mode == "window" and not 0 <= policy.stride < policy.max_length - 2:
        raise UsageError(f"--stride must be at least 0 and below max length - 2 ({policy.max_length - 2})")
    return policy


def saved_policy(saved: dict[str, Any] | None, limit: int, aggregate: str) -> LongTextPolicy:
    """The policy a bundle recorded; a bundle from before windows (or from transformers) truncates at the model's
    limit, and windows (when a command asks) with `aggregate`, its task's way."""
    if saved:
        return LongTextPolicy(saved["mode"], saved["max_length"], saved["stride"], saved["aggregate"])
    return LongTextPolicy("truncate", limit, limit // 4, aggregate)


@dataclass
class Documents:
    """Inputs as the model reads them: `encoded` rows (windows, or one truncated row each), the input each row comes
    from, and per input its number of rows and whether it was cut."""

    encoded: Encoded
    source: np.ndarray
    counts: np.ndarray
    truncated: list[bool]

    def __len__(self) -> int:
        return len(self.counts)


def read_documents(
    encoder: TextEncoder, texts: list[str], pairs: list[str] | None, policy: LongTextPolicy,
    encoded: Encoded | None = None,
) -> Documents:  # fmt: skip
    """The encoder's max length is the policy's. `encoded`: the inputs as `encoder.encode` already tokenized them
    (the server's token count), which truncation reads as they are; windows tokenize again."""
    if policy.mode == "truncate":
        encoded = encoded if encoded is not None else encoder.encode(texts, pairs)
        return Documents(encoded, np.arange(len(texts)), np.ones(len(texts), dtype=np.int64), encoded.truncated)
    encoded, source = encoder.windows(texts, pairs, policy.stride)
    counts = np.bincount(np.asarray(source, dtype=np.int64), minlength=len(texts))
    return Documents(encoded, np.asarray(source), counts, encoded.truncated)


def aggregate(logits: np.ndarray, documents: Documents, how: str) -> np.ndarray:
    """One row of logits per document: the mean (or elementwise max) of its rows'."""
    shape = (len(documents), logits.shape[-1])
    if how == "max":
        pooled = np.full(shape, -np.inf, dtype=np.float64)
        np.maximum.at(pooled, documents.source, logits)
        return pooled
    summed = np.zeros(shape, dtype=np.float64)
    np.add.at(summed, documents.source, logits)
    return summed / np.maximum(documents.counts, 1)[:, None]
