"""A saved token classifier ready for inference: sentences of words in, a tag and a score per word out;
raw texts in, the entity records `bertcli predict` writes out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bertcli.bundle import Bundle, bundle_dir
from bertcli.config import AGGREGATIONS
from bertcli.errors import ModelError, UsageError
from bertcli.inference.loading import open_model
from bertcli.tasks.ner.entities import entity_records
from bertcli.tasks.ner.formats import split_words
from bertcli.tasks.ner.sentence import Sentence
from bertcli.tasks.ner.windows import (
    check_stride,
    decode,
    make_windows,
    scheme_of_labels,
    window_probabilities,
    word_probabilities,
)


class Tagger:
    """Tags words (or raw texts, cut into words as training cuts them) in overlapping windows of sub-tokens."""

    kind = "tagger"  # what /info calls it
    routes = frozenset({"predict"})
    takes_pairs = False
    request_options: frozenset[str] = frozenset()

    def __init__(
        self,
        model: Bundle | str,
        *,
        precision: str = "auto",
        batch_size: int = 32,
        max_length: int | None = None,
        stride: int | None = None,
        aggregation: str = "first",
        backend: str = "auto",
        threads: int | None = None,
        onnx_file: str | None = None,
    ) -> None:
        if aggregation not in AGGREGATIONS:
            raise UsageError(f"unknown --aggregation {aggregation!r}", hint=f"choose {', '.join(AGGREGATIONS)}")
        bundle = model if isinstance(model, Bundle) else Bundle.open(bundle_dir(model))
        self.meta = bundle.meta
        if self.meta.task != "ner":
            raise ModelError(f"a {self.meta.task} model, not a token classifier", file=bundle.directory)
        self.labels = list(self.meta.labels)
        self.scheme = self.meta.scheme or scheme_of_labels(self.labels)
        cap = bundle.limit
        self.max_length = min(max_length or self.meta.max_length or cap, cap)
        self.stride = check_stride(stride, self.max_length, default=self.meta.stride)
        self.batch_size, self.aggregation = batch_size, aggregation
        self.backend, self.encoder = open_model(
            bundle, "token-classification", self.max_length, backend, precision, threads, onnx_file=onnx_file
        )
        if self.encoder.specials.cls is None or self.encoder.specials.sep is None:
            raise ModelError("NER needs a tokenizer with [CLS] and [SEP] tokens", file=bundle.directory)

    def tag(self, sentences: Sequence[Sequence[str]]) -> tuple[list[list[str]], list[list[float]]]:
        windows = make_windows(self.encoder, sentences, self.max_length, self.stride)
        probs = window_probabilities(self.backend, windows, self.encoder.specials.pad, self.batch_size)
        return decode(word_probabilities(windows, probs, [len(s) for s in sentences], self.aggregation), self.labels)

    def tag_rows(self, sentences: Sequence[Sequence[str]]) -> list[tuple[list[str], list[float]]]:
        """`tag` as one (tags, scores) row per sentence: the shape `across_processes` deals out."""
        return list(zip(*self.tag(sentences))) if sentences else []

    def run(self, inputs: Sequence[tuple[str, str | None]], encoded: Any = None) -> list[dict[str, Any]]:
        """One record per raw text: its entities with character offsets and scores. A tagger reads words in windows
        of its own, so an `encoded` the caller has (the server's token count) is of no use to it."""
        if any(pair is not None for _, pair in inputs):
            raise UsageError("a token classifier tags single texts; pairs are for classifiers")
        sentences = [text_sentence(text) for text, _ in inputs]
        rows = self.tag_rows([s.words for s in sentences])
        return [{"entities": entity_records(t, s, sc)} for (t, sc), s in zip(rows, sentences)]

    def records(self, results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(results)

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One record per raw text (the records `bertcli predict` writes)."""
        return self.run(list(zip(texts, pairs if pairs is not None else [None] * len(texts))))


def text_sentence(text: str) -> Sentence:
    """Raw text cut into words the way training on text + spans cuts it."""
    offsets = split_words(text)
    return Sentence([text[s:e] for s, e in offsets], None, 0, text=text, offsets=offsets)
