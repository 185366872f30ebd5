"""Which columns hold the text, the pair text, the label and the id: one resolver for tables and record streams."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bertcli.config import DataOptions
from bertcli.errors import DataError

TEXT_CANDIDATES = (
    "text", "sentence", "review", "content", "document", "comment", "body", "tweet", "utterance",
    "question", "query", "sentence1", "premise", "text_a",
)  # fmt: skip
PAIR_CANDIDATES = {"sentence1": "sentence2", "premise": "hypothesis", "text_a": "text_b", "question": "context"}
LABEL_CANDIDATES = ("label", "labels", "category", "class", "target", "sentiment", "score", "rating", "stars", "y")


@dataclass
class Columns:
    text: str
    pair: str | None = None
    label: str | None = None
    id: str | None = None

    def describe(self) -> str:
        named = (("text", self.text), ("pair", self.pair), ("label", self.label), ("id", self.id))
        return ", ".join(f"{role}={name!r}" for role, name in named if name)


def pick_column(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    """The first well-known name present (case-insensitive)."""
    lowered = {c.lower(): c for c in columns}
    return next((lowered[c] for c in candidates if c in lowered), None)


def resolve_columns(
    names: Sequence[str],
    strings: Sequence[str],
    options: DataOptions,
    source: str,
    need_label: bool = False,
    saved: dict[str, str | None] | None = None,
) -> Columns:
    """Choose the columns: explicit options first, then those a model was trained on (`saved`), then well-known names.

    `strings` are the columns holding text; when no name is known and exactly one other column is text, it is it.
    """
    names = list(names)
    listing = ", ".join(names)
    trained = saved or {}
    saved = {role: name for role, name in trained.items() if name in names}

    def given(column: str | None, flag: str) -> str | None:
        if column is not None and column not in names:
            raise DataError(f"column {column!r} (from {flag}) not found", file=source, hint=f"columns are: {listing}")
        return column

    label = given(options.label_column, "--label-column") or saved.get("label") or pick_column(names, LABEL_CANDIDATES)
    if need_label and label is None:
        raise DataError("no label column found", file=source, hint=f"columns are: {listing}; pass --label-column")
    ident = given(options.id_column, "--id-column")
    text = given(options.text_column, "--text-column") or saved.get("text")
    guessed = text is None
    text = text or pick_column(names, TEXT_CANDIDATES)
    if text is None:
        others = [n for n in strings if n not in (label, ident)]
        if len(others) != 1:
            raise DataError(
                "cannot tell which column holds the text",
                file=source,
                hint=f"columns are: {listing}; pass --text-column",
            )
        text = others[0]
    pair = given(options.text_pair_column, "--text-pair-column") or saved.get("pair")
    # a guessed text column brings its well-known partner, unless the model was trained without one
    if pair is None and guessed and "pair" not in trained and PAIR_CANDIDATES.get(text) in names:
        pair = PAIR_CANDIDATES[text]
    return Columns(text=text, pair=pair, label=label if need_label else None, id=ident)


def record_columns(
    first: dict, options: DataOptions, source: str, need_label: bool = False, saved: dict[str, str | None] | None = None
) -> Columns:
    """`resolve_columns` for a record stream, judged on its first record."""
    return resolve_columns(
        list(first), [k for k, v in first.items() if isinstance(v, str)], options, source, need_label, saved
    )


def cell_text(value: object) -> str:
    """A record's cell as text (a missing cell is empty text)."""
    return "" if value is None else str(value)
