"""The finetune skeleton that classification and NER share: check the output, read the data (the validation split
is made here), check the metric, load the model, train with the one loop, save the bundle. A task supplies only what
differs (`FinetuneTask`)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bertcli.bundle import BundleMeta
from bertcli.config import DEFAULT_METRICS, VALIDATION_METRICS, FinetuneConfig, to_dict, with_defaults
from bertcli.errors import UsageError

log = logging.getLogger("bertcli")


@dataclass
class Prepared:
    """What a task builds for the loop from its data, tokenizer and model, and its facts for bertcli.json."""

    examples: list[dict[str, Any]]
    collate: Callable[[list[dict[str, Any]]], dict[str, Any]]
    loss: Callable[[Any, dict[str, Any]], Any]
    evaluate: Callable[[Any, Any], dict[str, float]] | None
    facts: dict[str, Any]  # BundleMeta's typed fields this task sets (task, labels, max length, ...)
    train_data: dict[str, Any]  # what the run record says of the training data beyond its fingerprint
    cfg: FinetuneConfig  # the configuration with what the task resolved from its data (e.g. the batch size)
    unit: str = "ex"
    groups: list[int] | None = None  # see TrainJob
    per_group: int | None = None
    sampler: Callable[[int, int], Any] | None = None  # the loop's batches (TrainJob.sampler); None: length-grouped
    # after training: (the kept model, accelerator, metric, the kept model's validation value of it, when evaluated)
    finish: Callable[[Any, Any, str, float | None], Finished] | None = None


@dataclass
class Finished:
    """What a task adds once the model is trained: more facts for bertcli.json, and files beside the weights."""

    facts: dict[str, Any]
    write: Callable[[Path], None] | None = None  # into the bundle being staged (main process)


class FinetuneTask(Protocol):
    defaults: dict[str, Any]  # training options the task sets when the user does not (lr, batch size)

    def read(self, cfg: FinetuneConfig) -> Any:
        """Read and check the training and validation data (`held_out` splits them), before any model is loaded."""

    def kind(self, data: Any) -> str:
        """The kind of model the data makes (single_label, multi_label, regression, ner): its validation metrics."""

    def load_model(self, path: str, data: Any) -> Any:
        """The base model at `path` with this task's head for `data`'s labels."""

    def prepare(self, cfg: FinetuneConfig, data: Any, tokenizer: Any, model: Any, accelerator: Any) -> Prepared: ...


@dataclass
class FinetuneResult:
    output: Path
    meta: BundleMeta


def held_out(cfg: FinetuneConfig, count: int, labels: Sequence[Any] | None = None) -> tuple[list[int], list[int]]:
    """The one validation split of every task: (training, validation) indices of `count` items. With --validation
    (its own file) or --val-split 0 everything trains; else a seeded share, stratified by `labels` when given."""
    from bertcli.data.labels import split_validation

    if cfg.validation or cfg.val_split <= 0:
        return list(range(count)), []
    if labels is None:
        return split_validation(list(range(count)), cfg.val_split, cfg.validation_seed, stratify=False)
    return split_validation(list(labels), cfg.val_split, cfg.validation_seed, stratify=True)


def checked_metric(metric: str | None, kind: str) -> str:
    """--metric, or the kind's default; a name the validation does not report is a usage error before any training
    (the loop would never find a best step and keep the last weights)."""
    chosen = metric or DEFAULT_METRICS[kind]
    if chosen not in VALIDATION_METRICS[kind]:
        raise UsageError(
            f"unknown --metric {chosen!r} for a {kind} model",
            hint=f"choose one of {', '.join(VALIDATION_METRICS[kind])}",
        )
    return chosen


def train_task(cfg: FinetuneConfig, task: FinetuneTask, callbacks: Any = None) -> FinetuneResult:
    """Fine-tune `cfg.model` on `cfg.train` for `task` and save the bundle to `cfg.output`."""
    from accelerate.utils import set_seed

    from bertcli.bundle import save_bundle
    from bertcli.hub import load_tokenizer, resolve_model
    from bertcli.runtime.accelerator import make_accelerator
    from bertcli.training.loop import TrainJob, train
    from bertcli.training.run import check_output, finish_run, logs_dir, prepare_run_dir

    cfg.validate()
    out = check_output(cfg.output, cfg.overwrite)
    cfg = dataclasses.replace(cfg, training=with_defaults(cfg.training, task.defaults))
    data = task.read(cfg)
    metric = checked_metric(cfg.training.metric, task.kind(data))
    model_path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_path)
    set_seed(cfg.training.seed)
    opts = cfg.training
    accelerator = make_accelerator(
        opts.precision, opts.report_to, logs_dir(cfg.output), gradient_accumulation_steps=opts.grad_accum
    )
    model = task.load_model(model_path, data)
    prepared = task.prepare(cfg, data, tokenizer, model, accelerator)
    cfg = prepared.cfg  # with what the task resolved from the data (the batch size)
    metric = metric if prepared.evaluate is not None else "loss"
    job = TrainJob(
        model=model,
        dataset=prepared.examples,
        lengths=[len(e["input_ids"]) for e in prepared.examples],
        collate=prepared.collate,
        loss=prepared.loss,
        evaluate=prepared.evaluate,
        metric=metric,
        unit=prepared.unit,
        config=to_dict(cfg),
        groups=prepared.groups,
        per_group=prepared.per_group,
        sampler=prepared.sampler,
    )
    run_dir = prepare_run_dir(cfg.output, cfg.training.resume, accelerator)
    result = train(job, cfg.training, accelerator, run_dir, callbacks)
    finished = (
        prepared.finish(result.model, accelerator, metric, result.state.best_metric)
        if prepared.finish
        else Finished({})
    )
    record = finetune_record(cfg, prepared.train_data, result.state, metric)
    meta = BundleMeta(**prepared.facts, **finished.facts, run=record)

    def write(staging: Path) -> None:
        save_bundle(result.model, tokenizer, staging, meta, result.weights)
        if finished.write is not None:
            finished.write(staging)

    finish_run(accelerator, run_dir, out, write)
    return FinetuneResult(out, meta)


def finetune_record(cfg: FinetuneConfig, train_data: dict[str, Any], state: Any, metric: str) -> dict[str, Any]:
    """The run record of a fine-tuned bundle: data fingerprints, base model, configuration, then the loop's history."""
    from bertcli.data.formats import file_fingerprint
    from bertcli.hub import DEFAULT_HUB_ID
    from bertcli.training.run import provenance, run_record

    return {
        "train_data": {**file_fingerprint(cfg.train), **train_data},
        "base_model": cfg.model or DEFAULT_HUB_ID,
        "config": to_dict(cfg),
        "validation_data": file_fingerprint(cfg.validation) if cfg.validation else {"split": cfg.val_split},
        **run_record(state, metric),
        **provenance(),
    }


def inverse_frequency(labels: Sequence[int], num_labels: int) -> Any:
    """--class-weights auto for single-label targets: n / (classes x count), so rare classes weigh more."""
    import torch

    counts = np.bincount(np.asarray(labels), minlength=num_labels).astype(np.float64)
    return torch.tensor(len(labels) / (num_labels * np.maximum(counts, 1)), dtype=torch.float)


def validation_logits(
    model: Any, accelerator: Any, examples: Sequence[dict[str, Any]], collate: Callable, batch_size: int
) -> list[np.ndarray]:
    """The one evaluation pass of every task during training: each validation example's logits (per-token ones cut
    to the example's length), computed once across the launch's processes (length-sorted shards), in input order
    on every process."""
    import torch

    from bertcli.runtime.distributed import gather_in_order, shard_batches

    lengths = [len(e["input_ids"]) for e in examples]
    batches = shard_batches(lengths, batch_size, accelerator.process_index, accelerator.num_processes)
    model.eval()
    indices: list[int] = []
    outputs: list[np.ndarray] = []
    with torch.inference_mode(), accelerator.autocast():
        for batch in batches:
            features = collate([examples[i] for i in batch.indices])
            inputs = {k: v.to(accelerator.device) for k, v in features.items() if k not in ("labels", "weight")}
            logits = model(**inputs).logits.float().cpu().numpy()
            if batch.real:
                indices.extend(batch.indices)
                outputs.extend(row[: lengths[i]] if row.ndim > 1 else row for i, row in zip(batch.indices, logits))
    return gather_in_order(accelerator, indices, outputs)
