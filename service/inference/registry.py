"""ModelRegistry: the served engines by id, and whether the server is ready to take work."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum

from models.base import Task
from service.errors import ModelNotFound, ShuttingDown, WrongTask
from service.inference.engine import ModelEngine


class Phase(StrEnum):
    """Where the server is in its life."""

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    DRAINING = "draining"


@dataclass
class ModelRegistry:
    """Holds every engine; answers lookups by id or by task, and readiness."""

    expected: list[str]
    engines: dict[str, ModelEngine] = field(default_factory=dict)
    phase: Phase = Phase.LOADING
    failure: str | None = None

    def add(self, engine: ModelEngine) -> None:
        """Register a started engine."""
        self.engines[engine.model_id] = engine

    def readiness(self) -> tuple[bool, str]:
        """Whether the server can take work now, and why not when it cannot."""
        if self.phase is Phase.FAILED:
            return False, f"start-up failed: {self.failure}"
        if self.phase is Phase.DRAINING:
            return False, "shutting down"
        if self.phase is Phase.LOADING:
            missing = [m for m in self.expected if m not in self.engines]
            return False, f"loading models: {', '.join(missing) or 'warming up'}"
        dead = [e.model_id for e in self.engines.values() if not e.alive]
        if dead:
            return False, f"batcher stopped for: {', '.join(dead)}"
        return True, "ready"

    def ensure_accepting(self) -> None:
        """Refuse new work unless the server is ready.

        Raises:
            ShuttingDown: the server is loading, draining or failed.
        """
        if self.phase is not Phase.READY:
            raise ShuttingDown(self.readiness()[1])

    def get(self, model_id: str | None, task: Task | None = None) -> ModelEngine:
        """The engine for ``model_id`` (or the first one doing ``task`` when no id is given).

        Raises:
            ShuttingDown: the server is loading, draining or failed.
            ModelNotFound: no model has that id.
            WrongTask: the model exists but does another task (an ``InvalidInput``).
        """
        self.ensure_accepting()
        if model_id is None:
            for engine in self.engines.values():
                if task is None or engine.task is task:
                    return engine
            raise ModelNotFound(f"no {task.value if task else ''} model is served here", field="model")
        found = self.engines.get(model_id)
        if found is None:
            served = ", ".join(sorted(self.engines)) or "none"
            raise ModelNotFound(f"model {model_id!r} does not exist; served: {served}", field="model")
        if task is not None and found.task is not task:
            raise WrongTask(f"model {model_id!r} is a {found.task.value} model, not {task.value}", field="model")
        return found

    def begin_draining(self) -> None:
        """Take no new work from now on (a failed start-up stays failed)."""
        if self.phase is not Phase.FAILED:
            self.phase = Phase.DRAINING

    async def close(self, drain: bool = True) -> None:
        """Mark draining and close every engine (queued work is finished when ``drain``)."""
        self.begin_draining()
        await asyncio.gather(*(e.close(drain=drain) for e in self.engines.values()))
