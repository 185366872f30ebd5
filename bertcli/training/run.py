"""The run directory: OUTPUT.incomplete/ holds a run until it finishes, then the bundle is renamed to OUTPUT.

A killed run therefore never leaves a directory that looks finished, and trackers, checkpoints and the best
weights live beside the run they belong to.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bertcli.errors import UsageError
from bertcli.training.checkpoints import TrainState

log = logging.getLogger("bertcli")


def run_dir_of(output: str | Path) -> Path:
    out = Path(output)
    return out.with_name(out.name + ".incomplete")


def logs_dir(output: str | Path) -> Path:
    """Where --report-to trackers write during a run: OUTPUT.incomplete/logs, moved to OUTPUT/logs at the end."""
    return run_dir_of(output) / "logs"


def check_output(output: str | Path, overwrite: bool) -> Path:
    """Fail before any work when -o cannot take the result: a file, or a non-empty directory without --overwrite."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise UsageError(
            "-o names a file; a model is saved as a directory", file=out, hint="choose a new directory name"
        )
    if out.exists() and not overwrite and any(out.iterdir()):
        raise UsageError("output directory already exists", file=out, hint="pass --overwrite or choose another -o")
    return out


def prepare_run_dir(output: str | Path, resume: str | None, accelerator: Any = None) -> Path:
    """The run directory, emptied unless resuming. Every process waits; only the main one touches the file system."""
    run_dir = run_dir_of(output)
    if accelerator is None or accelerator.is_main_process:
        if run_dir.exists() and resume is None:
            log.info(
                "removing the checkpoints of an earlier interrupted run in %s (use --resume auto to continue one)",
                run_dir,
            )
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return run_dir


def run_record(
    state: TrainState, metric: str, unit: str = "examples", initial: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The training-history part of a bundle's bertcli.json, the same for every task that trains (`unit`: what the
    loop counts, examples or tokens; `initial`: the validation before the first step, as step 0)."""
    counted = {f"train_{unit}": state.examples_seen} if unit != "examples" else {}
    return {
        "metric": metric,
        "best": {"step": state.best_step, metric: state.best_metric},
        "history": ([{"step": 0, "epoch": 0.0, **initial}] if initial else []) + state.history,
        "train_log": state.train_log,
        "steps": state.global_step,
        "stopped_early": state.stopped_early,
        "train_seconds": round(state.train_seconds, 2),
        **counted,
        f"train_{unit}_per_second": round(state.examples_per_second, 2),
    }


def start_tracking(accelerator: Any, config: dict[str, Any], run_dir: Path) -> None:
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

    add("", config)
    accelerator.init_trackers(run_dir.name.removesuffix(".incomplete"), config=flat)
    if accelerator.is_main_process:
        log.info(
            "tracking with %s in %s (moved to the output directory at the end)",
            ", ".join(t.name for t in accelerator.trackers),
            run_dir / "logs",
        )


def finish_trackers(accelerator: Any) -> None:
    """Flush and close the trackers' logs. Not `end_training()`: it also destroys the process group, which
    finish_run still needs to hold every process until the main one has written the output directory."""
    for tracker in accelerator.trackers:
        tracker.finish()


def finish_run(accelerator: Any, run_dir: Path, out: Path, write: Callable[[Path], None]) -> None:
    """Write the bundle (with its model card, training curves and tracker logs) into the run directory, rename it
    to `out` and drop the checkpoints (main process only), so a killed run never leaves a finished-looking directory."""
    from bertcli.io import replace_dir
    from bertcli.reports.model_card import document_run

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


def provenance() -> dict[str, Any]:
    """How a bundle was made, the same for every trained bundle: the exact command and the library versions."""
    from bertcli.bundle import library_versions
    from bertcli.reports.model_card import launch_command

    return {"command": launch_command(), "versions": library_versions()}
