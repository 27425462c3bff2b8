"""One chunk of a long text through a generation model: the target's prompt with the chunk in it."""

from __future__ import annotations

from typing import Any, Protocol

from service.inference.generation.engine import GenerationEngine

_SLOT = "{text}"


class GenerationSpec(Protocol):
    """What a job's target says about generation (``service.jobs.targets.LocalTarget`` is one)."""

    @property
    def prompt(self) -> str | None: ...

    @property
    def max_tokens(self) -> int | None: ...


def fill_prompt(template: str | None, text: str) -> str:
    """``template`` with ``{text}`` replaced by the chunk (the chunk after a blank line when it has no ``{text}``)."""
    if not template:
        return text
    # str.replace, not str.format: the chunk and the template may hold braces of their own.
    return template.replace(_SLOT, text) if _SLOT in template else f"{template}\n\n{text}"


async def generate_for_chunk(engine: GenerationEngine, target: GenerationSpec, text: str) -> dict[str, Any]:
    """Greedy generation for one chunk: ``text``, ``finish_reason`` and token counts.

    Raises:
        InputTooLarge: the filled prompt does not fit the model's context (make the chunks smaller).
        Overloaded, ShuttingDown, BatchFailed: from the engine.
    """
    content = fill_prompt(target.prompt, text)
    if engine.model.chat_template:
        ids = await engine.prompt_ids(messages=[{"role": "user", "content": content}])
    else:
        ids = await engine.prompt_ids(prompt=content)
    prompt = engine.fit(ids, target.max_tokens, field="text")
    done = await engine.complete(prompt, max_tokens=target.max_tokens, temperature=0.0)
    return {
        "text": done.text,
        "finish_reason": done.finish.reason,
        "prompt_tokens": done.finish.prompt_tokens,
        "completion_tokens": done.finish.completion_tokens,
    }
