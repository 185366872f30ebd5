"""Retrieval and similarity data: a BEIR directory, a pairs table, or sentence pairs with a gold score (STS).

- BEIR: `corpus.jsonl` ({"_id", "title", "text"}), `queries.jsonl` ({"_id", "text"}) and `qrels.tsv` or
  `qrels/test.tsv` (query-id, corpus-id, score; a header line).
- Pairs: a table with a query (or anchor) column and a positive column, optionally negative columns; each row's
  positive is the right answer for its query among all rows' positives (and negatives). Identical texts are one
  document, and identical queries one query with all their positives.
- STS: two text columns and a numeric score column.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertcli.config import DataOptions
from bertcli.data.columns import pick_column
from bertcli.data.formats import check_readable, json_record
from bertcli.errors import DataError

QUERY_CANDIDATES = ("query", "anchor", "question", "sentence1", "sentence_a", "text1", "text")
POSITIVE_CANDIDATES = (
    "positive",
    "pos",
    "document",
    "passage",
    "answer",
    "sentence2",
    "sentence_b",
    "text2",
    "context",
)
SCORE_CANDIDATES = ("score", "similarity", "label", "gold")


@dataclass
class PairColumns:
    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)
    score: str | None = None

    def describe(self) -> str:
        named = [f"query={self.query!r}", f"positive={self.positive!r}"]
        named += [f"negative={n!r}" for n in self.negatives]
        return ", ".join(named + ([f"score={self.score!r}"] if self.score else []))


def pair_columns(
    names: Sequence[str], options: DataOptions, source: str, numeric: Sequence[str] = ()
) -> PairColumns | None:
    """The (query, positive[, negatives][, score]) columns of a table, or None when it has no such pair.
    --text-column and --text-pair-column name the query and the positive."""
    names = list(names)
    for given in (options.text_column, options.text_pair_column):
        if given is not None and given not in names:
            raise DataError(f"column {given!r} not found", file=source, hint=f"columns are: {', '.join(names)}")
    query = options.text_column or pick_column(names, QUERY_CANDIDATES)
    rest = [n for n in names if n != query]
    positive = options.text_pair_column or pick_column(rest, POSITIVE_CANDIDATES)
    if query is None or positive is None:
        return None
    negatives = [n for n in names if n.lower().startswith("neg") and n not in (query, positive)]
    score = options.label_column or pick_column([n for n in numeric if n not in (query, positive)], SCORE_CANDIDATES)
    return PairColumns(query, positive, negatives, score)


@dataclass
class Retrieval:
    """Queries, a corpus and the relevant documents of each query (qrels: query id -> {doc id: relevance})."""

    queries: dict[str, str]
    corpus: dict[str, str]
    qrels: dict[str, dict[str, float]]
    source: str


@dataclass
class Similarity:
    first: list[str]
    second: list[str]
    scores: list[float]
    source: str


def is_beir(path: str) -> bool:
    return Path(path).is_dir() and (Path(path) / "corpus.jsonl").is_file()


def read_beir(directory: str) -> Retrieval:
    root = Path(directory)
    corpus = {}
    for line_no, record in _jsonl(root / "corpus.jsonl"):
        text = " ".join(str(record.get(k) or "").strip() for k in ("title", "text")).strip()
        corpus[_id(record, root / "corpus.jsonl", line_no)] = _text(text, root / "corpus.jsonl", line_no)
    queries = {}
    for line_no, record in _jsonl(_need(root / "queries.jsonl")):
        queries[_id(record, root / "queries.jsonl", line_no)] = _text(
            record.get("text"), root / "queries.jsonl", line_no
        )
    qrels_file = next((p for p in (root / "qrels.tsv", root / "qrels" / "test.tsv") if p.is_file()), None)
    if qrels_file is None:
        raise DataError("no qrels.tsv or qrels/test.tsv", file=root, hint="BEIR layout: query-id, corpus-id, score")
    qrels: dict[str, dict[str, float]] = {}
    with open(qrels_file, encoding="utf-8", newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle, delimiter="\t"), 1):
            if line_no == 1 and row and not _is_number(row[-1]):
                continue  # the header
            if len(row) < 3 or not _is_number(row[2]):
                raise DataError("expected query-id, corpus-id, score", file=qrels_file, line=line_no)
            query, doc = row[0], row[1]
            if query not in queries:
                raise DataError(f"query id {query!r} is not in queries.jsonl", file=qrels_file, line=line_no)
            if doc not in corpus:
                raise DataError(f"corpus id {doc!r} is not in corpus.jsonl", file=qrels_file, line=line_no)
            qrels.setdefault(query, {})[doc] = float(row[2])
    return Retrieval({q: queries[q] for q in qrels}, corpus, qrels, str(root))


def encoder_data_kind(path: str, options: DataOptions) -> str | None:
    """What an encoder can be measured on in `path`: 'retrieval' (BEIR, or query/positive pairs), 'similarity'
    (pairs with a score), or None (plain texts)."""
    if is_beir(path):
        return "retrieval"
    _, columns = pairs_table(path, options)
    if columns is None:
        return None
    return "similarity" if columns.score is not None else "retrieval"


def pairs_table(path: str, options: DataOptions) -> tuple[Any, PairColumns | None]:
    """A table and its (query, positive[, negatives][, score]) columns; None when it has no query and positive."""
    from bertcli.data.tables import load_table

    table = load_table(path, options)
    features = table.dataset.features
    numeric = [n for n in table.dataset.column_names if getattr(features[n], "dtype", "").startswith(("int", "float"))]
    return table, pair_columns(table.dataset.column_names, options, path, numeric)


def read_pairs(path: str, options: DataOptions) -> Retrieval | Similarity:
    """A pairs table as retrieval data, or as STS pairs when it has a numeric score column."""
    table, columns = pairs_table(path, options)
    if columns is None:
        raise DataError(
            "an encoder is evaluated on retrieval or similarity pairs, and this table has no query and positive columns",
            file=path,
            hint=f"columns are: {', '.join(table.dataset.column_names)}; name them query/anchor and positive, "
            "or pass --text-column and --text-pair-column; to classify, fine-tune it first (bertcli finetune --model DIR)",
        )
    first, second, negatives = pair_texts(table, columns)
    if columns.score is not None:
        return Similarity(first, second, [float(s) for s in table.dataset[columns.score]], path)
    return pairs_retrieval(first, second, negatives, path)


def pair_texts(table: Any, columns: PairColumns) -> tuple[list[str], list[str], list[list[str]]]:
    """The queries, the positives, and each negative column's texts, of a table read by `pairs_table`."""
    from bertcli.data.columns import Columns

    queries, positives = table.texts(Columns(columns.query, columns.positive))
    return queries, positives, [table.texts(Columns(n))[0] for n in columns.negatives]


def pairs_retrieval(
    queries: Sequence[str], positives: Sequence[str], negatives: Sequence[Sequence[str]], source: str
) -> Retrieval:
    """Each query's positive is relevant; every positive and negative is in the corpus, identical texts once."""
    doc_ids: dict[str, str] = {}
    query_ids: dict[str, str] = {}
    qrels: dict[str, dict[str, float]] = {}
    for text in [*positives, *(t for column in negatives for t in column)]:
        doc_ids.setdefault(text, f"d{len(doc_ids)}")
    for query, positive in zip(queries, positives):
        qid = query_ids.setdefault(query, f"q{len(query_ids)}")
        qrels.setdefault(qid, {})[doc_ids[positive]] = 1.0
    return Retrieval(
        {qid: text for text, qid in query_ids.items()}, {did: text for text, did in doc_ids.items()}, qrels, source
    )


def _jsonl(path: Path):
    file = check_readable(path)
    with open(file, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if line.strip():
                yield line_no, json_record(line, str(path), line_no)


def _need(path: Path) -> Path:
    if not path.is_file():
        raise DataError("file not found (BEIR layout: corpus.jsonl, queries.jsonl, qrels.tsv)", file=path)
    return path


def _id(record: dict, path: Path, line_no: int) -> str:
    value = record.get("_id", record.get("id"))
    if value is None:
        raise DataError("missing _id", file=path, line=line_no)
    return str(value)


def _text(value: object, path: Path, line_no: int) -> str:
    text = "" if value is None else str(value).strip()
    if not text:
        raise DataError("empty text", file=path, line=line_no, hint="remove the record or fill it in")
    return text


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
