"""Wire models (pydantic): request bodies validated at the edge, response shapes for the OpenAPI schema."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

NonEmptyText = Annotated[str, Field(min_length=1)]


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
    user: str | None = Field(
        default=None, max_length=256, description="Accepted for OpenAI compatibility; unused."
    )


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
