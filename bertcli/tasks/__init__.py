"""The task table: every task bertcli knows, the models it saves, and the one way commands reach it.

A command asks this module, never a task by name: `finetune` picks the task from the data, `evaluate`, `predict`,
`load`, `serve` and `export` from the bundle's `task`. Each entry's task object is imported on first use, so
`--help` and the ONNX path stay light. Adding a task is one package with a `TASK` (see `contract.Task`) and one
entry in `TABLE`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bertcli.bundle import Bundle, bundle_dir
from bertcli.errors import ModelError, UsageError
from bertcli.tasks.contract import Task


def _classification() -> Task:
    from bertcli.tasks.classification import TASK

    return TASK


def _ner() -> Task:
    from bertcli.tasks.ner import TASK

    return TASK


def _rerank() -> Task:
    from bertcli.tasks.rerank import TASK

    return TASK


def _search() -> Task:
    from bertcli.tasks.search import TASK

    return TASK


def _embedding() -> Task:
    from bertcli.tasks.embedding import TASK

    return TASK


@dataclass(frozen=True)
class TaskEntry:
    name: str
    saves: tuple[str, ...]  # the `task` values of the bundles it writes and loads (bertcli.json)
    task: Callable[[], Task]  # the task object, imported on first use


# the first task whose `trains` claims a finetune configuration trains it: NER claims tagged data, rerank a table of
# query/document rows, embedding a table of query/positive pairs, classification any table, so it comes last
TABLE = (
    TaskEntry("ner", ("ner",), _ner),
    TaskEntry("rerank", ("reranker",), _rerank),
    TaskEntry("embedding", ("encoder", "pretraining"), _embedding),
    TaskEntry("classification", ("single_label", "multi_label", "regression"), _classification),
    TaskEntry("search", ("index",), _search),  # built by `bertcli index`; claims no finetune data
)


def training_task(cfg: Any) -> Task:
    """The task a finetune configuration trains: the one --task names, else the first whose data reader claims it."""
    for entry in TABLE:
        task = entry.task()
        if task.trains(cfg):
            return task
    raise UsageError(f"nothing trains from {cfg.train}")  # classification claims every table


def bundle_task(bundle: Bundle) -> Task:
    """The task that loads, evaluates and predicts with a saved model directory."""
    kind = bundle.meta.task or "encoder"
    for entry in TABLE:
        if kind in entry.saves:
            return entry.task()
    raise ModelError(f"a {kind} model is not one bertcli knows", file=bundle.directory)


def open_bundle(model_dir: str) -> tuple[Bundle, Task]:
    bundle = Bundle.open(bundle_dir(model_dir))
    return bundle, bundle_task(bundle)


def finetune(cfg: Any, callbacks: Any = None) -> Any:
    """Fine-tune a model for whichever task the data and --task call for."""
    return training_task(cfg).finetune(cfg, callbacks)


def evaluate(cfg: Any) -> dict[str, Any]:
    """The metrics report of a saved model on labelled data; with `cfg.others`, every model's report and the
    mean +- std (sample std) of their metrics."""
    from bertcli.config import to_dict
    from bertcli.reports.metrics import summarize
    from bertcli.runtime.distributed import require_file_under_launch

    require_file_under_launch(cfg.input, "evaluate")
    models = [cfg.model_dir, *cfg.others]
    opened = [open_bundle(model) for model in models]
    if len({id(task) for _, task in opened}) > 1 or len({b.meta.task for b, _ in opened}) > 1:
        mixed = ", ".join(f"{model} ({b.meta.task})" for model, (b, _) in zip(models, opened))
        raise UsageError(f"models of different tasks cannot be averaged: {mixed}", hint="evaluate them separately")
    task = opened[0][1]
    reports = [
        task.evaluate(dataclasses.replace(cfg, model_dir=model, others=[]), bundle)
        for model, (bundle, _) in zip(models, opened)
    ]
    if len(reports) == 1:
        return reports[0]
    return {
        "models": reports,
        "summary": summarize(reports),
        "data": cfg.input,
        "n": reports[0]["n"],
        "unit": reports[0]["unit"],
        "config": to_dict(cfg),
    }


def predict(cfg: Any) -> Any:
    """A `Prediction`: the output format and the stream of record chunks, in input order."""
    from bertcli.runtime.distributed import require_file_under_launch

    require_file_under_launch(cfg.input, "predict")
    bundle, task = open_bundle(cfg.model_dir)
    return task.predict(cfg, bundle)


def load(model_dir: str, **options: Any) -> Any:
    """The predictor of a saved model directory (see `contract.Predictor`)."""
    bundle, task = open_bundle(model_dir)
    return task.load(bundle, **options)


def rerank_candidates(cfg: Any) -> Any:
    """`bertcli rerank`: a `Prediction` of each query's candidates, best first; only a reranker's task offers it."""
    bundle, task = open_bundle(cfg.model_dir)
    if not hasattr(task, "rerank"):
        raise UsageError(
            f"{cfg.model_dir} is a {bundle.meta.task or 'encoder'} model, not a reranker",
            hint="train one: bertcli finetune pairs.csv --task rerank -o DIR",
        )
    return task.rerank(cfg, bundle)


def encoder(model: str | None, **options: Any) -> Any:
    """Any model directory (or hub id) as an encoder of pooled vectors, whatever task it was trained for: what
    `bertcli index` and `bertcli search` embed with. Options as `bertcli.Embedder` takes them."""
    from bertcli.hub import resolve_model

    return _embedding().load(Bundle.open(resolve_model(model)), **options)


def search_index(cfg: Any) -> Any:
    """`bertcli search`: a `Prediction` of each query's hits; only an index's task offers it."""
    bundle, task = open_bundle(cfg.index_dir)
    if not hasattr(task, "search"):
        raise UsageError(
            f"{cfg.index_dir} is a {bundle.meta.task or 'encoder'} model, not an index",
            hint=f"build one: bertcli index DATA -m {cfg.index_dir} -o INDEX_DIR",
        )
    return task.search(cfg, bundle)


def build_index(cfg: Any) -> Any:
    """`bertcli index`: build (or add to) an index directory."""
    from bertcli.tasks.search.build import build_index as build

    return build(cfg)
