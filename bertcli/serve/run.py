"""`bertcli serve`'s core: load and warm up the models on the forward thread, then run uvicorn on loopback (by default)
until a signal.

SIGTERM or SIGINT drains: the server stops accepting connections, answers requests on open connections with
503, lets every accepted request finish, and the process exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from bertcli.config import ServeConfig

log = logging.getLogger("bertcli")
API_KEY_ENV = "BERTCLI_API_KEY"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(cfg: ServeConfig) -> None:
    import uvicorn

    from bertcli.serve.app import create_app, forward_cores

    cfg.validate()
    api_key = cfg.api_key or os.environ.get(API_KEY_ENV) or None
    warning = exposure_warning(cfg.host, api_key)
    if warning:
        log.warning(warning)
    cores = forward_cores(cfg)
    models = load_models(cfg, cores)
    app = create_app(models, cfg, api_key, cores)
    config = uvicorn.Config(
        app,
        host=cfg.host,
        port=cfg.port,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=30,
        lifespan="on",
    )
    server = draining_server(config, app.state)
    log.info(
        "listening on http://%s:%d (POST /v1/embeddings /predict /rerank /tokenize; GET /health /info /metrics)",
        cfg.host,
        cfg.port,
    )
    server.run()
    log.info("stopped: every accepted request was answered")


def load_models(cfg: ServeConfig, cores: Any) -> dict[str, Any]:
    """Every served model, loaded and warmed up on the first forward thread of `cores`, where lone forwards then run
    (each forward thread sets torch's thread count for itself before each forward). When torch first ran on the main
    thread, the forward thread's forwards kept only about one core busy: a one-text forward took 10.5-12 ms instead
    of 5.6-6.5 (all-MiniLM-L6-v2, bf16, 2 cores, per-thread CPU time measured), which at 1 and 8 clients is most of
    a request. One model per call, so that Ctrl-C during loading waits for the current model only."""
    from bertcli.serve.models import load_model

    models = {}
    try:
        for spec in cfg.models:
            model = cores.submit(load_model, spec, cfg, cores.thread_counts).result()  # names are distinct (validate)
            models[model.name] = model
            log.info(
                "serving %s as %r: %s, %s, max length %d",
                model.directory,
                model.name,
                model.predictor.kind,
                model.predictor.backend.name,
                model.max_length,
            )
    except BaseException:  # a model that fails to load, or Ctrl-C: nothing more is loaded
        cores.shutdown(wait=False, cancel_futures=True)
        raise
    return models


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """What to say when the server is reachable beyond this machine with no key."""
    if host in LOOPBACK or api_key:
        return None
    return f"serving on {host} without an API key: anyone who reaches this port can use the models (--api-key or ${API_KEY_ENV})"


def draining_server(config: Any, state: Any) -> Any:
    """uvicorn's Server that sets the drain flag on the first SIGTERM/SIGINT and does not raise the signal again
    after shutting down (uvicorn does, which would end the process with 143 instead of 0)."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            state.draining = True
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True  # a second Ctrl-C: stop waiting for open requests
            self.should_exit = True

    return DrainingServer(config)
