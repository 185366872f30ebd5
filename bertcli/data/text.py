"""Text the tokenizer can encode: the one place where lone surrogates are replaced, for every reader and route.

JSON may spell one half of a UTF-16 surrogate pair on its own (`"\\ud83d"`: an emoji cut in two by an export that
truncates at a byte or code-unit limit). Python decodes it to a code point that has no UTF-8 form, and the
tokenizer then refuses the whole batch it is in. bertcli replaces each such code point with U+FFFD (the
replacement character, as any UTF-8 decoder does with a broken sequence) and warns once per file, naming the file
and line of the first: half an emoji carries no meaning the model could use, and refusing would cost the user the
predictions for every other line of an export that has a few of them. A server applies the same rule to request
bodies. Bytes that are not UTF-8 at all are a different fault (the file's encoding is wrong, so every line would be
garbled) and stay refused with the line they are on.
"""

from __future__ import annotations

import logging
import mmap
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("bertcli")
# the JSON escape of a surrogate (\ud800-\udfff): the only way one reaches a str from a UTF-8 file
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_warned: set[str] = set()  # sources already warned about in this process: one warning per file, not per line


def spells_surrogate(file: Path) -> bool:
    """Whether a JSONL file spells a surrogate anywhere (one scan of its bytes; Arrow's JSON reader refuses a lone one
    in the whole file, so the readers that use it repair such a file line by line first)."""
    with open(file, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return SURROGATE_ESCAPE_BYTES.search(data) is not None


def repair(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (a split pair that is whole again becomes its character)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def repair_value(value: Any) -> Any:
    """A decoded JSON value with every string in it repaired."""
    if isinstance(value, str):
        return repair(value)
    if isinstance(value, list):
        return [repair_value(item) for item in value]
    if isinstance(value, dict):
        return {key: repair_value(item) for key, item in value.items()}
    return value


def repair_record(record: Any, line: str, source: str, line_no: int) -> Any:
    """A JSON line's decoded value, repaired when the raw line spells a surrogate; warns once per source."""
    if not SURROGATE_ESCAPE.search(line):
        return record
    repaired = repair_value(record)
    if repaired != record and source not in _warned:
        _warned.add(source)
        log.warning(
            "%s:%d: a lone UTF-16 surrogate (half of an emoji or other pair) was replaced with U+FFFD; "
            "later ones in this input are replaced without a warning",
            source,
            line_no,
        )
    return repaired


def repair_inputs(texts: list[Any], route: str) -> list[Any]:
    """A request's texts (or [text, pair] pairs), repaired; the first repair in this process is logged once."""
    repaired = [repair_value(text) for text in texts]
    changed = [i for i, (old, new) in enumerate(zip(texts, repaired)) if old != new]
    if changed and route not in _warned:
        _warned.add(route)
        log.warning(
            "%s: input %d held a lone UTF-16 surrogate, answered with U+FFFD in its place "
            "(later ones are replaced without a warning)",
            route,
            changed[0],
        )
    return repaired
