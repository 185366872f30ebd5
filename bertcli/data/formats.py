"""File formats by suffix or --format, UTF-8 checks, one JSONL line, and file fingerprints (pure Python)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from bertcli.data.text import repair_record
from bertcli.errors import DataError, UsageError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".txt": "txt"}
SUFFIXES = {fmt: suffix for suffix, fmt in reversed(FORMATS.items())}


def detect_format(path: str, explicit: str | None = None) -> str:
    """csv, tsv, jsonl, parquet or txt: --format if given, else the file's suffix."""
    if explicit:
        fmt = explicit.lower().lstrip(".")
        fmt = {"json": "jsonl", "text": "txt"}.get(fmt, fmt)
        if fmt not in SUFFIXES:
            raise UsageError(f"unknown --format {explicit!r}", hint="choose csv, tsv, jsonl, parquet or txt")
        return fmt
    for suffix in reversed([s.lower() for s in Path(path).suffixes]):
        if suffix in FORMATS:
            return FORMATS[suffix]
    raise DataError(
        "cannot tell the file format from its name",
        file=path,
        hint="use a .csv/.tsv/.jsonl/.json/.parquet/.txt suffix or pass --format",
    )


def check_readable(path: str | Path) -> Path:
    """The path as a regular, non-empty file, or the one error that says what it is instead."""
    file = Path(path)
    if not file.exists():
        raise DataError("file not found", file=path)
    if file.is_dir():
        raise DataError("is a directory, expected a data file", file=path)
    if not file.is_file():
        raise DataError(
            "is not a regular file (a device or a pipe)", file=path, hint="pass a data file, or pipe into stdin with -"
        )
    if file.stat().st_size == 0:
        raise DataError("file is empty", file=path)
    return file


def check_utf8(file: Path) -> None:
    """Fail with the line number of the first byte sequence that is not UTF-8."""
    with open(file, "rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"bytes are not valid UTF-8 (at byte {exc.start} of the line)",
                    file=file,
                    line=line_no,
                    hint="re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8",
                ) from None


def json_record(line: str, source: str, line_no: int) -> dict[str, Any]:
    """One JSONL line as a dict, or an error naming its line; a lone surrogate in it becomes U+FFFD (`text`)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg} (char {exc.pos})", file=source, line=line_no) from None
    if not isinstance(record, dict):
        raise DataError("expected a JSON object per line", file=source, line=line_no)
    return repair_record(record, line, source, line_no)


def root_message(exc: BaseException) -> str:
    """The innermost message of a chained exception (libraries wrap the parser's own)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def file_fingerprint(path: str) -> dict[str, Any]:
    """The resolved path and SHA-256 of a file, or of a directory's files and their names (a BEIR directory),
    recorded in bertcli.json (stdin has no fingerprint)."""
    if path == "-":
        return {"file": "<stdin>"}
    root = Path(path)
    files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else [root]
    digest = hashlib.sha256()
    for file in files:
        if root.is_dir():
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda handle=handle: handle.read(1 << 20), b""):
                digest.update(block)
    return {"file": str(root.resolve()), "sha256": digest.hexdigest()}
