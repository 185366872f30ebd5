"""The one Accelerate training loop, shared by finetune and pretrain.

A task hands the loop a `TrainJob` (model, data, loss, evaluation); the loop owns optimisation,
length-grouped batching, evaluation cadence, early stopping, best-model tracking and
checkpoints with the full training state, so `--resume` continues exactly where a run stopped.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertcli.config import TrainOptions
from bertcli.errors import BertcliError, Interrupted, UsageError
from bertcli.metrics import greater_is_better
from bertcli.progress import Progress

log = logging.getLogger("bertcli")
STATE_FILE = "trainer_state.json"
KEEP_CHECKPOINTS = 2
BEST_WEIGHTS = "model.safetensors"  # in RUN_DIR/best-step-N/, the best evaluation's weights


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
    # set by train(): the final (best) weights, whole on the main process even when FSDP/DeepSpeed sharded them
    weights: dict[str, torch.Tensor] | None = None


@dataclass
class TrainState:
    """Everything besides model/optimizer/scheduler/RNG that resuming needs."""

    epoch: int = 0
    batches_done: int = 0
    global_step: int = 0
    examples_seen: int = 0  # in the job's unit (examples, or tokens for pretraining)
    train_seconds: float = 0.0
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    train_log: list[dict[str, Any]] = field(default_factory=list)  # mean training loss and lr per log interval

    @property
    def examples_per_second(self) -> float:
        return self.examples_seen / self.train_seconds if self.train_seconds else 0.0


class LengthGroupedBatches:
    """Batches of similar length (little padding), in a seeded random order that changes per epoch.

    Examples are shuffled, cut into mega-batches of 50 batches, sorted by length inside each,
    split into batches, and the batch order is shuffled; deterministic for (seed, epoch).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, mega: int = 50) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.mega = mega
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.lengths))
        size = self.batch_size * self.mega
        batches: list[list[int]] = []
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size))
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self):
        return iter(self._batches())

    def __len__(self) -> int:
        size = self.batch_size * self.mega
        n = len(self.lengths)
        full, rest = divmod(n, size)
        return full * self.mega + math.ceil(rest / self.batch_size)


def _optimizer(model: torch.nn.Module, opts: TrainOptions) -> torch.optim.Optimizer:
    """AdamW without weight decay on biases and LayerNorm weights, as in BERT."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name or name.endswith(".bias") else decay).append(param)
    groups = [{"params": decay, "weight_decay": opts.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # the fused kernel is ~8x faster than the default on CPU: a fifth of a MiniLM step becomes negligible
    return torch.optim.AdamW(groups, lr=opts.lr, fused=True)


def _enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """On the outermost transformers model inside the task's module; non-reentrant, the variant that works under DDP."""
    pretrained = next((m for m in model.modules() if hasattr(m, "gradient_checkpointing_enable")), None)
    if pretrained is None or not pretrained.supports_gradient_checkpointing:
        raise UsageError("--gradient-checkpointing: this model does not support it")
    if hasattr(pretrained, "activation_checkpointing_enable"):  # the name from transformers 5.x on
        pretrained.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        pretrained.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    log.info("gradient checkpointing: activations are recomputed in the backward pass")


def _checkpoints(run_dir: Path) -> list[Path]:
    root = run_dir / "checkpoints"
    found = [p for p in root.glob("step-*") if (p / STATE_FILE).is_file()] if root.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def find_checkpoint(resume: str | None, run_dir: Path) -> Path | None:
    """--resume auto: the latest checkpoint of this output's interrupted run (None: start fresh)."""
    if resume is None:
        return None
    if resume == "auto":
        found = _checkpoints(run_dir)
        if not found:
            log.info("no checkpoint in %s; starting from the beginning", run_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise BertcliError("not a bertcli checkpoint (no trainer_state.json)", file=resume, hint="pass a checkpoints/step-N directory or 'auto'")
    return path


def train(job: TrainJob, opts: TrainOptions, accelerator: Any, run_dir: Path, on_step: Callable[[int], None] | None = None) -> TrainState:
    """Run the loop to the end (or early stop); leave the best weights in `job.model` and, whole, in `job.weights`."""
    from torch.utils.data import DataLoader
    from transformers import get_linear_schedule_with_warmup

    # a private generator: starting an epoch's iterator must not draw from the global RNG that dropout
    # uses, or a resumed run would be one draw off the uninterrupted one
    generator = torch.Generator().manual_seed(opts.seed)
    streaming = job.lengths is None
    if streaming:
        if not opts.max_steps:
            raise BertcliError("a streamed dataset needs --max-steps (its length is not known in advance)")
        sampler = job.dataset
        loader = DataLoader(job.dataset, batch_size=opts.batch_size, collate_fn=job.collate, generator=generator)
    else:
        sampler = LengthGroupedBatches(job.lengths, opts.batch_size, opts.seed)
        loader = DataLoader(job.dataset, batch_sampler=sampler, collate_fn=job.collate, generator=generator)
    if opts.gradient_checkpointing:
        _enable_gradient_checkpointing(job.model)
    model = job.model.to(accelerator.device)
    optimizer = _optimizer(model, opts)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    size = job.size or (lambda batch: len(batch["input_ids"]))
    # a stream's epoch length is unknown: count its steps as one long epoch (epoch = passes completed)
    steps_per_epoch = opts.max_steps if streaming else math.ceil(len(loader) / opts.grad_accum)
    total_steps = opts.max_steps or max(1, math.ceil(steps_per_epoch * opts.epochs))
    warmup = int(opts.warmup_ratio * total_steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
    accelerator.register_for_checkpointing(scheduler)
    effective = opts.batch_size * opts.grad_accum * accelerator.num_processes
    log.info(
        "training on %s: batch %d x %d accumulation x %d process(es) = %d, %d steps (%s), "
        "warmup %d, lr %.3g, %s precision",
        "a stream" if streaming else f"{len(job.lengths)} examples", opts.batch_size, opts.grad_accum,
        accelerator.num_processes, effective, total_steps,
        "as many passes as needed" if streaming else f"{total_steps / steps_per_epoch:.3g} epochs", warmup, opts.lr,
        accelerator.mixed_precision,
    )  # fmt: skip

    state = TrainState()
    checkpoint = find_checkpoint(opts.resume, run_dir)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        state = TrainState(**json.loads((checkpoint / STATE_FILE).read_text()))
        log.info("resumed from %s (step %d, epoch %d)", checkpoint, state.global_step, state.epoch + 1)

    higher = greater_is_better(job.metric)
    n_epochs = sys.maxsize if streaming else math.ceil(total_steps / steps_per_epoch)
    eval_every = opts.eval_steps
    # about 200 points per curve, whatever the run's length (bertcli.json stays small)
    log_every = max(1, total_steps // 200)
    interval_loss: list[float] = []
    if opts.report_to != "none":
        _start_tracking(accelerator, job, run_dir)

    def evaluate_now() -> None:
        if job.evaluate is None:
            return
        metrics = job.evaluate(model, accelerator)
        epoch = state.epoch if streaming else state.global_step / steps_per_epoch
        record = {"step": state.global_step, "epoch": round(epoch, 3), **metrics}
        state.history.append(record)
        accelerator.log({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}, step=state.global_step)
        value = metrics.get(job.metric)
        improved = value is not None and (
            state.best_metric is None or (value > state.best_metric if higher else value < state.best_metric)
        )
        if improved:
            state.best_metric, state.best_step, state.bad_evals = value, state.global_step, 0
            _save_best(accelerator, model, run_dir, state.global_step)
        else:
            state.bad_evals += 1
        if accelerator.is_main_process:
            keys = dict.fromkeys(k for k in ("loss", job.metric, "f1_macro") if k in metrics)
            shown = "  ".join(f"{k} {metrics[k]:.4f}" for k in keys)
            log.info("step %d (epoch %.2f): %s%s", state.global_step, record["epoch"], shown, "  *best*" if improved else "")
        if opts.patience is not None and state.bad_evals >= opts.patience:
            state.stopped_early = True

    progress = Progress(total_steps, "train", unit=job.unit, enabled=accelerator.is_main_process)
    progress.advance(state.global_step)
    try:
        with progress:
            for epoch in range(state.epoch, n_epochs):
                sampler.set_epoch(epoch)
                state.epoch = epoch
                epoch_loader = accelerator.skip_first_batches(loader, state.batches_done) if state.batches_done else loader
                model.train()
                tick = time.perf_counter()
                batch_index = state.batches_done - 1
                for batch_index, batch in enumerate(epoch_loader, start=state.batches_done):
                    with accelerator.accumulate(model):
                        loss = job.loss(model, batch)
                        accelerator.backward(loss)
                        if accelerator.sync_gradients and opts.max_grad_norm:
                            accelerator.clip_grad_norm_(model.parameters(), opts.max_grad_norm)
                        optimizer.step()
                        optimizer.zero_grad()
                    counted = size(batch)
                    state.examples_seen += counted * accelerator.num_processes
                    if not accelerator.sync_gradients:
                        continue
                    scheduler.step()
                    state.global_step += 1
                    state.batches_done = batch_index + 1
                    now = time.perf_counter()
                    state.train_seconds += now - tick
                    tick = now
                    extra = job.stats() if job.stats is not None else {}
                    loss_value, lr = loss.item(), scheduler.get_last_lr()[0]
                    progress.advance(1, examples=counted, loss=loss_value, **extra, lr=lr)
                    interval_loss.append(loss_value)
                    if state.global_step % log_every == 0:
                        point = {"step": state.global_step, "loss": round(float(np.mean(interval_loss)), 5), "lr": lr}
                        state.train_log.append(point)
                        accelerator.log({"train/loss": point["loss"], "train/lr": lr}, step=state.global_step)
                        interval_loss.clear()
                    if on_step is not None:
                        on_step(state.global_step)
                    if eval_every and state.global_step % eval_every == 0:
                        evaluate_now()
                        model.train()
                        tick = time.perf_counter()
                    if opts.save_steps and state.global_step % opts.save_steps == 0:
                        _save_checkpoint(accelerator, run_dir, state)
                    if state.global_step >= total_steps or state.stopped_early:
                        break
                state.train_seconds += time.perf_counter() - tick
                if streaming and batch_index < 0:
                    raise BertcliError("the training stream yielded no batches", hint="check the input files")
                if not eval_every and not state.stopped_early:
                    evaluate_now()
                state.epoch, state.batches_done = epoch + 1, 0
                if state.global_step >= total_steps or state.stopped_early:
                    break
                _save_checkpoint(accelerator, run_dir, state)
    except KeyboardInterrupt:
        _save_checkpoint(accelerator, run_dir, state)
        _finish_trackers(accelerator)
        raise Interrupted(
            f"interrupted at step {state.global_step}; checkpoint saved in {run_dir}",
            hint="continue with the same command and --resume auto",
        ) from None
    if eval_every and state.global_step % eval_every and not state.stopped_early:
        evaluate_now()
    if state.stopped_early:
        log.info("early stopping: no improvement of %s in %d evaluations", job.metric, opts.patience)
    _restore_best(accelerator, model, run_dir, state)
    _finish_trackers(accelerator)
    job.weights = accelerator.get_state_dict(model)  # a collective under FSDP/ZeRO-3: every process gathers
    job.model = accelerator.unwrap_model(model)
    return state


def _finish_trackers(accelerator: Any) -> None:
    """Flush and close the trackers' logs. Not `end_training()`: it also destroys the process group, which
    finish_run still needs to hold every process until the main one has written the output directory."""
    for tracker in accelerator.trackers:
        tracker.finish()


def logs_dir(output: str | Path) -> Path:
    """Where --report-to trackers write during a run: OUTPUT.incomplete/logs, moved to OUTPUT/logs at the end."""
    out = Path(output)
    return out.with_name(out.name + ".incomplete") / "logs"


def _start_tracking(accelerator: Any, job: TrainJob, run_dir: Path) -> None:
    """Open the --report-to trackers with the run's configuration as flat scalar hyperparameters."""
    flat: dict[str, Any] = {}

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                add(f"{prefix}{key}/" if isinstance(item, dict) else f"{prefix}{key}", item)
        elif isinstance(value, (int, float, str, bool)):
            flat[prefix.rstrip("/")] = value
        elif value is not None:
            flat[prefix.rstrip("/")] = str(value)

    add("", job.config)
    accelerator.init_trackers(run_dir.name.removesuffix(".incomplete"), config=flat)
    if accelerator.is_main_process:
        log.info("tracking with %s in %s (moved to the output directory at the end)", ", ".join(t.name for t in accelerator.trackers), run_dir / "logs")


def _weights_sharded(accelerator: Any) -> bool:
    """FSDP and DeepSpeed keep a shard of the weights in each process: only Accelerate's own state save/load sees them whole."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def _best_dir(run_dir: Path, step: int) -> Path:
    return run_dir / f"best-step-{step:07d}"


def _save_best(accelerator: Any, model: torch.nn.Module, run_dir: Path, step: int) -> None:
    """Keep the best evaluation's weights in RUN_DIR/best-step-N, renamed into place when complete; the earlier
    best is removed only then, so a killed run always has the best its last checkpoint names.

    Whole weights (one safetensors file) where every process holds them all; under FSDP/DeepSpeed an
    Accelerate state (every process writes its shard, optimizer included), which `_restore_best` loads back.
    """
    from safetensors.torch import save_model

    final, staging = _best_dir(run_dir, step), run_dir / f".best-step-{step:07d}.partial"
    accelerator.wait_for_everyone()
    if _weights_sharded(accelerator):
        accelerator.save_state(str(staging))
    elif accelerator.is_main_process:
        staging.mkdir(parents=True, exist_ok=True)
        save_model(accelerator.unwrap_model(model), str(staging / BEST_WEIGHTS))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        staging.replace(final)
        for earlier in run_dir.glob("best-step-*"):
            if earlier != final:
                shutil.rmtree(earlier, ignore_errors=True)
    accelerator.wait_for_everyone()


def _restore_best(accelerator: Any, model: torch.nn.Module, run_dir: Path, state: TrainState) -> None:
    from safetensors.torch import load_model

    if state.best_step is None or state.best_step == state.global_step:
        return
    best = _best_dir(run_dir, state.best_step)
    if not best.is_dir():
        log.warning("the best evaluation's weights (step %d) are gone from %s; the last step's are kept", state.best_step, run_dir)
        return
    accelerator.wait_for_everyone()
    if _weights_sharded(accelerator):
        accelerator.load_state(str(best))
    else:
        load_model(accelerator.unwrap_model(model), str(best / BEST_WEIGHTS))
    log.info("restored the best model (step %d, %s)", state.best_step, _fmt(state.best_metric))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _save_checkpoint(accelerator: Any, run_dir: Path, state: TrainState) -> None:
    """Full training state (model, optimizer, scheduler, RNG, loop position), renamed into place when complete."""
    root = run_dir / "checkpoints"
    final = root / f"step-{state.global_step:07d}"
    staging = root / f".step-{state.global_step:07d}.partial"
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()  # save_state does not wait: a process may still be writing its RNG state
    if accelerator.is_main_process:
        (staging / STATE_FILE).write_text(json.dumps(asdict(state), indent=2))
        if final.exists():
            shutil.rmtree(final)
        staging.replace(final)
        for old in _checkpoints(run_dir)[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()

def prepare_run_dir(cfg: Any, accelerator: Any = None) -> tuple[Path, Path]:
    """Check cfg.output; an interrupted run lives beside it in OUTPUT.incomplete/.

    Every process checks (so all fail alike); only the main process touches the file system.
    """
    out = Path(cfg.output)
    run_dir = out.with_name(out.name + ".incomplete")
    if out.exists() and not cfg.overwrite and not (out.is_dir() and not any(out.iterdir())):
        raise UsageError("output directory already exists", file=out, hint="pass --overwrite or choose another -o")
    if accelerator is None or accelerator.is_main_process:
        if run_dir.exists() and cfg.training.resume is None:
            log.info("removing the checkpoints of an earlier interrupted run in %s (use --resume auto to continue one)", run_dir)
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return out, run_dir


def run_record(state: TrainState, metric: str) -> dict[str, Any]:
    """The training-history part of a bundle's bertcli.json, the same for every fine-tuning task."""
    return {
        "metric": metric,
        "best": {"step": state.best_step, metric: state.best_metric},
        "history": state.history,
        "train_log": state.train_log,
        "steps": state.global_step,
        "stopped_early": state.stopped_early,
        "train_seconds": round(state.train_seconds, 2),
        "train_examples_per_second": round(state.examples_per_second, 2),
    }


def finish_run(accelerator: Any, run_dir: Path, out: Path, write: Callable[[Path], None]) -> None:
    """Write the bundle (with its model card, training curves and tracker logs) into the run directory, rename it
    to `out` and drop the checkpoints (main process only), so a killed run never leaves a finished-looking directory."""
    from bertcli.io import replace_dir
    from bertcli.model_card import document_run

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        staging = run_dir / "bundle"
        write(staging)
        if (run_dir / "logs").is_dir():
            shutil.move(run_dir / "logs", staging / "logs")
        document_run(staging, out.name)
        replace_dir(staging, out)
        shutil.rmtree(run_dir, ignore_errors=True)
    accelerator.wait_for_everyone()
