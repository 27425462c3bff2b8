"""Wire models (pydantic): request bodies validated at the edge, response shapes for the OpenAPI schema."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

NonEmptyText = Annotated[str, Field(min_length=1)]

MAX_HEADERS_BYTES = 8192
# RFC 9110 token characters; a value is visible ASCII, spaces and tabs (obs-text and CR/LF are refused).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(r"[\x20-\x7e\t]*")
# Hop-by-hop headers and those the client itself must set: a caller may not choose them.
_REFUSED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


def check_headers(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` if every one can be sent as given.

    Raises:
        ValueError: a name that is not an HTTP token or is refused, a value with a control or non-ASCII
            character, or more than ``MAX_HEADERS_BYTES`` in all (the message names the header, not its value).
    """
    size = 0
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"header name {name[:64]!r} is not an HTTP token")
        if name.lower() in _REFUSED_HEADERS:
            raise ValueError(f"header {name!r} may not be set by the caller")
        if not _VALUE.fullmatch(value):
            raise ValueError(f"header {name!r} has a value with a control or non-ASCII character")
        size += len(name) + len(value) + 4
    if size > MAX_HEADERS_BYTES:
        raise ValueError(f"headers take {size} bytes; at most {MAX_HEADERS_BYTES}")
    return headers


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class EmbeddingsRequest(_Request):
    """OpenAI ``POST /v1/embeddings`` body (text inputs only)."""

    input: NonEmptyText | Annotated[list[NonEmptyText], Field(min_length=1)] = Field(
        description="One text or a list of texts to embed."
    )
    model: str | None = Field(
        default=None, max_length=128, description="Model id; the first embedding model if absent."
    )
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="float: JSON numbers; base64: little-endian float32 bytes."
    )
    dimensions: int | None = Field(
        default=None,
        ge=1,
        description="Keep the first N dimensions and re-normalise (for Matryoshka models).",
    )
    user: str | None = Field(default=None, max_length=256, description="Accepted for OpenAI compatibility; unused.")


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage


class ClassifyRequest(_Request):
    """``POST /v1/classify`` body."""

    input: NonEmptyText | Annotated[list[NonEmptyText], Field(min_length=1)] = Field(
        description="One text or a list of texts to classify."
    )
    model: str | None = Field(
        default=None, max_length=128, description="Model id; the first classification model if absent."
    )
    return_all_scores: bool = Field(default=False, description="Include every label's probability.")


class ClassificationItem(BaseModel):
    index: int
    label: str
    score: float
    scores: dict[str, float] | None = None


class ClassifyResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[ClassificationItem]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models``: the OpenAI fields plus what chunkserve knows of the model."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "chunkserve"
    task: str
    device: str
    dtype: str
    max_input_tokens: int
    backend: str = Field(default="torch", description="What runs the model's forward pass: torch or openvino.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error body: OpenAI's shape, plus the request id to quote in a bug report."""

    error: ErrorDetail
    request_id: str | None = None


class HealthResponse(BaseModel):
    status: str
    detail: str | None = None


class TargetSpec(_Request):
    """A local model (``model`` alone) or a remote API (``url``, with its protocol)."""

    model: str | None = Field(default=None, max_length=128, description="Local model id, or the remote model name.")
    url: str | None = Field(default=None, max_length=2048, description="Remote endpoint (http or https).")
    protocol: Literal["generic", "openai-embeddings", "openai-chat"] = Field(
        default="generic", description="generic: POST {'text': chunk}; openai-*: the OpenAI API."
    )
    prompt: str | None = Field(
        default=None,
        max_length=8192,
        description="System prompt for openai-chat; for a local generation model, the prompt ({text}: the chunk).",
    )
    max_tokens: int | None = Field(
        default=None, ge=1, le=32768, description="Local generation model: tokens per chunk."
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description=(
            "The target's label in results. Default: the model id (local) or the URL and its settings (remote); "
            "a later target that would repeat a label gets LABEL#2, #3, ..."
        ),
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        max_length=16,
        description=(
            "Extra headers for the remote: names are HTTP tokens, values visible ASCII (no CR/LF), "
            f"{MAX_HEADERS_BYTES} bytes in all; hop-by-hop headers, Host and Content-Length are refused."
        ),
    )

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        return check_headers(headers)

    @model_validator(mode="after")
    def _local_or_remote(self) -> TargetSpec:
        if self.url is None and self.model is None:
            raise ValueError("a target needs a url (remote) or a model (local)")
        return self


class ReduceSpec(_Request):
    """One more generation over the chunk results, in chunk order (map-reduce)."""

    model: str = Field(min_length=1, max_length=128, description="A local generation model.")
    prompt: str = Field(
        default="{results}", max_length=8192, description="The prompt; {results} is the chunk results, in order."
    )
    max_tokens: int | None = Field(default=None, ge=1, le=32768, description="Tokens to generate.")


class ProcessRequest(_Request):
    """``POST /v1/process``: a long text, how to chunk it, and where each chunk goes."""

    text: str = Field(min_length=1, description="The text to split and process.")
    chunk_size: int = Field(default=500, gt=0, le=1_000_000, description="Chunk size (characters, or tokens).")
    chunking: Literal["chars", "sentences", "tokens"] = Field(default="sentences", description="Split strategy.")
    overlap: int = Field(default=0, ge=0, description="Characters (tokens) each chunk repeats from the last.")
    api_urls: list[str] = Field(
        default_factory=list, max_length=256, description="Remote generic endpoints (the classic request shape)."
    )
    targets: list[TargetSpec] = Field(default_factory=list, max_length=256, description="Local and remote targets.")
    assignment: Literal["round_robin", "broadcast"] = Field(
        default="round_robin", description="round_robin: chunk i → target i mod n; broadcast: every chunk everywhere."
    )
    timeout_s: float | None = Field(default=None, gt=0, description="Per-call timeout and overall deadline.")
    encoding_format: Literal["float", "base64"] = Field(
        default="float",
        description="Local embeddings as float32 JSON numbers (float) or base64 of little-endian float32 bytes.",
    )
    reduce: ReduceSpec | None = Field(default=None, description="Combine the chunk results with a generation model.")
    include_text: bool = Field(
        default=False,
        description=(
            "Echo each chunk's text: in `chunks[].text` (/v1/process) and in every `result` event (stream, "
            "WebSocket). Off by default, and `text` is then absent, not null: a chunk's text is always "
            "`text[start:end]` of the text you sent (code points), so slice it there instead of having it sent back."
        ),
    )


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # "absent" is not a value a client should ever see documented as null


class ChunkInfo(BaseModel):
    """A chunk's span in the request's text (code points): its text is ``text[start:end]``."""

    index: int
    start: int
    end: int
    text: str | SkipJsonSchema[None] = Field(
        default=None,
        description="`text[start:end]`; only with `include_text: true`, absent otherwise.",
        json_schema_extra=_no_default,
    )


class ChunkError(BaseModel):
    type: str
    message: str


class ChunkResultModel(BaseModel):
    index: int
    target: str
    success: bool
    result: Any = None
    error: ChunkError | None = None
    latency_ms: float
    attempts: int


class ProcessResponse(BaseModel):
    total: int
    successful: int
    failed: int
    chunks: list[ChunkInfo]
    results: list[ChunkResultModel]
    reduce: dict[str, Any] | None = None


class PredictRequest(_Request):
    """The classic ``POST /predict/`` body: a text, cut into chunks of 100 characters."""

    text: str = Field(min_length=1, description="The text to classify, chunk by chunk.")


class Prediction(BaseModel):
    """One chunk's label, in chunk order."""

    index: int
    start: int
    end: int
    label: str
    score: float
    scores: dict[str, float]


class PredictResponse(BaseModel):
    model: str
    predictions: list[Prediction]
