"""The training Accelerator and the launch facts every command needs (main process, process count, teardown).

Only training builds an Accelerator: its state is a process-wide singleton that fixes one mixed precision per
process. Inference runs through `bertcli.runtime.device` instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bertcli.runtime.precision import resolve_precision


def is_main_process() -> bool:
    """Rank 0 of a launch (`accelerate launch`, `torchrun`), or a plain run; read from the launcher's env, no torch import."""
    return os.environ.get("RANK", "0") == "0"


def launched_processes() -> int:
    """How many processes the launcher started (1 for a plain run); from its env, no torch import."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def finish_together() -> None:
    """After a command succeeded: wait until every process of the launch has, so none tears down its process group
    while another still works (gloo aborted a finished rank that exited first)."""
    import sys

    if "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()


def shutdown_distributed() -> None:
    """Destroy the launch's process group before the interpreter exits.

    Left to interpreter teardown, gloo's worker threads can outlive it and abort the process
    ("terminate called without an active exception", pytorch/pytorch#190489) after the work is done.
    Local to each process: no collective, so it is safe after another process failed.
    """
    import sys

    if "torch.distributed" not in sys.modules:  # nothing was launched, or torch never imported
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def make_accelerator(
    precision: str = "auto", report_to: str = "none", logging_dir: str | Path | None = None, **kwargs: Any
):
    """The training run's Accelerator. With 'auto', a precision set by `accelerate launch`/`accelerate config` wins.

    Without an accelerator device Accelerate must be told it runs on CPUs, or processes started by a
    launcher would each train alone instead of joining one gloo process group. `report_to` names an
    Accelerate tracker (tensorboard, wandb, mlflow) that writes under `logging_dir`.
    """
    import torch
    from accelerate import Accelerator

    kwargs.setdefault("cpu", not torch.accelerator.is_available())
    if report_to != "none":
        from accelerate import utils

        from bertcli.errors import UsageError

        if not getattr(utils, f"is_{report_to}_available")():
            raise UsageError(f"--report-to {report_to} needs the {report_to} package", hint=f"pip install {report_to}")
        logging_dir = Path(logging_dir or "logs")
        kwargs["log_with"] = report_to
        kwargs["project_config"] = utils.ProjectConfiguration(
            project_dir=str(logging_dir.parent), logging_dir=str(logging_dir)
        )
    return Accelerator(mixed_precision=resolve_precision(precision), **kwargs)
