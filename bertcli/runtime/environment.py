"""What a bug report needs: library versions, devices, precision support and the distributed setup of this process."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "torch",
    "transformers",
    "accelerate",
    "datasets",
    "evaluate",
    "tokenizers",
    "safetensors",
    "numpy",
    "typer",
)
# set by `accelerate launch`, `torchrun` and cluster schedulers: which process this is and how to reach the others
LAUNCH_VARIABLES = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "ACCELERATE_MIXED_PRECISION",
    "ACCELERATE_USE_CPU",
    "ACCELERATE_USE_FSDP",
    "ACCELERATE_USE_DEEPSPEED",
    "CUDA_VISIBLE_DEVICES",
)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _accelerate_config() -> dict[str, Any]:
    """The default `accelerate config` file, which `accelerate launch` reads when given no --config_file."""
    try:
        from accelerate.commands.config.config_args import default_config_file
    except ImportError:
        return {"path": None}
    path = Path(default_config_file)
    if not path.is_file():
        return {"path": str(path), "exists": False}
    import yaml

    try:
        content = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
    except Exception as exc:  # a broken config is itself worth reporting
        content = {"error": str(exc)}
    return {"path": str(path), "exists": True, "content": content}


def describe_environment() -> dict[str, Any]:
    """Everything as plain data (JSON-ready); imports torch, so this is the slow part of `bertcli env`."""
    import torch

    from bertcli.runtime.precision import fast_bf16_available, resolve_precision
    from bertcli.version import __version__

    accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    devices: list[dict[str, Any]] = []
    if accelerator is not None and accelerator.type == "cuda":
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(
                {
                    "index": index,
                    "name": props.name,
                    "memory_gib": round(props.total_memory / 2**30, 1),
                    "capability": f"{props.major}.{props.minor}",
                }
            )
    elif accelerator is not None:
        devices = [{"index": i} for i in range(torch.accelerator.device_count())]
    distributed = (
        {
            "available": torch.distributed.is_available(),
            "backends": [
                name
                for name, ok in (
                    ("gloo", torch.distributed.is_gloo_available()),
                    ("nccl", torch.distributed.is_nccl_available()),
                    ("mpi", torch.distributed.is_mpi_available()),
                )
                if ok
            ],
        }
        if torch.distributed.is_available()
        else {"available": False}
    )
    return {
        "bertcli": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "cpu": {
            "model": _cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        },
        "accelerator": {"type": accelerator.type if accelerator else None, "count": len(devices), "devices": devices},
        "precision": {
            "bf16_fast": fast_bf16_available(),
            "fp16": accelerator is not None,
            "auto_resolves_to": resolve_precision("auto"),
        },
        "distributed": {**distributed, "launch": {k: os.environ[k] for k in LAUNCH_VARIABLES if k in os.environ}},
        "accelerate_config": _accelerate_config(),
    }


def render_text(info: dict[str, Any]) -> str:
    """The same content as aligned `key: value` lines, for pasting into an issue."""
    lines = [f"bertcli {info['bertcli']}, python {info['python']} on {info['platform']}"]
    lines += [f"  {name:<13} {version or 'not installed'}" for name, version in info["packages"].items()]
    cpu = info["cpu"]
    lines.append(
        f"cpu: {cpu['model']}, {cpu['cores']} cores, torch uses {cpu['torch_threads']} threads"
        + (f" (OMP_NUM_THREADS={cpu['OMP_NUM_THREADS']})" if cpu["OMP_NUM_THREADS"] else "")
    )
    acc = info["accelerator"]
    if acc["type"] is None:
        lines.append("accelerator: none (runs on the CPU)")
    else:
        lines.append(f"accelerator: {acc['type']} x {acc['count']}")
        for device in acc["devices"]:
            extra = (
                f": {device['name']}, {device['memory_gib']} GiB, compute {device['capability']}"
                if "name" in device
                else ""
            )
            lines.append(f"  {acc['type']}:{device['index']}{extra}")
    precision = info["precision"]
    lines.append(
        f"precision: bf16 {'fast' if precision['bf16_fast'] else 'slow or emulated'}, fp16 {'yes' if precision['fp16'] else 'no (CPU)'}; "
        f"--precision auto means {precision['auto_resolves_to']}"
    )
    dist = info["distributed"]
    backends = ", ".join(dist.get("backends", [])) or "none"
    launch = dist["launch"]
    lines.append(
        f"distributed: backends {backends}; "
        + ("launched with " + " ".join(f"{k}={v}" for k, v in launch.items()) if launch else "not launched")
    )
    config = info["accelerate_config"]
    if config.get("exists"):
        content = config["content"] or {}
        keys = ("distributed_type", "num_processes", "num_machines", "mixed_precision", "use_cpu")
        shown = ", ".join(f"{k}={content[k]}" for k in keys if isinstance(content, dict) and k in content)
        lines.append(f"accelerate config: {config['path']} ({shown or 'no settings'})")
    else:
        lines.append(f"accelerate config: none (looked in {config['path']})")
    return "\n".join(lines)
