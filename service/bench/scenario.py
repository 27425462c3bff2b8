"""What a bench scenario is: a named way to build one request, and the registry the command line reads.

A scenario turns a :class:`Workload` into a :data:`Send`: an async function that sends request number ``i`` with
the given client and reports a :class:`Sample`. Load shapes (closed or open loop) decide when ``Send`` is called;
figures are computed from the samples. New scenarios call :func:`register` (``service/bench/scenarios.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx2 as httpx


@dataclass
class Sample:
    """One request's outcome: its latency, what it carried, and its error kind (None when it succeeded)."""

    latency_s: float
    inputs: int = 0  # inputs (or chunks) the answer accounted for
    tokens: int = 0  # tokens the server reported (usage), 0 when it reports none
    error: str | None = None  # "shed" (503: load refused on purpose), "http_500", "timeout", "connect", ...
    first_s: float | None = None  # stream: time to the first result
    gaps_s: list[float] = field(default_factory=list)  # stream: time between consecutive results
    remote_calls: int = 0  # fanout/process: remote calls this request made


@dataclass(frozen=True)
class Workload:
    """Everything a scenario needs to build its requests."""

    model: str
    texts: list[str]
    inputs_per_request: int = 1
    remote: str | None = None  # base URL of the fake remote, for scenarios that call one
    chunks: int = 1000  # fanout/stream: chunks per request
    text_chars: int = 20_000  # process: characters of each long text
    chunk_size: int = 500  # process: characters per chunk
    targets: str = "local"  # process: local | remote | mixed
    timeout_s: float = 60.0


Send = Callable[[httpx.AsyncClient, int], Awaitable[Sample]]


@dataclass(frozen=True)
class Scenario:
    """A registered scenario."""

    name: str
    help: str
    build: Callable[[Workload], Send]
    needs_remote: bool = False  # start a fake remote (and let spawned servers reach it)
    chunkserve_only: bool = False  # uses chunkserve's own API (not a plain OpenAI-compatible one)
    model_task: str = "embedding"  # the task --raw measures, and the naive baseline serves


SCENARIOS: dict[str, Scenario] = {}


def register(scenario: Scenario) -> Scenario:
    """Add ``scenario`` to the registry (the name must be new).

    Raises:
        ValueError: a scenario of that name is already registered.
    """
    if scenario.name in SCENARIOS:
        raise ValueError(f"bench scenario {scenario.name!r} is registered twice")
    SCENARIOS[scenario.name] = scenario
    return scenario


def error_kind(status: int) -> str:
    """The error kind of an HTTP status: 503 is shed load (counted apart), anything else ``http_<status>``."""
    return "shed" if status == 503 else f"http_{status}"


def exception_kind(exc: BaseException) -> str:
    """The error kind of a client-side failure."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    return type(exc).__name__
