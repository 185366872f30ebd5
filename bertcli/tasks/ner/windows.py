"""Sub-token windows: how NER words meet the model, in training and inference alike.

A sentence longer than max_length is cut into overlapping windows (`stride` sub-tokens shared) on word
boundaries, never truncated, so no gold entity is dropped; each word then takes its prediction from the
window where it has the most context on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bertcli.errors import UsageError
from bertcli.inference.batching import Backend, length_sorted_batches, run_batches
from bertcli.inference.encoding import Encoded, TextEncoder
from bertcli.inference.scores import softmax
from bertcli.training import IGNORE


@dataclass
class Window:
    """Sub-tokens of words [start, end) of one sentence, with [CLS]/[SEP]; word_ids maps positions to words."""

    sentence: int
    start: int
    end: int
    input_ids: list[int]
    word_ids: list[int | None]


def word_ranges(counts: Sequence[int], budget: int, stride: int) -> list[tuple[int, int]]:
    """Word ranges of at most `budget` sub-tokens, each sharing up to `stride` sub-tokens with the one before.

    Windows start and end on word boundaries; a single word longer than the budget gets a window of its own.
    """
    ranges, start, n = [], 0, len(counts)
    while True:
        end, used = start, 0
        while end < n and (end == start or used + counts[end] <= budget):
            used += counts[end]
            end += 1
        ranges.append((start, end))
        if end >= n:
            return ranges
        next_start, overlap = end, 0
        while next_start - 1 > start and overlap + counts[next_start - 1] <= stride:
            next_start -= 1
            overlap += counts[next_start]
        start = next_start


def make_windows(
    encoder: TextEncoder, sentences: Sequence[Sequence[str]], max_length: int, stride: int
) -> list[Window]:
    """Tokenize each sentence once (words kept apart) and cut it into windows of at most max_length."""
    budget = max_length - 2
    live = [i for i, words in enumerate(sentences) if words]
    if not live:
        return []
    cls, sep = encoder.specials.cls, encoder.specials.sep
    windows = []
    for index, (ids, word_ids) in zip(live, encoder.encode_words([sentences[i] for i in live])):
        counts = np.bincount(np.asarray(word_ids, dtype=np.int64), minlength=len(sentences[index]))  # pieces per word
        starts = np.concatenate([[0], np.cumsum(counts)])
        for start, end in word_ranges(counts.tolist(), budget, stride):
            lo, hi = int(starts[start]), int(min(starts[end], starts[start] + budget))
            input_ids = [cls, *ids[lo:hi], sep]
            windows.append(Window(index, start, end, input_ids, [None, *word_ids[lo:hi], None]))
    return windows


def window_labels(window: Window, tag_ids: Sequence[int], inside: dict[int, int] | None) -> list[int]:
    """Targets: each word's tag on its first sub-token; later sub-tokens ignored, or (label_all_tokens) B- made I-."""
    labels, previous = [], None
    for word in window.word_ids:
        if word is None:
            labels.append(IGNORE)
        elif word != previous:
            labels.append(tag_ids[word])
        else:
            labels.append(inside.get(tag_ids[word], tag_ids[word]) if inside is not None else IGNORE)
        previous = word
    return labels


def window_probabilities(backend: Backend, windows: Sequence[Window], pad_id: int, batch_size: int) -> list[np.ndarray]:
    """Softmax over tags for every position of every window, in window order (length-sorted batches inside)."""

    def reduce(out: dict[str, np.ndarray], features: dict[str, np.ndarray]) -> list[np.ndarray]:
        probs = softmax(out["logits"])
        return [row[:n] for row, n in zip(probs, features["attention_mask"].sum(1))]

    encoded = Encoded([w.input_ids for w in windows], None, [False] * len(windows))
    return run_batches(backend, encoded, pad_id, length_sorted_batches(encoded.lengths, batch_size), reduce=reduce)


def word_probabilities(
    windows: Sequence[Window], probs: Sequence[np.ndarray], lengths: Sequence[int], aggregation: str
) -> list[list[np.ndarray | None]]:
    """One tag distribution per word, from the window where the word is farthest from a cut edge.

    Sub-tokens of a word are combined as the token-classification pipeline does: `first` takes the first
    sub-token, `average` the mean distribution, `max` the sub-token with the most confident tag.
    """
    best: list[list[np.ndarray | None]] = [[None] * n for n in lengths]
    margin = [[-1.0] * n for n in lengths]
    for window, p in zip(windows, probs):
        n = lengths[window.sentence]
        position = 1
        while position < len(window.word_ids) - 1:
            word = window.word_ids[position]
            end = position
            while end < len(window.word_ids) and window.word_ids[end] == word:
                end += 1
            left = math.inf if window.start == 0 else word - window.start
            right = math.inf if window.end == n else window.end - 1 - word
            if min(left, right) > margin[window.sentence][word]:
                margin[window.sentence][word] = min(left, right)
                pieces = p[position:end]
                if aggregation == "average":
                    best[window.sentence][word] = pieces.mean(0)
                elif aggregation == "max":
                    best[window.sentence][word] = pieces[pieces.max(1).argmax()]
                else:
                    best[window.sentence][word] = pieces[0]
            position = end
    return best


def decode(
    word_probs: Sequence[Sequence[np.ndarray | None]], labels: Sequence[str]
) -> tuple[list[list[str]], list[list[float]]]:
    """Tags and their probabilities; a word with no sub-token (e.g. a lone control character) is O."""
    tags, scores = [], []
    for sentence in word_probs:
        tags.append([labels[int(p.argmax())] if p is not None else "O" for p in sentence])
        scores.append([float(p.max()) if p is not None else 1.0 for p in sentence])
    return tags, scores


def scheme_of_labels(labels: Sequence[str]) -> str:
    prefixes = {label[0] for label in labels if label != "O"}
    return "BIOES" if prefixes & {"E", "S"} else "IOB2" if "B" in prefixes else "IO"


def check_stride(stride: int | None, max_length: int, default: int | None = None) -> int:
    """The window overlap: given, else saved, else a quarter of the window; must leave room to move on."""
    if stride is not None and not 0 <= stride < max_length - 2:
        raise UsageError(f"--stride must be at least 0 and below max length - 2 ({max_length - 2})")
    if stride is not None:
        return stride
    return default if default is not None and default < max_length - 2 else max_length // 4
