"""`bertcli embed`: every input record embedded and written in input order, chunk by chunk.

Input is read record by record and embedded in chunks, each appended to the output as soon as it is done, so
memory stays bounded for any input size and an interrupted export can be resumed (`vectors`).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bertcli.config import CHUNK_SIZE, TOKEN_CHUNK_SIZE, EmbedConfig
from bertcli.data.columns import Columns, cell_text, record_columns
from bertcli.data.records import chunked, iter_records
from bertcli.errors import DataError, Interrupted, UsageError
from bertcli.runtime.device import processes, use_threads
from bertcli.tasks.embedding.embedder import Embedder, embed_shared
from bertcli.tasks.embedding.vectors import WRITERS, FollowerWriter, output_format

log = logging.getLogger("bertcli")


@dataclass
class EmbedResult:
    output: str
    format: str
    rows: int
    dim: int
    seconds: float
    resumed_from: int
    truncated: int
    empty: int
    max_length: int

    @property
    def rate(self) -> float:
        return (self.rows - self.resumed_from) / self.seconds if self.seconds > 0 else 0.0


def _output_records(
    chunk: list[dict[str, Any]], columns: Columns, done: int, include_text: bool, source: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """Output records (1-based input `row`, `id`: the id column or the 0-based input position, optional text) and texts."""
    id_key = columns.id
    records, texts = [], []
    for row, record in enumerate(chunk, done + 1):
        text = cell_text(record.get(columns.text))
        if id_key is not None and record.get(id_key) is None:
            raise DataError("missing id", file=source, row=row, column=id_key)
        out = {"row": row, "id": record[id_key] if id_key else row - 1}
        if include_text:
            out["text"] = text
        records.append(out)
        texts.append(text)
    return records, texts


def embed(cfg: EmbedConfig, embedder: Embedder | None = None) -> EmbedResult:
    """Embed every input record of cfg.input and write the vectors to cfg.output (resumable with --resume)."""
    from bertcli.hub import DEFAULT_HUB_ID

    cfg.validate()
    fmt = output_format(cfg.output, cfg.vectors.output_format, cfg.embed.token_level)
    name = "<stdin>" if cfg.input in (None, "-") else cfg.input
    launch = processes()
    if launch.num_processes > 1 and name == "<stdin>":
        raise UsageError("under a multi-process launch embed reads a file, not stdin (each process reads the input)")
    embedder = embedder or Embedder(cfg.model, cfg.embed)
    use_threads(cfg.embed.threads)
    writer = _open_writer(cfg, fmt, embedder, name, launch)
    skip = writer.rows
    log.info(
        "embedding with %s: %s, dim %d, max length %d%s",
        cfg.model or DEFAULT_HUB_ID,
        embedder.describe(),
        embedder.dim,
        embedder.max_length,
        f"; resuming after {skip} inputs" if skip else "",
    )
    records = iter_records(cfg.input, cfg.data)
    if skip and sum(1 for _ in itertools.islice(records, skip)) < skip:
        writer.close()
        raise DataError(
            f"the input has fewer records than the partial export ({skip})", file=name, hint="rerun without --resume"
        )
    start = time.perf_counter()
    truncated, empty = _write_all(cfg, embedder, records, writer, name, launch)
    seconds = time.perf_counter() - start
    if empty:
        log.warning("%d empty input(s) were embedded as empty text", empty)
    if truncated:
        log.info("%d input(s) longer than %d tokens were truncated", truncated, embedder.max_length)
    return EmbedResult(cfg.output, fmt, writer.rows, embedder.dim, seconds, skip, truncated, empty, embedder.max_length)


def _open_writer(cfg: EmbedConfig, fmt: str, embedder: Embedder, name: str, launch: Any) -> Any:
    """The main process's writer (resumed when asked, if the settings match); the others only count rows."""
    fingerprint = {
        "model": embedder.path,
        "source": str(Path(name).resolve()) if name != "<stdin>" else name,
        "format": fmt,
        "dim": embedder.dim,
        "dtype": cfg.vectors.dtype,
        "include_text": cfg.vectors.include_text,
        "max_length": embedder.max_length,
        "text_column": cfg.data.text_column,
        "id_column": cfg.data.id_column,
        # what ran, not what was asked: torch and an fp32 export agree to 1e-4 (as precisions do), int8 does not
        "int8": "int8" in embedder.backend.name,
        **{
            k: v
            for k, v in asdict(cfg.embed).items()
            if k not in ("batch_size", "precision", "max_length", "threads", "backend")
        },
    }
    writer = (
        WRITERS[fmt](cfg.output, fingerprint, cfg.vectors.dtype, cfg.vectors.resume) if launch.is_main_process else None
    )
    if launch.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        resumed = broadcast_object_list([writer.rows if writer else 0])[0]
        writer = writer or FollowerWriter(resumed)
    return writer


def _write_all(
    cfg: EmbedConfig, embedder: Embedder, records: Any, writer: Any, name: str, launch: Any
) -> tuple[int, int]:
    """Embed and append chunk by chunk; a failure leaves only the resumable partial files. Returns (truncated, empty)."""
    from bertcli.progress import Progress

    chunk_size = cfg.vectors.chunk_size or (TOKEN_CHUNK_SIZE if cfg.embed.token_level else CHUNK_SIZE)
    columns: Columns | None = None
    truncated = empty = 0
    try:
        with Progress(None, "embed", unit="sentences", enabled=launch.is_main_process) as progress:
            for chunk in chunked(records, chunk_size):
                columns = columns or record_columns(chunk[0], cfg.data, name)
                batch, texts = _output_records(chunk, columns, writer.rows, cfg.vectors.include_text, name)
                empty += sum(not t.strip() for t in texts)
                result = embed_shared(embedder, texts, on_batch=lambda n: progress.advance(n, examples=n))
                truncated += sum(result.truncated)
                if cfg.embed.token_level:
                    for out, tokens, offsets in zip(batch, result.tokens, result.offsets):
                        out["tokens"], out["offsets"] = tokens, [list(o) for o in offsets]
                writer.append(batch, result.vectors)
    except KeyboardInterrupt:
        writer.close()
        if writer.output is None:
            raise
        raise Interrupted(
            f"interrupted after {writer.rows} inputs (kept in {writer.partial})",
            hint="rerun the same command with --resume to continue",
        ) from None
    except BaseException:
        writer.close()
        if writer.rows == 0:
            writer.discard()
        raise
    if writer.rows == 0:
        writer.close()
        writer.discard()
        raise DataError("no input records to embed", file=name)
    writer.finish()
    return truncated, empty
