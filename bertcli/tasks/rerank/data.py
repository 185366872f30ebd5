"""A reranker's training data: each query with its positives and its given negatives, from (query, positive[,
negatives]) pairs or (query, document, label) rows; and the first stage that mines more negatives."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bertcli.config import DataOptions
from bertcli.data.retrieval import PairColumns, pair_texts, pairs_table
from bertcli.errors import DataError, UsageError

log = logging.getLogger("bertcli")
CLAIMED_QUERIES, CLAIMED_DOCUMENTS = ("query",), ("document", "passage")
RELEVANCE_COLUMNS = ("label", "relevance", "relevant", "is_relevant", "score", "target", "rel", "grade")


def is_rerank_table(names: Sequence[str]) -> bool:
    """A table finetune trains a reranker on without --task: a `query` column and a document (or passage) column
    (question/passage tables stay classification data: yes/no questions about a passage)."""
    lowered = {name.lower() for name in names}
    return bool(lowered & set(CLAIMED_QUERIES)) and bool(lowered & set(CLAIMED_DOCUMENTS))


@dataclass
class QueryGroups:
    """Each distinct query once, with its relevant documents and the negatives the data gives for it."""

    queries: list[str]
    positives: list[list[str]]
    negatives: list[list[str]]
    columns: PairColumns
    rows: int

    def subset(self, indices: Sequence[int]) -> QueryGroups:
        pick = list(indices)
        return QueryGroups(
            [self.queries[i] for i in pick],
            [self.positives[i] for i in pick],
            [self.negatives[i] for i in pick],
            self.columns,
            self.rows,
        )

    @property
    def documents(self) -> list[str]:
        """Every distinct document, positives first: the pool negatives are mined from."""
        return list(
            dict.fromkeys([d for docs in self.positives for d in docs] + [d for n in self.negatives for d in n])
        )


def read_groups(path: str, options: DataOptions) -> QueryGroups:
    """Rows grouped by query. With a relevance column (label, relevance, score, ...: a number or a boolean) a row is
    relevant when it is above 0; without one every row's document is relevant and its negative columns are not. A
    query's negatives never include one of its positives, nor the same text twice."""
    table, columns = pairs_table(path, options)
    names = table.dataset.column_names
    if columns is None:
        raise DataError(
            "no query and document columns",
            file=path,
            hint=f"columns are: {', '.join(names)}; name them query and positive (or document, with a 0/1 label), "
            "or pass --text-column and --text-pair-column",
        )
    queries, documents, negatives = pair_texts(table, columns)
    labels = _relevance(table, columns, options)
    index: dict[str, int] = {}
    positives: list[list[str]] = []
    given: list[list[str]] = []
    for row, (query, document) in enumerate(zip(queries, documents)):
        group = index.setdefault(query, len(index))
        if group == len(positives):
            positives.append([])
            given.append([])
        (positives if labels is None or labels[row] > 0 else given)[group].append(document)
        given[group].extend(column[row] for column in negatives)
    kept = [i for i in range(len(positives)) if positives[i]]
    if not kept:
        raise DataError("no query has a relevant document", file=path, hint="a reranker needs rows with label > 0")
    if len(kept) < len(positives):
        log.info("%s: %d queries have no relevant document and are left out", path, len(positives) - len(kept))
    ordered = list(index)
    return QueryGroups(
        [ordered[i] for i in kept],
        [list(dict.fromkeys(positives[i])) for i in kept],
        [[d for d in dict.fromkeys(given[i]) if d not in positives[i]] for i in kept],
        columns,
        len(queries),
    )


def _relevance(table: Any, columns: PairColumns, options: DataOptions) -> list[float] | None:
    """Each row's relevance from --label-column or the first relevance-like column, checked; None without one."""
    names = [n for n in table.dataset.column_names if n not in (columns.query, columns.positive, *columns.negatives)]
    column = options.label_column or next((n for n in names if n.lower() in RELEVANCE_COLUMNS), None)
    if column is None:
        return None
    values = []
    for row, value in enumerate(table.dataset[column]):
        number = float(value) if isinstance(value, (bool, int, float)) and value == value else None
        if number is None:
            raise table.error(
                f"relevance must be a number or true/false, found {value!r}", row=row, column=column,
                hint="a reranker's label is 1 (relevant) or 0 (not), or a grade",
            )  # fmt: skip
        values.append(number)
    return values


def first_stage(retriever: str, precision: str, given: bool = True) -> Any:
    """The encoder at `retriever` (an Embedder: `embed(texts).vectors`), with its own pooling, normalised; `given`:
    the user named it (--retriever), else it is the base model."""
    from bertcli.hub import resolve_model
    from bertcli.tasks import open_bundle

    bundle, task = open_bundle(resolve_model(retriever))
    if task.name != "embedding":
        what = f"--retriever {retriever}" if given else f"the base model {retriever} (the default first stage)"
        raise UsageError(
            f"{what} is a {bundle.meta.task} model, not an encoder",
            hint="pass --retriever with an embedding model directory (bertcli finetune pairs.csv -o runs/emb)",
        )
    return task.load(bundle, normalize=True, precision=precision)
