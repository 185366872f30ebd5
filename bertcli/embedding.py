"""The embed core: sentence or token vectors from any BERT-family encoder, streamed to a file.

Pooling follows sentence-transformers (a masked mean over the real tokens, [CLS] and [SEP] included),
so all-MiniLM-L6-v2 with `--pooling mean --normalize` reproduces its `encode(normalize_embeddings=True)`.
Input is read record by record and embedded in chunks, each appended to the output as soon as it is
done, so memory stays bounded for any input size and an interrupted export can be resumed.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertcli.config import DataOptions
from bertcli.data.columns import Columns, cell_text, record_columns
from bertcli.data.records import chunked, iter_records
from bertcli.runtime.device import processes
from bertcli.errors import DataError, Interrupted, ModelError, UsageError

log = logging.getLogger("bertcli")

POOLINGS = ("mean", "cls", "max", "pooler")
LAYER_AGGS = ("mean", "concat")
# Padded tokens per batch when --batch-size is not given: batches of short inputs hold more of them,
# which keeps the matrix products large (measured fastest on CPU; see bench/embed.py).
BATCH_TOKENS = 4096
MAX_BATCH = 256
MIN_EQUAL_LENGTH = 8


@dataclass
class EmbedOptions:
    """How to turn a model's hidden states into vectors, and how to batch the forward passes."""

    pooling: str = "mean"
    layers: str = "-1"
    layer_agg: str = "mean"
    normalize: bool = False
    token_level: bool = False
    max_length: int | None = None
    batch_size: int | None = None
    batch_tokens: int = BATCH_TOKENS
    precision: str = "auto"

    def validate(self) -> None:
        if self.pooling not in POOLINGS:
            raise UsageError(f"unknown --pooling {self.pooling!r}", hint=f"choose one of {', '.join(POOLINGS)}")
        if self.layer_agg not in LAYER_AGGS:
            raise UsageError(f"unknown --layer-agg {self.layer_agg!r}", hint="choose mean or concat")
        if self.pooling == "pooler" and self.layers.strip() != "-1":
            raise UsageError("--pooling pooler reads the pooler output and takes no --layers", hint="use --pooling mean, cls or max")
        if self.pooling == "pooler" and self.token_level:
            raise UsageError("--token-level exports token vectors; it takes no --pooling pooler")
        for name in ("batch_size", "max_length"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UsageError(f"--{name.replace('_', '-')} must be positive")


def parse_layers(spec: str, num_layers: int) -> list[int]:
    """'-1', '-4:', '-2,-1', '0:3' -> indices into hidden_states (0 = embedding output, num_layers = last layer)."""
    count = num_layers + 1
    picked: list[int] = []
    try:
        for part in (p.strip() for p in spec.split(",")):
            if ":" in part:
                start, _, stop = part.partition(":")
                picked.extend(range(count)[slice(int(start) if start else None, int(stop) if stop else None)])
            else:
                index = int(part)
                if not -count <= index < count:
                    raise IndexError(part)
                picked.append(index % count)
    except (ValueError, IndexError):
        raise UsageError(
            f"bad --layers {spec!r}", hint=f"e.g. -1, -4: or -2,-1; this model has layers 0 (embeddings) to {num_layers}"
        ) from None
    if not picked:
        raise UsageError(f"--layers {spec!r} selects no layer", hint=f"this model has layers 0 (embeddings) to {num_layers}")
    return picked


def load_encoder(path: str) -> Any:
    """The bare encoder (AutoModel) of a model directory; a pooler missing from the checkpoint is dropped, never used at random."""
    import transformers

    try:
        model, info = transformers.AutoModel.from_pretrained(path, output_loading_info=True)
    except Exception as exc:
        raise ModelError(f"cannot load model: {exc}", file=path) from None
    if getattr(model, "pooler", None) is not None and any(k.startswith("pooler.") for k in info["missing_keys"]):
        model.pooler = None
    return model


def default_max_length(path: str, tokenizer: Any, config: Any) -> int:
    """The model's limit, or the max_seq_length a sentence-transformers model was trained with (as encode() uses)."""
    from bertcli.modeling import model_max_length

    limit = model_max_length(tokenizer, config)
    st_config = Path(path, "sentence_bert_config.json")
    if st_config.is_file():
        trained = json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length")
        if isinstance(trained, int) and 0 < trained < limit:
            return trained
    return limit


def token_budget_batches(
    lengths: Sequence[int], max_tokens: int, max_batch: int = MAX_BATCH, min_equal: int = MIN_EQUAL_LENGTH
) -> list[np.ndarray]:
    """Index batches, longest first, each holding at most `max_tokens` padded tokens (and `max_batch` inputs).

    A length shared by at least `min_equal` inputs gets batches of its own: no padding at all, which measured
    ~8% faster on CPU than batches cut across lengths (bench/embed.py corpus); rarer lengths share mixed batches.
    """
    lengths = np.asarray(lengths)
    values, counts = np.unique(lengths, return_counts=True)
    common = values[counts >= min_equal]
    groups = [np.flatnonzero(lengths == value) for value in common]
    mixed = np.flatnonzero(~np.isin(lengths, common))
    groups.append(mixed[np.argsort(-lengths[mixed], kind="stable")])
    batches = []
    for group in groups:
        start = 0
        while start < len(group):
            size = max(1, min(max_batch, max_tokens // max(1, int(lengths[group[start]]))))
            batches.append(group[start : start + size])
            start += size
    batches.sort(key=lambda batch: -int(lengths[batch[0]]))
    return batches


@dataclass
class Embedded:
    """One call's results in input order: pooled `vectors` (n, dim), or per-token arrays with their tokens and offsets."""

    vectors: np.ndarray | list[np.ndarray]
    truncated: list[bool]
    tokens: list[list[str]] | None = None
    offsets: list[list[tuple[int, int]]] | None = None


class Embedder:
    """A loaded encoder plus the pooling recipe: texts in, vectors out."""

    def __init__(self, model: str | None, opts: EmbedOptions) -> None:
        from bertcli.inference import TorchBackend
        from bertcli.modeling import load_tokenizer, model_max_length, resolve_model

        opts.validate()
        self.opts = opts
        self.path = resolve_model(model)
        self.tokenizer = load_tokenizer(self.path)
        encoder = load_encoder(self.path)
        config = encoder.config
        if opts.pooling == "pooler" and getattr(encoder, "pooler", None) is None:
            raise ModelError(
                "this model has no trained pooler layer", file=self.path, hint="use --pooling mean (or cls, max)"
            )
        if opts.pooling != "pooler" and getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # its output would be computed and thrown away
        limit = model_max_length(self.tokenizer, config)
        if opts.max_length is not None and opts.max_length > limit:
            raise UsageError(f"--max-length {opts.max_length} exceeds the model's limit of {limit}")
        self.max_length = opts.max_length or default_max_length(self.path, self.tokenizer, config)
        num_layers = config.num_hidden_layers
        self.layers = [num_layers] if opts.pooling == "pooler" else parse_layers(opts.layers, num_layers)
        concat = opts.layer_agg == "concat" and len(self.layers) > 1
        self.dim = config.hidden_size * (len(self.layers) if concat else 1)
        if opts.pooling == "pooler":
            self.outputs: tuple[str, ...] = ("pooler_output",)
        elif self.layers == [num_layers]:
            self.outputs = ("last_hidden_state",)
        else:
            self.outputs = ("hidden_states",)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.backend = TorchBackend(encoder, opts.precision)

    def describe(self) -> str:
        if self.opts.pooling == "pooler":
            return "the pooler output"
        kind = "token vectors" if self.opts.token_level else f"{self.opts.pooling} pooling"
        if len(self.layers) == 1:
            return f"{kind} of layer {self.layers[0]}"
        return f"{kind} of layers {','.join(map(str, self.layers))} ({self.opts.layer_agg})"

    def embed(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> Embedded:
        """Embed `texts` in length-sorted, dynamically padded batches; results come back in input order."""
        from bertcli.inference import encode, length_sorted_batches, pad

        encoded = encode(self.tokenizer, texts, None, self.max_length, offsets=self.opts.token_level)
        lengths = [len(ids) for ids in encoded.input_ids]
        if self.opts.batch_size:
            batches = length_sorted_batches(lengths, self.opts.batch_size)
        else:
            batches = token_budget_batches(lengths, self.opts.batch_tokens)
        results: list[Any] = [None] * len(texts)
        for indices in batches:
            features = pad(encoded, indices, self.pad_id)
            out = self.backend.forward(features, self.outputs)
            for i, row in zip(indices, self._reduce(out, features["attention_mask"])):
                results[i] = row
            if on_batch is not None:
                on_batch(len(indices))
        if self.opts.token_level:
            tokens = [self.tokenizer.convert_ids_to_tokens(ids) for ids in encoded.input_ids]
            return Embedded(results, encoded.truncated, tokens, encoded.offsets)
        vectors = np.stack(results) if results else np.zeros((0, self.dim), dtype=np.float32)
        return Embedded(vectors, encoded.truncated)

    def _token_states(self, out: dict[str, np.ndarray]) -> np.ndarray:
        """(batch, seq, dim) token vectors from the selected layers, averaged or concatenated."""
        if "last_hidden_state" in out:
            return out["last_hidden_state"]
        stacked = out["hidden_states"][:, self.layers]
        if len(self.layers) == 1:
            return stacked[:, 0]
        if self.opts.layer_agg == "mean":
            return stacked.mean(axis=1)
        return np.concatenate(list(stacked.transpose(1, 0, 2, 3)), axis=-1)

    def _reduce(self, out: dict[str, np.ndarray], mask: np.ndarray) -> Sequence[np.ndarray]:
        """Pool one batch to one vector per input (or keep each input's real tokens), padding excluded."""
        if self.opts.pooling == "pooler":
            return _normalized(out["pooler_output"]) if self.opts.normalize else out["pooler_output"]
        states = self._token_states(out)
        if self.opts.token_level:
            lengths = mask.sum(axis=1)
            rows = [states[i, :n] for i, n in enumerate(lengths)]
            return [_normalized(r) for r in rows] if self.opts.normalize else [np.ascontiguousarray(r) for r in rows]
        weights = mask.astype(states.dtype)
        if self.opts.pooling == "mean":
            pooled = np.einsum("bs,bsd->bd", weights, states) / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
        elif self.opts.pooling == "cls":
            pooled = states[:, 0]
        else:
            pooled = np.where(mask[:, :, None] > 0, states, -np.inf).max(axis=1)
        pooled = pooled.astype(np.float32, copy=False)
        return _normalized(pooled) if self.opts.normalize else pooled


def _normalized(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


@dataclass
class ExportOptions:
    """Where and how the vectors are written."""

    output_format: str | None = None
    dtype: str = "float32"
    include_text: bool = False
    chunk_size: int | None = None
    resume: bool = False

    def validate(self) -> None:
        if self.dtype not in ("float32", "float16"):
            raise UsageError(f"unknown --dtype {self.dtype!r}", hint="choose float32 or float16")
        if self.chunk_size is not None and self.chunk_size <= 0:
            raise UsageError("--chunk-size must be positive")


@dataclass
class ExportResult:
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


def embed_shared(embedder: Embedder, texts: Sequence[str], launch: Any, on_batch: Callable[[int], None] | None = None) -> Embedded:
    """`embedder.embed` with the texts dealt out among the launch's processes; every process gets all results in input order."""
    world = launch.num_processes
    if world == 1:
        return embedder.embed(texts, on_batch)
    from bertcli.runtime.distributed import shared_map

    scaled = None if on_batch is None else lambda n: on_batch(n * world)  # the others advance alike

    def embed_rows(own: list[str]) -> list[tuple[Any, ...]]:
        if not own:
            return []
        part = embedder.embed(own, scaled)
        return list(zip(part.vectors, part.truncated, part.tokens, part.offsets) if embedder.opts.token_level else zip(part.vectors, part.truncated))

    columns = list(zip(*shared_map(launch, list(texts), embed_rows)))
    if embedder.opts.token_level:
        return Embedded(*(list(column) for column in columns))
    return Embedded(np.stack(columns[0]), list(columns[1]))


def export_embeddings(
    model: str | None, source: str | None, output: str, data: DataOptions, opts: EmbedOptions, export: ExportOptions
) -> ExportResult:
    """Embed every input record and write the vectors, in input order, chunk by chunk (resumable with export.resume)."""
    from bertcli.modeling import DEFAULT_HUB_ID
    from bertcli.progress import Progress
    from bertcli.vector_io import WRITERS, FollowerWriter, output_format

    export.validate()
    fmt = output_format(output, export.output_format, opts.token_level)
    embedder = Embedder(model, opts)
    chunk_size = export.chunk_size or (1000 if opts.token_level else 10_000)
    name = "<stdin>" if source in (None, "-") else source
    fingerprint = {
        "model": embedder.path, "source": str(Path(name).resolve()) if name != "<stdin>" else name, "format": fmt,
        "dim": embedder.dim, "dtype": export.dtype, "include_text": export.include_text, "max_length": embedder.max_length,
        "text_column": data.text_column, "id_column": data.id_column,
        **{k: v for k, v in asdict(opts).items() if k not in ("batch_size", "batch_tokens", "precision", "max_length")},
    }  # fmt: skip
    launch = processes()
    if launch.num_processes > 1 and name == "<stdin>":
        raise UsageError("under a multi-process launch embed reads a file, not stdin (each process reads the input)")
    writer = WRITERS[fmt](output, fingerprint, export.dtype, export.resume) if launch.is_main_process else None
    if launch.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        resumed = broadcast_object_list([writer.rows if writer else 0])[0]
        writer = writer or FollowerWriter(resumed)
    skip, truncated, empty = writer.rows, 0, 0
    log.info(
        "embedding with %s: %s, dim %d, max length %d%s", model or DEFAULT_HUB_ID, embedder.describe(), embedder.dim,
        embedder.max_length, f"; resuming after {skip} inputs" if skip else "",
    )  # fmt: skip
    records = iter_records(source, data)
    if skip and sum(1 for _ in itertools.islice(records, skip)) < skip:
        writer.close()
        raise DataError(f"the input has fewer records than the partial export ({skip})", file=name, hint="rerun without --resume")
    start = time.perf_counter()
    columns: Columns | None = None
    try:
        with Progress(None, "embed", unit="sentences", enabled=launch.is_main_process) as progress:
            for chunk in chunked(records, chunk_size):
                columns = columns or record_columns(chunk[0], data, name)
                batch, texts = _output_records(chunk, columns, writer.rows, export.include_text, name)
                empty += sum(not t.strip() for t in texts)
                result = embed_shared(embedder, texts, launch, on_batch=lambda n: progress.advance(n, examples=n))
                truncated += sum(result.truncated)
                if opts.token_level:
                    for out, tokens, offsets in zip(batch, result.tokens, result.offsets):
                        out["tokens"], out["offsets"] = tokens, [list(o) for o in offsets]
                writer.append(batch, result.vectors)
    except KeyboardInterrupt:
        writer.close()
        if writer.output is None:
            raise
        raise Interrupted(
            f"interrupted after {writer.rows} inputs (kept in {writer.partial})", hint="rerun the same command with --resume to continue"
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
    seconds = time.perf_counter() - start
    if empty:
        log.warning("%d empty input(s) were embedded as empty text", empty)
    if truncated:
        log.info("%d input(s) longer than %d tokens were truncated", truncated, embedder.max_length)
    return ExportResult(output, fmt, writer.rows, embedder.dim, seconds, skip, truncated, empty, embedder.max_length)
