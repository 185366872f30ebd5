"""Pretraining data: corpus files -> documents -> token blocks, lines or sentence pairs, in memory or streamed.

Documents follow google-research/bert's input format: in .txt one sentence (or paragraph) per line and a
blank line between documents; in a table each row is a document whose lines are its sentences. Everything
is a generator over documents, so the same code serves an in-memory corpus and a `datasets` stream.
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertcli.config import DataOptions
from bertcli.data.columns import resolve_columns
from bertcli.data.formats import check_readable, detect_format, root_message
from bertcli.data.records import iter_records
from bertcli.data.tables import load_table
from bertcli.data.text import spells_surrogate
from bertcli.errors import DataError, UsageError

VAL_CAP = 1000  # held-out examples at most: evaluation stays cheap on a large corpus
NSP_WINDOW = 1000  # documents among which random next segments are drawn (and the window before)
_BUILDERS = {
    "txt": ("text", {}),
    "jsonl": ("json", {}),
    "csv": ("csv", {}),
    "tsv": ("csv", {"sep": "\t"}),
    "parquet": ("parquet", {}),
}


# --- files and documents ---------------------------------------------------------------------------------------


def expand_inputs(patterns: Sequence[str]) -> list[Path]:
    """Files and globs (quoted globs too, so a shell limit on arguments never matters), in a stable order."""
    files: list[Path] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not matches:
                raise DataError("no files match", file=pattern)
            files.extend(matches)
        elif Path(pattern).is_dir():
            raise DataError(
                "is a directory, expected a data file", file=pattern, hint="pass its files, e.g. 'DIR/*.txt'"
            )
        else:
            files.append(check_readable(pattern))
    return list(dict.fromkeys(files))


def corpus_fingerprint(files: Sequence[Path]) -> dict[str, Any]:
    """SHA-256 of every file and of the whole corpus, recorded in bertcli.json."""
    entries, whole = [], hashlib.sha256()
    for file in files:
        digest = hashlib.sha256()
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        entries.append({"file": str(file.resolve()), "bytes": file.stat().st_size, "sha256": digest.hexdigest()})
        whole.update(digest.digest())
    return {"sha256": whole.hexdigest(), "files": entries}


def read_documents(files: Sequence[Path], options: DataOptions, streaming: bool) -> Iterator[list[str]]:
    """Documents as lists of non-blank lines; a file never continues the previous file's document."""
    for file in files:
        fmt = detect_format(str(file), options.format)
        if fmt not in _BUILDERS:
            raise DataError(
                f"cannot read {fmt} as a corpus", file=file, hint="use .txt, .jsonl, .csv, .tsv or .parquet"
            )
        rows, column = _stream(file, fmt, options) if streaming else _table(file, options)
        try:
            yield from _documents(rows, column, fmt == "txt", file)
        except DataError:
            raise
        except Exception as exc:  # a stream fails while it is read, e.g. on bytes that are not UTF-8
            raise DataError(f"cannot read as {fmt}: {root_message(exc)}", file=file) from None


def _table(file: Path, options: DataOptions):
    table = load_table(str(file), options)
    column = "text" if table.format == "txt" else table.columns(options, need_label=False).text
    return table.dataset.select_columns([column]), column


def _stream(file: Path, fmt: str, options: DataOptions):
    import datasets

    datasets.disable_progress_bars()
    builder, kwargs = _BUILDERS[fmt]
    if fmt == "jsonl" and spells_surrogate(file):  # Arrow's JSON reader refuses it: bertcli's reader repairs it
        rows = datasets.IterableDataset.from_generator(iter_records, gen_kwargs={"path": str(file), "options": options})
    else:
        rows = datasets.load_dataset(builder, data_files=str(file.resolve()), split="train", streaming=True, **kwargs)
    if fmt == "txt":
        return rows, "text"
    first = next(iter(rows), None)
    if first is None:
        raise DataError("file has no rows", file=file)
    strings = [name for name, value in first.items() if isinstance(value, str)]
    return rows, resolve_columns(list(first), strings, options, str(file)).text


def _documents(rows: Any, column: str, txt: bool, file: Path) -> Iterator[list[str]]:
    document: list[str] = []
    row = 0
    for batch in rows.iter(batch_size=1000):
        for value in batch[column]:
            row += 1
            if txt:
                if value.strip():
                    document.append(value.strip())
                elif document:
                    yield document
                    document = []
            elif isinstance(value, str):
                lines = [line.strip() for line in value.splitlines() if line.strip()]
                if lines:
                    yield lines
            elif value is not None:
                raise DataError(f"expected text, found {type(value).__name__}", file=file, row=row, column=column)
    if document:
        yield document


def tokenized_documents(
    documents: Iterable[list[str]], tokenizer: Any, lines_per_call: int = 4096
) -> Iterator[list[list[int]]]:
    """Documents as lists of token-id lines, tokenized many lines per call (the fast tokenizer is batched)."""
    pending: list[list[str]] = []
    count = 0

    def flush() -> Iterator[list[list[int]]]:
        flat = [line for doc in pending for line in doc]
        encoded = tokenizer(flat, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False)
        ids = encoded["input_ids"]
        start = 0
        for doc in pending:
            lines = [line for line in ids[start : start + len(doc)] if line]
            start += len(doc)
            if lines:
                yield lines

    for doc in documents:
        pending.append(doc)
        count += len(doc)
        if count >= lines_per_call:
            yield from flush()
            pending, count = [], 0
    if pending:
        yield from flush()


# --- examples ------------------------------------------------------------------------------------------------


@dataclass
class Specials:
    cls: int
    sep: int
    pad: int
    mask: int

    @classmethod
    def of(cls, tokenizer: Any) -> Specials:
        ids = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.mask_token_id)
        if None in ids:
            raise UsageError("the tokenizer lacks one of [CLS], [SEP], [PAD], [MASK], which BERT pretraining needs")
        return cls(*ids)


def _example(ids: list[int], types: list[int] | None = None, nsp: int | None = None) -> dict[str, Any]:
    example: dict[str, Any] = {"input_ids": np.asarray(ids, dtype=np.int32)}
    if types is not None:
        example["token_type_ids"] = np.asarray(types, dtype=np.int8)
    if nsp is not None:
        example["next_sentence_label"] = nsp
    return example


def packed_blocks(docs: Iterable[list[list[int]]], max_length: int, sp: Specials) -> Iterator[dict[str, Any]]:
    """Consecutive text cut into full [CLS] ... [SEP] blocks (no padding), a [SEP] between documents.

    This is RoBERTa's FULL-SENTENCES input and run_mlm's grouping: no block is wasted on padding.
    """
    width = max_length - 2
    buffer: list[int] = []
    for doc in docs:
        if buffer:
            buffer.append(sp.sep)
        for line in doc:
            buffer.extend(line)
        while len(buffer) >= width:
            yield _example([sp.cls, *buffer[:width], sp.sep])
            buffer = buffer[width:]
            if buffer[:1] == [sp.sep]:
                buffer = buffer[1:]
    if buffer:
        yield _example([sp.cls, *buffer, sp.sep])


def line_examples(docs: Iterable[list[list[int]]], max_length: int, sp: Specials) -> Iterator[dict[str, Any]]:
    """One [CLS] line [SEP] example per line, truncated to max_length."""
    for doc in docs:
        for line in doc:
            yield _example([sp.cls, *line[: max_length - 2], sp.sep])


def nsp_pairs(
    docs: Iterable[list[list[int]]], max_length: int, sp: Specials, seed: int, short_seq_prob: float = 0.1
) -> Iterator[dict[str, Any]]:
    """Sentence pairs for next-sentence prediction, as google-research/bert's create_pretraining_data builds them.

    Segment A is a random-length prefix of a chunk of consecutive sentences; half the time B is the rest of
    the chunk (label 0), else a span from another document (label 1) and the unused sentences are put back.
    Random documents are drawn from the same window of documents and the window before it.
    """
    previous: list[list[list[int]]] = []
    window: list[list[list[int]]] = []
    number = 0
    for doc in docs:
        window.append(doc)
        if len(window) == NSP_WINDOW:
            yield from _window_pairs(window, previous, max_length, sp, (seed, number), short_seq_prob)
            previous, window, number = window, [], number + 1
    if window:
        if len(window) + len(previous) < 2:
            hint = "separate documents by blank lines (.txt) or use one row per document"
            raise DataError("--nsp needs at least two documents", hint=hint)
        yield from _window_pairs(window, previous, max_length, sp, (seed, number), short_seq_prob)


def _window_pairs(window, previous, max_length: int, sp: Specials, seed: tuple[int, int], short_seq_prob: float):
    rng = np.random.default_rng(seed)  # per window: the same pairs whether the corpus is streamed or not
    pool = window + previous
    max_tokens = max_length - 3
    for d, doc in enumerate(window):
        target = max_tokens if rng.random() >= short_seq_prob else int(rng.integers(2, max_tokens + 1))
        chunk: list[list[int]] = []
        length, i = 0, 0
        while i < len(doc):
            chunk.append(doc[i])
            length += len(doc[i])
            if i == len(doc) - 1 or length >= target:
                a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
                a = [t for line in chunk[:a_end] for t in line]
                if len(chunk) == 1 or rng.random() < 0.5:
                    other = pool[(d + 1 + int(rng.integers(len(pool) - 1))) % len(pool)]  # any document but d
                    b: list[int] = []
                    for line in other[int(rng.integers(len(other))) :]:
                        b.extend(line)
                        if len(b) >= target - len(a):
                            break
                    label = 1
                    i -= len(chunk) - a_end
                else:
                    b = [t for line in chunk[a_end:] for t in line]
                    label = 0
                _truncate_pair(a, b, max_tokens, rng)
                ids = [sp.cls, *a, sp.sep, *b, sp.sep]
                yield _example(ids, [0] * (len(a) + 2) + [1] * (len(b) + 1), label)
                chunk, length = [], 0
            i += 1


def _truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: np.random.Generator) -> None:
    """Trim the longer segment, from the front or the back at random, until the pair fits."""
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


# --- held-out slice and streams --------------------------------------------------------------------------------


@dataclass
class Holdout:
    """Which examples are validation: every `every`-th, the first `cap` of them (deterministic, also for a stream)."""

    every: int
    cap: int = VAL_CAP

    @classmethod
    def for_split(cls, val_split: float, total: int | None = None) -> Holdout | None:
        if val_split <= 0:
            return None
        every = max(1, round(1 / val_split))
        if total is not None:  # spread the capped slice over the whole corpus
            every = max(every, -(-total // VAL_CAP))
        return cls(every)

    def __call__(self, index: int) -> bool:
        return index % self.every == 0 and index // self.every < self.cap

    @property
    def end(self) -> int:
        return self.every * self.cap


class ExampleStream(torch.utils.data.IterableDataset):
    """Training examples read afresh each pass, minus the held-out ones, through a seeded shuffle buffer."""

    def __init__(
        self, make: Callable[[], Iterator[dict[str, Any]]], holdout: Holdout | None, seed: int, buffer: int = 10_000
    ) -> None:
        self.make, self.holdout, self.seed, self.buffer = make, holdout, seed, buffer
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        pool: list[dict[str, Any]] = []
        for index, example in enumerate(self.make()):
            if self.holdout is not None and self.holdout(index):
                continue
            example["key"] = (self.epoch << 40) + index  # a new pass masks the same block differently
            if len(pool) < self.buffer:
                pool.append(example)
                continue
            slot = int(rng.integers(self.buffer))
            yield pool[slot]
            pool[slot] = example
        rng.shuffle(pool)
        yield from pool


# --- the corpus as training and validation examples -------------------------------------------------------------


def example_source(
    files: list[Path], data: DataOptions, tokenizer: Any, max_length: int, mode: str, streaming: bool, seed: int
) -> Callable[[], Iterator[dict[str, Any]]]:
    """A function that reads the corpus from the start and yields examples ("packed" blocks, "lines" or "nsp" pairs)."""
    specials = Specials.of(tokenizer)

    def make() -> Iterator[dict[str, Any]]:
        docs = tokenized_documents(read_documents(files, data, streaming), tokenizer)
        if mode == "nsp":
            return nsp_pairs(docs, max_length, specials, seed)
        return (line_examples if mode == "lines" else packed_blocks)(docs, max_length, specials)

    return make


def with_keys(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Number in-memory examples: the key seeds their masks (see MaskingCollator)."""
    for key, example in enumerate(examples):
        example["key"] = key
    return examples


@dataclass
class Datasets:
    train: Any  # a list of examples, or an ExampleStream
    lengths: list[int] | None
    validation: list[dict[str, Any]]
    train_examples: int | None


def split_examples(
    make: Callable[[], Iterator[dict[str, Any]]], val_split: float, streaming: bool, seed: int
) -> Datasets:
    """In memory: every example, minus a held-out slice. Streaming: the slice is read from the stream's head."""
    if streaming:
        holdout = Holdout.for_split(val_split)
        validation: list[dict[str, Any]] = []
        if holdout is not None:
            for index, example in enumerate(make()):
                if index >= holdout.end:
                    break
                if holdout(index):
                    validation.append(example)
        return Datasets(ExampleStream(make, holdout, seed), None, with_keys(validation), None)
    examples = list(make())
    holdout = Holdout.for_split(val_split, len(examples))
    train = [e for i, e in enumerate(examples) if holdout is None or not holdout(i)]
    validation = [e for i, e in enumerate(examples) if holdout is not None and holdout(i)]
    if not train:
        raise DataError("the corpus is too small: no training examples are left", hint="add text or lower --val-split")
    return Datasets(with_keys(train), [len(e["input_ids"]) for e in train], with_keys(validation), len(train))
