"""The servers a bench run measures: a URL, chunkserve spawned with given settings, or the naive baseline.

A target spec on the command line is ``URL`` (any OpenAI-compatible server), ``spawn`` or
``spawn:max_batch_size=1,max_wait_ms=2`` (chunkserve started here with those settings), ``spawn-ray`` or
``spawn-ray:replicas=2,replica_cpus=1,...`` (``chunkserve serve --ray`` started here: a local Ray, the same app on
Ray Serve replicas behind Ray's proxy; the other pairs are settings), or ``naive`` (the tutorial FastAPI server of
``service/bench/servers/naive.py``, started here).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import httpx2 as httpx

from service.bench.procs import spawned


@dataclass(frozen=True)
class TargetSpec:
    """One server to measure, as given on the command line."""

    kind: str  # "url", "spawn", "spawn-ray" or "naive"
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
        prefix = "chunkserve on Ray" if self.kind == "spawn-ray" else "chunkserve"
        return prefix + "".join(f" {k}={v}" for k, v in self.settings)


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
    for kind in ("spawn", "spawn-ray"):
        if text == kind or text.startswith(f"{kind}:"):
            return TargetSpec(kind, settings=parse_settings(text.removeprefix(kind).removeprefix(":")))
    if text.startswith(("http://", "https://")):
        return TargetSpec("url", url=text.rstrip("/"))
    raise ValueError(
        f"target {text!r}: expected a URL, 'naive', 'spawn[:NAME=VALUE,...]' or 'spawn-ray[:NAME=VALUE,...]'"
    )


# The `chunkserve serve --ray` flags a spawn-ray target takes among its pairs; every other pair is a setting.
RAY_FLAGS = ("replicas", "replica_cpus", "replica_gpus", "max_ongoing_requests", "max_queued_requests")


def ray_command(settings: tuple[tuple[str, str], ...]) -> tuple[list[str], tuple[tuple[str, str], ...]]:
    """A spawn-ray target's ``chunkserve serve --ray`` arguments, and the pairs left that are settings."""
    args = ["serve", "--ray"]
    for name, value in settings:
        if name in RAY_FLAGS:
            args += [f"--{name.replace('_', '-')}", value]
    return args, tuple((name, value) for name, value in settings if name not in RAY_FLAGS)


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
    elif spec.kind == "spawn-ray":
        args, rest = ray_command(spec.settings)
        # Ray's sockets and logs in a private short directory; its own processes (proxy, controller, replicas)
        # are not this one's children, so its CPU and RSS are not measured (pid None).
        merged = {**env, **settings_env(rest), "RAY_TMPDIR": tempfile.mkdtemp(prefix="csray-", dir="/tmp")}
        merged["RAY_SERVE_LOG_TO_STDERR"] = "0"  # else a line per request on the terminal (Ray's log files keep it)
        # Its /metrics come from whichever replica the proxy picks: batch figures only mean something with one.
        one_replica = dict(spec.settings).get("replicas", "1") == "1"
        with spawned(args, "/ready", env=merged, timeout_s=600.0) as (url, _):
            yield LiveTarget(spec, url, None, one_replica, dict(headers))
    else:
        merged = {**env, **settings_env(spec.settings)}
        with spawned(["serve"], "/ready", env=merged) as (url, proc):
            yield LiveTarget(spec, url, proc.pid, True, dict(headers))
