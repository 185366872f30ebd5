"""The tasks, and the registry that maps training data and model bundles to them, so no command branches on a task.

Each fine-tuning task package has the same modules, each with its function of the same name: `finetune`,
`evaluate`, `predict`, and `predictor.load` (the Python API). They are imported only when called.
"""

from __future__ import annotations

import importlib
from typing import Any

from bertcli.bundle import bundle_dir, read_meta
from bertcli.errors import ModelError, UsageError

CLASSIFICATION_TASKS = ("single_label", "multi_label", "regression")


def training_task(cfg: Any) -> str:
    """The task package for a finetune configuration: NER for --task ner or tagged input, else classification."""
    from bertcli.tasks.ner.formats import ner_format

    if cfg.task == "ner" or (cfg.task is None and ner_format(cfg.train, cfg.data.format)):
        return "ner"
    return "classification"


def label_task(cfg: Any) -> str:
    """What a finetune configuration learns: ner, or single_label, multi_label or regression from its labels."""
    if training_task(cfg) == "ner":
        return "ner"
    from bertcli.data.labels import infer_labels
    from bertcli.data.tables import load_table

    table = load_table(cfg.train, cfg.data)
    columns = table.columns(cfg.data, need_label=True)
    return infer_labels(table, columns.label, cfg.data, cfg.task).task


def bundle_task(model_dir: str) -> str:
    """The task package that evaluates and predicts with a saved model directory."""
    task = read_meta(bundle_dir(model_dir)).get("task")
    if task == "ner":
        return "ner"
    if task in CLASSIFICATION_TASKS:
        return "classification"
    raise ModelError(
        f"a {task} model has no classification head",
        file=model_dir,
        hint="fine-tune it first (bertcli finetune --model DIR), or use bertcli embed for its vectors",
    )


def _entry(task: str, name: str) -> Any:
    return getattr(importlib.import_module(f"bertcli.tasks.{task}.{name}"), name)


def finetune(cfg: Any, callbacks: Any = None) -> Any:
    """Fine-tune a classifier or tagger, whichever the data and --task call for."""
    task = training_task(cfg)
    if task == "ner":
        cfg.task = "ner"
    return _entry(task, "finetune")(cfg, callbacks)


def evaluate(cfg: Any) -> dict[str, Any]:
    """The metrics report of a saved model on labelled data; with `cfg.others`, every model's report and the
    mean +- std (sample std) of their metrics."""
    import dataclasses

    from bertcli.config import to_dict
    from bertcli.reports.metrics import summarize
    from bertcli.runtime.distributed import require_file_under_launch

    require_file_under_launch(cfg.input, "evaluate")
    models = [cfg.model_dir, *cfg.others]
    kinds = [bundle_task(model) for model in models]
    if len(set(kinds)) > 1:
        mixed = ", ".join(f"{model} ({kind})" for model, kind in zip(models, kinds))
        raise UsageError(f"models of different tasks cannot be averaged: {mixed}", hint="evaluate them separately")
    reports = [_entry(kinds[0], "evaluate")(dataclasses.replace(cfg, model_dir=model, others=[])) for model in models]
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
    return _entry(bundle_task(cfg.model_dir), "predict")(cfg)


def load(model_dir: str, **options: Any) -> Any:
    """A predictor for a saved model directory: `predict(texts)` gives the records `bertcli predict` writes."""
    task = bundle_task(model_dir)
    return importlib.import_module(f"bertcli.tasks.{task}.predictor").load(model_dir, **options)
