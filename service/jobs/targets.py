"""What a job asks for, and the one mapping from a request's target specs to ``Target``s.

The HTTP routes, the WebSocket and ``chunkserve run`` all build their jobs here, so a target means the same thing
whichever way it came in.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from service.errors import InputTooLarge, InvalidInput
from service.jobs.chunking import Strategy
from service.outbound.protocols import RemoteProtocol
from service.outbound.remote import RemoteTarget
from service.schemas import ProcessRequest, ReduceSpec, TargetSpec


class Assignment(StrEnum):
    """How chunks are spread over targets."""

    ROUND_ROBIN = "round_robin"
    BROADCAST = "broadcast"


@dataclass(frozen=True, slots=True)
class LocalTarget:
    """A model served by this process; ``prompt`` ({text}: the chunk) and ``max_tokens`` for a generation model.

    ``name`` is its label in results (given by the request, or set by ``distinct_labels``); the model id otherwise.
    """

    model: str
    prompt: str | None = None
    max_tokens: int | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name if self.name is not None else self.model


Target = LocalTarget | RemoteTarget


@functools.lru_cache(maxsize=4096)  # asked once per chunk; a digest per call would add up over a large job
def target_label(target: Target) -> str:
    """How a target is named in results: distinct targets get distinct labels.

    A local model is its id; a plain generic remote is its URL (the classic shape); any other remote adds its
    protocol, its model and, when it has a prompt or headers, a short digest of them (never their text: headers
    carry keys), so that two targets on one URL are never confused in results or by ``--resume``. A target with
    a ``name`` (the request's, or ``distinct_labels``'s) is that name.
    """
    if isinstance(target, LocalTarget):
        return target.label
    if target.name is not None:
        return target.name
    parts = [] if target.protocol is RemoteProtocol.GENERIC else [target.protocol.value]
    if target.model is not None:
        parts.append(f"model={target.model}")
    if target.prompt is not None or target.headers:
        digest = hashlib.sha256(repr((target.prompt, sorted(target.headers))).encode()).hexdigest()[:10]
        parts.append(f"config={digest}")
    return f"{target.url} ({', '.join(parts)})" if parts else target.url


def distinct_labels(targets: Iterable[Target], *, first_spec: int = 0) -> tuple[Target, ...]:
    """``targets`` with a distinct label for every distinct target, so that their results never collide.

    The labels alone can repeat: two prompts on one local model are both named by the model id. A target whose
    label an earlier, different target already has is renamed ``LABEL#2`` (``#3``, ...): stable for a given
    target list, so ``--resume`` finds its results again. Equal targets keep one label (they are the same work).
    ``first_spec`` is the index of the first target that came from the request's ``targets`` (for error fields).

    Raises:
        InvalidInput: an explicit ``name`` is already another target's label.
    """
    seen: dict[str, Target] = {}
    out: list[Target] = []
    for i, target in enumerate(targets):
        label = target_label(target)
        other = seen.get(label)
        if other is not None and other != target:
            if target.name is not None:
                where = f"targets[{i - first_spec}].name"
                raise InvalidInput(f"{where} {label!r} is already another target's label; give it another", field=where)
            n = 2
            while f"{label}#{n}" in seen:
                n += 1
            target = dataclasses.replace(target, name=f"{label}#{n}")
            label = target_label(target)
        seen[label] = target
        out.append(target)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Job:
    """A long text and what to do with its chunks."""

    text: str
    chunking: Strategy = Strategy.SENTENCES
    chunk_size: int = 500
    overlap: int = 0
    targets: tuple[Target, ...] = ()
    assignment: Assignment = Assignment.ROUND_ROBIN
    timeout_s: float = 30.0
    encoding_format: str = "float"  # local embeddings: "float" (float32 numbers) or "base64" (float32 bytes)
    # Map-reduce: one more generation over the results in chunk order; its prompt has {text} for them.
    reduce: LocalTarget | None = None
    # Echo each chunk's text in the answer. Off by default: the caller has the text and the spans (as TEI and
    # vLLM never echo inputs), and a large fan-out's texts would otherwise be sent back a second time.
    include_text: bool = False


@dataclass(frozen=True, slots=True)
class JobLimits:
    """Bounds checked while a request becomes a job (the rest are checked by ``Pipeline.prepare``)."""

    max_text_chars: int
    max_targets: int
    default_timeout_s: float


def target_from_spec(spec: TargetSpec) -> Target:
    """The target a validated spec names: a local model when it has no URL, else a remote API."""
    if spec.url is None:
        if spec.model is None:  # TargetSpec's own validator refuses this; kept so a bad caller fails clearly
            raise ValueError("a target needs a model or a url")
        return LocalTarget(model=spec.model, prompt=spec.prompt, max_tokens=spec.max_tokens, name=spec.name)
    return RemoteTarget(
        url=spec.url,
        protocol=RemoteProtocol(spec.protocol),
        model=spec.model,
        prompt=spec.prompt,
        headers=tuple(spec.headers.items()),
        name=spec.name,
    )


def parse_target(spec: str | dict[str, Any] | Target) -> Target:
    """A target from a local model id, an http(s) URL (a generic remote), or a ``/v1/process`` target object.

    Raises:
        ValueError: the object is not a valid target (pydantic's ValidationError is a ValueError).
    """
    if isinstance(spec, LocalTarget | RemoteTarget):
        return spec
    if isinstance(spec, str):
        if spec.startswith(("http://", "https://")):
            return RemoteTarget(url=spec)
        return LocalTarget(model=spec)
    return target_from_spec(TargetSpec.model_validate(spec))


def targets_of(specs: Iterable[TargetSpec], api_urls: Iterable[str] = ()) -> tuple[Target, ...]:
    """Targets in request order: the classic ``api_urls`` (generic remotes) first, then ``targets``; labels distinct.

    Raises:
        InvalidInput: a target's ``name`` is another target's label.
    """
    urls = [RemoteTarget(url=url) for url in api_urls]
    return distinct_labels([*urls, *(target_from_spec(s) for s in specs)], first_spec=len(urls))


def job_from_request(body: ProcessRequest, limits: JobLimits) -> Job:
    """Check a ``/v1/process`` body's size limits and turn it into a job.

    Raises:
        InputTooLarge: the text or the target list is over its limit.
    """
    if len(body.text) > limits.max_text_chars:
        raise InputTooLarge(f"text has {len(body.text)} characters; at most {limits.max_text_chars}", field="text")
    targets = targets_of(body.targets, body.api_urls)
    if len(targets) > limits.max_targets:
        raise InputTooLarge(f"{len(targets)} targets; at most {limits.max_targets}", field="targets")
    return Job(
        text=body.text,
        chunking=Strategy(body.chunking),
        chunk_size=body.chunk_size,
        overlap=body.overlap,
        targets=targets,
        assignment=Assignment(body.assignment),
        timeout_s=body.timeout_s if body.timeout_s is not None else limits.default_timeout_s,
        encoding_format=body.encoding_format,
        reduce=None if body.reduce is None else _reduce_target(body.reduce),
        include_text=body.include_text,
    )


def _reduce_target(spec: ReduceSpec) -> LocalTarget:
    # The results fill the prompt the way a chunk fills a target's: through {text}.
    return LocalTarget(model=spec.model, prompt=spec.prompt.replace("{results}", "{text}"), max_tokens=spec.max_tokens)
