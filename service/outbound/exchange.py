"""One HTTP exchange of a remote call, and how its failures are classed (retry or not), for each client library.

``RemoteClient`` (``service/outbound/remote.py``) owns what does not depend on the library: limits, retries, status
and JSON handling. An exchange sends one POST and returns the status, the ``Retry-After`` header and the body read
under the size cap, or raises ``Retryable`` / ``Final``. The httpx one is here; the aiohttp one (the server's) is in
``service/outbound/aio.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import httpx2 as httpx

from service.errors import ForbiddenTarget


class Answer(NamedTuple):
    """What one exchange got back: the status, the Retry-After header (or None) and the body as read."""

    status: int
    retry_after: str | None
    body: bytes


class Retryable(Exception):
    """A failure another try may not have: a broken connection, 429 or 5xx."""

    def __init__(self, kind: str, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.kind, self.reason, self.retry_after_s = kind, reason, retry_after_s


class Final(Exception):
    """A failure no retry can fix: a timeout, a refused answer, a request that cannot be sent."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


def too_large(declared: str | None, cap: int) -> Final | None:
    """The refusal for a declared ``Content-Length`` over ``cap``, or None."""
    if declared and declared.isdigit() and int(declared) > cap:
        return Final("too_large", f"answer of {declared} bytes is over the {cap}-byte cap")
    return None


def over_cap(cap: int) -> Final:
    """The refusal for an answer that grew past ``cap`` while being read."""
    return Final("too_large", f"answer is over the {cap}-byte cap")


async def httpx_exchange(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], timeout_s: float, cap: int
) -> Answer:
    """POST ``body`` with ``headers`` (Content-Type included) to ``url`` through an httpx client.

    At most ``cap`` bytes of the answer are read.

    Raises:
        Retryable: the connection failed or broke mid-answer.
        Final: timeout, an answer over the cap or not matching its encoding, or a request that cannot be sent.
        ForbiddenTarget: the client's guard refused the address at connect time.
    """
    try:
        request = client.build_request("POST", url, content=body, headers=headers, timeout=timeout_s)
        response = await client.send(request, stream=True)
    except ForbiddenTarget:
        raise
    except httpx.TimeoutException:
        raise Final("timeout", f"no answer within {timeout_s:.3g} s") from None
    except httpx.TransportError as exc:
        # Every transport failure (connect, write to a connection the peer closed, read, protocol): a pooled
        # connection may have gone stale, so it is worth another try on a fresh one.
        raise Retryable("connect", f"connection failed ({type(exc).__name__})") from None
    except httpx.DecodingError:
        raise Final("malformed", "the answer does not match its Content-Encoding") from None
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        # Anything else the client refuses (a URL or header it cannot send): no retry can fix it.
        raise Final("connect", f"the request could not be sent ({type(exc).__name__})") from None
    try:
        refusal = too_large(response.headers.get("content-length"), cap)
        if refusal is not None:
            raise refusal
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise over_cap(cap)
            chunks.append(chunk)
    except httpx.TimeoutException:
        raise Final("timeout", f"answer not complete within {timeout_s:.3g} s") from None
    except httpx.TransportError as exc:
        raise Retryable("connect", f"connection broke mid-answer ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:  # DecodingError: a body that does not match its Content-Encoding
        raise Final("malformed", f"the answer could not be read ({type(exc).__name__})") from None
    finally:
        await response.aclose()
    return Answer(response.status_code, response.headers.get("retry-after"), b"".join(chunks))
