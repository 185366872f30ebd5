"""Checkpoints with the full training state, and the best evaluation's weights, each renamed into place when complete.

A killed run therefore always has a last checkpoint and the best weights that checkpoint names, and `--resume`
continues exactly where it stopped.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bertcli.errors import UsageError

log = logging.getLogger("bertcli")
STATE_FILE = "trainer_state.json"
KEEP_CHECKPOINTS = 2
BEST_WEIGHTS = "model.safetensors"  # in RUN_DIR/best-step-N/, the best evaluation's weights


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
        raise UsageError(
            "not a bertcli checkpoint (no trainer_state.json)",
            file=resume,
            hint="pass a checkpoints/step-N directory or 'auto'",
        )
    return path


def load_checkpoint(accelerator: Any, checkpoint: Path) -> TrainState:
    accelerator.load_state(str(checkpoint))
    state = TrainState(**json.loads((checkpoint / STATE_FILE).read_text()))
    log.info("resumed from %s (step %d, epoch %d)", checkpoint, state.global_step, state.epoch + 1)
    return state


def save_checkpoint(accelerator: Any, run_dir: Path, state: TrainState) -> None:
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


def weights_sharded(accelerator: Any) -> bool:
    """FSDP and DeepSpeed keep a shard of the weights in each process: only Accelerate's own state save/load sees them whole."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def _best_dir(run_dir: Path, step: int) -> Path:
    return run_dir / f"best-step-{step:07d}"


def save_best(accelerator: Any, model: Any, run_dir: Path, step: int) -> None:
    """Keep the best evaluation's weights in RUN_DIR/best-step-N, renamed into place when complete; the earlier
    best is removed only then, so a killed run always has the best its last checkpoint names.

    Whole weights (one safetensors file) where every process holds them all; under FSDP/DeepSpeed an
    Accelerate state (every process writes its shard, optimizer included), which `restore_best` loads back.
    """
    from safetensors.torch import save_model

    final, staging = _best_dir(run_dir, step), run_dir / f".best-step-{step:07d}.partial"
    accelerator.wait_for_everyone()
    if weights_sharded(accelerator):
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


def restore_best(accelerator: Any, model: Any, run_dir: Path, state: TrainState) -> None:
    """Load the best evaluation's weights back into the model, unless the last step was the best."""
    from safetensors.torch import load_model

    if state.best_step is None or state.best_step == state.global_step:
        return
    best = _best_dir(run_dir, state.best_step)
    if not best.is_dir():
        log.warning(
            "the best evaluation's weights (step %d) are gone from %s; the last step's are kept",
            state.best_step,
            run_dir,
        )
        return
    accelerator.wait_for_everyone()
    if weights_sharded(accelerator):
        accelerator.load_state(str(best))
    else:
        load_model(accelerator.unwrap_model(model), str(best / BEST_WEIGHTS))
    log.info(
        "restored the best model (step %d, %s)",
        state.best_step,
        "n/a" if state.best_metric is None else f"{state.best_metric:.4f}",
    )
