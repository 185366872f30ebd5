"""`bertcli env`: versions, devices, precision support and distributed setup, for bug reports."""

from __future__ import annotations

import json

import typer

from bertcli.cli.options import output_format_option

NAME = "env"
OutputFormatOpt = output_format_option("text or json. [default: text]")
EXAMPLES = """\b
Examples:
  bertcli env                   # paste into a bug report
  bertcli env --output-format json     # the same, machine-readable
  accelerate launch --config_file recipes/accelerate/multi-gpu.yaml -m bertcli env   # what each process sees
"""


def command(
    output_format: OutputFormatOpt = None,
) -> None:
    """Show library versions, CPU and accelerator devices, precision support and the distributed launch setup."""
    from bertcli.errors import UsageError

    if output_format not in (None, "text", "json"):
        raise UsageError(f"unknown --output-format {output_format!r}", hint="choose text or json")
    from bertcli.runtime.environment import describe_environment, render_text

    info = describe_environment()
    typer.echo(json.dumps(info, indent=2) if output_format == "json" else render_text(info))
