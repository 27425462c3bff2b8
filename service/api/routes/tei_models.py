"""Request bodies of the TEI-style routes, as Hugging Face text-embeddings-inference documents them.

``model`` is chunkserve's addition (TEI serves one model): absent, the first served model of the right task.
Only right-side truncation exists here; ``prompt_name`` and token-id inputs are refused by name.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NonEmptyText = Annotated[str, Field(min_length=1)]
TextOrTexts = NonEmptyText | Annotated[list[NonEmptyText], Field(min_length=1)]


class _TeiRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(default=None, max_length=128, description="chunkserve: the model id to use.")
    truncate: bool | None = Field(
        default=None,
        description="Cut inputs over the model's limit (true) or refuse them with 413 (false); unset: the server's "
        "CHUNKSERVE_TRUNCATE (TEI's auto_truncate).",
    )
    truncation_direction: Literal["right", "Right"] = Field(
        default="right", description="Only right (keep the start of the text) is supported."
    )


class _PromptRequest(_TeiRequest):
    prompt_name: None = Field(default=None, description="Not supported: send the prompt as part of the text.")

    @field_validator("prompt_name", mode="before")
    @classmethod
    def _no_prompts(cls, value: object) -> object:
        if value is not None:
            raise ValueError("prompt_name is not supported; prepend the prompt to the text")
        return value


class TeiEmbedRequest(_PromptRequest):
    """``POST /embed``."""

    inputs: TextOrTexts = Field(description="One text or a list of texts.")
    normalize: bool = Field(default=True, description="L2-normalise each vector.")


class TeiEmbedAllRequest(_PromptRequest):
    """``POST /embed_all``: every token's vector, unpooled."""

    inputs: TextOrTexts = Field(description="One text or a list of texts.")


Pair = Annotated[list[NonEmptyText], Field(min_length=2, max_length=2)]
SingleOrPair = Annotated[list[NonEmptyText], Field(min_length=1, max_length=2)]


class TeiPredictRequest(_TeiRequest):
    """``POST /predict``: classification of a text, a text pair, or a batch of both."""

    inputs: NonEmptyText | Pair | Annotated[list[SingleOrPair], Field(min_length=1)] = Field(
        description='A text, a pair ["a", "b"], or a batch [["a"], ["a", "b"], ...].'
    )
    raw_scores: bool = Field(default=False, description="Logits instead of probabilities.")


class TeiRerankRequest(_TeiRequest):
    """``POST /rerank``: score each text against the query with a cross-encoder."""

    query: NonEmptyText
    texts: Annotated[list[NonEmptyText], Field(min_length=1)]
    return_text: bool = Field(default=False, description="Include each text in the answer.")
    raw_scores: bool = Field(default=False, description="Logits instead of sigmoid scores.")


class TeiTokenizeRequest(_PromptRequest):
    """``POST /tokenize``."""

    inputs: TextOrTexts
    add_special_tokens: bool = Field(default=True, description="Include the model's special tokens.")
