"""The shared data layer: a path or '-' becomes a `datasets.Dataset` (or a record stream for predict).

Every command reads input through here, so formats, column detection, label handling and the
error messages for bad data (file, line/row, column, fix) are the same everywhere.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bertcli.config import DataOptions
from bertcli.errors import DataError, UsageError

if TYPE_CHECKING:
    import datasets

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".txt": "txt"}
TEXT_CANDIDATES = (
    "text", "sentence", "review", "content", "document", "comment", "body", "tweet", "utterance",
    "question", "query", "sentence1", "premise", "text_a",
)  # fmt: skip
PAIR_CANDIDATES = {"sentence1": "sentence2", "premise": "hypothesis", "text_a": "text_b", "question": "context"}
LABEL_CANDIDATES = ("label", "labels", "category", "class", "target", "sentiment", "score", "rating", "stars", "y")
ID_CANDIDATES = ("id", "idx", "guid", "uid")


@dataclass
class Columns:
    text: str
    pair: str | None = None
    label: str | None = None
    id: str | None = None

    def describe(self) -> str:
        parts = [f"text={self.text!r}"]
        if self.pair:
            parts.append(f"pair={self.pair!r}")
        if self.label:
            parts.append(f"label={self.label!r}")
        if self.id:
            parts.append(f"id={self.id!r}")
        return ", ".join(parts)


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

    def error(self, message: str, row: int | None = None, column: str | None = None, hint: str | None = None):
        line = None if row is None else self.line_of(row)
        return DataError(
            message, file=self.source, line=line, row=(row + 1) if row is not None and line is None else None,
            column=column, hint=hint,
        )  # fmt: skip


@dataclass
class LabelSpec:
    """The task and label vocabulary, taken from training data and saved with the model."""

    task: str
    names: list[str] = field(default_factory=list)

    @property
    def num_labels(self) -> int:
        return 1 if self.task == "regression" else len(self.names)


def detect_format(path: str, explicit: str | None = None) -> str:
    if explicit:
        fmt = explicit.lower().lstrip(".")
        fmt = {"json": "jsonl", "text": "txt"}.get(fmt, fmt)
        if fmt not in set(FORMATS.values()):
            raise UsageError(f"unknown --format {explicit!r}", hint="choose csv, tsv, jsonl, parquet or txt")
        return fmt
    suffixes = [s.lower() for s in Path(path).suffixes]
    for suffix in reversed(suffixes):
        if suffix in FORMATS:
            return FORMATS[suffix]
    raise DataError(
        "cannot tell the file format from its name", file=path,
        hint="use a .csv/.tsv/.jsonl/.json/.parquet/.txt suffix or pass --format",
    )  # fmt: skip


def load_table(path: str, options: DataOptions | None = None) -> Table:
    """Read a whole file (or all of stdin for '-') into an Arrow-backed Dataset."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    options = options or DataOptions()
    if path == "-":
        return _load_stdin(options)
    fmt = detect_format(path, options.format)
    file = Path(path)
    if not file.exists():
        raise DataError("file not found", file=path)
    if file.is_dir():
        raise DataError("is a directory, expected a data file", file=path)
    if file.stat().st_size == 0:
        raise DataError("file is empty", file=path)
    if fmt != "parquet":
        check_utf8(file)
    builder, kwargs = {
        "csv": ("csv", {}),
        "tsv": ("csv", {"sep": "\t", "quoting": csv.QUOTE_NONE}),
        "jsonl": ("json", {}),
        "parquet": ("parquet", {}),
        "txt": ("text", {"keep_linebreaks": False}),
    }[fmt]
    try:
        ds = datasets.load_dataset(builder, data_files=str(file.resolve()), split="train", **kwargs)
    except Exception as exc:  # datasets wraps the parser's error; show the innermost message
        raise DataError(f"cannot parse as {fmt}: {root_message(exc)}", file=path) from None
    if len(ds) == 0:
        raise DataError("file has no rows", file=path)
    return Table(ds, path, fmt)


def _load_stdin(options: DataOptions) -> Table:
    """Buffer piped input to a temp file so it gets the same Arrow loading path as files."""
    data = sys.stdin.buffer.read()
    if not data.strip():
        raise DataError("standard input is empty", file="<stdin>")
    fmt = options.format or ("jsonl" if data.lstrip()[:1] == b"{" else "txt")
    suffix = {"csv": ".csv", "tsv": ".tsv", "jsonl": ".jsonl", "parquet": ".parquet", "txt": ".txt"}[detect_format("", fmt)]
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as tmp:
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


def check_utf8(file: Path, chunk_lines: int = 100_000) -> None:
    """Fail with the line number of the first byte sequence that is not UTF-8."""
    with open(file, "rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"bytes are not valid UTF-8 (at byte {exc.start} of the line)", file=file, line=line_no,
                    hint="re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8",
                ) from None  # fmt: skip


def root_message(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def pick_column(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    return next((lowered[c] for c in candidates if c in lowered), None)


def resolve_columns(table: Table, options: DataOptions, need_label: bool, label_column: str | None = None) -> Columns:
    """Choose the text/pair/label/id columns: explicit options first, then well-known names."""
    names = list(table.dataset.column_names)

    def require(column: str | None, flag: str) -> str | None:
        if column is not None and column not in names:
            raise table.error(
                f"column {column!r} (from {flag}) not found", hint=f"columns are: {', '.join(names)}"
            )
        return column

    label = require(options.label_column or label_column, "--label-column") or pick_column(names, LABEL_CANDIDATES)
    if need_label and label is None:
        raise table.error(
            "no label column found", hint=f"columns are: {', '.join(names)}; pass --label-column"
        )
    ident = require(options.id_column, "--id-column")
    text = require(options.text_column, "--text-column") or pick_column(names, TEXT_CANDIDATES)
    if text is None:
        features = table.dataset.features
        strings = [n for n in names if n not in (label, ident) and getattr(features[n], "dtype", "") in ("string", "large_string")]
        if len(strings) != 1:
            raise table.error(
                "cannot tell which column holds the text", hint=f"columns are: {', '.join(names)}; pass --text-column"
            )
        text = strings[0]
    pair = require(options.text_pair_column, "--text-pair-column")
    if pair is None and options.text_column is None and text in PAIR_CANDIDATES and PAIR_CANDIDATES[text] in names:
        pair = PAIR_CANDIDATES[text]
    return Columns(text=text, pair=pair, label=label if need_label or label in names else None, id=ident)


def validate_texts(table: Table, columns: Columns) -> None:
    """Every example needs non-empty text; report the first bad row with its position."""
    for column in filter(None, (columns.text, columns.pair)):
        values = table.dataset[column]
        for row, value in enumerate(values):
            if value is None or (isinstance(value, str) and not value.strip()):
                raise table.error("empty text", row=row, column=column, hint="remove the row or fill it in")
            if not isinstance(value, str):
                raise table.error(f"expected text, found {type(value).__name__}", row=row, column=column)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def _split(value: Any, sep: str | None) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if sep is not None:
        return [part.strip() for part in str(value).split(sep) if part.strip()]
    return [str(value)]


def infer_labels(table: Table, column: str, options: DataOptions, task: str | None = None) -> LabelSpec:
    """Infer the task from the label cells and collect the label set, sorted stably."""
    values = table.dataset[column]
    for row, value in enumerate(values):
        if _is_missing(value):
            raise table.error("missing label", row=row, column=column, hint="every training row needs a label")
    if task is None:
        if any(isinstance(v, list) for v in values) or (
            options.label_sep is not None and any(options.label_sep in str(v) for v in values)
        ):
            task = "multi_label"
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and any(
            isinstance(v, float) and not float(v).is_integer() for v in values
        ):
            task = "regression"
        else:
            task = "single_label"
    if task == "regression":
        for row, value in enumerate(values):
            try:
                float(value)
            except (TypeError, ValueError):
                raise table.error(f"regression label {value!r} is not a number", row=row, column=column) from None
        return LabelSpec("regression")
    if task == "multi_label":
        names = {name for v in values for name in _split(v, options.label_sep)}
    else:
        names = {_label_name(v) for v in values}
    return LabelSpec(task, _sort_labels(names))


def _label_name(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _sort_labels(names: set[str]) -> list[str]:
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def encode_labels(table: Table, column: str, spec: LabelSpec, options: DataOptions) -> list[Any]:
    """Labels as model targets: class ids, multi-hot float rows, or floats.

    Labels the model does not know are counted and reported together, since at evaluate time
    a user wants the whole picture, not only the first offending row.
    """
    values = table.dataset[column]
    missing = [row for row, v in enumerate(values) if _is_missing(v)]
    if missing:
        raise table.error(
            f"missing label ({len(missing)} row(s) in all)", row=missing[0], column=column,
            hint="every row needs a label",
        )  # fmt: skip
    if spec.task == "regression":
        return [float(v) for v in values]
    index = {name: i for i, name in enumerate(spec.names)}
    unknown: Counter[str] = Counter()
    first_unknown: int | None = None
    encoded: list[Any] = []
    for row, value in enumerate(values):
        names = _split(value, options.label_sep) if spec.task == "multi_label" else [_label_name(value)]
        bad = [n for n in names if n not in index]
        if bad:
            unknown.update(bad)
            first_unknown = row if first_unknown is None else first_unknown
            continue
        if spec.task == "multi_label":
            row_vec = [0.0] * len(spec.names)
            for n in names:
                row_vec[index[n]] = 1.0
            encoded.append(row_vec)
        else:
            encoded.append(index[names[0]])
    if unknown:
        listing = ", ".join(f"{name!r} ({count})" for name, count in unknown.most_common(10))
        raise table.error(
            f"{sum(unknown.values())} label(s) the model does not know: {listing}", row=first_unknown, column=column,
            hint=f"the model knows: {', '.join(spec.names)}",
        )  # fmt: skip
    return encoded


def split_validation(labels: Sequence[Any], fraction: float, seed: int, stratify: bool) -> tuple[list[int], list[int]]:
    """Seeded train/validation indices; stratified by class when every class has at least two examples."""
    from sklearn.model_selection import train_test_split

    indices = list(range(len(labels)))
    counts = Counter(labels) if stratify else Counter()
    use_strata = stratify and min(counts.values()) >= 2 and len(counts) <= len(labels) * fraction
    train, val = train_test_split(
        indices, test_size=fraction, random_state=seed, stratify=list(labels) if use_strata else None
    )
    return sorted(train), sorted(val)


# --- streaming input for predict ---------------------------------------------------------------


def chunked(records: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive lists of up to `size` records, read lazily."""
    while chunk := list(itertools.islice(records, size)):
        yield chunk


def iter_records(path: str | None, options: DataOptions) -> Iterator[dict[str, Any]]:
    """Yield input records one at a time without reading ahead, so `tail -f x | bertcli predict` works.

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
            reader = csv.DictReader(_lines(stream), delimiter="\t" if fmt == "tsv" else ",")
            for record in reader:
                line_no = reader.line_num
                yield record
        elif fmt == "jsonl":
            for line_no, line in enumerate(_lines(stream), 1):
                if not line.strip():
                    yield {}
                    continue
                yield json_record(line, source, line_no)
        else:
            for line_no, line in enumerate(_lines(stream), 1):
                yield {"text": line.rstrip("\r\n")}
    except UnicodeDecodeError:
        raise DataError("bytes are not valid UTF-8", file=source, line=line_no + 1, hint="re-encode the input as UTF-8") from None


def json_record(line: str, source: str, line_no: int) -> dict[str, Any]:
    """One JSONL line as a dict, or an error naming its line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg} (char {exc.pos})", file=source, line=line_no) from None
    if not isinstance(record, dict):
        raise DataError("expected a JSON object per line", file=source, line=line_no)
    return record


def _lines(stream: io.TextIOBase) -> Iterator[str]:
    """Line iterator that hands each line over as soon as it arrives (no read-ahead buffering)."""
    while True:
        line = stream.readline()
        if not line:
            return
        yield line

def file_fingerprint(path: str) -> dict[str, Any]:
    if path == "-":
        return {"file": "<stdin>"}
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"file": str(Path(path).resolve()), "sha256": digest.hexdigest()}
