"""The servers a bench run measures: a URL, chunkserve spawned with given settings, or the naive baseline.

A target spec on the command line is ``URL`` (any OpenAI-compatible server), ``spawn`` or
``spawn:max_batch_size=1,max_wait_ms=2`` (chunkserve started here with those settings), or ``naive`` (the tutorial
FastAPI server of ``service/bench/servers/naive.py``, started here).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import httpx2 as httpx

from service.bench.procs import spawned


@dataclass(frozen=True)
class TargetSpec:
    """One server to measure, as given on the command line."""

    kind: str  # "url", "spawn" or "naive"
    url: str | None = None
    settings: tuple[tuple[str, str], ...] = ()  # spawn: chunkserve settings (field name, value)
    label: str | None = None

    @property
    def name(self) -> str:
        """How reports name it."""
        if self.label:
            return self.label
        if self.kind == "url":
            return str(self.url).removeprefix("http://").removeprefix("https://")
        if self.kind == "naive":
            return "naive"
        return "chunkserve" + "".join(f" {k}={v}" for k, v in self.settings)


def parse_settings(text: str) -> tuple[tuple[str, str], ...]:
    """``a=1,b=2`` → ``(("a", "1"), ("b", "2"))``.

    Raises:
        ValueError: an item is not NAME=VALUE.
    """
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{item!r} is not NAME=VALUE")
        pairs.append((name.strip().replace("-", "_"), value.strip()))
    return tuple(pairs)


def parse_target(text: str) -> TargetSpec:
    """A target from its command-line form (see the module docstring).

    Raises:
        ValueError: the form is none of those.
    """
    if text == "naive":
        return TargetSpec("naive")
    if text == "spawn" or text.startswith("spawn:"):
        return TargetSpec("spawn", settings=parse_settings(text.removeprefix("spawn").removeprefix(":")))
    if text.startswith(("http://", "https://")):
        return TargetSpec("url", url=text.rstrip("/"))
    raise ValueError(f"target {text!r}: expected a URL, 'naive', 'spawn' or 'spawn:NAME=VALUE,...'")


def settings_env(settings: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Chunkserve settings as ``CHUNKSERVE_*`` variables."""
    return {f"CHUNKSERVE_{name.upper()}": value for name, value in settings}


@dataclass
class LiveTarget:
    """A server ready for requests."""

    spec: TargetSpec
    url: str
    pid: int | None = None  # known when it runs on this machine: its CPU and RSS are measured
    chunkserve: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name


def _is_chunkserve(url: str, headers: Mapping[str, str]) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        response = httpx.get(f"{url}/metrics", timeout=5, trust_env=False, headers=dict(headers))
        return response.status_code == 200 and "chunkserve_batch_size" in response.text
    return False


@contextlib.contextmanager
def started(
    spec: TargetSpec, *, env: Mapping[str, str], headers: Mapping[str, str], pid: int | None = None
) -> Iterator[LiveTarget]:
    """The target up and ready until the block ends (spawned ones are stopped after it).

    ``env`` goes to spawned servers (e.g. the remote allowlist a scenario needs); ``pid`` is the process of a URL
    target on this machine, when the user names it.

    Raises:
        SystemExit: a spawned server did not become ready.
    """
    if spec.kind == "url":
        url = str(spec.url)
        yield LiveTarget(spec, url, pid, _is_chunkserve(url, headers), dict(headers))
    elif spec.kind == "naive":
        with spawned([], "/ready", env=dict(env), module="service.bench.servers.naive") as (url, proc):
            yield LiveTarget(spec, url, proc.pid, False, dict(headers))
    else:
        merged = {**env, **settings_env(spec.settings)}
        with spawned(["serve"], "/ready", env=merged) as (url, proc):
            yield LiveTarget(spec, url, proc.pid, True, dict(headers))
