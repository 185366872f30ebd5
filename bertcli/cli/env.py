"""`bertcli env`: versions, devices, precision support and distributed setup, for bug reports."""

from __future__ import annotations

import json
from typing import Annotated

import typer

NAME = "env"
EXAMPLES = """\b
Examples:
  bertcli env                   # paste into a bug report
  bertcli env --output-format json     # the same, machine-readable
  accelerate launch --config_file recipes/accelerate/multi-gpu.yaml -m bertcli env   # what each process sees
"""


def command(
    output_format: Annotated[str | None, typer.Option(help="text or json. [default: text]")] = None,
) -> None:
    """Show library versions, CPU and accelerator devices, precision support and the distributed launch setup."""
    from bertcli.errors import UsageError

    if output_format not in (None, "text", "json"):
        raise UsageError(f"unknown --output-format {output_format!r}", hint="choose text or json")
    from bertcli.runtime.environment import describe_environment, render_text

    info = describe_environment()
    typer.echo(json.dumps(info, indent=2) if output_format == "json" else render_text(info))
