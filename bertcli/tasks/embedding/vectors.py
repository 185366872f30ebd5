"""Resumable, atomic vector writers for `bertcli embed`: .npy (+ ids sidecar), .parquet and .jsonl.

Each writer appends one chunk at a time to `OUTPUT.partial` and, after the chunk is on disk, records
how many inputs it holds in `OUTPUT.partial.json`. A killed run therefore leaves only `.partial` files
(nothing that looks complete), and `--resume` truncates them to the last recorded chunk and goes on.
The final name appears only when the whole input is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import IO, Any

import numpy as np

from bertcli.errors import DataError, UsageError
from bertcli.io import NPY_HEADER, ids_path, npy_header, write_json

FORMATS = {".npy": "npy", ".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}


def output_format(output: str, explicit: str | None, token_level: bool) -> str:
    """npy, parquet or jsonl: --output-format, else the suffix of -o; stdout ('-') is JSONL."""
    if explicit is not None:
        fmt = explicit.lower().lstrip(".")
        if fmt not in set(FORMATS.values()):
            raise UsageError(f"unknown --output-format {explicit!r}", hint="choose npy, parquet or jsonl")
    elif output == "-":
        fmt = "jsonl"
    else:
        fmt = FORMATS.get(Path(output).suffix.lower())
        if fmt is None:
            raise UsageError(
                "cannot tell the output format from the -o name",
                file=output,
                hint="use .npy, .parquet or .jsonl, or pass --output-format",
            )
    if output == "-" and fmt != "jsonl":
        raise UsageError("stdout (-o -) takes JSONL only", hint="write .npy or .parquet to a file")
    if token_level and fmt == "npy":
        raise UsageError("--token-level writes .parquet or .jsonl (token vectors are ragged, one list per input)")
    return fmt


def _json_floats(values: np.ndarray) -> str:
    """Shortest text that reads back to the same float32/float16 values."""
    if values.ndim == 1:
        return "[" + ",".join(f"{v:.9g}" for v in values.tolist()) + "]"
    return "[" + ",".join(_json_floats(row) for row in values) + "]"


class VectorWriter:
    """Base: the `.partial` bookkeeping shared by every format (stdout has none and cannot resume)."""

    def __init__(self, output: str, fingerprint: dict[str, Any], dtype: str, resume: bool) -> None:
        self.output = Path(output) if output != "-" else None
        self.fingerprint = fingerprint
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self.state: dict[str, Any] = {}
        if self.output is None:
            if resume:
                raise UsageError("--resume needs an output file, not stdout")
            self._create()
            return
        self.partial = self.output.with_name(self.output.name + ".partial")
        self.progress = self.output.with_name(self.output.name + ".partial.json")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        saved = self._saved_progress() if resume else None
        if saved is None:
            self.discard()
            self._create()
        else:
            self.rows, self.state = saved["rows"], saved["state"]
            self._reopen()

    def _saved_progress(self) -> dict[str, Any] | None:
        if not self.progress.is_file() or not all(p.exists() for p in (self.partial, *self._sidecars())):
            return None
        saved = json.loads(self.progress.read_text(encoding="utf-8"))
        if saved.get("fingerprint") != self.fingerprint:
            changed = sorted(k for k in self.fingerprint if saved.get("fingerprint", {}).get(k) != self.fingerprint[k])
            raise UsageError(
                f"the partial export was made with other settings ({', '.join(changed)})",
                file=self.partial,
                hint="rerun with the same options, or without --resume to start over",
            )
        return saved

    def discard(self) -> None:
        """Remove every partial file (a fresh start, or a failure before anything worth resuming was written)."""
        if self.output is None:
            return
        if self.partial.is_dir():
            shutil.rmtree(self.partial)
        for path in (self.partial, *self._sidecars(), self.progress):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _sidecars(self) -> list[Path]:
        return []

    def _checkpoint(self, added: int) -> None:
        self.rows += added
        if self.output is not None:
            write_json(self.progress, {"fingerprint": self.fingerprint, "rows": self.rows, "state": self.state})

    def finish(self) -> None:
        """Move the complete output into place; the progress record is removed only after that."""
        self._finalize()
        if self.output is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.progress)

    # per format
    def _create(self) -> None: ...
    def _reopen(self) -> None: ...
    def append(self, records: list[dict[str, Any]], vectors: Any) -> None: ...
    def _finalize(self) -> None: ...
    def close(self) -> None: ...


class FollowerWriter:
    """What a non-main process of a multi-process export holds: it counts rows; the main process writes them."""

    output = None

    def __init__(self, rows: int) -> None:
        self.rows = rows

    def append(self, records: list[dict[str, Any]], vectors: Any) -> None:
        self.rows += len(records)

    def finish(self) -> None: ...
    def close(self) -> None: ...
    def discard(self) -> None: ...


def _sync(handle: IO[Any]) -> None:
    handle.flush()
    os.fsync(handle.fileno())


class NpyWriter(VectorWriter):
    """Rows appended as raw bytes after a reserved header; ids one per line in `NAME.ids.txt`."""

    def _sidecars(self) -> list[Path]:
        return [Path(str(ids_path(self.output)) + ".partial")]

    def _create(self) -> None:
        self.data = open(self.partial, "w+b")
        self.data.write(b"\0" * NPY_HEADER)
        self.ids_partial = self._sidecars()[0]
        self.ids = open(self.ids_partial, "w+b")
        self.state = {"ids_bytes": 0}

    def _reopen(self) -> None:
        self.data = open(self.partial, "r+b")
        self.data.truncate(NPY_HEADER + self.rows * self.fingerprint["dim"] * self.dtype.itemsize)
        self.data.seek(0, os.SEEK_END)
        self.ids_partial = self._sidecars()[0]
        self.ids = open(self.ids_partial, "r+b")
        self.ids.truncate(self.state["ids_bytes"])
        self.ids.seek(0, os.SEEK_END)

    def append(self, records: list[dict[str, Any]], vectors: np.ndarray) -> None:
        lines = []
        for record in records:
            text = str(record["id"])
            if "\n" in text or "\r" in text:
                raise DataError(
                    "an id contains a line break, which the .ids.txt sidecar cannot hold",
                    row=record["row"],
                    hint="write .parquet or .jsonl",
                )
            lines.append(text + "\n")
        self.data.write(np.ascontiguousarray(vectors, dtype=self.dtype).tobytes())
        self.ids.write("".join(lines).encode("utf-8"))
        _sync(self.data)
        _sync(self.ids)
        self.state["ids_bytes"] = self.ids.tell()
        self._checkpoint(len(records))

    def _finalize(self) -> None:
        self.data.seek(0)
        self.data.write(npy_header(self.rows, self.fingerprint["dim"], self.dtype))
        _sync(self.data)
        self.close()
        os.replace(self.ids_partial, ids_path(self.output))
        os.replace(self.partial, self.output)

    def close(self) -> None:
        self.data.close()
        self.ids.close()


class JsonlWriter(VectorWriter):
    """One JSON object per input: id, optional text, and `vector` (or tokens, offsets and `vectors`)."""

    def _create(self) -> None:
        self.handle: IO[bytes] = sys.stdout.buffer if self.output is None else open(self.partial, "w+b")
        self.state = {"bytes": 0}

    def _reopen(self) -> None:
        self.handle = open(self.partial, "r+b")
        self.handle.truncate(self.state["bytes"])
        self.handle.seek(0, os.SEEK_END)

    def append(self, records: list[dict[str, Any]], vectors: Any) -> None:
        lines = []
        for record, vector in zip(records, vectors):
            fields = {k: v for k, v in record.items() if k != "row"}
            head = json.dumps(fields, ensure_ascii=False)[:-1]
            key = "vectors" if "tokens" in fields else "vector"
            lines.append(f'{head}, "{key}": {_json_floats(np.asarray(vector, dtype=self.dtype))}}}\n')
        self.handle.write("".join(lines).encode("utf-8"))
        self.handle.flush()
        if self.output is not None:
            os.fsync(self.handle.fileno())
            self.state["bytes"] = self.handle.tell()
        self._checkpoint(len(records))

    def _finalize(self) -> None:
        self.close()
        if self.output is not None:
            os.replace(self.partial, self.output)

    def close(self) -> None:
        if self.output is not None:
            self.handle.close()


class ParquetWriter(VectorWriter):
    """One Parquet part per chunk in the `.partial` directory, merged row group by row group at the end."""

    def _create(self) -> None:
        self.partial.mkdir()
        self.state = {"parts": 0}

    def _reopen(self) -> None:
        for stray in self.partial.glob("part-*.parquet"):
            if int(stray.stem.split("-")[1]) >= self.state["parts"]:
                stray.unlink()

    def _table(self, records: list[dict[str, Any]], vectors: Any):
        import pyarrow as pa

        columns: dict[str, Any] = {"id": pa.array([r["id"] for r in records])}
        if "text" in records[0]:
            columns["text"] = pa.array([r["text"] for r in records], pa.string())
        dim = self.fingerprint["dim"]
        if "tokens" in records[0]:
            columns["tokens"] = pa.array([r["tokens"] for r in records], pa.list_(pa.string()))
            columns["offsets"] = pa.array([r["offsets"] for r in records], pa.list_(pa.list_(pa.int32(), 2)))
            flat = np.concatenate([np.asarray(v, self.dtype).reshape(-1) for v in vectors])
            token_vectors = pa.FixedSizeListArray.from_arrays(pa.array(flat), dim)
            starts = np.concatenate([[0], np.cumsum([len(v) for v in vectors])]).astype(np.int32)
            columns["vectors"] = pa.ListArray.from_arrays(pa.array(starts), token_vectors)
        else:
            flat = np.ascontiguousarray(vectors, dtype=self.dtype).reshape(-1)
            columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(flat), dim)
        return pa.table(columns)

    def append(self, records: list[dict[str, Any]], vectors: Any) -> None:
        import pyarrow.parquet as pq

        table = self._table(records, vectors)
        if self.state["parts"]:
            first = pq.read_schema(self.partial / "part-00000.parquet")
            try:
                table = table.cast(first)
            except Exception:  # pyarrow raises several types for a failed cast
                raise DataError(
                    f"ids change type within the input ({first.field('id').type} first, then {table.schema.field('id').type})",
                    row=records[0]["row"],
                    hint="give every record an id of the same type",
                ) from None
        part = self.partial / f"part-{self.state['parts']:05d}.parquet"
        pq.write_table(table, part)
        with open(part, "rb") as handle:
            os.fsync(handle.fileno())
        self.state["parts"] += 1
        self._checkpoint(len(records))

    def _finalize(self) -> None:
        import pyarrow.parquet as pq

        parts = [self.partial / f"part-{i:05d}.parquet" for i in range(self.state["parts"])]
        merged = self.output.with_name(self.output.name + ".merging")
        with pq.ParquetWriter(merged, pq.read_schema(parts[0])) as writer:
            for part in parts:
                writer.write_table(pq.read_table(part))
        with open(merged, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(merged, self.output)
        shutil.rmtree(self.partial)


WRITERS = {"npy": NpyWriter, "jsonl": JsonlWriter, "parquet": ParquetWriter}
