"""Search spaces: `lr=1e-5..5e-4:log,epochs=1..5,batch_size=16|32|64,warmup_ratio=0..0.2` and each task's default.

`a..b` is a range (integers when both ends are integers), `:log` samples it on a log scale, `a|b|c` is a choice.
Every name is a finetune training option, so a trial is a finetune with those options set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bertcli.config import DEFAULT_SPACES
from bertcli.errors import UsageError

# the numeric training options a trial may set
TUNABLE = ("lr", "epochs", "batch_size", "grad_accum", "warmup_ratio", "weight_decay", "max_grad_norm", "max_length")


@dataclass(frozen=True)
class Dimension:
    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple | None = None

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() and "e" not in text.lower() and "." not in text else value


def parse_space(spec: str) -> list[Dimension]:
    dimensions = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, body = part.partition("=")
        name = name.strip().replace("-", "_")
        if name not in TUNABLE:
            raise UsageError(
                f"--space: {name!r} is not a numeric training option", hint=f"tunable: {', '.join(sorted(TUNABLE))}"
            )
        try:
            if "|" in body:
                dimensions.append(Dimension(name, choices=tuple(_number(c.strip()) for c in body.split("|"))))
                continue
            body, _, scale = body.partition(":")
            low, _, high = body.partition("..")
            lo, hi = _number(low.strip()), _number(high.strip())
        except ValueError:
            raise UsageError(
                f"--space: cannot read {part!r}", hint="e.g. lr=1e-5..5e-4:log, batch_size=16|32"
            ) from None
        if scale not in ("", "log") or not lo < hi or (scale == "log" and lo <= 0):
            raise UsageError(f"--space: {part!r} needs low < high (and low > 0 for :log)")
        dimensions.append(
            Dimension(name, float(lo), float(hi), scale == "log", isinstance(lo, int) and isinstance(hi, int))
        )
    if not dimensions:
        raise UsageError("--space is empty", hint=DEFAULT_SPACES["classification"])
    return dimensions
