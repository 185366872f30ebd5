"""Entities as character spans of a sentence's text, and the entity-level report (seqeval, default and strict)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bertcli.tasks.ner.schemes import convert, entities
from bertcli.tasks.ner.sentence import Sentence

STRICT_SCHEME = {"IO": "IOB2", "IOB1": "IOB1", "IOB2": "IOB2", "BIOES": "IOBES"}


def entity_report(gold: list[list[str]], predicted: list[list[str]], scheme: str) -> dict[str, Any]:
    """seqeval entity P/R/F1 in default (conlleval) and strict mode, per type, and token accuracy."""
    from bertcli.reports.metrics import ner_report

    default = ner_report(gold, predicted)
    if scheme == "IO":  # seqeval has no IO scheme; the same entities written IOB2 are what strict mode checks
        gold, predicted = [convert(t, "IOB2") for t in gold], [convert(t, "IOB2") for t in predicted]
    strict = ner_report(gold, predicted, mode="strict", scheme=STRICT_SCHEME[scheme])
    return {
        "n": default["n"],
        "precision": default["precision"],
        "recall": default["recall"],
        "f1": default["f1"],
        "accuracy": default["accuracy"],
        "strict_precision": strict["precision"],
        "strict_recall": strict["recall"],
        "strict_f1": strict["f1"],
        "per_type": default["per_type"],
        "strict_per_type": strict["per_type"],
        "strict_scheme": STRICT_SCHEME[scheme],
    }


def entity_records(
    tags: Sequence[str], sentence: Sentence, scores: Sequence[float] | None = None
) -> list[dict[str, Any]]:
    """Entities as {text, label, start, end[, score]} with character offsets into the sentence's text."""
    text, offsets = sentence_text(sentence)
    records = []
    for label, first, end in entities(list(tags)):
        start, stop = offsets[first][0], offsets[end - 1][1]
        record = {"text": text[start:stop], "label": label, "start": start, "end": stop}
        if scores is not None:
            record["score"] = round(float(np.mean(scores[first:end])), 4)
        records.append(record)
    return records


def sentence_text(sentence: Sentence) -> tuple[str, list[tuple[int, int]]]:
    """The raw text when words were cut from it, else the words joined by spaces; with word offsets."""
    if sentence.text is not None and sentence.offsets is not None:
        return sentence.text, sentence.offsets
    offsets, position = [], 0
    for word in sentence.words:
        offsets.append((position, position + len(word)))
        position += len(word) + 1
    return " ".join(sentence.words), offsets
