"""Progress on stderr: a rich bar on a terminal, nothing otherwise (logs and pipes stay clean); the log quietened."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any


class Progress:
    """A progress bar with live fields (loss, lr, rate); a no-op when stderr is not a TTY or on non-main ranks."""

    def __init__(self, total: int | None, description: str, unit: str = "ex", enabled: bool = True) -> None:
        self.unit = unit
        self.start = time.perf_counter()
        self.count = 0
        self._bar = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._task = self._bar.add_task(description, total=total, info="")

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.count / elapsed if elapsed > 0 else 0.0

    def advance(self, steps: int = 1, examples: int = 0, **fields: Any) -> None:
        self.count += examples
        if self._bar is not None:
            info = "  ".join(f"{k} {_fmt(v)}" for k, v in fields.items())
            info = f"{info}  {self.rate:,.0f} {self.unit}/s".strip()
            self._bar.update(self._task, advance=steps, info=info)

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    return str(value)


@contextlib.contextmanager
def quieter(logger: logging.Logger, level: int) -> Iterator[None]:
    """`logger` at `level` or above for the block (a tuning trial's own log would drown the search's), then as it was."""
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)
