"""One served model as the settings name it, and the ``ID=PATH[:TASK]`` spec it is parsed from.

Model specs have a small grammar of their own (an optional id, a path, a task inferred when absent); it lives
here so that ``service/config.py`` stays a list of settings, and the runtime and loaders depend on this alone.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from models.base import Task


class ModelEntry(BaseModel):
    """One served model: its public id, a local directory and optionally the task (inferred when absent)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:/-]+$")
    path: Path | None = Field(default=None, description="Local model directory; None means the packaged default.")
    task: Task | None = None

    @classmethod
    def parse(cls, spec: str) -> ModelEntry:
        """Parse ``ID=PATH[:TASK]`` (or just ``PATH``, whose directory name becomes the id).

        Raises:
            ValueError: the spec is empty or names an unknown task.
        """
        spec = spec.strip()
        if not spec:
            raise ValueError("empty model spec; expected ID=PATH[:TASK]")
        model_id, sep, rest = spec.partition("=")
        if not sep:
            model_id, rest = "", spec
        task: Task | None = None
        head, colon, tail = rest.rpartition(":")
        if colon and tail in {t.value for t in Task}:
            rest, task = head, Task(tail)
        elif colon and "/" not in tail and tail and not Path(rest).exists():
            tasks = ", ".join(t.value for t in Task)
            raise ValueError(f"unknown task {tail!r} in model spec {spec!r}; use one of: {tasks}")
        path = Path(rest).expanduser()
        return cls(id=model_id or path.name, path=path, task=task)


def split_models(value: object) -> object:
    """Comma-separated specs, or a list of specs and entries, as entries; anything else unchanged for pydantic."""
    if isinstance(value, str):
        return [ModelEntry.parse(part) for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        return [ModelEntry.parse(v) if isinstance(v, str) else v for v in value]
    return value
