"""One tagged (or to-be-tagged) sentence: what the readers make and the schemes, windows and entities work on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Sentence:
    """One example: words and (when given) their tags.

    `line` is the 1-based line of the first word (CoNLL: word i is on line + i) or of the JSONL record.
    `text`/`offsets` are set when words were cut from raw text; `columns` keeps a CoNLL line's cells for predict.
    """

    words: list[str]
    tags: list[str] | None
    line: int
    per_word_lines: bool = False
    text: str | None = None
    offsets: list[tuple[int, int]] | None = None
    columns: list[list[str]] | None = None

    def line_of(self, index: int) -> int:
        return self.line + index if self.per_word_lines else self.line
