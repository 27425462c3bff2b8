"""Wire models of OpenAI's ``/v1/chat/completions`` and ``/v1/completions``: unknown or unsupported fields are 422."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_MAX_STOPS = 4


class _Strict(BaseModel):
    # Forbidden extras: a field we do not implement (logprobs, tools, n > 1, ...) is refused by name, not ignored.
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    """One text part of a message's content (images and audio are not supported)."""

    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    """One turn of a conversation."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = Field(default=None, max_length=64)

    def text(self) -> str:
        """The message's content as one string."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Strict):
    """``stream_options``: ``include_usage`` adds a last chunk with the token counts."""

    include_usage: bool = False


class _GenerationRequest(_Strict):
    model: str | None = Field(
        default=None, max_length=128, description="Model id; the first generation model if absent."
    )
    max_tokens: int | None = Field(default=None, ge=1, description="Most tokens to generate (cut to the context).")
    temperature: float = Field(default=1.0, ge=0.0, le=2.0, description="0 is greedy (argmax).")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    n: Literal[1] = Field(default=1, description="Only one choice per request is supported.")
    stop: str | Annotated[list[str], Field(max_length=_MAX_STOPS)] | None = Field(
        default=None, description="Up to 4 strings; the text ends before the first one written."
    )
    seed: int | None = Field(default=None, ge=0, lt=2**63, description="Makes sampling reproducible.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256, description="Accepted for compatibility; unused.")
    truncate_prompt_tokens: int | None = Field(
        default=None,
        ge=-1,
        description="Keep only the last N prompt tokens (-1: as many as fit) instead of answering 413.",
    )

    @model_validator(mode="after")
    def _check(self) -> _GenerationRequest:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed with stream: true")
        if self.truncate_prompt_tokens == 0:
            raise ValueError("truncate_prompt_tokens must be >= 1, or -1")
        return self

    def stops(self) -> list[str]:
        """The stop strings as a list."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatCompletionRequest(_GenerationRequest):
    """OpenAI ``POST /v1/chat/completions`` body (text only, one choice)."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: int | None = Field(default=None, ge=1, description="Newer name of max_tokens.")

    def token_limit(self) -> int | None:
        """``max_completion_tokens`` when given, else ``max_tokens``."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_GenerationRequest):
    """OpenAI ``POST /v1/completions`` body (one prompt, one choice)."""

    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]

    def text(self) -> str:
        """The one prompt."""
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def token_limit(self) -> int | None:
        """``max_tokens``."""
        return self.max_tokens


class ChatTurn(_Strict):
    """A WebSocket chat message: one user turn, answered with the connection's conversation so far."""

    message: str = Field(min_length=1, description="The user's turn.")
    model: str | None = Field(
        default=None, max_length=128, description="Model id; the first generation model if absent."
    )
    system: str | None = Field(default=None, description="A system prompt put before the conversation.")
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    stop: str | Annotated[list[str], Field(max_length=_MAX_STOPS)] | None = None
    reset: bool = Field(default=False, description="Forget the conversation before this turn.")

    def stops(self) -> list[str]:
        """The stop strings as a list."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)
