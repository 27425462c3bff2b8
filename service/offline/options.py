"""What an offline run is asked to do (``RunOptions``) and what it did (``Summary``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Literal, TextIO

from service.errors import InvalidInput
from service.jobs.chunking import Strategy
from service.jobs.targets import Assignment, Target, distinct_labels, parse_target
from service.outbound.remote import RemoteTarget

Aggregate = Literal["mean"]
EXIT_OK, EXIT_FAILURES = 0, 1
EXIT_BY_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


@dataclass(frozen=True)
class RunOptions:
    """One offline run: inputs, output, and the same chunking and targets as ``/v1/process``.

    ``timeout_s`` bounds each chunk from its dispatch (queue wait included); None means the largest allowed
    (``remote_max_timeout_s``). ``max_in_flight`` is the window of (chunk, target) pairs in flight; None means
    ``batch_window + max_batch_size``, enough to keep the batcher's sorting window full. ``ordered`` writes
    lines in document and chunk order instead of completion order (results that finish early wait in a reorder
    buffer that counts against ``max_in_flight``).
    """

    inputs: tuple[str | Path, ...]
    output: Path
    text_field: str = "text"
    id_field: str | None = None
    chunking: Strategy = Strategy.SENTENCES
    chunk_size: int = 500
    overlap: int = 0
    targets: tuple[Target, ...] = ()
    assignment: Assignment = Assignment.ROUND_ROBIN
    timeout_s: float | None = None
    aggregate: Aggregate | None = None
    resume: bool = False
    overwrite: bool = False
    fail_fast: bool = False
    max_in_flight: int | None = None
    quiet: bool = False
    ordered: bool = False
    stdin: BinaryIO | None = field(default=None, compare=False)
    stderr: TextIO | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if not 0 <= self.overlap < self.chunk_size:
            raise ValueError(
                f"overlap must be >= 0 and smaller than chunk_size ({self.chunk_size}), got {self.overlap}"
            )
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {self.max_in_flight}")
        if self.aggregate not in (None, "mean"):
            raise ValueError(f"aggregate must be 'mean' or None, got {self.aggregate!r}")

    def check_output(self) -> None:
        """Refuse to touch an existing output unless asked to resume or overwrite it.

        Raises:
            FileExistsError: the output exists, is not empty, and neither ``resume`` nor ``overwrite`` is set.
        """
        output = self.output
        if output.exists() and output.stat().st_size and not (self.resume or self.overwrite):
            raise FileExistsError(f"{output} exists; pass --resume to continue it or --overwrite to replace it")

    @classmethod
    def build(
        cls,
        inputs: Sequence[str | Path],
        output: str | Path,
        *,
        targets: Sequence[str | dict[str, Any] | Target] = (),
        api_urls: Sequence[str] = (),
        chunking: str | Strategy = Strategy.SENTENCES,
        assignment: str | Assignment = Assignment.ROUND_ROBIN,
        **rest: Any,
    ) -> RunOptions:
        """Options from plain values: targets as model ids, URLs or ``/v1/process`` target objects.

        Raises:
            ValueError: an unknown chunking or assignment, or a bad target.
        """
        stdin = rest.pop("stdin", None)
        if stdin is None and any(str(i) == "-" for i in inputs):
            # Unbuffered: a reader thread blocked in a buffered stdin's read holds its lock, and the interpreter
            # aborts at exit if it finds that lock taken (an interrupt while the pipe is idle).
            stdin = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)  # noqa: SIM115
        try:
            chosen = distinct_labels([*(parse_target(t) for t in targets), *(RemoteTarget(url=u) for u in api_urls)])
        except InvalidInput as exc:  # a repeated --target name: a usage error, like any other bad option
            raise ValueError(exc.message) from None
        return cls(
            inputs=tuple(inputs),
            output=Path(output),
            chunking=Strategy(chunking),
            assignment=Assignment(assignment),
            targets=chosen,
            stdin=stdin,
            **rest,
        )


@dataclass
class Summary:
    """What a run did. ``documents`` were processed now; ``already_done`` were complete in the output (resume)."""

    MAX_ERRORS: ClassVar[int] = 100

    documents: int = 0
    already_done: int = 0
    chunks: int = 0
    failed_chunks: int = 0
    skipped: int = 0
    lines: int = 0
    load_s: float = 0.0
    elapsed_s: float = 0.0
    interrupted: str | None = None
    errors: list[str] = field(default_factory=list)
    models: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def chunks_per_s(self) -> float:
        return round(self.chunks / self.elapsed_s, 2) if self.elapsed_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Everything read and every chunk succeeded, and the run was not stopped."""
        return not (self.failed_chunks or self.skipped or self.interrupted)

    def exit_code(self, allow_failures: bool = False) -> int:
        """0 when all went well (or only chunks/records failed and that is allowed); 130/143 on a signal; else 1."""
        if self.interrupted is not None:
            return EXIT_BY_SIGNAL.get(self.interrupted, EXIT_FAILURES)
        if self.ok or allow_failures:
            return EXIT_OK
        return EXIT_FAILURES

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "chunks_per_s": self.chunks_per_s}

    def describe(self) -> str:
        """The end-of-run summary for people."""
        head = "interrupted (" + self.interrupted + ")" if self.interrupted else "done"
        parts = [
            f"{head}: {self.documents} documents, {self.chunks} chunk results ({self.failed_chunks} failed)",
            f"{self.skipped} records skipped",
        ]
        if self.already_done:
            parts.append(f"{self.already_done} documents already in the output")
        parts.append(f"{self.elapsed_s:.1f} s, {self.chunks_per_s:.1f} chunks/s (models loaded in {self.load_s:.1f} s)")
        for model, stats in self.models.items():
            if stats["batches"]:
                parts.append(
                    f"{model}: {stats['batches']} batches of {stats['mean_batch_size']} on average, computing "
                    f"{stats['busy_share']:.0%} of the time, {stats['padding_share']:.0%} padding"
                )
        return "; ".join(parts)
