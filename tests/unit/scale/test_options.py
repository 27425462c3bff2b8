"""Replica options → Ray Serve deployment options, the --ray flags, and the shipped Serve config and RayService."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from service.cli import build_parser, main
from service.config import Settings
from service.scale.options import BATCHES_IN_FLIGHT, LOCAL, ReplicaOptions, replica_options

ROOT = Path(__file__).resolve().parents[3]


def test_fixed_replicas_on_cpu_take_four_batches_each() -> None:
    options = ReplicaOptions(num_replicas=3, num_cpus=0.5).deployment_options(Settings(max_batch_size=8))
    assert options == {
        "num_replicas": 3,
        "ray_actor_options": {"num_cpus": 0.5, "num_gpus": 0.0},
        "max_ongoing_requests": BATCHES_IN_FLIGHT * 8,
        "max_queued_requests": 256,
        "graceful_shutdown_timeout_s": Settings().shutdown_timeout_s,
    }


def test_autoscaling_on_gpu_sizes_by_the_gpu_batch() -> None:
    options = ReplicaOptions(min_replicas=1, max_replicas=4, num_gpus=1).deployment_options(Settings())
    assert "num_replicas" not in options
    assert options["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 128}
    assert options["max_ongoing_requests"] == BATCHES_IN_FLIGHT * 64
    assert options["ray_actor_options"]["num_gpus"] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"num_replicas": 0}, "replicas must be >= 1"), ({"min_replicas": 3, "max_replicas": 2}, "below min_replicas")],
)
def test_inconsistent_replica_options_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReplicaOptions(**kwargs)


def test_serve_ray_flags_parse() -> None:
    args = build_parser().parse_args(["serve", "--ray", "--replicas", "2", "--replica-gpus", "1"])
    assert args.ray == LOCAL
    assert replica_options(args) == ReplicaOptions(num_replicas=2, num_gpus=1)
    assert build_parser().parse_args(["serve", "--ray", "auto"]).ray == "auto"
    assert build_parser().parse_args(["serve"]).ray is None
    assert build_parser().parse_args(["run", "x", "-o", "y", "--ray", "ray://head:10001"]).ray == "ray://head:10001"


def test_workers_and_ray_together_are_refused() -> None:
    with pytest.raises(SystemExit, match="with --ray use --replicas"):
        main(["serve", "--ray", "--workers", "2"])


def _deployment(config: dict[str, Any]) -> dict[str, Any]:
    (app,) = config["applications"]
    assert app["import_path"] == "service.scale.deployment:app_builder"
    (deployment,) = app["deployments"]
    assert deployment["name"] == "chunkserve"
    return {**deployment, "settings": app["args"]["settings"], "env": app["runtime_env"]["env_vars"]}


@pytest.mark.parametrize("which", ["serve-config", "rayservice"])
def test_shipped_configs_are_valid_serve_configs(which: str) -> None:
    schema = pytest.importorskip("ray.serve.schema")
    loaded = yaml.safe_load((ROOT / "deploy" / "ray" / f"{which}.yaml").read_text(encoding="utf-8"))
    config = yaml.safe_load(loaded["spec"]["serveConfigV2"]) if which == "rayservice" else loaded
    schema.ServeDeploySchema.model_validate(config)  # Ray's own schema: what `serve deploy` checks
    deployment = _deployment(config)
    batch = deployment["settings"]["max_batch_size"]
    assert deployment["max_ongoing_requests"] % batch == 0  # each replica's batcher still sees full batches
    assert deployment["max_queued_requests"] > 0
    assert deployment["ray_actor_options"]["num_gpus"] == 1
    assert deployment["env"]["CHUNKSERVE_AUTH_MODE"] != "none"  # the proxy listens on every interface
    settings = {k: v for k, v in deployment["settings"].items() if k != "models"}
    Settings(**settings, auth_mode="api-key", api_keys=[SecretStr("reader:" + "k" * 32)])  # every setting is real


def test_the_app_builder_builds_without_a_cluster() -> None:
    deployment = pytest.importorskip("service.scale.deployment")
    app = deployment.app_builder({"settings": {"max_batch_size": 64}})
    assert type(app).__name__ == "Application"


def test_rayservice_and_serve_config_deploy_the_same_replicas() -> None:
    serve_config = yaml.safe_load((ROOT / "deploy/ray/serve-config.yaml").read_text(encoding="utf-8"))
    service = yaml.safe_load((ROOT / "deploy/ray/rayservice.yaml").read_text(encoding="utf-8"))
    inner = yaml.safe_load(service["spec"]["serveConfigV2"])
    ours, theirs = _deployment(serve_config), _deployment(inner)
    for key in ("autoscaling_config", "max_ongoing_requests", "max_queued_requests", "ray_actor_options"):
        assert ours[key] == theirs[key], key
