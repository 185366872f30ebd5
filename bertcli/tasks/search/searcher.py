"""A loaded index: queries encoded by the index's own model, then the ANN graph (optionally rescored from the
full-precision vectors), an exact scan, or a hybrid of the dense hits and BM25 fused by reciprocal rank.

`bertcli.load(index_dir).search(queries, k)` in Python; `bertcli search` and serve's /search use the same object.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bertcli.bundle import Bundle, BundleMeta
from bertcli.config.search import HYBRID_DEPTH, RESCORE_FACTOR, RESCORED, RRF_K, SEARCH_K
from bertcli.errors import ModelError, UsageError
from bertcli.inference.encoding import Encoded
from bertcli.inference.scores import unit_rows
from bertcli.tasks.search.store import OpenIndex, model_path, same_weights


class VectorSearch:
    """An opened index searched with vectors already encoded: no model is loaded (what a bench of the index alone,
    or a caller with its own query vectors, needs)."""

    def __init__(self, directory: str | Path, meta: BundleMeta) -> None:
        self.index = OpenIndex(directory, meta)
        self.record = self.index.record

    def hits(
        self, vectors: np.ndarray, k: int = SEARCH_K, *, rescore: bool | None = None, exact: bool = False,
        hybrid: bool = False, ids: Sequence[Any] | None = None, include_text: bool = True,
        texts: Sequence[str] | None = None,
    ) -> list[list[dict[str, Any]]]:  # fmt: skip
        """The hits of encoded queries. `ids` restricts the search to those ids (an exact scan of their vectors)."""
        if k < 1:
            raise UsageError(f"k must be at least 1, got {k}")
        depth = max(k, HYBRID_DEPTH) if hybrid else k
        allowed = None if ids is None else self.index.rows_of(ids)
        if allowed is not None:
            rows, scores = self.index.exact(vectors, depth, allowed)
        elif exact:
            rows, scores = self.index.exact(vectors, depth)
        else:
            rows, scores = self.nearest(vectors, depth, rescore)
        if hybrid:
            if texts is None:
                raise UsageError("hybrid search needs the query texts")
            rows, scores = self._fused(rows, texts, depth, k, allowed)
        return [
            [self._hit(row, score, include_text) for row, score in zip(row_list, score_list) if row >= 0][:k]
            for row_list, score_list in zip(rows, scores)
        ]

    def nearest(self, vectors: np.ndarray, k: int, rescore: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows and scores of each vector's k nearest by the ANN graph (rescored by default for RESCORED dtypes);
        row -1 where the index holds fewer than k."""
        dtype = self.record["dtype"]
        if rescore is None:
            rescore = dtype in RESCORED
        if not rescore:
            return self.index.ann_search(vectors, k)
        candidates, _ = self.index.ann_search(vectors, k * RESCORE_FACTOR[dtype])
        return self.index.rescore(vectors, candidates, k)

    def _fused(
        self, dense: np.ndarray, texts: Sequence[str], depth: int, k: int, allowed: list[int] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Reciprocal rank fusion of each query's dense rows and BM25's top `depth` over the stored texts (of the
        `allowed` rows only, when a filter names them)."""
        import bm25s

        retriever = self.index.bm25()
        tokens = bm25s.tokenize(list(texts), stopwords="en", show_progress=False, return_ids=False)
        mask = None
        if allowed is not None:
            mask = np.zeros(self.index.count, dtype=np.float32)
            mask[allowed] = 1.0
        lexical = _bm25_rows(retriever, tokens, min(depth, self.index.count), mask)
        rows = np.full((len(texts), k), -1, dtype=np.int64)
        scores = np.full((len(texts), k), -np.inf, dtype=np.float32)
        for i, (dense_rows, lexical_rows) in enumerate(zip(dense, lexical)):
            fused: dict[int, float] = {}
            for ranking in (dense_rows, lexical_rows):
                for rank, row in enumerate(int(r) for r in ranking if r >= 0):
                    fused[row] = fused.get(row, 0.0) + 1.0 / (RRF_K + rank + 1)
            best = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
            rows[i, : len(best)] = [row for row, _ in best]
            scores[i, : len(best)] = [score for _, score in best]
        return rows, scores

    def _hit(self, row: int, score: float, include_text: bool) -> dict[str, Any]:
        entry = self.index.entry(int(row))
        hit = {"id": entry["id"], "score": round(float(score), 6)}
        if include_text and "text" in entry:
            hit["text"] = entry["text"]
        return hit


class Searcher(VectorSearch):
    """An index and the encoder its vectors came from; the server batches `run` (query vectors) across requests."""

    kind = "index"
    labels: list[str] = []
    routes = frozenset({"search"})
    takes_pairs = False
    request_options: frozenset[str] = frozenset()

    def __init__(self, bundle: Bundle, *, model: str | None = None, **options: Any) -> None:
        from bertcli.hub import resolve_model
        from bertcli.tasks import encoder

        super().__init__(bundle.directory, bundle.meta)
        made_by = self.record["model"]
        if model is not None and not same_weights(resolve_model(model), made_by["weights"]):
            raise UsageError(
                f"this index was built with {made_by['name']}; its queries must be encoded by that model, not {model}",
                file=bundle.directory,
                hint="leave out --model (the index knows its own), or build an index with the other model",
            )
        path = model_path(self.record)
        if not same_weights(path, made_by["weights"]):
            raise ModelError(
                f"the model at {path} is not the one that built this index (its weights changed)",
                file=bundle.directory,
                hint="rebuild the index with bertcli index, so corpus and queries come from one model",
            )
        settings = {key: made_by[key] for key in ("pooling", "layers", "layer_agg", "max_length")}
        opts = {
            k: v for k, v in options.items() if k in ("batch_size", "precision", "backend", "threads") and v is not None
        }
        self.encoder_model = encoder(path, **settings, normalize=True, **opts)
        self.encoder = self.encoder_model.encoder
        self.backend = self.encoder_model.backend
        self.max_length = self.encoder_model.max_length
        self.dim = self.record["dim"]

    def run(
        self, inputs: Sequence[tuple[str, str | None]], encoded: Encoded | None = None
    ) -> list[tuple[np.ndarray, bool]]:
        """The batch entry: each query's unit vector (cut to the index's dimensions) and whether it was truncated."""
        vectors = self.encoder_model.run(inputs, encoded)
        return [(unit_rows(vector[None, :], self.dim)[0], cut) for vector, cut in vectors]

    def records(self, results: Sequence[tuple[np.ndarray, bool]], **options: Any) -> list[list[dict[str, Any]]]:
        return self.hits(np.stack([vector for vector, _ in results]), **options)

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[list[dict[str, Any]]]:
        if pairs is not None:
            raise UsageError("an index searches single queries, not pairs")
        return self.search(list(texts))

    def encode(self, queries: Sequence[str]) -> np.ndarray:
        return unit_rows(self.encoder_model.embed(list(queries)).vectors, self.dim)

    def search(
        self, queries: str | Sequence[str], k: int = SEARCH_K, *, rescore: bool | None = None, exact: bool = False,
        hybrid: bool = False, ids: Sequence[Any] | None = None, include_text: bool = True,
    ) -> Any:  # fmt: skip
        """Each query's top k hits ({"id", "score", "text"?}), best first; one query (a str) gives one list."""
        single = isinstance(queries, str)
        texts = [queries] if single else list(queries)
        found = self.hits(self.encode(texts), k, rescore=rescore, exact=exact, hybrid=hybrid, ids=ids,
                          include_text=include_text, texts=texts)  # fmt: skip
        return found[0] if single else found


def _bm25_rows(retriever: Any, tokens: list[list[str]], depth: int, mask: np.ndarray | None = None) -> list[list[int]]:
    """BM25's top rows per tokenised query (rows where `mask` is 1 only); a query with no known word has none."""
    vocab = retriever.vocab_dict
    out = []
    for words in tokens:
        known = [word for word in words if word in vocab]
        if not known:
            out.append([])
            continue
        found, scores = retriever.retrieve([known], k=depth, show_progress=False, n_threads=1, weight_mask=mask)
        out.append([int(row) for row, score in zip(found[0], scores[0]) if score > 0])
    return out
