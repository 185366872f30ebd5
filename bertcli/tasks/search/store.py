"""An index directory on disk: the ANN graph, the full-precision vectors it is rescored from, the ids and texts, and
the record of the model that made the vectors (bertcli.json's `index`).

    ann.faiss            FAISS's HNSW graph and its codes (f32, f16, i8, i6 or one bit per dimension), memory-mapped
    vectors.npy          the unit float32 vectors, read from disk as needed: rescoring reads each query's candidates,
                         --exact one block at a time
    records.jsonl        one {"id", "text"?} line per vector; records.offsets.npy holds each line's byte offset
    bm25/                bm25s's index of the texts (--hybrid), when the texts are kept

A directory is written only by `IndexWriter`: into a staging directory beside it, renamed into place when complete,
so a killed build leaves the previous index (or none), never a partial one that looks whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bertcli.bundle import BundleMeta, write_meta
from bertcli.errors import DataError, UsageError
from bertcli.io import NPY_HEADER, npy_header, replace_dir

ANN_FILE, VECTORS_FILE, RECORDS_FILE, OFFSETS_FILE, BM25_DIR = (
    "ann.faiss", "vectors.npy", "records.jsonl", "records.offsets.npy", "bm25",
)  # fmt: skip
INDEX_TASK = "index"  # the bundle task of an index directory
EXACT_BLOCK = 16384  # rows the exact scan reads and scores at a time (25 MB of 384-dim vectors)


def model_path(record: dict[str, Any]) -> str:
    """The directory of the model an index records: where it was built, else found by its name (a hub id, or a path
    on another machine). Its weights are checked against the record by whoever loads it."""
    from bertcli.hub import resolve_model

    made_by = record["model"]
    return made_by["path"] if Path(made_by["path"], "config.json").is_file() else resolve_model(made_by["name"])


def same_weights(path: str | Path, recorded: dict[str, Any] | None) -> bool:
    """Whether the model at `path` has the weights an index recorded. An index built from an ONNX export directory
    before such directories were fingerprinted recorded None: there is nothing to compare, so it passes."""
    from bertcli.bundle import weights_fingerprint

    return recorded is None or weights_fingerprint(Path(path)) == recorded


def new_ann(record: dict[str, Any]) -> Any:
    """An empty FAISS HNSW index for the record's dtype: inner product (cosine: the vectors are unit) over float32,
    float16, or 8-bit or 6-bit codes (a scalar quantiser trained on the first chunk's range per dimension); Hamming
    over bits."""
    import faiss

    dim, links = record["dim"], record["connectivity"]
    if record["dtype"] == "binary":
        index = faiss.IndexBinaryHNSW(dim, links)
    elif record["dtype"] == "f32":
        index = faiss.IndexHNSWFlat(dim, links, faiss.METRIC_INNER_PRODUCT)
    else:
        quantizers = {"f16": faiss.ScalarQuantizer.QT_fp16, "i8": faiss.ScalarQuantizer.QT_8bit,
                      "i6": faiss.ScalarQuantizer.QT_6bit}  # fmt: skip
        index = faiss.IndexHNSWSQ(dim, quantizers[record["dtype"]], links, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = record["expansion_add"]
    return index


def read_ann(path: Path, dtype: str, mapped: bool) -> Any:
    """A saved index: memory-mapped for search, or loaded to grow (--add)."""
    import faiss

    flags = faiss.IO_FLAG_MMAP_IFC if mapped else 0
    return faiss.read_index_binary(str(path), flags) if dtype == "binary" else faiss.read_index(str(path), flags)


def codes(vectors: np.ndarray, dtype: str) -> np.ndarray:
    """What the ANN index takes for unit vectors: the vectors (FAISS encodes f16/i8/i6 itself), or their sign bits."""
    return np.packbits(vectors > 0, axis=1) if dtype == "binary" else np.ascontiguousarray(vectors, dtype=np.float32)


class DiskRows:
    """The rows of a .npy matrix, read from disk as needed (`pread`, through the page cache): rescoring reads a few
    scattered rows per query and the exact scan one block at a time, so none of the file counts as the process's
    memory, and a mapping's read-ahead cannot pull the whole file in."""

    def __init__(self, path: Path) -> None:
        self.handle = open(path, "rb")
        version = np.lib.format.read_magic(self.handle)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        self.shape, _, self.dtype = read_header[version](self.handle)
        self.start = self.handle.tell()
        self.row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        size = os.fstat(self.handle.fileno()).st_size
        if size < self.start + self.shape[0] * self.row_bytes:
            self.handle.close()
            raise ValueError(f"{path.name} holds {size} bytes, fewer than its {self.shape} {self.dtype} rows")

    def __len__(self) -> int:
        return self.shape[0]

    def block(self, start: int, stop: int) -> np.ndarray:
        data = os.pread(self.handle.fileno(), (stop - start) * self.row_bytes, self.start + start * self.row_bytes)
        return np.frombuffer(data, dtype=self.dtype).reshape(stop - start, *self.shape[1:])

    def prefetch(self, rows: np.ndarray) -> None:
        """Ask the kernel for `rows` all at once (POSIX_FADV_WILLNEED), so that rows the page cache has lost come from
        disk together rather than one read after another. Measured on 40 random rows of 200k evicted from the cache:
        2.2-2.5 ms to read them, 0.6-0.8 ms announced first; no slower when they are cached."""
        if not hasattr(os, "posix_fadvise"):  # not on macOS or Windows: the reads then come one after another
            return
        fd = self.handle.fileno()
        for row in np.unique(rows):
            os.posix_fadvise(fd, self.start + int(row) * self.row_bytes, self.row_bytes, os.POSIX_FADV_WILLNEED)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given rows, in the given order."""
        fd = self.handle.fileno()
        data = b"".join(os.pread(fd, self.row_bytes, self.start + int(row) * self.row_bytes) for row in rows)
        return np.frombuffer(data, dtype=self.dtype).reshape(len(rows), *self.shape[1:])

    def close(self) -> None:
        self.handle.close()


class OpenIndex:
    """An index directory opened for search: the graph memory-mapped, the vectors and records read as needed."""

    def __init__(self, directory: str | Path, meta: BundleMeta) -> None:
        self.directory = Path(directory)
        self.record: dict[str, Any] = meta.index or {}
        missing = next(
            (
                name
                for name in (ANN_FILE, VECTORS_FILE, RECORDS_FILE, OFFSETS_FILE)
                if not (self.directory / name).exists()
            ),
            None,
        )
        if missing is not None or not self.record:
            raise DataError(
                "not a complete index directory" + (f" ({missing} is missing)" if missing else ""),
                file=self.directory,
                hint="build it again with bertcli index",
            )
        try:
            self.vectors = DiskRows(self.directory / VECTORS_FILE)
            self.offsets = np.load(self.directory / OFFSETS_FILE)
        except (ValueError, KeyError, OSError) as exc:
            raise DataError(
                f"the index files are damaged ({exc})", file=self.directory, hint="build it again"
            ) from None
        if len(self.vectors) != self.record.get("count") or len(self.offsets) != len(self.vectors) + 1:
            raise DataError(
                f"the index files disagree ({len(self.vectors)} vectors, {len(self.offsets) - 1} records, "
                f"{self.record.get('count')} recorded)",
                file=self.directory,
                hint="build it again",
            )
        try:
            self.ann = read_ann(self.directory / ANN_FILE, self.dtype, mapped=True)
        except RuntimeError as exc:
            raise DataError(
                f"the ANN file is damaged ({str(exc).splitlines()[0]})", file=self.directory / ANN_FILE,
                hint="build the index again",
            ) from None  # fmt: skip
        self.ann.hnsw.efSearch = self.record["expansion_search"]  # searches only read it: concurrent ones are safe
        self._records = open(self.directory / RECORDS_FILE, "rb")  # a hit reads its own line (pread)
        self._ids: dict[Any, int] | None = None
        self._bm25: Any = None

    @property
    def count(self) -> int:
        return len(self.vectors)

    @property
    def dtype(self) -> str:
        return self.record["dtype"]

    def entry(self, row: int) -> dict[str, Any]:
        """The {"id", "text"?} record of a row."""
        start, stop = int(self.offsets[row]), int(self.offsets[row + 1])
        return json.loads(os.pread(self._records.fileno(), stop - start, start))

    def rows_of(self, ids: Sequence[Any]) -> list[int]:
        """The rows holding these ids (unknown ids are left out)."""
        if self._ids is None:
            self._ids = {self.entry(row)["id"]: row for row in range(self.count)}
        return sorted({self._ids[i] for i in ids if i in self._ids})

    def ann_search(self, queries: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cosine scores) of each query's `count` ANN candidates, best first; -1 pads a short list. Binary
        codes give no cosine: their scores are 1 - 2 * Hamming distance / dim (the same order)."""
        count = min(count, self.count)
        distances, rows = self.ann.search(codes(queries, self.dtype), count)
        rows = np.asarray(rows, dtype=np.int64)
        scores = 1.0 - 2.0 * distances / self.record["dim"] if self.dtype == "binary" else distances
        return rows, np.where(rows >= 0, scores, -np.inf).astype(np.float32)

    def rescore(self, queries: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top k of each query's candidate rows by their full-precision cosine (read from disk)."""
        out_rows = np.full((len(queries), k), -1, dtype=np.int64)
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        self.vectors.prefetch(rows[rows >= 0])
        for i, (query, candidates) in enumerate(zip(queries, rows)):
            candidates = candidates[candidates >= 0]
            if not len(candidates):
                continue
            order = np.argsort(candidates)  # ascending rows read the file front to back
            scores = self.vectors.take(candidates[order]) @ query
            top = np.argsort(-scores, kind="stable")[:k]
            out_rows[i, : len(top)], out_scores[i, : len(top)] = candidates[order][top], scores[top]
        return out_rows, out_scores

    def exact(self, queries: np.ndarray, k: int, rows: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The true top k by cosine: a scan of the full-precision vectors in blocks (or of `rows` only)."""
        k = min(k, self.count if rows is None else len(rows))
        best_rows = np.full((len(queries), k), -1, dtype=np.int64)
        best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        blocks = (
            [np.arange(start, min(start + EXACT_BLOCK, self.count)) for start in range(0, self.count, EXACT_BLOCK)]
            if rows is None
            else [np.sort(np.asarray(rows, dtype=np.int64))]
        )
        for block in blocks:
            if not len(block) or not k:
                continue
            vectors = (
                self.vectors.block(int(block[0]), int(block[-1]) + 1) if rows is None else self.vectors.take(block)
            )
            scores = queries @ np.asarray(vectors, dtype=np.float32).T
            merged_scores = np.concatenate([best_scores, scores], axis=1)
            merged_rows = np.concatenate([best_rows, np.broadcast_to(block, scores.shape)], axis=1)
            top = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
            best_scores = np.take_along_axis(merged_scores, top, axis=1)
            best_rows = np.take_along_axis(merged_rows, top, axis=1)
        return best_rows, best_scores

    def bm25(self) -> Any:
        """bm25s's index of the texts, memory-mapped (loaded on first use)."""
        if self._bm25 is None:
            if not (self.directory / BM25_DIR).is_dir():
                raise UsageError(
                    "--hybrid needs the texts, and this index was built without them",
                    file=self.directory,
                    hint="build it from data with texts (bertcli index docs.jsonl -o DIR), or from parquet with --include-text",
                )
            import bm25s

            self._bm25 = bm25s.BM25.load(str(self.directory / BM25_DIR), mmap=True, load_corpus=False)
        return self._bm25

    def close(self) -> None:
        self._records.close()
        self.vectors.close()


class IndexWriter:
    """Builds an index directory in a staging directory beside `target`: a fresh one, or a copy of `base` (an
    existing index) with more vectors. `finish` renames it into place; `abort` (or a kill) leaves `target` as it was."""

    def __init__(self, target: str | Path, record: dict[str, Any], base: OpenIndex | None = None) -> None:
        self.target = Path(target)
        self.record = record
        self.staging = self.target.with_name(f".{self.target.name}.partial-{os.getpid()}")
        for stale in self.target.parent.glob(f".{self.target.name}.partial-*"):  # left by a killed build
            if not _alive(stale.name.rsplit("-", 1)[-1]):
                shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        self.vectors = open(self.staging / VECTORS_FILE, "wb")
        self.vectors.write(b"\0" * NPY_HEADER)
        self.records = open(self.staging / RECORDS_FILE, "wb")
        self.offsets = [0]
        self.ids: dict[Any, int] = {}
        self.has_texts = False
        self.count = 0
        if base is None:
            self.ann = new_ann(record)
        else:
            try:
                self.ann = read_ann(base.directory / ANN_FILE, record["dtype"], mapped=False)  # loaded: it grows
                self._copy(base)
            except BaseException:
                self.abort()
                raise

    def _copy(self, base: OpenIndex) -> None:
        for start in range(0, base.count, 65536):
            self.vectors.write(base.vectors.block(start, min(start + 65536, base.count)).astype("<f4").tobytes())
        with open(base.directory / RECORDS_FILE, "rb") as handle:
            shutil.copyfileobj(handle, self.records)
        self.offsets = [int(o) for o in base.offsets]
        for row in range(base.count):
            entry = base.entry(row)
            self.ids[entry["id"]] = row
            self.has_texts = self.has_texts or "text" in entry
        self.count = base.count

    def append(self, ids: Sequence[Any], texts: Sequence[str] | None, vectors: np.ndarray, source: str) -> None:
        """Add unit vectors with their ids (and texts); an id already in the index is refused."""
        for position, key in enumerate(ids):
            if key in self.ids:
                raise DataError(
                    f"id {key!r} is already in the index (row {self.ids[key] + 1})",
                    file=source,
                    hint="ids must be unique: pass --id-column, or leave it out to number the rows",
                )
            self.ids[key] = self.count + position
        data = codes(vectors, self.record["dtype"])
        if not self.ann.is_trained:  # i8/i6's quantiser learns each dimension's range from the first chunk
            self.ann.train(data)
        self.ann.add(data)  # FAISS numbers vectors in the order they come: row n is id n
        self.vectors.write(np.asarray(vectors, dtype="<f4").tobytes())
        for position, key in enumerate(ids):
            entry: dict[str, Any] = {"id": key}
            if texts is not None:
                entry["text"] = texts[position]
            line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
            self.records.write(line)
            self.offsets.append(self.offsets[-1] + len(line))
        self.has_texts = self.has_texts or texts is not None
        self.count += len(vectors)

    def finish(self, meta: BundleMeta) -> None:
        """Write the header, the graph, the offsets, BM25 over the texts and bertcli.json; then rename into place."""
        if not self.count:
            self.abort()
            raise DataError("no vectors to index", file=self.record.get("sources", [{}])[-1].get("file"))
        self.vectors.seek(0)
        self.vectors.write(npy_header(self.count, self.record["dim"], np.dtype("<f4")))
        for handle in (self.vectors, self.records):
            handle.close()  # synced with the rest of the directory by replace_dir
        np.save(self.staging / OFFSETS_FILE, np.asarray(self.offsets, dtype=np.int64))
        import faiss

        write = faiss.write_index_binary if self.record["dtype"] == "binary" else faiss.write_index
        write(self.ann, str(self.staging / ANN_FILE))
        if self.has_texts:
            self._bm25()
        write_meta(self.staging, meta)
        replace_dir(self.staging, self.target)

    def _bm25(self) -> None:
        import bm25s

        offsets = self.offsets
        with open(self.staging / RECORDS_FILE, "rb") as handle:
            data = handle.read()
        texts = [json.loads(data[offsets[i] : offsets[i + 1]]).get("text") or "" for i in range(self.count)]
        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        retriever.save(str(self.staging / BM25_DIR), show_progress=False)

    def abort(self) -> None:
        for handle in (self.vectors, self.records):
            with contextlib.suppress(Exception):
                handle.close()
        shutil.rmtree(self.staging, ignore_errors=True)


def _alive(pid: str) -> bool:
    """Whether the process that named a staging directory still runs (its build may still be writing)."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
