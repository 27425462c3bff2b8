"""The domain errors of chunkserve, one tree, with no HTTP in it.

    ChunkserveError
    ├── Overloaded            the work queue is full; try again after ``retry_after_s``
    ├── RateLimited           this caller is over its request rate or its running-jobs limit
    ├── AuthError             no credentials, or credentials that do not verify (never says which check failed)
    ├── ShuttingDown          the server is draining and takes no new work
    ├── ModelNotFound         no model is served under that id
    ├── InvalidInput          a request value is unusable (``field`` names it)
    │   ├── InputTooLarge     an input or a request is over a configured limit
    │   └── WrongTask         the model does another task (an embedding model asked to rerank)
    ├── ForbiddenTarget       an outbound URL is refused by the SSRF policy
    ├── DeadlineExceeded      the work did not finish in its time budget
    ├── ClientTooSlow         the client sent its request slower than the server waits for
    ├── BatchFailed           the model raised on an input; only that input's caller sees it
    └── UpstreamError         a remote API answered badly or not at all

``service/api/errors.py`` maps each to a status code in one table (``STATUS_TABLE``).
"""

from __future__ import annotations


class ChunkserveError(Exception):
    """Base of every error chunkserve raises on purpose."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Overloaded(ChunkserveError):
    """The queue is at its limit; the caller should retry after ``retry_after_s`` seconds."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimited(ChunkserveError):
    """This caller sent too much too fast, or runs too many jobs at once; retry after ``retry_after_s`` seconds."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AuthError(ChunkserveError):
    """The request carries no credentials, or credentials that do not verify.

    ``message`` is what the caller sees and is the same for every failure; ``reason`` is for the server's log.
    """

    def __init__(self, reason: str) -> None:
        super().__init__("missing or invalid credentials")
        self.reason = reason


class ShuttingDown(ChunkserveError):
    """The server (or one batcher) is closing and takes no new work."""


class ModelNotFound(ChunkserveError):
    """No model is served under the requested id."""


class InvalidInput(ChunkserveError):
    """A request value cannot be used; ``field`` names it."""


class InputTooLarge(InvalidInput):
    """An input or a whole request is over a configured limit."""


class WrongTask(InvalidInput):
    """The model named (or every model served) does another task than the one asked for."""


class ForbiddenTarget(ChunkserveError):
    """An outbound URL is refused by the outbound (SSRF) policy."""


class DeadlineExceeded(ChunkserveError):
    """The work did not finish within its deadline."""


class ClientTooSlow(ChunkserveError):
    """The client did not send its request (head or body) in the time allowed."""


class BatchFailed(ChunkserveError):
    """The model raised while computing this input."""


class UpstreamError(ChunkserveError):
    """A remote API failed: connection, status or malformed answer."""
