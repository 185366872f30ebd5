"""A saved token classifier ready for inference: sentences of words in, a tag and a score per word out;
raw texts in, the entity records `bertcli predict` writes out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bertcli.bundle import bundle_dir, model_max_length, read_meta
from bertcli.config import AGGREGATIONS
from bertcli.errors import ModelError, UsageError
from bertcli.inference.loading import open_model
from bertcli.tasks.ner.entities import entity_records
from bertcli.tasks.ner.formats import Sentence, split_words
from bertcli.tasks.ner.windows import (
    check_stride,
    decode,
    make_windows,
    scheme_of_labels,
    window_probabilities,
    word_probabilities,
)


class Tagger:
    def __init__(
        self,
        model_dir: str,
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
        directory = bundle_dir(model_dir)
        self.meta = read_meta(directory)
        if self.meta["task"] != "ner":
            raise ModelError(f"a {self.meta['task']} model, not a token classifier", file=model_dir)
        self.labels = list(self.meta["labels"])
        self.scheme = self.meta.get("scheme") or scheme_of_labels(self.labels)
        cap = model_max_length(directory)
        self.max_length = min(max_length or self.meta.get("max_length") or cap, cap)
        self.stride = check_stride(stride, self.max_length, default=self.meta.get("stride"))
        self.batch_size, self.aggregation = batch_size, aggregation
        self.backend, self.encoder = open_model(
            directory, "token-classification", self.max_length, backend, precision, threads, onnx_file=onnx_file
        )
        if self.encoder.specials.cls is None or self.encoder.specials.sep is None:
            raise ModelError("NER needs a tokenizer with [CLS] and [SEP] tokens", file=model_dir)

    def tag(self, sentences: Sequence[Sequence[str]]) -> tuple[list[list[str]], list[list[float]]]:
        windows = make_windows(self.encoder, sentences, self.max_length, self.stride)
        probs = window_probabilities(self.backend, windows, self.encoder.specials.pad, self.batch_size)
        return decode(word_probabilities(windows, probs, [len(s) for s in sentences], self.aggregation), self.labels)

    def shared_tag(self, sentences: Sequence[Sequence[str]]) -> tuple[list[list[str]], list[list[float]]]:
        """`tag` with the sentences dealt out among a launch's processes; every process gets all tags, in input order."""
        from bertcli.runtime.device import processes
        from bertcli.runtime.distributed import shared_map

        rows = shared_map(processes(), list(sentences), lambda own: list(zip(*self.tag(own))) if own else [])
        return [tags for tags, _ in rows], [scores for _, scores in rows]

    def predict(self, texts: Sequence[str], shared: bool = False) -> list[dict[str, Any]]:
        """One record per raw text: its entities with character offsets and scores."""
        sentences = [text_sentence(text) for text in texts]
        tags, scores = (self.shared_tag if shared else self.tag)([s.words for s in sentences])
        return [{"entities": entity_records(t, s, sc)} for t, s, sc in zip(tags, sentences, scores)]


def text_sentence(text: str) -> Sentence:
    """Raw text cut into words the way training on text + spans cuts it."""
    offsets = split_words(text)
    return Sentence([text[s:e] for s, e in offsets], None, 0, text=text, offsets=offsets)


def load(model_dir: str, **options: Any) -> Tagger:
    """The Python API's entry (`bertcli.load`): the options are the constructor's."""
    return Tagger(model_dir, **options)
