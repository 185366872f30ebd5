"""Precision: where bf16 is fast, what `--precision auto` means, and the torch dtype each choice computes in.

Nothing here is process-wide: a precision is resolved per model, so two models with different precisions
can live in one process (a server, a notebook, a test run).
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("bertcli")
PRECISIONS = ("auto", "no", "bf16", "fp16")
# "1" or "0" overrides the hardware probe, so a test run can take the bf16 path on any machine (and the fp32 one)
FAST_BF16_ENV = "BERTCLI_FAST_BF16"


def fast_bf16_available() -> bool:
    """True where bf16 matmuls are faster than fp32: accelerators with bf16, CPUs with AVX512-BF16 or AMX.

    On CPUs without them (e.g. AVX2-only) bf16 runs in emulation, tens of times slower than fp32.
    """
    forced = os.environ.get(FAST_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    import torch

    if torch.accelerator.is_available():
        from accelerate.utils import is_bf16_available

        return is_bf16_available()
    return native_bf16_cpu()


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), whatever BERTCLI_FAST_BF16 says."""
    import torch

    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe() for probe in probes if probe is not None)


def resolve_precision(requested: str) -> str:
    """'auto' becomes the launcher's mixed precision if it set one, else bf16 where it is fast, else 'no' (fp32).

    An explicit bf16 where it is slow is kept, with a warning.
    """
    if requested == "bf16" and not fast_bf16_available():
        log.warning(
            "bf16 on this machine runs emulated (no AVX512-BF16/AMX or bf16 accelerator), often several times slower "
            "than fp32; --precision auto picks the faster one"
        )
    if requested != "auto":
        return requested
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "").strip()
    if launched in ("no", "bf16", "fp16"):
        return launched
    return "bf16" if fast_bf16_available() else "no"


def autocast_dtype(precision: str) -> Any:
    """The torch dtype a resolved precision autocasts to (None: full precision)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
