"""Writers: stdout vs files, and atomic writes so a killed run never leaves output that looks complete."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import struct
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Write to a temp file beside `path` and rename it into place only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, data: Any) -> None:
    with atomic_write(path) as handle:
        json.dump(data, handle, indent=2, default=_json_default)
        handle.write("\n")


def replace_dir(staging: Path, target: Path) -> None:
    """Move a fully written `staging` directory to `target`, replacing an older one.

    The old directory is first renamed aside, so at every moment `target` is either the old
    complete result or the new complete result. Every file is synced to disk before the rename, and the parent
    after it: a power loss right after the rename cannot leave a complete-looking directory of empty files.
    """
    target = Path(target)
    _sync_tree(Path(staging))
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(staging, target)
    _sync_path(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _sync_tree(directory: Path) -> None:
    for root, _, files in os.walk(directory):
        for name in files:
            _sync_path(Path(root) / name)
        _sync_path(Path(root))


def _sync_path(path: Path) -> None:
    """fsync a file or a directory (a directory's entries are what a rename changes)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ids_path(output: str | Path) -> Path:
    """The sidecar beside a .npy file: row i of the array has the id on line i."""
    output = Path(output)
    return output.with_name(output.stem + ".ids.txt")


NPY_HEADER = 128  # bytes reserved for the .npy header, filled in once the row count is known


def npy_header(rows: int, dim: int, dtype: Any) -> bytes:
    """A version 1.0 .npy header padded to exactly NPY_HEADER bytes, so it can be written over the placeholder."""
    import numpy as np

    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (rows, dim)})
    body = text.ljust(NPY_HEADER - 10 - 1) + "\n"
    return np.lib.format.magic(1, 0) + struct.pack("<H", len(body)) + body.encode("latin1")


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=_json_default)


@dataclass
class Prediction:
    """What a task's predict gives the command: the output format and chunks to write as they are ready.

    A chunk is a list of records (jsonl, csv, tsv) or ready text (conll); an empty chunk is a process's
    share of a multi-process launch that only the main process writes.
    """

    format: str
    chunks: Iterator[list[dict[str, Any]] | str]


class RecordWriter:
    """Writes prediction records as JSONL, CSV or TSV to stdout or a file, flushing per batch.

    A file output is written to a temp name and renamed on `close()`, so an interrupted run
    leaves no file that looks complete; stdout is flushed after every batch for streaming.
    """

    def __init__(self, output: str | None, fmt: str = "jsonl") -> None:
        self.fmt = fmt
        self._csv: csv.DictWriter | None = None
        self._atomic = None
        if output in (None, "-"):
            self.handle: IO[str] = sys.stdout
        else:
            self._atomic = atomic_write(output)
            self.handle = self._atomic.__enter__()

    def write(self, records: list[dict[str, Any]] | str) -> None:
        if isinstance(records, str):
            self.handle.write(records)
        elif self.fmt == "jsonl":
            self.handle.write("".join(dumps(r) + "\n" for r in records))
        else:
            rows = [{k: _cell(v) for k, v in r.items()} for r in records]
            if self._csv is None and rows:
                self._csv = csv.DictWriter(
                    self.handle,
                    fieldnames=list(rows[0]),
                    delimiter="\t" if self.fmt == "tsv" else ",",
                    extrasaction="ignore",
                    lineterminator="\n",
                )
                self._csv.writeheader()
            if self._csv is not None:
                self._csv.writerows(rows)
        self.handle.flush()

    def close(self, ok: bool = True) -> None:
        if self._atomic is not None:
            exc = (None, None, None) if ok else (RuntimeError, RuntimeError("aborted"), None)
            with contextlib.suppress(RuntimeError):
                self._atomic.__exit__(*exc)
            self._atomic = None

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else value
