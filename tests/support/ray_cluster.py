"""A small local Ray cluster for tests: 2 CPUs, a capped object store, no dashboard, its own temp directory."""

from __future__ import annotations

import tempfile

OBJECT_STORE_BYTES = 150 * 1024 * 1024


def start_local_ray() -> None:
    """Start Ray on this machine only (loopback), with logs in a fresh short temp directory.

    The directory is short because Ray puts Unix sockets in it (107-character path limit) and private so that
    parallel sessions on a shared machine never share one.
    """
    import ray

    ray.init(
        num_cpus=2,
        object_store_memory=OBJECT_STORE_BYTES,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=tempfile.mkdtemp(prefix="csray-", dir="/tmp"),
    )
