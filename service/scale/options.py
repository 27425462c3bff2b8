"""How a Ray Serve deployment of chunkserve is spread (``ReplicaOptions``) and its ``chunkserve serve`` flags.

No ray import here: the command line is built before anyone knows whether ``--ray`` was given.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from service.config import Settings

# A replica must see enough requests at once to fill its batches: single-input requests arrive one per slot.
BATCHES_IN_FLIGHT = 4
LOCAL = "local"


@dataclass(frozen=True)
class ReplicaOptions:
    """Replicas (or autoscaling bounds), resources and queue limits per replica."""

    num_replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_ongoing_requests: int | None = None
    max_queued_requests: int = 256

    def __post_init__(self) -> None:
        if self.num_replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.num_replicas}")
        if self.max_replicas is not None and self.max_replicas < (self.min_replicas or 1):
            raise ValueError(f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas or 1})")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError("replica CPUs and GPUs must be >= 0")

    def deployment_options(self, settings: Settings) -> dict[str, Any]:
        """Keyword arguments of ``Deployment.options`` for these choices and ``settings``.

        ``max_ongoing_requests`` defaults to ``BATCHES_IN_FLIGHT`` x the batch size so that each replica's batcher
        still sees full batches when every request carries one input.
        """
        from service.runtime import CPU_BATCH_SIZE, GPU_BATCH_SIZE  # loads torch: not while parsing flags

        batch = settings.max_batch_size or (GPU_BATCH_SIZE if self.num_gpus > 0 else CPU_BATCH_SIZE)
        options: dict[str, Any] = {
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "max_ongoing_requests": self.max_ongoing_requests or BATCHES_IN_FLIGHT * batch,
            "max_queued_requests": self.max_queued_requests,
            "graceful_shutdown_timeout_s": settings.shutdown_timeout_s,
        }
        if self.max_replicas is not None:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas if self.min_replicas is not None else 1,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests or 2 * batch,
            }
        else:
            options["num_replicas"] = self.num_replicas
        return options


def _ray_group(parser: argparse.ArgumentParser, title: str, action: str, local: str) -> argparse._ArgumentGroup:
    """A "``title`` (pip install ...)" group holding ``--ray [ADDRESS]``, whose help reads "``action``: a cluster
    address (...), or none to start ``local``"; the command's own flags go into the group returned."""
    group = parser.add_argument_group(f"{title} (pip install 'chunkserve[ray]')")
    group.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL,
        default=None,
        metavar="ADDRESS",
        help=f"{action}: a cluster address (auto, HOST:PORT, ray://HOST:10001), or none to start {local}",
    )
    return group


def add_ray_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """``chunkserve serve --ray [ADDRESS]`` and the replica flags that go with it."""
    group = _ray_group(parser, "Ray Serve", "Serve on Ray Serve replicas", "a local Ray on this machine.")
    group.add_argument("--replicas", type=int, default=1, help="Replicas, each with its own models [default: 1].")
    group.add_argument("--min-replicas", type=int, default=None, help="Autoscaling: fewest replicas.")
    group.add_argument("--max-replicas", type=int, default=None, help="Autoscaling: most replicas (turns it on).")
    group.add_argument(
        "--target-ongoing-requests", type=float, default=None, help="Autoscaling: requests per replica aimed at."
    )
    group.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs reserved per replica [default: 1].")
    group.add_argument("--replica-gpus", type=float, default=0.0, help="GPUs per replica (1 on GPU hosts).")
    group.add_argument(
        "--max-ongoing-requests",
        type=int,
        default=None,
        help=f"Requests one replica takes at once [default: {BATCHES_IN_FLIGHT} x max batch size].",
    )
    group.add_argument(
        "--max-queued-requests",
        type=int,
        default=256,
        help="Requests Ray queues for the replicas; beyond it 503 + Retry-After [default: 256].",
    )


def add_ray_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``chunkserve run --ray [ADDRESS]``: the actor pool that holds the models."""
    group = _ray_group(
        parser,
        "Ray Data",
        "Spread documents over Ray Data actors",
        "a local Ray. The other flags keep their meaning (--resume, --aggregate, --ordered, --fail-fast).",
    )
    group.add_argument("--replicas", type=int, default=1, help="Actors, each with its own models [default: 1].")
    group.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs reserved per actor [default: 1].")
    group.add_argument("--replica-gpus", type=float, default=0.0, help="GPUs per actor (1 on GPU hosts).")


def replica_options(args: argparse.Namespace) -> ReplicaOptions:
    """The replica flags as ``ReplicaOptions``.

    Raises:
        ValueError: inconsistent replica flags.
    """
    return ReplicaOptions(
        num_replicas=args.replicas,
        min_replicas=getattr(args, "min_replicas", None),
        max_replicas=getattr(args, "max_replicas", None),
        target_ongoing_requests=getattr(args, "target_ongoing_requests", None),
        num_cpus=args.replica_cpus,
        num_gpus=args.replica_gpus,
        max_ongoing_requests=getattr(args, "max_ongoing_requests", None),
        max_queued_requests=getattr(args, "max_queued_requests", 256),
    )
