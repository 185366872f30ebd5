"""`bertcli serve`: HTTP for every bundle, with dynamic batching, OpenAI-compatible embeddings and metrics."""

from __future__ import annotations

from typing import Annotated

import typer

from bertcli.cli.options import RUNTIME, BackendOpt, ConfigOpt, PrecisionOpt, ThreadsOpt, default
from bertcli.config import ServeConfig

NAME = "serve"
LIMITS = "Batching and limits"
EXAMPLES = """\b
Examples:
  bertcli serve runs/sentiment                                # http://127.0.0.1:8080, POST /predict
  bertcli serve clf=runs/sentiment ner=runs/ner minilm=runs/minilm-onnx --port 9000
  BERTCLI_API_KEY=secret bertcli serve runs/sentiment --host 0.0.0.0
  curl -s localhost:8080/predict -d '{"inputs": "A triumph."}' -H 'content-type: application/json'
"""


def command(
    models: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="MODEL_DIR...",
            help="Model directories, or NAME=DIR to serve one under NAME. [default name: the directory's]",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(help=f"Address to bind; anything but loopback wants --api-key. {default(ServeConfig.host)}"),
    ] = None,
    port: Annotated[int | None, typer.Option(help=f"{default(ServeConfig.port)}")] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="Require this key (Authorization: Bearer KEY) on every route but /health. [default: $BERTCLI_API_KEY]",
            show_default=False,
        ),
    ] = None,
    config: ConfigOpt = None,
    backend: BackendOpt = None,
    precision: PrecisionOpt = None,
    threads: ThreadsOpt = None,
    streams: Annotated[
        int | None,
        typer.Option(
            help="Forwards that run at once under load, each on --threads / STREAMS of the cores (a lone request's "
            f"forward takes them all). {default(ServeConfig.streams)}",
            rich_help_panel=RUNTIME,
        ),
    ] = None,
    max_batch_tokens: Annotated[
        int | None,
        typer.Option(
            help=f"Tokens of the inputs merged into one forward pass. {default(ServeConfig.max_batch_tokens)}",
            rich_help_panel=LIMITS,
        ),
    ] = None,
    max_wait_ms: Annotated[
        float | None,
        typer.Option(
            help=(
                "How long a batch waits to fill after its first input (under 500, a lone request after a quiet"
                f" moment does not wait). {default(ServeConfig.max_wait_ms)}"
            ),
            rich_help_panel=LIMITS,
        ),
    ] = None,
    max_queue: Annotated[
        int | None,
        typer.Option(
            help=f"Inputs queued per model; beyond, 503 with Retry-After. {default(ServeConfig.max_queue)}",
            rich_help_panel=LIMITS,
        ),
    ] = None,
    max_inputs: Annotated[
        int | None,
        typer.Option(
            help=f"Inputs per request; beyond, 413. {default(ServeConfig.max_inputs)}", rich_help_panel=LIMITS
        ),
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            help=f"Request body size; beyond, 413. {default(ServeConfig.max_body_bytes)}", rich_help_panel=LIMITS
        ),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(help=f"Access log on stderr: text or json. {default(ServeConfig.log_format)}")
    ] = None,
) -> None:
    """Serve models over HTTP: OpenAI-compatible /v1/embeddings, /predict, /tokenize, /health, /info and /metrics."""
    values = {k: v for k, v in locals().items() if k != "config"}
    from bertcli.config import build_config
    from bertcli.serve.run import serve

    values["models"] = values["models"] or None
    serve(build_config(ServeConfig, config, **values))
