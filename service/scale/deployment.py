"""The Ray Serve deployment: each replica runs the unchanged app of ``create_app(settings)`` as its ingress.

Every replica has its own lifespan, models, batchers and pipeline, exactly as one ``chunkserve serve`` process;
Ray's proxy spreads requests (HTTP, SSE, WebSocket) over the replicas. Settings reach a replica from its own
``CHUNKSERVE_*`` environment (``runtime_env.env_vars`` in a Serve config) overlaid with the ``settings`` mapping
given to the application builder.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve.config import BackpressureConfig
from ray.serve.deployment import Application

from service.api.hosted import HostedApp
from service.config import Settings
from service.runtime import CPU_BATCH_SIZE
from service.scale import stopping
from service.scale.options import BATCHES_IN_FLIGHT, ReplicaOptions

DEPLOYMENT_NAME = "chunkserve"
APP_NAME = "chunkserve"
# Models load in the replica's start-up; a big model on a cold disk takes minutes.
WARM_TIMEOUT_S = 600.0
RETRY_AFTER_S = 1.0


@serve.deployment(
    name=DEPLOYMENT_NAME,
    # Ray's own queue in front of the replicas: beyond it the proxy answers 503 + Retry-After itself.
    max_queued_requests=256,
    max_ongoing_requests=BATCHES_IN_FLIGHT * CPU_BATCH_SIZE,
    backpressure_config=BackpressureConfig(status_code=503, retry_after_s=RETRY_AFTER_S),
)
@serve.ingress()
class ChunkserveReplica:
    """One replica: ``create_app(settings)`` behind Ray's proxy, healthy only while its models are warm."""

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.settings = Settings(**(settings or {}))
        self.hosted: HostedApp | None = None
        # Runs in the replica's process: Ray's stop then begins the drain before waiting on open WebSockets.
        stopping.install()

    def __serve_build_asgi_app__(self) -> HostedApp:
        """The replica's app (Ray runs its lifespan; start-up returns once the models are warm)."""
        self.hosted = HostedApp(self.settings, warm_timeout_s=WARM_TIMEOUT_S)
        return self.hosted

    def begin_drain(self) -> None:
        """What SIGTERM does under ``chunkserve serve``: refuse new work, tell WebSocket sessions to wind down.

        Called (from Ray's thread, not the app's loop: it only flips flags) when Ray starts stopping this replica;
        requests and SSE streams in flight go on, and Ray waits for them up to ``graceful_shutdown_timeout_s``.
        """
        if self.hosted is not None:
            self.hosted.begin_drain()

    def check_health(self) -> None:
        """The same readiness as ``/ready``: Ray replaces a replica whose batcher stopped.

        Raises:
            RuntimeError: the replica cannot take work (the reason as in ``/ready``).
        """
        readiness = self.hosted.readiness() if self.hosted is not None else None
        if readiness is not None and not readiness[0]:
            raise RuntimeError(readiness[1])


def build(settings: Settings, overrides: dict[str, Any], replicas: ReplicaOptions) -> Application:
    """The application for ``serve.run``: ``overrides`` are the settings given explicitly (flags, config).

    The proxy's address goes along as ``host``, so a replica refuses auth ``none`` behind a public proxy exactly as
    ``chunkserve serve`` refuses it on a public address.
    """
    bound = {**overrides, "host": settings.host}
    return ChunkserveReplica.options(**replicas.deployment_options(settings)).bind(bound)  # type: ignore[attr-defined,no-any-return]


def app_builder(args: dict[str, Any]) -> Application:
    """Entry point of a Serve config file (``import_path: service.scale.deployment:app_builder``).

    ``args.settings`` is a mapping of settings (as ``CHUNKSERVE_*`` without the prefix, lower case); the
    ``deployments`` section of the config sets replicas, resources and queue limits over the defaults here.
    """
    # A config file's proxy listens on every interface (http_options.host: 0.0.0.0) unless told otherwise: the
    # replicas then refuse auth "none" (unless `insecure: true`), as `chunkserve serve --host 0.0.0.0` does.
    overrides = {"host": "0.0.0.0", **(args.get("settings") or {})}
    return ChunkserveReplica.bind(overrides)  # type: ignore[attr-defined,no-any-return]
