"""The one Accelerate training loop, shared by finetune and pretrain.

A task hands the loop a `TrainJob` (model, data, loss, evaluation); `train` reads top to bottom: build the
loader and schedule, resume, then run the steps, with an `Evaluator` owning the evaluation cadence, the best
metric, patience and the best weights. It returns a `TrainResult` instead of changing the job.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bertcli.config import TrainOptions
from bertcli.errors import DataError, Interrupted, UsageError
from bertcli.progress import Progress
from bertcli.reports.metrics import greater_is_better
from bertcli.training.batches import LengthGroupedBatches
from bertcli.training.checkpoints import (
    TrainState,
    find_checkpoint,
    load_checkpoint,
    restore_best,
    save_best,
    save_checkpoint,
)
from bertcli.training.model_settings import (
    cpu_training_kernels,
    enable_gradient_checkpointing,
    set_attention_dropout,
)
from bertcli.training.run import finish_trackers, start_tracking

log = logging.getLogger("bertcli")


@dataclass
class TrainJob:
    """What a task gives the loop.

    `lengths` None means `dataset` is a stream (a torch IterableDataset with set_epoch, needing max_steps);
    `size` says what a batch counts for the rate in `unit` (default: its rows), `stats` adds live fields
    to the progress bar (e.g. masked-token accuracy of the last batch).
    """

    model: torch.nn.Module
    dataset: Any
    lengths: Sequence[int] | None
    collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]
    loss: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]
    evaluate: Callable[[torch.nn.Module, Any], dict[str, float]] | None
    metric: str
    unit: str = "ex"
    size: Callable[[dict[str, torch.Tensor]], int] | None = None
    stats: Callable[[], dict[str, float]] | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the run's resolved configuration, logged to --report-to
    groups: Sequence[int] | None = None  # the text each example comes from (windows of long texts)
    per_group: int | None = None  # at most this many examples of a text per epoch, drawn afresh each epoch
    sampler: Callable[[int, int], Any] | None = None  # (batch size, seed) -> batches; default length-grouped


@dataclass
class Callbacks:
    """Hooks into a run: after each optimizer step, and after each evaluation (e.g. to prune a tuning trial)."""

    on_step: Callable[[int], None] | None = None
    on_evaluate: Callable[[int, dict[str, float]], None] | None = None


@dataclass
class TrainResult:
    """The finished run: its state, the best (or last) model unwrapped, and its weights whole even when
    FSDP/DeepSpeed sharded them (every process gathers, the main one saves)."""

    state: TrainState
    model: torch.nn.Module
    weights: dict[str, torch.Tensor]


@dataclass
class Schedule:
    """How long the run is: optimizer steps per epoch and in all, warmup, and epochs to iterate."""

    steps_per_epoch: int
    total_steps: int
    warmup: int
    epochs: int
    log_every: int  # about 200 points per loss curve, whatever the run's length (bertcli.json stays small)

    @classmethod
    def of(cls, batches: int | None, opts: TrainOptions) -> Schedule:
        """`batches` per epoch, or None for a stream (its steps count as one long epoch; epoch = passes completed)."""
        streaming = batches is None
        steps_per_epoch = opts.max_steps if streaming else math.ceil(batches / opts.grad_accum)
        total = opts.max_steps or max(1, math.ceil(steps_per_epoch * opts.epochs))
        epochs = sys.maxsize if streaming else math.ceil(total / steps_per_epoch)
        return cls(steps_per_epoch, total, int(opts.warmup_ratio * total), epochs, max(1, total // 200))


class Stopwatch:
    """Training time only: evaluation and checkpoints run paused, so examples/s measures the steps."""

    def __init__(self, state: TrainState) -> None:
        self.state, self.since = state, None

    def start(self) -> None:
        self.since = time.perf_counter()

    def stop(self) -> None:
        if self.since is not None:
            self.state.train_seconds += time.perf_counter() - self.since
            self.since = None

    @contextmanager
    def paused(self):
        self.stop()
        try:
            yield
        finally:
            self.start()


@dataclass
class Run:
    """One training run's fixed parts, which the evaluator and the step loop share."""

    job: TrainJob
    opts: TrainOptions
    accelerator: Any
    run_dir: Path
    schedule: Schedule
    callbacks: Callbacks


class Evaluator:
    """When to evaluate, and what follows: history, the best metric and its weights, patience, the hook."""

    def __init__(self, run: Run) -> None:
        self.evaluate, self.metric = run.job.evaluate, run.job.metric
        self.higher = greater_is_better(run.job.metric)
        self.every, self.patience = run.opts.eval_steps, run.opts.patience
        self.accelerator, self.run_dir, self.schedule, self.callbacks = (
            run.accelerator,
            run.run_dir,
            run.schedule,
            run.callbacks,
        )
        self.streaming = run.job.lengths is None

    def due(self, state: TrainState, epoch_ended: bool, finished: bool) -> bool:
        """After a step: every --eval-steps steps and at the last step. At an epoch's end: when no --eval-steps."""
        if self.evaluate is None or state.stopped_early:
            return False
        if self.every:
            return not epoch_ended and (state.global_step % self.every == 0 or finished)
        return epoch_ended

    def __call__(self, model: Any, state: TrainState) -> None:
        metrics = self.evaluate(model, self.accelerator)
        epoch = state.epoch if self.streaming else state.global_step / self.schedule.steps_per_epoch
        record = {"step": state.global_step, "epoch": round(epoch, 3), **metrics}
        state.history.append(record)
        self.accelerator.log(
            {f"eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}, step=state.global_step
        )
        value = metrics.get(self.metric)
        improved = value is not None and (
            state.best_metric is None or (value > state.best_metric if self.higher else value < state.best_metric)
        )
        if improved:
            state.best_metric, state.best_step, state.bad_evals = value, state.global_step, 0
            save_best(self.accelerator, model, self.run_dir, state.global_step)
        else:
            state.bad_evals += 1
        if self.accelerator.is_main_process:
            keys = dict.fromkeys(k for k in ("loss", self.metric, "f1_macro") if k in metrics)
            shown = "  ".join(f"{k} {metrics[k]:.4f}" for k in keys)
            log.info(
                "step %d (epoch %.2f): %s%s", state.global_step, record["epoch"], shown, "  *best*" if improved else ""
            )
        if self.patience is not None and state.bad_evals >= self.patience:
            state.stopped_early = True
            log.info("early stopping: no improvement of %s in %d evaluations", self.metric, self.patience)
        if self.callbacks.on_evaluate is not None:
            self.callbacks.on_evaluate(state.global_step, metrics)


def _optimizer(model: torch.nn.Module, opts: TrainOptions) -> torch.optim.Optimizer:
    """AdamW without weight decay on biases and LayerNorm weights, as in BERT."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name or name.endswith(".bias") else decay).append(param)
    groups = [{"params": decay, "weight_decay": opts.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # the fused kernel is ~8x faster than the default on CPU: a fifth of a MiniLM step becomes negligible
    return torch.optim.AdamW(groups, lr=opts.lr, fused=True)


def _loader(job: TrainJob, opts: TrainOptions) -> tuple[Any, Any]:
    """The DataLoader and what sets its epoch: length-grouped batches, or the stream itself.

    A private generator: starting an epoch's iterator must not draw from the global RNG that dropout uses,
    or a resumed run would be one draw off the uninterrupted one.
    """
    from torch.utils.data import DataLoader

    generator = torch.Generator().manual_seed(opts.seed)
    if job.lengths is None:
        if not opts.max_steps:
            raise UsageError("a streamed dataset needs --max-steps (its length is not known in advance)")
        return DataLoader(
            job.dataset, batch_size=opts.batch_size, collate_fn=job.collate, generator=generator
        ), job.dataset
    sampler = (
        job.sampler(opts.batch_size, opts.seed)
        if job.sampler is not None
        else LengthGroupedBatches(job.lengths, opts.batch_size, opts.seed, groups=job.groups, per_group=job.per_group)
    )
    return DataLoader(job.dataset, batch_sampler=sampler, collate_fn=job.collate, generator=generator), sampler


def _log_plan(job: TrainJob, opts: TrainOptions, accelerator: Any, schedule: Schedule) -> None:
    effective = opts.batch_size * opts.grad_accum * accelerator.num_processes
    span = (
        "as many passes as needed"
        if job.lengths is None
        else f"{schedule.total_steps / schedule.steps_per_epoch:.3g} epochs"
    )
    if job.lengths is None:
        examples = "a stream"
    elif job.per_group:
        examples = f"{len(job.lengths)} examples ({job.per_group} of each text per epoch)"
    else:
        examples = f"{len(job.lengths)} examples"
    log.info(
        "training on %s: batch %d x %d accumulation x %d process(es) = %d, %d steps (%s), warmup %d, lr %.3g, %s precision",
        examples,
        opts.batch_size,
        opts.grad_accum,
        accelerator.num_processes,
        effective,
        schedule.total_steps,
        span,
        schedule.warmup,
        opts.lr,
        accelerator.mixed_precision,
    )


def train(
    job: TrainJob, opts: TrainOptions, accelerator: Any, run_dir: Path, callbacks: Callbacks | None = None
) -> TrainResult:
    """Run the loop to the end (or an early stop) and return the best weights (the last where nothing was evaluated)."""
    from transformers import get_linear_schedule_with_warmup

    callbacks = callbacks or Callbacks()
    loader, epochs_of = _loader(job, opts)
    if opts.gradient_checkpointing:
        enable_gradient_checkpointing(job.model)
    if opts.attention_dropout is not None:
        set_attention_dropout(job.model, opts.attention_dropout)
    restore_kernels = cpu_training_kernels(job.model, accelerator.device)
    model = job.model.to(accelerator.device)
    optimizer = _optimizer(model, opts)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    schedule = Schedule.of(None if job.lengths is None else len(loader), opts)
    scheduler = get_linear_schedule_with_warmup(optimizer, schedule.warmup, schedule.total_steps)
    accelerator.register_for_checkpointing(scheduler)
    _log_plan(job, opts, accelerator, schedule)
    checkpoint = find_checkpoint(opts.resume, run_dir)
    state = load_checkpoint(accelerator, checkpoint) if checkpoint is not None else TrainState()
    if opts.report_to != "none":
        start_tracking(accelerator, job.config, run_dir)
    run = Run(job, opts, accelerator, run_dir, schedule, callbacks)
    evaluator = Evaluator(run)
    steps = _Steps(run, state)
    try:
        steps.run(model, optimizer, scheduler, loader, epochs_of, evaluator)
    except KeyboardInterrupt:
        save_checkpoint(accelerator, run_dir, state)
        finish_trackers(accelerator)
        raise Interrupted(
            f"interrupted at step {state.global_step}; checkpoint saved in {run_dir}",
            hint="continue with the same command and --resume auto",
        ) from None
    restore_kernels()
    restore_best(accelerator, model, run_dir, state)
    finish_trackers(accelerator)
    weights = accelerator.get_state_dict(model)  # a collective under FSDP/ZeRO-3: every process gathers
    return TrainResult(state, accelerator.unwrap_model(model), weights)


class _Steps:
    """The epoch and step loop: one optimizer step per synchronised batch, logging, evaluation and checkpoints."""

    def __init__(self, run: Run, state: TrainState) -> None:
        self.job, self.opts, self.accelerator, self.run_dir = run.job, run.opts, run.accelerator, run.run_dir
        self.schedule, self.state, self.callbacks = run.schedule, state, run.callbacks
        self.size = run.job.size or (lambda batch: len(batch["input_ids"]))
        self.interval_loss: list[Any] = []  # this log interval's step losses, on the device: read once per interval
        self.shown: dict[str, float] = {}  # the last interval's mean loss, for the progress bar
        self.clock = Stopwatch(state)

    def run(
        self, model: Any, optimizer: Any, scheduler: Any, loader: Any, epochs_of: Any, evaluator: Evaluator
    ) -> None:
        state, schedule = self.state, self.schedule
        progress = Progress(schedule.total_steps, "train", unit=self.job.unit, enabled=self.accelerator.is_main_process)
        progress.advance(state.global_step)
        with progress:
            for epoch in range(state.epoch, schedule.epochs):
                # Accelerate's loader sets its sampler's epoch from its own pass counter, which a resumed process
                # starts at 0: without this, the epoch after a resume would replay the first epoch's order
                if hasattr(loader, "set_epoch"):
                    loader.set_epoch(epoch)
                epochs_of.set_epoch(epoch)
                state.epoch = epoch
                batches = (
                    self.accelerator.skip_first_batches(loader, state.batches_done) if state.batches_done else loader
                )
                finished = self._epoch(model, optimizer, scheduler, batches, evaluator, progress)
                with self.clock.paused():
                    if evaluator.due(state, epoch_ended=True, finished=finished):
                        evaluator(model, state)
                    state.epoch, state.batches_done = epoch + 1, 0
                    if finished or state.stopped_early:
                        break
                    save_checkpoint(self.accelerator, self.run_dir, state)
        self.clock.stop()

    def _epoch(
        self, model: Any, optimizer: Any, scheduler: Any, batches: Any, evaluator: Evaluator, progress: Progress
    ) -> bool:
        """One pass over the batches; True when the run's last step is done."""
        state, opts, accelerator = self.state, self.opts, self.accelerator
        model.train()
        self.clock.start()
        seen = False
        for index, batch in enumerate(batches, start=state.batches_done):
            seen = True
            with accelerator.accumulate(model):
                loss = self.job.loss(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and opts.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), opts.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            counted = self.size(batch)
            state.examples_seen += counted * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            state.global_step += 1
            state.batches_done = index + 1
            self._record(loss.detach(), scheduler.get_last_lr()[0], counted, progress)
            finished = state.global_step >= self.schedule.total_steps
            with self.clock.paused():
                if evaluator.due(state, epoch_ended=False, finished=finished):
                    evaluator(model, state)
                    model.train()
                if opts.save_steps and state.global_step % opts.save_steps == 0:
                    save_checkpoint(accelerator, self.run_dir, state)
            if finished or state.stopped_early:
                self.clock.stop()
                return finished
        self.clock.stop()
        if self.job.lengths is None and not seen:
            raise DataError("the training stream yielded no batches", hint="check the input files")
        return False

    def _record(self, loss: Any, lr: float, counted: int, progress: Progress) -> None:
        """The loss curve (mean loss per log interval), trackers, progress and the step hook. The loss stays on the
        device until the interval ends: reading it every step would wait for a GPU every step."""
        state = self.state
        self.interval_loss.append(loss)
        if state.global_step % self.schedule.log_every == 0:
            mean = torch.stack(self.interval_loss).double().mean().item()
            point = {"step": state.global_step, "loss": round(mean, 5), "lr": lr}
            state.train_log.append(point)
            self.accelerator.log({"train/loss": point["loss"], "train/lr": lr}, step=state.global_step)
            self.interval_loss.clear()
            self.shown = {"loss": mean}
        extra = self.job.stats() if self.job.stats is not None else {}
        progress.advance(1, examples=counted, **self.shown, **extra, lr=lr)
        if self.callbacks.on_step is not None:
            self.callbacks.on_step(state.global_step)
