"""Request bodies (pydantic), and errors in OpenAI's shape: {"error": {"message", "type", "code"}}."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bertcli.data.text import repair_inputs

MAX_K = 1000  # hits per query a /search request may ask for
RETRY_AFTER_SECONDS = "1"  # what a 503 (a full queue, or shutting down) tells the client to wait


class EmbeddingsRequest(BaseModel):
    """OpenAI's embeddings request; token-id inputs (what clients send after tokenizing with tiktoken) are refused."""

    model_config = ConfigDict(extra="ignore")
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _repaired(cls, value):
        return repaired(value, "/v1/embeddings")


class PredictRequest(BaseModel):
    """TEI's predict request: one text, several, or [text, pair] pairs; `model` may be left out when one is served."""

    model_config = ConfigDict(extra="forbid")
    inputs: str | list[str] | list[list[str]]
    model: str | None = None
    top_k: int | None = Field(default=None, ge=1)
    threshold: float | None = Field(default=None, gt=0, lt=1)

    @field_validator("inputs")
    @classmethod
    def _repaired(cls, value):
        return repaired(value, "/predict")


class RerankRequest(BaseModel):
    """TEI's rerank request: a query and its candidate texts; `truncate` false refuses a pair past the model's
    length (TEI's behaviour), left out it cuts the pair and flags the result."""

    model_config = ConfigDict(extra="forbid")
    query: str
    texts: list[str]
    model: str | None = None
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = None
    truncation_direction: Literal["right", "Right"] = "right"

    @field_validator("query", "texts")
    @classmethod
    def _repaired(cls, value):
        return repaired(value, "/rerank")


class SearchFilter(BaseModel):
    """Restrict a search to these ids of the index (an exact scan of their vectors)."""

    model_config = ConfigDict(extra="forbid")
    ids: list[str | int]


class SearchRequest(BaseModel):
    """/search: one query or several, each answered with its top k hits of the index."""

    model_config = ConfigDict(extra="forbid")
    query: str | None = None
    queries: list[str] | None = None
    k: int = Field(default=10, ge=1, le=MAX_K)
    filter: SearchFilter | None = None
    rescore: bool | None = None  # None: the index's default (on for config.search.RESCORED)
    hybrid: bool = False
    include_text: bool = True
    model: str | None = None

    @field_validator("query", "queries")
    @classmethod
    def _repaired(cls, value):
        return None if value is None else repaired(value, "/search")


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: str | list[str]
    model: str | None = None
    add_special_tokens: bool = True

    @field_validator("inputs")
    @classmethod
    def _repaired(cls, value):
        return repaired(value, "/tokenize")


def repaired(value: str | list, route: str) -> str | list:
    """Every route's texts with lone surrogates as U+FFFD (bertcli.data.text): accepted like the CLI's, never a 500."""
    return repair_inputs(value, route) if isinstance(value, list) else repair_inputs([value], route)[0]


ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               413: "request_too_large", 422: "invalid_request_error", 503: "overloaded_error"}  # fmt: skip


def error_body(status: int, message: str, code: str) -> dict:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "code": code}}


class ApiError(Exception):
    """A request the server refuses: answered as one JSON error body (`error_body`) with this status."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
