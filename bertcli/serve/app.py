"""The HTTP API: OpenAI-compatible /v1/embeddings, TEI-shaped /predict, /rerank and /tokenize, /health, /info, /metrics.

Every error is one JSON body in OpenAI's shape with a 4xx (or 503 when overloaded or shutting down); an internal
failure is logged and answered with one JSON 500, and the server stays up. /docs is left out: its assets come
from a CDN, and the server is offline; the schema is at /openapi.json.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bertcli.config import ServeConfig
from bertcli.inference.scores import unit_rows
from bertcli.runtime.device import default_threads
from bertcli.serve.batcher import Batcher, Overloaded
from bertcli.serve.cores import Cores
from bertcli.serve.metrics import Metrics
from bertcli.serve.models import ServedModel
from bertcli.serve.schemas import (
    RETRY_AFTER_SECONDS,
    ApiError,
    EmbeddingsRequest,
    PredictRequest,
    RerankRequest,
    SearchRequest,
    TokenizeRequest,
)
from bertcli.version import __version__

log = logging.getLogger("bertcli")
ROUTES = {"embeddings": "/v1/embeddings", "predict": "/predict", "rerank": "/rerank", "search": "/search"}


@dataclass
class ServerState:
    models: dict[str, ServedModel]
    cfg: ServeConfig
    api_key: str | None
    metrics: Metrics = field(default_factory=Metrics)
    batchers: dict[str, Batcher] = field(default_factory=dict)
    ready: bool = False
    draining: bool = False

    def model(self, name: str | None, route: str | None) -> ServedModel:
        """The model a request names (or the only one that serves this route; None: any model)."""
        path = ROUTES.get(route, "/tokenize")
        if name is None:
            serving = [m for m in self.models.values() if route is None or route in m.predictor.routes]
            if len(serving) != 1:
                names = ", ".join(m.name for m in serving) or "none"
                raise ApiError(422, f"name the model: {path} is served by {names}", "model_required")
            return serving[0]
        if name not in self.models:
            raise ApiError(
                404, f"model {name!r} is not served here (served: {', '.join(self.models)})", "model_not_found"
            )
        model = self.models[name]
        if route is not None and route not in model.predictor.routes:
            serves = " and ".join(ROUTES[r] for r in sorted(model.predictor.routes))
            raise ApiError(422, f"model {name!r} does not answer {path}; it answers {serves}", "wrong_model_kind")
        return model

    def check_count(self, count: int) -> None:
        """At least one input, and at most --max-inputs."""
        if not count:
            raise ApiError(422, "no input: send at least one text", "empty_input")
        if count > self.cfg.max_inputs:
            raise ApiError(413, f"{count} inputs in one request; the limit is {self.cfg.max_inputs}", "too_many_inputs")

    async def run(self, model: ServedModel, inputs: list[tuple[str, str | None]]) -> tuple[list[Any], list[int]]:
        """The inputs' results through the model's batcher, in order, and their token counts."""
        self.check_count(len(inputs))
        if any(not text.strip() for text, _ in inputs):
            raise ApiError(422, "an input is empty text", "empty_input")
        queued, tokens = model.prepare(inputs)
        batcher = self.batchers[model.name]
        try:
            futures = batcher.submit(queued, tokens)
        except Overloaded as exc:
            raise ApiError(
                503, f"overloaded: {exc}; retry later", "overloaded", {"Retry-After": RETRY_AFTER_SECONDS}
            ) from None
        self.metrics.queue.labels(model.name).set(batcher.depth)
        results = await asyncio.gather(*futures)
        self.metrics.inputs.labels(model.name).inc(len(inputs))
        self.metrics.tokens.labels(model.name).inc(sum(tokens))
        return list(results), tokens


def forward_cores(cfg: ServeConfig) -> Cores:
    """The cores the forwards share (--threads) and their forward threads, one per stream (--streams)."""
    return Cores(cfg.threads or default_threads(), cfg.streams)


def create_app(
    models: dict[str, ServedModel],
    cfg: ServeConfig,
    api_key: str | None = None,
    cores: Cores | None = None,
) -> Any:
    """The app serving `models`. `cores`: the forward threads the models were loaded on (`serve` does that; see
    run.load_models), else its own; they are shut down with the app."""
    from bertcli.serve.middleware import Guard, install_error_handlers

    state = ServerState(models, cfg, api_key)

    @asynccontextmanager
    async def lifespan(app):
        forward = cores or forward_cores(cfg)
        for name, model in models.items():
            state.batchers[name] = Batcher(
                model.run, forward, cfg.max_batch_tokens, cfg.max_wait_ms, cfg.max_queue, _observer(state, name),
                model.predictor.backend.threads_per_call, model.predictor.backend.unpadded,
            )  # fmt: skip
            state.batchers[name].start()
        state.ready = True
        yield
        state.ready = False
        for batcher in state.batchers.values():
            await batcher.stop()
        forward.shutdown(wait=True)

    app = FastAPI(title="bertcli", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.server = state
    install_error_handlers(app)
    _routes(app, state)
    _rerank_route(app, state)
    _search_route(app, state)
    _status_routes(app, state)
    return Guard(app, state)


def _observer(state: ServerState, name: str):
    def observe(batch: int, queued: int) -> None:
        state.metrics.batches.labels(name).observe(batch)
        state.metrics.queue.labels(name).set(queued)

    return observe


def _routes(app: Any, state: ServerState) -> None:
    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingsRequest, request: Request) -> dict[str, Any]:
        model = state.model(body.model, "embeddings")
        texts = [body.input] if isinstance(body.input, str) else body.input
        if texts and not isinstance(texts[0], str):
            raise ApiError(
                422,
                "token-id input is not supported: send text (LangChain: check_embedding_ctx_length=False)",
                "unsupported_input",
            )
        dim, nested = model.predictor.dim, getattr(model.predictor, "matryoshka_dims", ())
        if body.dimensions is not None and body.dimensions != dim and not (nested and body.dimensions < dim):
            raise ApiError(
                422,
                f"this model's vectors have {dim} dimensions, not {body.dimensions}"
                + (" (it was not trained with --matryoshka-dims)" if body.dimensions < dim else ""),
                "unsupported_dimensions",
            )
        request.state.inputs = len(texts)
        results, tokens = await state.run(model, [(text, None) for text in texts])
        if body.dimensions is not None and body.dimensions < dim:  # a Matryoshka prefix, renormalised
            results = [(unit_rows(vector[: body.dimensions]), rest) for vector, rest in results]
        encode = _base64 if body.encoding_format == "base64" else lambda v: v.tolist()
        data = [
            {"object": "embedding", "index": i, "embedding": encode(vector)} for i, (vector, _) in enumerate(results)
        ]
        return {
            "object": "list",
            "data": data,
            "model": model.name,
            "usage": {"prompt_tokens": sum(tokens), "total_tokens": sum(tokens)},
        }

    @app.post("/predict")
    async def predict(body: PredictRequest, request: Request) -> Any:
        model = state.model(body.model, "predict")
        single = isinstance(body.inputs, str)
        inputs = _predict_inputs(body.inputs, model)
        options = {k: v for k, v in (("top_k", body.top_k), ("threshold", body.threshold)) if v is not None}
        unsupported = sorted(set(options) - model.predictor.request_options)
        if unsupported:
            raise ApiError(
                422, f"{' and '.join(unsupported)}: not options of model {model.name!r}", "unsupported_option"
            )
        request.state.inputs = len(inputs)
        results, _ = await state.run(model, inputs)
        records = model.predictor.records(results, **options)
        return records[0] if single else records

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest, request: Request) -> Any:
        model = state.model(body.model, None)
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        state.check_count(len(texts))
        request.state.inputs = len(texts)
        tokens = [_tokens(e) for e in model.encoder.encodings(texts, body.add_special_tokens)]
        return tokens[0] if isinstance(body.inputs, str) else tokens


def _rerank_route(app: Any, state: ServerState) -> None:
    @app.post("/rerank")
    async def rerank(body: RerankRequest, request: Request) -> Any:
        """TEI's rerank: the texts' indices and scores, best first. A pair past the model's length is cut and
        flagged, or refused with 413 when the request says `truncate: false`; a model that windows long documents
        reads them whole, and cuts (or refuses) only a pair whose query leaves its windows too little room."""
        model = state.model(body.model, "rerank")
        if not body.query.strip():
            raise ApiError(422, "the query is empty", "empty_input")
        empty = next((i for i, text in enumerate(body.texts) if not text.strip()), None)
        if empty is not None:
            raise ApiError(422, f"text {empty} is empty", "empty_input")
        inputs = [(body.query, text) for text in body.texts]
        if body.truncate is False:
            state.check_count(len(inputs))
            reason = model.predictor.first_cut(body.query, body.texts)
            if reason is not None:
                raise ApiError(413, f"{reason} (send truncate: true to cut it)", "input_too_long")
        request.state.inputs = len(inputs)
        results, _ = await state.run(model, inputs)
        return model.predictor.ranked(results, body.texts if body.return_text else None, body.raw_scores)


def _search_route(app: Any, state: ServerState) -> None:
    @app.post("/search")
    async def search(body: SearchRequest, request: Request) -> Any:
        """An index's top k hits per query: queries are encoded by the index's own model through the batcher, then
        searched off the event loop."""
        model = state.model(body.model, "search")
        if (body.query is None) == (body.queries is None):
            raise ApiError(422, "send a query or a list of queries", "bad_query")
        texts = [body.query] if body.query is not None else body.queries
        request.state.inputs = len(texts)
        results, tokens = await state.run(model, [(text, None) for text in texts])
        options = {"rescore": body.rescore, "hybrid": body.hybrid, "include_text": body.include_text}
        ids = body.filter.ids if body.filter is not None else None
        vectors = np.stack([vector for vector, _ in results])
        hits = await asyncio.to_thread(model.predictor.hits, vectors, body.k, ids=ids, texts=texts, **options)
        usage = {"prompt_tokens": sum(tokens), "total_tokens": sum(tokens)}
        if body.query is not None:
            return {"query": body.query, "hits": hits[0], "model": model.name, "usage": usage}
        return {"results": [{"query": q, "hits": h} for q, h in zip(texts, hits)], "model": model.name, "usage": usage}


def _status_routes(app: Any, state: ServerState) -> None:
    @app.get("/health")
    async def health() -> Any:
        if state.ready and not state.draining:
            return {"status": "ok"}
        return JSONResponse({"status": "draining" if state.draining else "loading"}, status_code=503)

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return {"version": __version__, "models": [m.info() for m in state.models.values()]}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": m.name, "object": "model", "owned_by": "bertcli"} for m in state.models.values()],
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)


def _predict_inputs(inputs: str | list, model: ServedModel) -> list[tuple[str, str | None]]:
    if isinstance(inputs, str):
        return [(inputs, None)]
    pairs = [item for item in inputs if isinstance(item, list)]
    if pairs and len(pairs) != len(inputs):
        raise ApiError(422, "inputs mix texts and [text, pair] pairs", "mixed_inputs")
    if any(len(pair) != 2 for pair in pairs):
        raise ApiError(422, "a pair is [text, second text]", "bad_pair")
    if pairs and not model.predictor.takes_pairs:
        raise ApiError(422, f"model {model.name!r} reads single texts, not pairs", "unsupported_input")
    return [(pair[0], pair[1]) for pair in pairs] if pairs else [(text, None) for text in inputs]


def _base64(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def _tokens(encoding: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "text": token,
            "special": bool(special),
            "start": None if special else start,
            "stop": None if special else stop,
        }
        for i, token, special, (start, stop) in zip(
            encoding.ids, encoding.tokens, encoding.special_tokens_mask, encoding.offsets
        )
    ]
