"""``POST /v1/chat/completions`` and ``POST /v1/completions``, OpenAI-compatible, streamed as SSE when asked."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from service.api.deps import RegistryDep
from service.api.disconnect import cancel_on_disconnect
from service.api.generation_schemas import ChatCompletionRequest, CompletionRequest
from service.errors import ChunkserveError
from service.inference.generation.engine import GenerationEngine, Prompt
from service.inference.generation.stream import Finish, TokenStream
from service.schemas import ErrorResponse

router = APIRouter(tags=["generation"])
log = logging.getLogger("chunkserve.generation")
_ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorResponse} for code in (404, 413, 422, 503)}
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _prompt(engine: GenerationEngine, body: ChatCompletionRequest | CompletionRequest) -> Prompt:
    """The request's prompt, tokenized and fitted to the context (413, or cut from the left when asked)."""
    if isinstance(body, ChatCompletionRequest):
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        ids, field = await engine.prompt_ids(messages=messages), "messages"
    else:
        ids, field = await engine.prompt_ids(prompt=body.text()), "prompt"
    keep = body.truncate_prompt_tokens
    if keep is not None and keep > 0:
        ids = ids[-keep:]
    return engine.fit(ids, body.token_limit(), truncate=keep is not None, field=field)


def _open(engine: GenerationEngine, prompt: Prompt, body: ChatCompletionRequest | CompletionRequest) -> TokenStream:
    return engine.stream(
        prompt,
        max_tokens=body.token_limit(),
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=body.stops(),
    )


def _usage(finish: Finish) -> dict[str, int]:
    total = finish.prompt_tokens + finish.completion_tokens
    return {"prompt_tokens": finish.prompt_tokens, "completion_tokens": finish.completion_tokens, "total_tokens": total}


def _json(payload: dict[str, Any]) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def _events(
    stream: TokenStream, head: dict[str, Any], *, chat: bool, include_usage: bool
) -> AsyncIterator[bytes]:
    """OpenAI's chunks: (chat: the role first), one per piece of text, the finish reason, usage, ``[DONE]``."""
    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(text: str | None, finish: str | None, *, role: bool = False) -> bytes:
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        return _sse({**head, "object": kind, "choices": [choice]})

    try:
        if chat:
            yield chunk(None, None, role=True)
        async for piece in stream:
            yield chunk(piece, None)
        finish = stream.finish
        if finish is not None:
            yield chunk(None, finish.reason)
            if include_usage:
                yield _sse({**head, "object": kind, "choices": [], "usage": _usage(finish)})
    except ChunkserveError as exc:
        yield _sse({"error": {"message": exc.message, "type": type(exc).__name__, "param": None, "code": None}})
    except Exception:
        log.exception("generation stream failed mid-way")
        yield _sse({"error": {"message": "generation failed; see the server log", "type": "internal"}})
    yield b"data: [DONE]\n\n"


async def _answer(request: Request, registry: RegistryDep, body: ChatCompletionRequest | CompletionRequest) -> Response:
    chat = isinstance(body, ChatCompletionRequest)
    engine = registry.generator(body.model)
    prompt = await _prompt(engine, body)
    stream = _open(engine, prompt, body)  # queued now: a full queue is a 503 before any byte is sent
    head = {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{secrets.token_hex(12)}",
        "created": int(time.time()),
        "model": engine.model_id,
    }
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        events = _events(stream, head, chat=chat, include_usage=include_usage)

        async def release() -> None:
            # Frees the slot of a stream whose client left before its first chunk. A coroutine, not the plain
            # method: Starlette runs a plain function in its thread pool, a thread hop for every streamed request.
            stream.request.cancel()

        return StreamingResponse(
            events, media_type="text/event-stream", headers=_SSE_HEADERS, background=BackgroundTask(release)
        )
    done = await cancel_on_disconnect(request, stream.collect())
    if chat:
        message = {"role": "assistant", "content": done.text}
        choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None, "finish_reason": done.finish.reason}
        return _json({**head, "object": "chat.completion", "choices": [choice], "usage": _usage(done.finish)})
    choice = {"index": 0, "text": done.text, "logprobs": None, "finish_reason": done.finish.reason}
    return _json({**head, "object": "text_completion", "choices": [choice], "usage": _usage(done.finish)})


@router.post("/v1/chat/completions", responses=_ERRORS)
async def chat_completions(body: ChatCompletionRequest, request: Request, registry: RegistryDep) -> Response:
    """Answer a conversation with a local generation model (its chat template, or plain ``role: text`` lines).

    Raises:
        ModelNotFound, InvalidInput, InputTooLarge, Overloaded, ShuttingDown: mapped in service/api/errors.py.
    """
    return await _answer(request, registry, body)


@router.post("/v1/completions", responses=_ERRORS)
async def completions(body: CompletionRequest, request: Request, registry: RegistryDep) -> Response:
    """Continue a plain prompt with a local generation model.

    Raises:
        ModelNotFound, InvalidInput, InputTooLarge, Overloaded, ShuttingDown: mapped in service/api/errors.py.
    """
    return await _answer(request, registry, body)
