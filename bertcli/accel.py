"""Device and precision choice, all through Accelerate (the only place that builds an Accelerator)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("bertcli")


def fast_bf16_available() -> bool:
    """True where bf16 matmuls are faster than fp32: accelerators with bf16, CPUs with AVX512-BF16 or AMX.

    On CPUs without them (e.g. AVX2-only) bf16 runs in emulation, tens of times slower than fp32.
    """
    import torch

    if torch.accelerator.is_available():
        from accelerate.utils import is_bf16_available

        return is_bf16_available()
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe() for probe in probes if probe is not None)


def resolve_precision(requested: str) -> str:
    """'auto' becomes bf16 where it is fast, else full precision ('no'); an explicit bf16 where it is slow is warned about."""
    if requested == "bf16" and not fast_bf16_available():
        log.warning(
            "bf16 on this machine runs emulated (no AVX512-BF16/AMX or bf16 accelerator), often several times slower "
            "than fp32; --precision auto picks the faster one"
        )
    if requested != "auto":
        return requested
    return "bf16" if fast_bf16_available() else "no"


def is_main_process() -> bool:
    """Rank 0 of a launch (`accelerate launch`, `torchrun`), or a plain run; read from the launcher's env, no torch import."""
    return os.environ.get("RANK", "0") == "0"


def launched_processes() -> int:
    """How many processes the launcher started (1 for a plain run); from its env, no torch import."""
    return int(os.environ.get("WORLD_SIZE", "1"))


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


def make_accelerator(precision: str = "auto", report_to: str = "none", logging_dir: str | Path | None = None, **kwargs: Any):
    """The run's Accelerator. With 'auto', a precision set by `accelerate launch`/`accelerate config` wins.

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
        kwargs["project_config"] = utils.ProjectConfiguration(project_dir=str(logging_dir.parent), logging_dir=str(logging_dir))

    if precision == "auto" and os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return Accelerator(**kwargs)
    return Accelerator(mixed_precision=resolve_precision(precision), **kwargs)
