"""RemoteClient: every httpx failure becomes a chunk error; per-host limiters do not outlive their calls."""

from __future__ import annotations

import asyncio

import httpx2 as httpx
import pytest

from service.outbound.remote import RemoteClient, RemoteTarget, RetryPolicy, UpstreamCallError
from tests.support.waiting import until


def _subclasses(cls: type[Exception]) -> list[type[Exception]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


TRANSPORT_ERRORS = [e for e in _subclasses(httpx.TransportError) if e.__subclasses__() == []]


def _client(handler: httpx.MockTransport) -> RemoteClient:
    http = httpx.AsyncClient(transport=handler)
    return RemoteClient(http, retry=RetryPolicy(attempts=2, backoff_base_s=0.001, backoff_max_s=0.001))


@pytest.mark.parametrize("error", TRANSPORT_ERRORS, ids=lambda e: e.__name__)
async def test_every_transport_error_before_the_answer_is_a_chunk_error(error: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("injected", request=request)  # type: ignore[call-arg]

    remote = _client(httpx.MockTransport(handler))
    with pytest.raises(UpstreamCallError) as failure:
        await remote.call(RemoteTarget(url="http://api.example/x"), "text", timeout_s=5)
    expected = "timeout" if issubclass(error, httpx.TimeoutException) else "connect"
    assert failure.value.kind == expected
    assert "api.example" in failure.value.message
    await remote.client.aclose()


class _BreaksMidBody(httpx.AsyncByteStream):
    def __init__(self, error: type[Exception]) -> None:
        self.error = error

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield b'{"partial": '
        raise self.error("the peer went away mid-body")


@pytest.mark.parametrize("error", [httpx.ReadError, httpx.RemoteProtocolError, httpx.CloseError])
async def test_a_connection_that_breaks_mid_answer_is_a_chunk_error(error: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_BreaksMidBody(error))

    remote = _client(httpx.MockTransport(handler))
    with pytest.raises(UpstreamCallError) as failure:
        await remote.call(RemoteTarget(url="http://api.example/x"), "text", timeout_s=5)
    assert failure.value.kind == "connect" and failure.value.attempts == 2
    await remote.client.aclose()


async def test_a_body_that_does_not_match_its_content_encoding_is_malformed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"not gzip at all", headers={"content-encoding": "gzip"})

    remote = _client(httpx.MockTransport(handler))
    with pytest.raises(UpstreamCallError) as failure:
        await remote.call(RemoteTarget(url="http://api.example/x"), "text", timeout_s=5)
    assert failure.value.kind == "malformed"
    await remote.client.aclose()


async def test_per_host_limiters_live_only_while_their_host_has_calls() -> None:
    gate = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "held.example":
            await gate.wait()
        return httpx.Response(200, json={"ok": True})

    remote = _client(httpx.MockTransport(handler))
    for i in range(200):
        await remote.call(RemoteTarget(url=f"http://h{i}.example/x"), "text", timeout_s=5)
    assert remote.hosts_tracked == 0
    held = asyncio.create_task(remote.call(RemoteTarget(url="http://held.example/x"), "t", timeout_s=5))
    await until(lambda: remote.hosts_tracked == 1)
    assert remote.hosts_tracked == 1
    gate.set()
    assert (await held).value == {"ok": True}
    assert remote.hosts_tracked == 0
    await remote.client.aclose()


async def test_a_smaller_cap_for_one_call_is_honoured() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"v": "' + b"x" * 5000 + b'"}')

    remote = _client(httpx.MockTransport(handler))
    ok = await remote.call(RemoteTarget(url="http://api.example/x"), "t", timeout_s=5)
    assert ok.size == 5009
    with pytest.raises(UpstreamCallError) as failure:
        await remote.call(RemoteTarget(url="http://api.example/x"), "t", timeout_s=5, max_bytes=1000)
    assert failure.value.kind == "too_large" and "1000-byte" in failure.value.message
    await remote.client.aclose()
