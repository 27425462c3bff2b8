"""Joining a Ray cluster (or starting one on this machine) with chunkserve's settings in reach of every worker."""

from __future__ import annotations

from typing import Any

import ray

from service.config import chunkserve_environment
from service.scale.options import LOCAL


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` (``local``: start one on this machine); no-op when already joined.

    The ``CHUNKSERVE_*`` variables set here travel to every replica and actor (``runtime_env.env_vars``), so
    processes on other machines read the same settings as this one.
    """
    if ray.is_initialized():
        return
    runtime_env: dict[str, Any] = {"env_vars": chunkserve_environment()}
    ray.init(address=None if address == LOCAL else address, runtime_env=runtime_env, include_dashboard=False)
