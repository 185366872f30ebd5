"""`bertcli index`: vectors from `embed` (npy + ids, parquet, jsonl), or texts embedded here, streamed chunk by chunk
into a new index directory or added to an existing one.

Vectors made elsewhere are checked against the model the index records: when the file holds texts, a sample is
embedded again and must give the same vectors, so that queries are always encoded the way the corpus was.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bertcli.bundle import BundleMeta, library_versions, weights_fingerprint
from bertcli.config.search import CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH, IndexConfig
from bertcli.data.columns import cell_text, record_columns
from bertcli.data.records import chunked, iter_records
from bertcli.errors import DataError, UsageError
from bertcli.inference.scores import unit_rows
from bertcli.io import ids_path
from bertcli.tasks.search.store import INDEX_TASK, IndexWriter, OpenIndex, model_path, same_weights

log = logging.getLogger("bertcli")
VECTOR_KEYS = ("vector", "embedding")  # the vector field of a JSONL or parquet record (embed writes `vector`)
CHECK_SAMPLE, CHECK_COSINE = 16, 0.99  # texts embedded again to check a vector file's model; the cosine they must keep


@dataclass
class Chunk:
    ids: list[Any]
    texts: list[str] | None
    vectors: np.ndarray


@dataclass
class IndexResult:
    output: str
    added: int
    count: int
    dim: int
    dtype: str
    seconds: float
    embedded: bool  # the texts were embedded here (else the vectors came from a file)


def vector_key(path: str) -> str | None:
    """The vector field of an input that already holds vectors (npy, or parquet/JSONL with one), else None (data)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        return "npy"
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        names = pq.ParquetFile(path).schema_arrow.names
        return next((key for key in VECTOR_KEYS if key in names), None)
    if suffix in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as handle:
            first = next((line for line in handle if line.strip()), "")
        try:
            record = json.loads(first) if first else {}
        except json.JSONDecodeError:
            return None  # the data reader names the bad line
        return next((key for key in VECTOR_KEYS if isinstance(record, dict) and key in record), None)
    return None


def vector_chunks(path: str, key: str, size: int, id_column: str | None, start: int = 0) -> Iterator[Chunk]:
    """A vector file's rows, `size` at a time, with their ids (and texts when the file has them). Without ids, a row
    is numbered by its place in the index, which already holds `start` rows."""
    if key == "npy":
        matrix = np.load(path, mmap_mode="r")
        if matrix.ndim != 2:
            raise DataError(f"expected a 2-D array of vectors, got shape {matrix.shape}", file=path)
        sidecar = ids_path(path)
        ids: list[Any] = (
            sidecar.read_text(encoding="utf-8").splitlines()
            if sidecar.is_file()
            else list(range(start, start + len(matrix)))
        )
        if len(ids) != len(matrix):
            raise DataError(
                f"{len(ids)} ids for {len(matrix)} vectors", file=sidecar, hint="re-export with bertcli embed"
            )
        for at in range(0, len(matrix), size):
            yield Chunk(ids[at : at + size], None, np.asarray(matrix[at : at + size], dtype=np.float32))
        return
    id_key = id_column or "id"
    if Path(path).suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        if id_column is not None and id_column not in names:
            raise DataError(f"no column {id_column!r} (columns: {', '.join(names)})", file=path, column=id_column)
        columns = [key, *(c for c in (id_key, "text") if c in names)]
        done = 0
        for batch in parquet.iter_batches(batch_size=size, columns=columns):
            table = {name: batch.column(name) for name in columns}
            column = table[key]
            even = column.null_count == 0 and (
                pa.types.is_fixed_size_list(column.type)
                or pa.types.is_list(column.type)
                and len(set(column.value_lengths().to_pylist())) <= 1
            )  # then read as one array, not as Python floats (ragged rows: the check in _chunk names the row)
            flat = column.flatten().to_numpy(zero_copy_only=False) if even else None
            vectors = flat.reshape(batch.num_rows, -1) if even and batch.num_rows else column.to_pylist()
            ids, texts = (table[c].to_pylist() if c in table else None for c in (id_key, "text"))
            yield _chunk(vectors, ids, texts, path, done, start)
            done += batch.num_rows
        return
    done = 0
    for records in chunked(iter_records(path, _jsonl()), size):
        missing = next((i for i, r in enumerate(records) if key not in r), None)
        if missing is not None:
            raise DataError(f"no {key!r} in this record", file=path, row=done + missing + 1)
        texts = [r.get("text") for r in records]
        ids = [r.get(id_key) for r in records]
        if id_column is not None and all(i is None for i in ids):
            raise DataError(f"no {id_column!r} in this record", file=path, row=done + 1, column=id_column)
        yield _chunk([r[key] for r in records], ids if any(i is not None for i in ids) else None,
                     texts if all(isinstance(t, str) for t in texts) else None, path, done, start)  # fmt: skip
        done += len(records)


def _jsonl() -> Any:
    from bertcli.config import DataOptions

    return DataOptions(format="jsonl")


def _chunk(vectors: Any, ids: list | None, texts: list | None, path: str, done: int, start: int) -> Chunk:
    try:
        matrix = np.asarray(vectors, dtype=np.float32)
    except ValueError:
        matrix = np.zeros((0,))
    if matrix.ndim != 2:
        lengths = [len(v) if isinstance(v, list) else None for v in vectors]
        bad = next((i for i, n in enumerate(lengths) if n != lengths[0]), 0)
        raise DataError("vectors of different lengths (or not lists of numbers)", file=path, row=done + bad + 1)
    missing = None if ids is None else next((i for i, v in enumerate(ids) if v is None), None)
    if missing is not None:
        raise DataError("missing id", file=path, row=done + missing + 1, column="id")
    bad = None if ids is None else next((i for i, v in enumerate(ids) if not isinstance(v, (str, int))), None)
    if bad is not None:
        raise DataError(f"an id must be text or a whole number, not {ids[bad]!r}", file=path, row=done + bad + 1)
    texts = None if texts is None else [t if isinstance(t, str) else "" for t in texts]  # a null text is empty
    return Chunk(ids if ids is not None else list(range(start + done, start + done + len(matrix))), texts, matrix)


def data_chunks(cfg: IndexConfig, encoder: Any, start: int, on_batch: Any) -> Iterator[Chunk]:
    """Records of a data file (or stdin) embedded with the encoder, chunk by chunk; ids from --id-column, else the
    index's row numbers."""
    name = "<stdin>" if cfg.input in (None, "-") else cfg.input
    columns = None
    done = 0
    for records in chunked(iter_records(cfg.input, cfg.data), cfg.chunk_size):
        columns = columns or record_columns(records[0], cfg.data, name)
        texts = [cell_text(r.get(columns.text)) for r in records]
        if columns.id is not None:
            missing = next((i for i, r in enumerate(records) if r.get(columns.id) is None), None)
            if missing is not None:
                raise DataError("missing id", file=name, row=done + missing + 1, column=columns.id)
            ids = [r[columns.id] for r in records]
            bad = next((i for i, v in enumerate(ids) if not isinstance(v, (str, int))), None)
            if bad is not None:
                raise DataError(f"an id must be text or a whole number, not {ids[bad]!r}", file=name,
                                row=done + bad + 1, column=columns.id)  # fmt: skip
        else:
            ids = list(range(start + done, start + done + len(records)))
        yield Chunk(ids, texts, encoder.embed(texts, on_batch).vectors)
        done += len(records)


def build_index(cfg: IndexConfig) -> IndexResult:
    """Build the index at cfg.output (or add to it with cfg.add), atomically."""
    cfg.validate()
    base = _base(cfg)
    try:
        return _build(cfg, base)
    finally:
        if base is not None:
            base.close()


def _build(cfg: IndexConfig, base: OpenIndex | None) -> IndexResult:
    from bertcli.progress import Progress
    from bertcli.tasks import encoder as load_encoder

    model_spec = cfg.model or (model_path(base.record) if base else None)  # adding: the index's own model
    encoder = load_encoder(
        model_spec, batch_size=cfg.batch_size, precision=cfg.precision, backend=cfg.backend, threads=cfg.threads
    )
    record = _record(cfg, encoder, base)
    source = "<stdin>" if cfg.input in (None, "-") else cfg.input
    key = None if source == "<stdin>" else vector_key(source)
    log.info(
        "%s %s: %s vectors of %s (%s), dim %d%s",
        "adding to" if base else "building",
        cfg.output,
        record["dtype"],
        record["model"]["name"],
        "read from the file" if key else "embedding the texts",
        record["dim"],
        f" of {record['model']['dim']}" if record["dim"] != record["model"]["dim"] else "",
    )
    writer = IndexWriter(cfg.output, record, base)
    start, added = time.perf_counter(), 0
    try:
        with Progress(None, "index", unit="vectors") as progress:
            if key:
                chunks = vector_chunks(source, key, cfg.chunk_size, cfg.data.id_column, writer.count)
            else:  # progress by embedded batch: embedding is the slow part
                chunks = data_chunks(cfg, encoder, writer.count, lambda n: progress.advance(n, examples=n))
            for number, chunk in enumerate(chunks):
                if key and number == 0:
                    _check_model(chunk, encoder, record, source)
                writer.append(
                    chunk.ids, chunk.texts if cfg.texts else None, unit_rows(chunk.vectors, record["dim"]), source
                )
                added += len(chunk.ids)
                if key:
                    progress.advance(len(chunk.ids), examples=len(chunk.ids))
        record["count"] = writer.count
        record["sources"] = [*record.get("sources", []), {"file": source, "rows": added, "vectors": bool(key)}]
        record["built"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        writer.finish(
            BundleMeta(INDEX_TASK, max_length=encoder.max_length, index=record, run={"versions": _versions()})
        )
    except BaseException:
        writer.abort()
        raise
    return IndexResult(cfg.output, added, record["count"], record["dim"], record["dtype"],
                       time.perf_counter() - start, key is None)  # fmt: skip


def _versions() -> dict[str, str]:
    from importlib import metadata

    return {**library_versions(), "faiss-cpu": metadata.version("faiss-cpu")}


def _base(cfg: IndexConfig) -> OpenIndex | None:
    """The index --add grows (None: a fresh build, refused over an existing index)."""
    from bertcli.bundle import read_meta

    target = Path(cfg.output)
    exists = target.exists() and any(target.iterdir()) if target.is_dir() else target.exists()
    if not cfg.add:
        if exists and read_meta(target).task != INDEX_TASK:
            raise UsageError("--output exists and is not an index", file=target, hint="choose another directory")
        return None  # an older index is replaced only once the new one is complete
    if not exists:
        raise UsageError("--add needs an existing index at --output", file=target, hint="build it first without --add")
    meta = read_meta(target)
    if meta.task != INDEX_TASK:
        raise UsageError("--output is not an index directory", file=target)
    return OpenIndex(target, meta)


def _record(cfg: IndexConfig, encoder: Any, base: OpenIndex | None) -> dict[str, Any]:
    """What the index keeps about itself: the model and its pooling, the dims and dtype, the ANN settings."""
    from importlib import metadata

    from bertcli.hub import DEFAULT_HUB_ID

    model = {
        "name": cfg.model or DEFAULT_HUB_ID,
        "path": encoder.path,
        "weights": weights_fingerprint(Path(encoder.path)),
        "pooling": encoder.opts.pooling,
        "layers": encoder.opts.layers,
        "layer_agg": encoder.opts.layer_agg,
        "max_length": encoder.max_length,
        "normalize": True,
        "dim": encoder.dim,
    }
    if base is not None:
        old = base.record
        if model["pooling"] != old["model"]["pooling"] or not same_weights(encoder.path, old["model"]["weights"]):
            raise UsageError(
                f"the index was built with {old['model']['name']}, not the model at {encoder.path}"
                + ("" if cfg.model else " (its weights changed)"),
                file=cfg.output,
                hint="vectors of one index come from one model: build a new index for another one",
            )
        for name, given in (("dtype", cfg.dtype if cfg.dtype != "f32" else None), ("dim", cfg.dim)):
            if given is not None and given != old[name]:
                raise UsageError(f"--{name} {given} differs from the index's {old[name]}", file=cfg.output)
        return {**old, "model": {**old["model"], "path": model["path"]}}
    dim = cfg.dim or encoder.dim
    if dim > encoder.dim:
        raise UsageError(f"--dim {dim} exceeds the model's {encoder.dim} dimensions")
    if cfg.dim and cfg.dim < encoder.dim and cfg.dim not in encoder.matryoshka_dims:
        log.warning(
            "%s was not trained with --matryoshka-dims %d: its leading %d dimensions may retrieve worse than all %d",
            model["name"], cfg.dim, cfg.dim, encoder.dim,
        )  # fmt: skip
    return {
        "library": f"faiss-cpu {metadata.version('faiss-cpu')}",
        "dtype": cfg.dtype,
        "dim": dim,
        "metric": "hamming" if cfg.dtype == "binary" else "cos",
        "connectivity": CONNECTIVITY,
        "expansion_add": EXPANSION_ADD,
        "expansion_search": EXPANSION_SEARCH,
        "model": model,
    }


def _check_model(chunk: Chunk, encoder: Any, record: dict[str, Any], source: str) -> None:
    """Vectors made elsewhere must be the model's: the right width, and (when the file has texts) the same vectors
    for a sample of them embedded again."""
    name = record["model"]["name"]
    if chunk.vectors.shape[1] != encoder.dim:
        raise DataError(
            f"these vectors have {chunk.vectors.shape[1]} dimensions; {name} makes {encoder.dim}",
            file=source,
            hint="pass the --model that embedded them",
        )
    if chunk.texts is None:
        log.info("%s holds no texts, so %s cannot be checked as the model that made its vectors", source, name)
        return
    sample = [i for i, text in enumerate(chunk.texts) if text.strip()][:CHECK_SAMPLE]
    if not sample:
        return
    again = unit_rows(encoder.embed([chunk.texts[i] for i in sample]).vectors)
    cosines = np.sum(unit_rows(chunk.vectors[sample]) * again, axis=1)
    worst = int(np.argmin(cosines))
    if cosines[worst] < CHECK_COSINE:
        raise DataError(
            f"these vectors were not made by {name} with its own pooling (row {sample[worst] + 1}: cosine "
            f"{cosines[worst]:.3f} to the text embedded again)",
            file=source,
            hint="pass the --model that embedded them, or index the texts themselves: bertcli index DATA -m MODEL -o DIR",
        )
