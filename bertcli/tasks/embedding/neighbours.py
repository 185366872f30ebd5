"""Nearest-neighbour search over vectors written by `bertcli embed` (exact cosine similarity, numpy only).

    bertcli embed corpus.csv --id-column movie_name --include-text --normalize -o corpus.parquet
    bertcli embed queries.txt --normalize -o queries.parquet --include-text
    python -m bertcli.neighbours corpus.parquet queries.parquet --k 5     # JSONL: one line per query

Exact search is a matrix product: fine up to a few million vectors; beyond that use an ANN index (faiss, hnswlib).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertcli.errors import BertcliError, DataError


@dataclass
class Vectors:
    ids: list[str]
    texts: list[str] | None
    matrix: np.ndarray


def read_vectors(path: str | Path) -> Vectors:
    """Pooled vectors from a bertcli .npy (+ its .ids.txt sidecar) or .parquet file."""
    from bertcli.tasks.embedding.vectors import ids_path

    path = Path(path)
    if not path.is_file():
        raise DataError("vectors file not found", file=path)
    if path.suffix == ".npy":
        matrix = np.load(path)
        sidecar = ids_path(path)
        ids = (
            sidecar.read_text(encoding="utf-8").splitlines()
            if sidecar.is_file()
            else [str(i) for i in range(len(matrix))]
        )
        return Vectors(ids, None, matrix)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "vector" not in table.column_names:
            raise DataError("no 'vector' column (token-level output cannot be searched as sentences)", file=path)
        matrix = np.asarray(table.column("vector").combine_chunks().flatten()).reshape(table.num_rows, -1)
        texts = table.column("text").to_pylist() if "text" in table.column_names else None
        return Vectors([str(i) for i in table.column("id").to_pylist()], texts, matrix)
    raise DataError("vectors must be .npy or .parquet (as written by bertcli embed)", file=path)


def search(corpus: Vectors, queries: Vectors, k: int) -> list[dict[str, Any]]:
    """For each query, the k most cosine-similar corpus rows, best first."""
    if corpus.matrix.shape[1] != queries.matrix.shape[1]:
        raise DataError(
            f"dimensions differ: corpus {corpus.matrix.shape[1]}, queries {queries.matrix.shape[1]}",
            hint="embed both with the same model",
        )

    def unit(m: np.ndarray) -> np.ndarray:
        m = m.astype(np.float32)
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)

    scores = unit(queries.matrix) @ unit(corpus.matrix).T
    k = min(k, len(corpus.ids))
    results = []
    for row, query_scores in enumerate(scores):
        top = np.argpartition(-query_scores, k - 1)[:k]
        top = top[np.argsort(-query_scores[top], kind="stable")]
        hits = []
        for i in top:
            hit: dict[str, Any] = {"id": corpus.ids[i], "score": round(float(query_scores[i]), 6)}
            if corpus.texts is not None:
                hit["text"] = corpus.texts[i]
            hits.append(hit)
        query: dict[str, Any] = {"query": queries.ids[row]}
        if queries.texts is not None:
            query["text"] = queries.texts[row]
        results.append({**query, "neighbours": hits})
    return results


def main(argv: list[str] | None = None) -> int:
    from bertcli.io import dumps

    parser = argparse.ArgumentParser(prog="python -m bertcli.neighbours", description=__doc__.split("\n")[0])
    parser.add_argument("corpus", help="vectors to search (.npy or .parquet from bertcli embed)")
    parser.add_argument("queries", help="query vectors, embedded with the same model")
    parser.add_argument("--k", type=int, default=5, help="neighbours per query (default 5)")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error("--k must be at least 1")
    try:
        results = search(read_vectors(args.corpus), read_vectors(args.queries), args.k)
    except BertcliError as exc:
        sys.stderr.write(f"bertcli: error: {exc}\n")
        return 1
    sys.stdout.write("".join(dumps(r) + "\n" for r in results))
    return 0
