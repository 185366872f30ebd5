"""Search: an approximate nearest-neighbour index of vectors (FAISS HNSW; f32, f16, i8, i6 or binary codes with a
full-precision copy on disk for rescoring), built by `bertcli index`, searched by `bertcli search`,
`bertcli.load(index_dir).search` and serve's /search, with the index's own model encoding every query."""

from __future__ import annotations

from typing import Any

from bertcli.errors import UsageError


class Search:
    name = "search"
    head = None  # an index holds no model of its own to export
    default_space = None
    metrics: dict[str, tuple[str, ...]] = {}

    def trains(self, cfg: Any) -> bool:
        return False  # built by `bertcli index`, never by finetune

    def default_metric(self, cfg: Any) -> str:
        raise UsageError("an index is built by bertcli index, not trained")

    def finetune(self, cfg: Any, callbacks: Any = None) -> Any:
        raise UsageError("an index is built by bertcli index, not trained")

    def gate_metric(self, bundle: Any, check: str) -> str | None:
        return None

    def evaluate(self, cfg: Any, bundle: Any) -> dict[str, Any]:
        raise UsageError(
            f"{cfg.model_dir} is an index; evaluate measures the model that built it",
            hint=f"bertcli evaluate {bundle.meta.index['model']['name']} RETRIEVAL_DATA",
        )

    def predict(self, cfg: Any, bundle: Any) -> Any:
        raise UsageError(f"{cfg.model_dir} is an index", hint=f'bertcli search {cfg.model_dir} "a query"')

    def search(self, cfg: Any, bundle: Any) -> Any:
        from bertcli.tasks.search.command import search_records

        return search_records(cfg, bundle)

    def load(self, bundle: Any, **options: Any) -> Any:
        from bertcli.tasks.search.searcher import Searcher

        return Searcher(bundle, **options)


TASK = Search()
