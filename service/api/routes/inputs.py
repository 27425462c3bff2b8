"""Limits shared by every route that takes a list of texts."""

from __future__ import annotations

from service.config import Settings
from service.errors import InputTooLarge


def as_texts(value: str | list[str], settings: Settings, field: str = "input") -> list[str]:
    """Normalise ``input`` to a list and enforce the per-request limits.

    Raises:
        InputTooLarge: too many inputs, or one is longer than ``max_input_chars``.
    """
    texts = [value] if isinstance(value, str) else value
    if len(texts) > settings.max_inputs_per_request:
        raise InputTooLarge(
            f"{field} has {len(texts)} items; at most {settings.max_inputs_per_request} per request",
            field=field,
        )
    for i, text in enumerate(texts):
        if len(text) > settings.max_input_chars:
            where = field if isinstance(value, str) else f"{field}[{i}]"
            raise InputTooLarge(
                f"{where} has {len(text)} characters; at most {settings.max_input_chars} "
                "(split long texts with /v1/process)",
                field=where,
            )
    return texts
