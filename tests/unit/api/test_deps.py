"""Route dependencies run on the event loop: a plain ``def`` one would cost a worker-thread hop per request."""

from __future__ import annotations

import inspect
import typing

from fastapi.params import Depends

from service.api import deps


def _dependencies() -> list[tuple[str, object]]:
    found: list[tuple[str, object]] = []
    for name, value in vars(deps).items():
        if isinstance(value, Depends):
            found.append((name, value.dependency))
        elif typing.get_origin(value) is typing.Annotated:
            found += [(name, m.dependency) for m in typing.get_args(value)[1:] if isinstance(m, Depends)]
    return found


def test_every_dependency_is_async() -> None:
    found = _dependencies()
    assert len(found) >= 6  # RegistryDep, SettingsDep, MetricsDep, PipelineDep, JobLimitsDep, JOB_SLOT
    sync = [name for name, fn in found if not (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn))]
    assert sync == [], f"dependencies FastAPI would run on a worker thread: {sync}"
