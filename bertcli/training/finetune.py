"""The finetune skeleton that classification and NER share: check the output, read the data, load the model,
train with the one loop, save the bundle. A task supplies only what differs (`FinetuneTask`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bertcli.config import FinetuneConfig, to_dict, with_defaults
from bertcli.inference.encoding import Features

log = logging.getLogger("bertcli")


@dataclass
class Prepared:
    """What a task builds for the loop from its data, tokenizer and model, and its part of bertcli.json."""

    examples: list[dict[str, Any]]
    collate: Callable[[list[dict[str, Any]]], dict[str, Any]]
    loss: Callable[[Any, dict[str, Any]], Any]
    evaluate: Callable[[Any, Any], dict[str, float]] | None
    metric: str
    meta: dict[str, Any]
    unit: str = "ex"
    groups: list[int] | None = None  # see TrainJob
    per_group: int | None = None


class FinetuneTask(Protocol):
    defaults: dict[str, Any]  # training options the task sets when the user does not (lr, batch size)

    def read(self, cfg: FinetuneConfig) -> Any:
        """Read and check the training (and validation) data, before any model is loaded."""

    def load_model(self, path: str, data: Any) -> Any:
        """The base model at `path` with this task's head for `data`'s labels."""

    def prepare(self, cfg: FinetuneConfig, data: Any, tokenizer: Any, model: Any, accelerator: Any) -> Prepared: ...


@dataclass
class FinetuneResult:
    output: Path
    meta: dict[str, Any]


def finetune(cfg: FinetuneConfig, task: FinetuneTask, callbacks: Any = None) -> FinetuneResult:
    """Fine-tune `cfg.model` on `cfg.train` for `task` and save the bundle to `cfg.output`."""
    from accelerate.utils import set_seed

    from bertcli.bundle import DEFAULT_HUB_ID, library_versions, load_tokenizer, resolve_model, save_bundle
    from bertcli.data.formats import file_fingerprint
    from bertcli.reports.model_card import launch_command
    from bertcli.runtime.accelerator import make_accelerator
    from bertcli.training.loop import TrainJob, train
    from bertcli.training.run import check_output, finish_run, logs_dir, prepare_run_dir, run_record

    cfg.validate()
    out = check_output(cfg.output, cfg.overwrite)
    opts = cfg.training = with_defaults(cfg.training, task.defaults)
    data = task.read(cfg)
    model_path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_path)
    set_seed(opts.seed)
    accelerator = make_accelerator(
        opts.precision, opts.report_to, logs_dir(cfg.output), gradient_accumulation_steps=opts.grad_accum
    )
    model = task.load_model(model_path, data)
    prepared = task.prepare(cfg, data, tokenizer, model, accelerator)
    metric = prepared.metric if prepared.evaluate is not None else "loss"
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
    )
    run_dir = prepare_run_dir(cfg.output, opts.resume, accelerator)
    result = train(job, opts, accelerator, run_dir, callbacks)
    meta = {
        **prepared.meta,
        "base_model": cfg.model or DEFAULT_HUB_ID,
        "config": to_dict(cfg),
        "validation_data": file_fingerprint(cfg.validation) if cfg.validation else {"split": cfg.val_split},
        **run_record(result.state, metric),
        "command": launch_command(),
        "versions": library_versions(),
    }
    meta["train_data"] = {**file_fingerprint(cfg.train), **meta.get("train_data", {})}
    finish_run(
        accelerator, run_dir, out, lambda staging: save_bundle(result.model, tokenizer, staging, meta, result.weights)
    )
    return FinetuneResult(out, meta)


def inverse_frequency(labels: Sequence[int], num_labels: int) -> Any:
    """--class-weights auto for single-label targets: n / (classes x count), so rare classes weigh more."""
    import torch

    counts = np.bincount(np.asarray(labels), minlength=num_labels).astype(np.float64)
    return torch.tensor(len(labels) / (num_labels * np.maximum(counts, 1)), dtype=torch.float)


class LiveBackend:
    """The inference `Backend` over the model being trained, on the loop's device and precision (validation)."""

    def __init__(self, model: Any, accelerator: Any) -> None:
        import inspect

        self.model, self.accelerator = model, accelerator
        self.inputs = frozenset(inspect.signature(accelerator.unwrap_model(model).forward).parameters)

    def forward(self, features: Features, outputs: Sequence[str] = ("logits",)) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode(), self.accelerator.autocast():
            tensors = {k: torch.from_numpy(v).to(self.accelerator.device) for k, v in features.items()}
            return {"logits": self.model(**tensors).logits.float().cpu().numpy()}
