"""Entry point: the Typer app, logging to stderr and the one error path.

Core code raises BertcliError; here it becomes one line on stderr and exit code 1 (2 for usage).
A traceback is printed only with BERTCLI_DEBUG=1.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from bertcli import __version__

app = typer.Typer(
    name="bertcli",
    help="The command-line toolkit for BERT-family models: fine-tune, evaluate and predict.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def debug_enabled() -> bool:
    return os.environ.get("BERTCLI_DEBUG", "") not in ("", "0")


def fail(message: str, code: int) -> typer.Exit:
    sys.stderr.write(f"bertcli: error: {message}\n")
    sys.stderr.flush()
    return typer.Exit(code)


def lost_peer(exc: Exception) -> bool:
    """A collective that broke because another process of a multi-process launch died (torch names the remote worker)."""
    from bertcli.runtime.accelerator import launched_processes

    return launched_processes() > 1 and isinstance(exc, RuntimeError) and "remote worker" in str(exc)


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn errors into one stderr line and an exit code; keep tracebacks for BERTCLI_DEBUG=1."""
    from bertcli.errors import BertcliError
    from bertcli.runtime.accelerator import finish_together

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = command(*args, **kwargs)
            finish_together()
            return result
        except BertcliError as exc:
            if debug_enabled():
                raise
            raise fail(str(exc), exc.exit_code) from None
        except BrokenPipeError:
            # the reader went away (e.g. `| head -1`): stop quietly, and keep the final flush from failing
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(0) from None
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            raise fail("interrupted", 130) from None
        except Exception as exc:
            if debug_enabled():
                raise
            if lost_peer(exc):  # another process of the launch failed first and printed the error that matters
                raise typer.Exit(1) from None
            raise fail(
                f"internal error: {type(exc).__name__}: {exc} (rerun with BERTCLI_DEBUG=1 for a traceback and report it)",
                1,
            ) from None
        finally:
            from bertcli.runtime.accelerator import shutdown_distributed

            shutdown_distributed()

    return wrapper


class _StderrHandler(logging.Handler):
    """Writes to the current sys.stderr (so test runners that swap it capture our logs)."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "" if record.levelno <= logging.INFO else f"{record.levelname.lower()}: "
        sys.stderr.write(f"bertcli: {prefix}{record.getMessage()}\n")


def _setup_logging(verbosity: int) -> None:
    from bertcli.runtime.accelerator import is_main_process

    logger = logging.getLogger("bertcli")
    logger.handlers[:] = [_StderrHandler()]
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    logger.setLevel(level if is_main_process() else logging.ERROR)  # one log, not one per process
    logger.propagate = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bertcli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging on stderr.")] = False,
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = None,
) -> None:
    """Fine-tune, evaluate and run BERT models from the command line.

    Data goes to stdout, progress and logs to stderr. Set BERTCLI_DEBUG=1 for tracebacks.
    """
    _setup_logging(-1 if quiet else 1 if verbose else 0)


def _register() -> None:
    from bertcli.cli import (
        embed,
        env,
        evaluate,
        export,
        finetune,
        index,
        predict,
        pretrain,
        rerank,
        search,
        serve,
        tokenize,
        tune,
    )

    for module in (
        tokenize,
        embed,
        pretrain,
        finetune,
        tune,
        evaluate,
        predict,
        rerank,
        index,
        search,
        export,
        serve,
        env,
    ):
        app.command(name=module.NAME, epilog=module.EXAMPLES)(guarded(module.command))


_register()


def main() -> None:
    app()
