"""Where inference runs: this process's device and its place in a launch, without a training Accelerator.

Accelerate's `PartialState` knows the launch (rank, world size, the local device, the process group) and holds
no precision, so any number of models, each with its own precision, can share it. A plain run (no launcher)
needs none of it, and imports no torch for it: the ONNX path stays torch-free.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from bertcli.runtime.accelerator import launched_processes


@dataclass(frozen=True)
class OneProcess:
    """The launch of a plain run: this process alone."""

    num_processes: int = 1
    process_index: int = 0
    is_main_process: bool = True


def processes() -> Any:
    """This process's view of the launch: `num_processes`, `process_index`, `is_main_process`."""
    if launched_processes() == 1:
        return OneProcess()
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.accelerator.is_available())


def inference_device() -> Any:
    """The local accelerator of this process (its rank's GPU under a launch), else the CPU."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.accelerator.is_available()).device


def default_threads() -> int:
    """The cores this process may use (as torch would pick them: OMP_NUM_THREADS first)."""
    configured = os.environ.get("OMP_NUM_THREADS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_calling = threading.local()


def use_threads(threads: int | None) -> None:
    """--threads on the calling thread: set by a command after its models load, on the thread that runs their
    forwards, and by the server before each forward. The count is the calling thread's own (torch's is OpenMP's),
    so the server's forward threads each run on their own share; an ONNX backend reads it (`calling_threads`) to
    pick a session of that many threads. Only a process already running torch imports it here."""
    import sys

    _calling.threads = threads
    torch = sys.modules.get("torch")
    if threads and torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def calling_threads() -> int | None:
    """The thread count `use_threads` last set on the calling thread (None: never set there)."""
    return getattr(_calling, "threads", None)
