"""What every request passes first: the body limit, the API key, shutdown draining, the access log and metrics;
and the handlers that turn every error into one JSON body."""

from __future__ import annotations

import hmac
import json
import logging
import sys
import time
from typing import Any

from bertcli.serve.schemas import RETRY_AFTER_SECONDS, ApiError, error_body

log = logging.getLogger("bertcli")
OPEN = ("/health",)  # answered without the API key (load balancers probe it)
ROUTES = (
    "/v1/embeddings",
    "/predict",
    "/rerank",
    "/search",
    "/tokenize",
    "/health",
    "/info",
    "/metrics",
    "/v1/models",
    "/openapi.json",
)


class Guard:
    """A pure ASGI wrapper around the FastAPI app (it sees the raw request before any parsing)."""

    def __init__(self, app: Any, state: Any) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), {"code": 500, "started": False}
        route = scope["path"] if scope["path"] in ROUTES else "other"

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
            await send(message)

        try:
            refusal = self._refusal(scope)
            body = None
            if refusal is None:
                body, refusal = await self._body(scope, receive)
            if refusal is not None:
                await _respond(sending, *refusal)
            else:
                await self._serve(_as_json(scope), body, sending, status)
        finally:
            seconds = time.perf_counter() - start
            metrics = self.state.metrics
            metrics.requests.labels(route, str(status["code"])).inc()
            metrics.latency.labels(route).observe(seconds)
            self._access(scope, status["code"], seconds)

    async def _serve(self, scope: dict, body: bytes | None, send: Any, status: dict) -> None:
        """The app; an exception it re-raises after its JSON 500 went out (Starlette does) ends here, logged once."""
        try:
            await self.app(scope, _replay(body), send)
        except Exception as exc:
            if not status["started"]:
                log.error("internal error on %s: %s: %s", scope["path"], type(exc).__name__, exc)
                await _respond(send, 500, "internal error (logged on the server)", "internal_error")

    def _refusal(self, scope: dict) -> tuple | None:
        if self.state.draining:
            return (
                503,
                "the server is shutting down",
                "shutting_down",
                {"Retry-After": RETRY_AFTER_SECONDS, "Connection": "close"},
            )
        if self.state.api_key and scope["path"] not in OPEN:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.state.api_key.encode()):
                return (
                    401,
                    "missing or wrong API key (Authorization: Bearer KEY)",
                    "invalid_api_key",
                    {"WWW-Authenticate": "Bearer"},
                )
        return None

    async def _body(self, scope: dict, receive: Any) -> tuple[bytes, tuple | None]:
        """The whole body, read up to the limit (a client that lies about Content-Length is caught too)."""
        limit = self.state.cfg.max_body_bytes
        too_large = 413, f"the request body is over {limit} bytes", "body_too_large", {"Connection": "close"}
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return b"", too_large
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return b"", too_large
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks), None

    def _access(self, scope: dict, status: int, seconds: float) -> None:
        """One line per request on stderr: method, route, status, inputs, milliseconds (or the same as JSON)."""
        inputs = scope.get("state", {}).get("inputs")
        if self.state.cfg.log_format == "json":
            line = json.dumps(
                {
                    "method": scope["method"],
                    "route": scope["path"],
                    "status": status,
                    "inputs": inputs,
                    "ms": round(seconds * 1000, 2),
                }
            )
            sys.stderr.write(line + "\n")
        else:
            sys.stderr.write(
                f"bertcli: {scope['method']} {scope['path']} {status} inputs={inputs if inputs is not None else '-'} {seconds * 1000:.1f}ms\n"
            )
        sys.stderr.flush()


def _as_json(scope: dict) -> dict:
    """Every body is JSON: `curl -d` sends form encoding unless told otherwise, and that must not turn into 422."""
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-type" or b"json" in v]
    if len(headers) != len(scope["headers"]) or not any(k == b"content-type" for k, _ in headers):
        headers.append((b"content-type", b"application/json"))
    return {**scope, "headers": headers}


def _replay(body: bytes | None):
    sent = {"done": False}

    async def receive() -> dict:
        if sent["done"]:
            return {"type": "http.disconnect"}
        sent["done"] = True
        return {"type": "http.request", "body": body or b"", "more_body": False}

    return receive


async def _respond(send: Any, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(error_body(status, message, code)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def install_error_handlers(app: Any) -> None:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from bertcli.errors import BertcliError

    def reply(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(error_body(status, message, code), status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return reply(exc.status, exc.message, exc.code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request", "loc": ()}
        if first.get("type") == "json_invalid":
            return reply(400, f"malformed JSON: {first.get('ctx', {}).get('error', first['msg'])}", "invalid_json")
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return reply(422, f"{where + ': ' if where else ''}{first['msg']}", "invalid_request")

    @app.exception_handler(BertcliError)
    async def refused(request, exc: BertcliError):  # a core check on the request (an index without texts: --hybrid)
        return reply(422, str(exc), "invalid_request")

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        return reply(exc.status_code, str(exc.detail), "not_found" if exc.status_code == 404 else "http_error")

    @app.exception_handler(Exception)
    async def internal(request, exc: Exception):
        log.error("internal error on %s: %s: %s", request.url.path, type(exc).__name__, exc)
        return reply(500, "internal error (logged on the server)", "internal_error")
