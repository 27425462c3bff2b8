"""How a chunk is put to each kind of remote API, and how its answer is read."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class RemoteProtocol(StrEnum):
    """How a chunk is put to a remote API and how its answer is read."""

    GENERIC = "generic"
    OPENAI_EMBEDDINGS = "openai-embeddings"
    OPENAI_CHAT = "openai-chat"


class MalformedAnswer(ValueError):
    """The answer is JSON but not the shape its protocol promises."""


def request_body(protocol: RemoteProtocol, model: str | None, prompt: str | None, text: str) -> dict[str, Any]:
    """The JSON body that sends ``text`` by ``protocol``."""
    if protocol is RemoteProtocol.OPENAI_EMBEDDINGS:
        return {"input": text, "model": model or "default"}
    if protocol is RemoteProtocol.OPENAI_CHAT:
        messages = [{"role": "system", "content": prompt}] if prompt else []
        messages.append({"role": "user", "content": text})
        return {"model": model or "default", "messages": messages}
    return {"text": text}


def parse_answer(protocol: RemoteProtocol, payload: Any) -> Any:
    """The result in an answer: an embedding, a chat reply, or (generic) the whole answer.

    Raises:
        MalformedAnswer: the answer lacks what ``protocol`` promises.
    """
    try:
        if protocol is RemoteProtocol.OPENAI_EMBEDDINGS:
            embedding = payload["data"][0]["embedding"]
            if not isinstance(embedding, list):
                raise TypeError("embedding is not a list")
            return embedding
        if protocol is RemoteProtocol.OPENAI_CHAT:
            return str(payload["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        raise MalformedAnswer(f"the answer is not an OpenAI {protocol.value} response") from None
    return payload
