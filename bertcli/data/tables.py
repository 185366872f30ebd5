"""Whole labelled tables for training and evaluation: a path or '-' becomes an Arrow-backed `datasets.Dataset`."""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bertcli.config import DataOptions
from bertcli.data.columns import Columns, resolve_columns
from bertcli.data.formats import SUFFIXES, check_readable, check_utf8, detect_format, json_record, root_message
from bertcli.data.text import SURROGATE_ESCAPE, spells_surrogate
from bertcli.errors import DataError

if TYPE_CHECKING:
    import datasets

_BUILDERS = {
    "csv": ("csv", {}),
    "tsv": ("csv", {"sep": "\t", "quoting": csv.QUOTE_NONE}),
    "jsonl": ("json", {}),
    "parquet": ("parquet", {}),
    "txt": ("text", {"keep_linebreaks": False}),
}


@dataclass
class Table:
    """A loaded input: the Arrow-backed dataset plus where it came from, for error messages."""

    dataset: datasets.Dataset
    source: str
    format: str

    def line_of(self, row: int) -> int | None:
        """1-based line in the source file of 0-based data row `row`, for line-oriented formats."""
        if self.format in ("csv", "tsv"):
            return row + 2  # header line first; exact unless quoted cells span lines
        if self.format in ("jsonl", "txt"):
            return row + 1
        return None

    def error(
        self, message: str, row: int | None = None, column: str | None = None, hint: str | None = None
    ) -> DataError:
        line = None if row is None else self.line_of(row)
        row_number = (row + 1) if row is not None and line is None else None
        return DataError(message, file=self.source, line=line, row=row_number, column=column, hint=hint)

    def columns(self, options: DataOptions, need_label: bool, saved: dict[str, str | None] | None = None) -> Columns:
        features = self.dataset.features
        strings = [
            n for n in self.dataset.column_names if getattr(features[n], "dtype", "") in ("string", "large_string")
        ]
        return resolve_columns(self.dataset.column_names, strings, options, self.source, need_label, saved)

    def texts(self, columns: Columns) -> tuple[list[str], list[str] | None]:
        """The text (and pair) column, checked: every example needs non-empty text."""
        found = []
        for column in filter(None, (columns.text, columns.pair)):
            values = self.dataset[column]
            for row, value in enumerate(values):
                if value is None or (isinstance(value, str) and not value.strip()):
                    raise self.error("empty text", row=row, column=column, hint="remove the row or fill it in")
                if not isinstance(value, str):
                    raise self.error(f"expected text, found {type(value).__name__}", row=row, column=column)
            found.append(values)
        return found[0], found[1] if columns.pair else None


def load_table(path: str, options: DataOptions | None = None) -> Table:
    """Read a whole file (or all of stdin for '-') into an Arrow-backed Dataset."""
    options = options or DataOptions()
    if path == "-":
        return _load_stdin(options)
    fmt = detect_format(path, options.format)
    file = check_readable(path)
    if fmt != "parquet":
        check_utf8(file)
    if fmt in ("csv", "tsv"):
        _check_has_rows(file)
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    builder, kwargs = _BUILDERS[fmt]
    repaired = _repaired_jsonl(file, path) if fmt == "jsonl" else None
    try:
        ds = datasets.load_dataset(builder, data_files=str((repaired or file).resolve()), split="train", **kwargs)
    except Exception as exc:  # datasets wraps the parser's error: find the line, or show the innermost message
        if fmt == "jsonl":
            _raise_bad_json_line(file, path)
        raise DataError(f"cannot parse as {fmt}: {root_message(exc)}", file=path) from None
    finally:
        if repaired is not None:
            os.unlink(repaired)
    if len(ds) == 0:
        raise DataError("file has no rows", file=path)
    return Table(ds, path, fmt)


def _check_has_rows(file: Path) -> None:
    with open(file, encoding="utf-8") as handle:
        filled = [line for line in (handle.readline(), handle.readline()) if line.strip()]
    if len(filled) < 2:
        raise DataError("the file has a header line but no rows", file=file, hint="add rows below the header")


def _repaired_jsonl(file: Path, source: str) -> Path | None:
    """A temporary copy of a JSONL file whose lone surrogates are U+FFFD (`bertcli.data.text`; Arrow's JSON reader
    refuses the whole file over one), or None when the file spells no surrogate (one scan, nothing copied)."""
    if not spells_surrogate(file):
        return None
    with (
        open(file, encoding="utf-8") as lines,
        tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as out,
    ):
        for line_no, line in enumerate(lines, 1):
            if SURROGATE_ESCAPE.search(line):
                line = json.dumps(json_record(line, source, line_no), ensure_ascii=False) + "\n"
            out.write(line)
    return Path(out.name)


def _raise_bad_json_line(file: Path, path: str) -> None:
    """Re-read a JSONL file that the Arrow parser refused, to name the line that is not a JSON object."""
    with open(file, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if line.strip():
                json_record(line, path, line_no)


def _load_stdin(options: DataOptions) -> Table:
    """Buffer piped input to a temp file so it gets the same Arrow loading path as files."""
    data = sys.stdin.buffer.read()
    if not data.strip():
        raise DataError("standard input is empty", file="<stdin>")
    fmt = detect_format("", options.format or ("jsonl" if data.lstrip()[:1] == b"{" else "txt"))
    with tempfile.NamedTemporaryFile(suffix=SUFFIXES[fmt], delete=False) as tmp:
        tmp.write(data)
    try:
        table = load_table(tmp.name, DataOptions(**{**options.__dict__, "format": fmt}))
        table.dataset = table.dataset.flatten_indices(keep_in_memory=True)
    except DataError as exc:
        exc.file = "<stdin>"
        raise
    finally:
        os.unlink(tmp.name)
    return Table(table.dataset, "<stdin>", table.format)
