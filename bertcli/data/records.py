"""Streamed input records: one dict per input, read as it arrives (`tail -f x | bertcli predict` works)."""

from __future__ import annotations

import csv
import io
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bertcli.config import DataOptions
from bertcli.data.formats import check_utf8, detect_format, json_record
from bertcli.errors import DataError


def chunked(records: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of up to `size` records, read lazily."""
    while chunk := list(itertools.islice(records, size)):
        yield chunk


def iter_records(path: str | None, options: DataOptions) -> Iterator[dict[str, Any]]:
    """Yield input records one at a time without reading ahead.

    txt gives {"text": line} (an empty line gives an empty text, keeping line N in = record N out).
    """
    if path in (None, "-"):
        fmt = detect_format("", options.format or "txt")
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="strict", newline="")
        yield from _iter_stream(stream, fmt, "<stdin>")
        return
    fmt = detect_format(path, options.format)
    if not Path(path).is_file():
        raise DataError("file not found", file=path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
        return
    with open(path, encoding="utf-8", newline="") as stream:
        yield from _iter_stream(stream, fmt, path)


def _iter_stream(stream: io.TextIOBase, fmt: str, source: str) -> Iterator[dict[str, Any]]:
    line_no = 0
    try:
        if fmt in ("csv", "tsv"):
            reader = csv.DictReader(lines(stream), delimiter="\t" if fmt == "tsv" else ",")
            for record in reader:
                line_no = reader.line_num
                yield record
        elif fmt == "jsonl":
            for line_no, line in enumerate(lines(stream), 1):
                yield json_record(line, source, line_no) if line.strip() else {}
        else:
            for line_no, line in enumerate(lines(stream), 1):  # noqa: B007 (the error below names the line)
                yield {"text": line.rstrip("\r\n")}
    except UnicodeDecodeError:
        if source != "<stdin>":
            check_utf8(Path(source))  # the stream decodes blocks ahead of the line: the bytes name the exact line
        raise DataError(
            "bytes are not valid UTF-8", file=source, line=line_no + 1, hint="re-encode the input as UTF-8"
        ) from None


def lines(stream: io.TextIOBase) -> Iterator[str]:
    """Line iterator that hands each line over as soon as it arrives (no read-ahead buffering)."""
    while line := stream.readline():
        yield line
