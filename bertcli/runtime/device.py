"""Where inference runs: this process's device and its place in a launch, without a training Accelerator.

Accelerate's `PartialState` knows the launch (rank, world size, the local device, the process group) and holds
no precision, so any number of models, each with its own precision, can share it.
"""

from __future__ import annotations

from typing import Any


def processes() -> Any:
    """This process's view of the launch: `num_processes`, `process_index`, `is_main_process`, `device`."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.accelerator.is_available())


def inference_device() -> Any:
    """The local accelerator of this process (its rank's GPU under a launch), else the CPU."""
    return processes().device
