"""A remote API that misbehaves on purpose, at the TCP level, on loopback: one fault per path.

``/ok`` answers properly; ``/reset`` resets the connection; ``/halfclose`` closes its side without answering;
``/garbage`` answers bytes that are not HTTP; ``/slow`` answers properly, one byte at a time; ``/midbody`` closes
half way through the body it announced; ``/badheaders`` answers a header line that is not a header; ``/hang``
never answers; ``/gated`` answers properly once ``open_gate()`` is called. Each connection serves one request.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from types import TracebackType

import orjson

FAULTS = ("ok", "reset", "halfclose", "garbage", "slow", "midbody", "badheaders", "hang", "gated")
_OK_BODY = orjson.dumps({"ok": True})
_OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (
    len(_OK_BODY),
    _OK_BODY,
)


class FaultRemote:
    """The server, on its own thread and event loop; ``with`` it for its base URL."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fault-remote", daemon=True)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._gate = asyncio.Event()
        self.url = ""

    def open_gate(self) -> None:
        """Let every ``/gated`` request, waiting or to come, be answered."""
        self.loop.call_soon_threadsafe(self._gate.set)

    def __enter__(self) -> str:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop
        ).result(10)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self.url

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._handlers.discard(task)
            writer.transport.abort()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        length = next((int(v) for k, _, v in (x.partition(":") for x in lines) if k.lower() == "content-length"), 0)
        await reader.readexactly(length)
        fault = request_line.split()[1].strip("/").split("?")[0]
        if fault == "ok":
            writer.write(_OK)
        elif fault == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        elif fault == "halfclose":
            writer.write_eof()
            await reader.read()
        elif fault == "garbage":
            writer.write(b"\x16\x03\x01\x00\xffNOT HTTP AT ALL\r\n\r\n")
        elif fault == "slow":
            for i in range(len(_OK)):
                writer.write(_OK[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0.001)
        elif fault == "midbody":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b'{"partial": "')
        elif fault == "badheaders":
            writer.write(b"HTTP/1.1 200 OK\r\nthis is not a header\r\ncontent-length: 2\r\n\r\n{}")
        elif fault == "hang":
            await reader.read()
        elif fault == "gated":
            await self._gate.wait()
            writer.write(_OK)
        await writer.drain()
