"""Text to token ids through the `tokenizers` library, exactly as a transformers fast tokenizer would encode it.

transformers' fast tokenizers are a `tokenizers.Tokenizer` underneath: a call with `truncation=True` sets
longest-first truncation at max_length and no padding, then encodes with the post-processor's special tokens.
Doing the same on the Tokenizer itself gives identical ids without importing transformers (the ONNX path).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertcli.errors import ModelError

Features = dict[str, np.ndarray]
TOKENIZER_FILE = "tokenizer.json"


@dataclass
class Encoded:
    """Tokenized inputs, unpadded; `truncated` marks inputs cut at max_length."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    truncated: list[bool]
    offsets: list[list[tuple[int, int]]] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    def subset(self, indices: Sequence[int]) -> Encoded:
        """The selected inputs, in the order given."""

        def pick(rows: list | None) -> list | None:
            return None if rows is None else [rows[i] for i in indices]

        return Encoded(
            [self.input_ids[i] for i in indices], pick(self.token_type_ids), [self.truncated[i] for i in indices],
            pick(self.offsets),
        )  # fmt: skip

    def rows(self) -> list[Encoded]:
        """One Encoded per input: what a server queues with each input, so that its forward need not tokenize again."""
        return [self.subset([i]) for i in range(len(self))]


def joined(parts: Sequence[Encoded]) -> Encoded:
    """Several Encoded as one, in order (token types and offsets kept only when every part has them)."""

    def rows(field: str) -> list | None:
        lists = [getattr(part, field) for part in parts]
        return None if any(rows is None for rows in lists) else [row for rows in lists for row in rows]

    return Encoded(rows("input_ids"), rows("token_type_ids"), rows("truncated"), rows("offsets"))


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    cls: int | None
    sep: int | None


class TextEncoder:
    """Texts (and pairs) to ids truncated at `max_length`; words to sub-tokens for NER windows. Thread-safe once built."""

    def __init__(self, tokenizer: Any, specials: SpecialIds, max_length: int) -> None:
        from tokenizers import Tokenizer

        self.specials, self.max_length = specials, max_length
        self.truncating = Tokenizer.from_str(tokenizer.to_str())
        self.truncating.no_padding()
        self.truncating.enable_truncation(max_length, stride=0, strategy="longest_first", direction="right")
        self.whole = Tokenizer.from_str(tokenizer.to_str())
        self.whole.no_padding()
        self.whole.no_truncation()
        self._windowing: dict[tuple[int, bool], Any] = {}

    @classmethod
    def of(cls, tokenizer: Any, max_length: int) -> TextEncoder:
        """From a loaded transformers tokenizer (its backend `tokenizers.Tokenizer`)."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ModelError(f"{type(tokenizer).__name__} is not a fast tokenizer; bertcli needs a tokenizer.json")
        specials = SpecialIds(tokenizer.pad_token_id or 0, tokenizer.cls_token_id, tokenizer.sep_token_id)
        return cls(backend, specials, max_length)

    @classmethod
    def load(cls, directory: str | Path, max_length: int) -> TextEncoder:
        """From a model directory's tokenizer.json and the special tokens its tokenizer config names (no transformers)."""
        from tokenizers import Tokenizer

        path = Path(directory) / TOKENIZER_FILE
        if not path.is_file():
            raise ModelError("no tokenizer.json (a fast tokenizer) in the model directory", file=directory)
        tokenizer = Tokenizer.from_file(str(path))
        names = _special_token_names(Path(directory))

        def token_id(role: str) -> int | None:
            return tokenizer.token_to_id(names[role]) if names.get(role) else None

        return cls(tokenizer, SpecialIds(token_id("pad") or 0, token_id("cls"), token_id("sep")), max_length)

    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None, offsets: bool = False) -> Encoded:
        inputs = list(zip(texts, pairs)) if pairs is not None else list(texts)
        encodings = self.truncating.encode_batch(inputs, add_special_tokens=True)
        return Encoded(
            input_ids=[e.ids for e in encodings],
            token_type_ids=[e.type_ids for e in encodings],
            truncated=[bool(e.overflowing) for e in encodings],
            offsets=[e.offsets for e in encodings] if offsets else None,
        )

    def windows(self, texts: Sequence[str], pairs: Sequence[str] | None, stride: int) -> tuple[Encoded, list[int]]:
        """Every input as overlapping windows of max_length with `stride` tokens shared and special tokens on each,
        and the input each window comes from. With pairs the second text is windowed and the first kept whole;
        a pair whose first text leaves the second no more than `stride` tokens is cut instead (flagged when it was)."""
        inputs = list(zip(texts, pairs)) if pairs is not None else list(texts)
        windowed = list(range(len(inputs)))
        if pairs is not None:  # tokenizers panics (uncatchably) when a window has no room beyond the stride
            windowed = [i for i, room in enumerate(self.room(texts)) if room > stride]
        kept = set(windowed)
        cut = [i for i in range(len(inputs)) if i not in kept]
        truncated = [False] * len(inputs)
        parts: dict[int, list[Any]] = {}
        if windowed:
            cutter = self._windower(stride, pairs is not None)
            for i, encoding in zip(
                windowed, cutter.encode_batch([inputs[i] for i in windowed], add_special_tokens=True)
            ):
                parts[i] = [encoding, *encoding.overflowing]
        for i, encoding in zip(cut, self.truncating.encode_batch([inputs[i] for i in cut], add_special_tokens=True)):
            parts[i], truncated[i] = [encoding], bool(encoding.overflowing)
        ids, types, source = [], [], []
        for index in range(len(inputs)):
            ids += [e.ids for e in parts[index]]
            types += [e.type_ids for e in parts[index]]
            source += [index] * len(parts[index])
        return Encoded(ids, types, truncated), source

    def room(self, firsts: Sequence[str]) -> list[int]:
        """Tokens a pair's second text gets beside each first text (kept whole), special tokens counted."""
        specials = self.whole.num_special_tokens_to_add(True)  # BERT: 3, RoBERTa/XLM-R: 4
        return [
            self.max_length - specials - len(e.ids)
            for e in self.whole.encode_batch(list(firsts), add_special_tokens=False)
        ]

    def _windower(self, stride: int, pairs: bool) -> Any:
        from tokenizers import Tokenizer

        key = (stride, pairs)
        if key not in self._windowing:
            cutter = Tokenizer.from_str(self.whole.to_str())
            cutter.enable_truncation(
                self.max_length, stride=stride, strategy="only_second" if pairs else "longest_first"
            )
            self._windowing[key] = cutter
        return self._windowing[key]

    def lengths(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[int]:
        """The inputs' real lengths in tokens (special tokens included), before any truncation."""
        inputs = list(zip(texts, pairs)) if pairs is not None else list(texts)
        return [len(e.ids) for e in self.whole.encode_batch(inputs, add_special_tokens=True)]

    def encode_words(self, sentences: Sequence[Sequence[str]]) -> list[tuple[list[int], list[int]]]:
        """Each sentence's sub-token ids and the word each comes from, without special tokens or truncation."""
        encodings = self.whole.encode_batch(
            [list(words) for words in sentences], is_pretokenized=True, add_special_tokens=False
        )
        return [(e.ids, e.word_ids) for e in encodings]

    def encodings(self, texts: Sequence[str], add_special_tokens: bool = True) -> list[Any]:
        """The full `tokenizers` encodings (tokens, offsets, special-token mask), without truncation."""
        return self.whole.encode_batch(list(texts), add_special_tokens=add_special_tokens)

    def tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.whole.id_to_token(i) for i in ids]


LENGTH_STEP = 32  # suggested max lengths are multiples of this (friendly to matrix kernels)


def percentiles(lengths: Sequence[int], quantiles: Sequence[int] = (50, 90, 95, 99)) -> dict[str, int]:
    """Nearest-rank percentiles of token lengths: p90 is the length 90% of inputs do not exceed."""
    values = np.asarray(lengths)
    return {f"p{q}": int(np.percentile(values, q, method="inverted_cdf")) for q in quantiles}


def suggest_max_length(p99: int, limit: int) -> int:
    """The smallest multiple of 32 that keeps 99% of inputs whole, within `limit`."""
    return int(min(limit, max(LENGTH_STEP, -(-p99 // LENGTH_STEP) * LENGTH_STEP)))


def _special_token_names(directory: Path) -> dict[str, str]:
    """pad/cls/sep token strings from tokenizer_config.json, else special_tokens_map.json (strings or AddedToken dicts)."""
    names: dict[str, str] = {}
    for file in ("special_tokens_map.json", "tokenizer_config.json"):
        path = directory / file
        if path.is_file():
            config = json.loads(path.read_text(encoding="utf-8"))
            for role in ("pad", "cls", "sep"):
                value = config.get(f"{role}_token")
                value = value.get("content") if isinstance(value, dict) else value
                if isinstance(value, str):
                    names[role] = value
    return names


def pad(encoded: Encoded, indices: Sequence[int], pad_id: int) -> Features:
    """Pad the selected examples to the longest among them (dynamic padding)."""
    width = max(len(encoded.input_ids[i]) for i in indices)
    input_ids = np.full((len(indices), width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(indices), width), dtype=np.int64)
    token_type_ids = np.zeros((len(indices), width), dtype=np.int64)
    for row, i in enumerate(indices):
        ids = encoded.input_ids[i]
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
        if encoded.token_type_ids is not None:
            token_type_ids[row, : len(ids)] = encoded.token_type_ids[i]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
