"""NER input: CoNLL/IOB files, JSONL tokens+tags, JSONL text+character spans; tagging schemes.

Every reader yields `Sentence`s (words, tags, and where they came from), so finetune, evaluate and
predict see one shape whatever the file, and a bad tag is reported with the line it is on; the tags
are checked against their scheme (`schemes`). Pure Python: the task registry reads it to route finetune.
"""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertcli.data.formats import check_utf8, json_record
from bertcli.errors import DataError
from bertcli.tasks.ner.schemes import detect_scheme, normalize_scheme, validate_scheme
from bertcli.tasks.ner.sentence import Sentence

CONLL_SUFFIXES = (".conll", ".iob", ".bio", ".iob1", ".iob2", ".bioes")
SPAN_KEYS = ("entities", "spans", "label", "labels")
_FORMAT_NAMES = {"conll": "conll", "iob": "conll", "bio": "conll", "jsonl": "jsonl", "json": "jsonl"}
_TAG = re.compile(r"^(O|[BIESLU]-\S.*)$")
# a word is a run of letters/digits (with combining marks), or one other visible character together with
# the emoji modifiers, variation selectors and zero-width-joined characters that belong to it
_WORD = re.compile(
    r"[\w\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+"
    r"|[^\w\s](?:[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]|\u200d[^\w\s])*"
)


@dataclass
class Corpus:
    sentences: list[Sentence]
    source: str
    format: str
    scheme: str


# --- format detection --------------------------------------------------------------------------------


def format_name(explicit: str | None) -> str | None:
    """--format as an NER reader name ('conll' or 'jsonl'), or None when it names neither."""
    return _FORMAT_NAMES.get((explicit or "").lower().lstrip("."))


def ner_format(path: str | None, explicit: str | None = None) -> str | None:
    """'conll' or 'jsonl' when the input holds NER data, else None (a file is peeked at, never read whole)."""
    if format_name(explicit) == "conll":
        return "conll"
    if path in (None, "-"):
        return None
    suffix = (explicit and "." + explicit.lower().lstrip(".")) or Path(path).suffix.lower()
    if suffix in CONLL_SUFFIXES:
        return "conll"
    if not Path(path).is_file():
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            head = [line for _, line in zip(range(200), handle)]
    except (OSError, UnicodeDecodeError):
        return None
    if suffix in (".txt", ".tsv"):
        return "conll" if _looks_like_conll(head) else None
    if suffix in (".jsonl", ".json"):
        first = next((line for line in head if line.strip()), "")
        try:
            record = json.loads(first)
        except json.JSONDecodeError:
            return None
        return "jsonl" if isinstance(record, dict) and _is_ner_record(record) else None
    return None


def _looks_like_conll(lines: list[str]) -> bool:
    rows = [_columns(line.rstrip("\r\n")) for line in lines if line.strip() and not line.startswith("-DOCSTART-")]
    return bool(rows) and all(len(columns) > 1 and _TAG.match(columns[-1]) for columns in rows)


def _is_ner_record(record: dict[str, Any]) -> bool:
    if isinstance(record.get("tokens"), list) and ("tags" in record or "ner_tags" in record):
        return True
    spans = next((record[k] for k in SPAN_KEYS if isinstance(record.get(k), list)), None)
    if not isinstance(record.get("text"), str) or spans is None:
        return False
    # "labels": [] could be a multi-label row; only named entity keys or actual span items say NER
    return ("entities" in record or "spans" in record or bool(spans)) and all(
        isinstance(s, (dict, list)) for s in spans
    )


# --- readers ---------------------------------------------------------------------------------------------


def read_corpus(path: str, fmt: str | None = None, scheme: str | None = None) -> Corpus:
    """Read a whole labelled file (or stdin) and check its tags against the scheme (given or detected)."""
    if path == "-":
        source, text = "<stdin>", _decode(sys.stdin.buffer.read())
        fmt = fmt or ("jsonl" if text.lstrip().startswith("{") else "conll")
        sentences = list(_guarded(io.StringIO(text), fmt, source, need_tags=True))
    else:
        if not Path(path).is_file():
            raise DataError("file not found", file=path)
        source = path
        fmt = fmt or ner_format(path) or ("jsonl" if path.endswith((".jsonl", ".json")) else "conll")
        sentences = list(iter_sentences(path, fmt, need_tags=True))
    if not sentences:
        raise DataError(
            "no sentences found", file=source, hint="CoNLL: one 'token<TAB>tag' per line, blank lines between sentences"
        )
    resolved = normalize_scheme(scheme) if scheme else detect_scheme(sentences)
    validate_scheme(sentences, resolved, source)
    return Corpus(sentences, source, fmt, resolved)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            "bytes are not valid UTF-8", file="<stdin>", line=line, hint="re-encode the input as UTF-8"
        ) from None


def iter_sentences(path: str | None, fmt: str, need_tags: bool) -> Iterator[Sentence]:
    """Stream sentences from a file or stdin ('-'/None) without reading ahead (predict answers as lines come).

    need_tags=False (CoNLL for predict) also takes lines with a token alone; JSONL always needs tags.
    """
    if path in (None, "-"):
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="strict", newline="")
        yield from _guarded(stream, fmt, "<stdin>", need_tags)
        return
    with open(path, encoding="utf-8", newline="") as stream:
        yield from _guarded(stream, fmt, path, need_tags)


def _guarded(stream: io.TextIOBase, fmt: str, source: str, need_tags: bool) -> Iterator[Sentence]:
    numbered = _Numbered(stream)
    try:
        yield from _conll(numbered, source, need_tags) if fmt == "conll" else _jsonl(numbered, source)
    except UnicodeDecodeError:
        if source != "<stdin>":
            check_utf8(Path(source))  # the stream decodes blocks ahead of the line: the bytes name the exact line
        raise DataError(
            "bytes are not valid UTF-8", file=source, line=numbered.line + 1, hint="re-encode the input as UTF-8"
        ) from None


class _Numbered:
    """Line iterator that hands each line over as soon as it arrives and knows its line number."""

    def __init__(self, stream: io.TextIOBase) -> None:
        self.stream, self.line = stream, 0

    def __iter__(self) -> Iterator[tuple[int, str]]:
        while line := self.stream.readline():
            self.line += 1
            yield self.line, line.rstrip("\r\n")


def _columns(row: str) -> list[str]:
    return [c.strip() for c in row.split("\t")] if "\t" in row else row.split()


def _conll(lines: Iterable[tuple[int, str]], source: str, need_tags: bool) -> Iterator[Sentence]:
    rows: list[list[str]] = []
    start = 0
    for line_no, row in lines:
        columns = _columns(row) if row.strip() else []
        if not columns or columns[0] == "-DOCSTART-":
            if rows:
                yield _conll_sentence(rows, start, source, need_tags)
            rows = []
            continue
        if not rows:
            start = line_no
        if need_tags and len(columns) < 2:
            raise DataError("expected a token and a tag (tab or space separated)", file=source, line=line_no)
        rows.append(columns)
    if rows:
        yield _conll_sentence(rows, start, source, need_tags)


def _conll_sentence(rows: list[list[str]], start: int, source: str, need_tags: bool) -> Sentence:
    tags = [_tag(r[-1], source, start + i) for i, r in enumerate(rows)] if need_tags else None
    return Sentence([r[0] for r in rows], tags, start, per_word_lines=True, columns=rows)


def _tag(value: Any, source: str, line: int) -> str:
    if not isinstance(value, str):
        raise DataError(
            f"tag {value!r} is not a string", file=source, line=line, hint="tags are names such as B-PER, not numbers"
        )
    tag = value.strip()
    if not _TAG.match(tag):
        raise DataError(
            f"tag {tag!r} is not O or PREFIX-TYPE",
            file=source,
            line=line,
            hint="use tags such as O, B-PER, I-PER (IO: I-PER)",
        )
    if tag[0] in "LU":
        tag = ("E" if tag[0] == "L" else "S") + tag[1:]
    return tag


def _jsonl(lines: Iterable[tuple[int, str]], source: str) -> Iterator[Sentence]:
    for line_no, row in lines:
        if not row.strip():
            continue
        yield parse_record(json_record(row, source, line_no), source, line_no)


def parse_record(record: dict[str, Any], source: str, line: int) -> Sentence:
    """One JSONL record: {"tokens", "tags"|"ner_tags"} or {"text", "entities": [[start, end, label], ...]}."""
    if isinstance(record.get("tokens"), list):
        words, tags = record["tokens"], record.get("tags", record.get("ner_tags"))
        if not words:
            raise DataError("empty sentence (no tokens)", file=source, line=line)
        for word in words:
            if not isinstance(word, str) or not word.strip():
                raise DataError(f"empty or non-text token {word!r}", file=source, line=line)
        if not isinstance(tags, list) or len(tags) != len(words):
            count = len(tags) if isinstance(tags, list) else "no list of"
            raise DataError(
                f"{len(words)} tokens but {count} tags", file=source, line=line, hint="give one tag per token"
            )
        return Sentence(list(words), [_tag(t, source, line) for t in tags], line)
    text = record.get("text")
    if not isinstance(text, str):
        raise DataError(
            "record has neither 'tokens' nor 'text'", file=source, line=line, hint=f"keys are: {', '.join(record)}"
        )
    if not text.strip():
        raise DataError("empty sentence (blank text)", file=source, line=line)
    key = next((k for k in SPAN_KEYS if isinstance(record.get(k), list)), None)
    if key is None:
        raise DataError(
            "record has text but no entities", file=source, line=line, hint='add "entities": [[start, end, label], ...]'
        )
    return sentence_from_spans(text, [_span(item, text, source, line) for item in record[key]], source, line)


def _span(item: Any, text: str, source: str, line: int) -> tuple[int, int, str]:
    if isinstance(item, dict):
        start, end, label = item.get("start"), item.get("end"), item.get("label", item.get("type"))
    elif isinstance(item, list) and len(item) == 3:
        start, end, label = item
    else:
        raise DataError(f"entity {item!r} is not [start, end, label] or {{start, end, label}}", file=source, line=line)
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
        raise DataError(
            f"entity offsets {start}..{end} are not inside the text (length {len(text)})", file=source, line=line
        )
    if not isinstance(label, str) or not label.strip() or any(c.isspace() for c in label):
        raise DataError(f"entity label {label!r} must be a name without spaces", file=source, line=line)
    return start, end, label


def sentence_from_spans(text: str, spans: list[tuple[int, int, str]], source: str, line: int) -> Sentence:
    """Cut raw text into words (also at every entity edge, so offsets survive exactly) and tag them IOB2."""
    spans = sorted(spans)
    for (s1, e1, l1), (s2, e2, l2) in zip(spans, spans[1:]):
        if s2 < e1:
            raise DataError(
                f"entities {l1} {s1}..{e1} and {l2} {s2}..{e2} overlap",
                file=source,
                line=line,
                hint="nested or overlapping entities cannot be tagged; keep one of them",
            )
    edges = sorted({p for s, e, _ in spans for p in (s, e)})
    offsets = [piece for word in split_words(text) for piece in _cut(word, edges)]
    tags = ["O"] * len(offsets)
    for start, end, label in spans:
        inside = [i for i, (s, e) in enumerate(offsets) if s >= start and e <= end]
        if not inside:
            raise DataError(
                f"entity {label} {start}..{end} covers no word ({text[start:end]!r})", file=source, line=line
            )
        tags[inside[0]] = f"B-{label}"
        for i in inside[1:]:
            tags[i] = f"I-{label}"
    return Sentence([text[s:e] for s, e in offsets], tags, line, text=text, offsets=offsets)


def _cut(word: tuple[int, int], edges: list[int]) -> list[tuple[int, int]]:
    start, end = word
    cuts = [start, *(p for p in edges if start < p < end), end]
    return list(zip(cuts, cuts[1:]))


def split_words(text: str) -> list[tuple[int, int]]:
    """Character offsets of the words of raw text: letter/digit runs and single symbols (emoji kept whole).

    Training on text+spans and predicting on raw text both cut words here, so they agree.
    """
    return [m.span() for m in _WORD.finditer(text)]
