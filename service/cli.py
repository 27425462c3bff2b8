"""The ``chunkserve`` command: serve | run | bench | tune | fake-remote | token | probe."""

from __future__ import annotations

import argparse
import os
import sys
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.config import DEFAULT_MODEL_ID, Settings

# Before transformers is imported anywhere: the server never reaches a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Progress bars on stderr would break the one-JSON-object-per-line logs.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


DESCRIPTION = """\
chunkserve: serve local embedding, classification and rerank models behind a micro-batcher (OpenAI- and TEI-style
routes), chunk long texts and fan them out to local models or remote AI APIs, online (serve) or offline (run).
Run "chunkserve COMMAND --help" for a command's options."""

# Secrets stay out of command lines (visible in ps and shell history): environment only.
ENV_ONLY = frozenset({"remote_api_keys", "api_keys", "jwt_secret"})


def _flag(name: str) -> str:
    return "--model" if name == "models" else "--" + name.replace("_", "-")


def _default_text(name: str) -> str:
    """A setting's default as a person would type it (lists comma-joined, None as none)."""
    if name == "models":
        return f"the packaged {DEFAULT_MODEL_ID}"
    value = Settings.model_fields[name].get_default(call_default_factory=True)
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "empty"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def add_settings_flags(
    parser: argparse.ArgumentParser, skip: Collection[str] = (), wording: Mapping[str, str] | None = None
) -> None:
    """One flag per Settings field (but those in ``skip``), its help the field's description or ``wording``."""
    for name, field in Settings.model_fields.items():
        if name in ENV_ONLY or name in skip:
            continue
        env = f"CHUNKSERVE_{name.upper()}"
        description = (wording or {}).get(name, field.description)
        help_text = f"{description} [env {env}; default: {_default_text(name)}]"
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text, "dest": name}
        annotation = field.annotation
        args = typing.get_args(annotation)
        if name == "models":
            kwargs.update(action="append", metavar="ID=PATH[:TASK]")
        elif annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(annotation) is typing.Literal:
            kwargs["choices"] = list(args)
        elif annotation in (int, float):
            kwargs["type"] = annotation
        elif isinstance(annotation, types.UnionType) and int in args:
            kwargs["type"] = int
        parser.add_argument(_flag(name), **kwargs)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the flags given.

    Raises:
        SystemExit: the settings are invalid (the message names the field and the fix).
    """
    overrides = {k: v for k, v in vars(args).items() if k in Settings.model_fields}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()]
        raise SystemExit("chunkserve: invalid settings:\n" + "\n".join(lines)) from None


def _serve(args: argparse.Namespace) -> int:
    # Settings and model directories first: a usage error must not wait seconds for torch to import.
    settings = settings_from_args(args)
    for entry in settings.models:
        if entry.path is not None and not entry.path.is_dir():
            raise SystemExit(f"chunkserve: model {entry.id!r}: {entry.path} is not a directory")
    if args.ray is not None:
        return _serve_on_ray(args, settings)
    from service.server.serving import serve

    return serve(settings, port_file=args.port_file)


def _serve_on_ray(args: argparse.Namespace, settings: Settings) -> int:
    from service.scale.options import replica_options

    if settings.workers > 1:
        raise SystemExit("chunkserve: --workers is for one machine; with --ray use --replicas")
    try:
        replicas = replica_options(args)
        from service.scale.replicas import serve_on_ray
    except ValueError as exc:
        raise SystemExit(f"chunkserve: {exc}") from None
    except ImportError as exc:
        raise SystemExit(f"chunkserve: --ray needs Ray: pip install 'chunkserve[ray]' ({exc})") from None
    return serve_on_ray(settings, _overrides(settings), args.ray, replicas, port_file=args.port_file)


def _probe(args: argparse.Namespace) -> int:
    """Exit 0 when the local server's /ready answers 200 (the container HEALTHCHECK)."""
    import urllib.error
    import urllib.request

    port = args.port if args.port is not None else Settings().port
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=args.timeout) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"chunkserve probe: not ready: {exc}", file=sys.stderr)
        return 1


def _token(args: argparse.Namespace) -> int:
    from service.security.credentials import hmac_secret
    from service.security.verify import mint_token, parse_duration

    settings = settings_from_args(argparse.Namespace())
    if settings.jwt_secret is None:
        raise SystemExit("chunkserve token: set CHUNKSERVE_JWT_SECRET (tokens are signed with the server's secret)")
    algorithm = settings.jwt_algorithm or "HS256"
    try:
        token = mint_token(
            hmac_secret(settings.jwt_secret.get_secret_value(), algorithm),
            args.sub,
            parse_duration(args.ttl),
            algorithm=algorithm,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
    except ValueError as exc:
        raise SystemExit(f"chunkserve token: {exc}") from None
    print(token)
    return 0


def _run(args: argparse.Namespace) -> int:
    from service.offline.command import limit_heap_growth, run_command

    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # the operator's own allocator tuning wins
        limit_heap_growth()

    settings = settings_from_args(args)
    if args.ray is not None:
        return _run_on_ray(args, settings)
    return run_command(args, settings)


def _overrides(settings: Settings) -> dict[str, Any]:
    # Only what was given here travels as arguments; the rest each Ray process reads from its environment.
    return settings.model_dump(mode="json", include=set(settings.model_fields_set) - ENV_ONLY)


def _run_on_ray(args: argparse.Namespace, settings: Settings) -> int:
    from service.offline.command import finish, options_from_args, usage
    from service.scale.options import replica_options

    try:
        from service.scale.data import run_on_ray
    except ImportError as exc:
        raise SystemExit(f"chunkserve run: --ray needs Ray: pip install 'chunkserve[ray]' ({exc})") from None
    try:
        options = options_from_args(args)
        summary = run_on_ray(options, settings, _overrides(settings), args.ray, replica_options(args))
    except (ValueError, FileExistsError) as exc:
        return usage(str(exc))
    return finish(args, summary)


def _fake_remote(args: argparse.Namespace) -> int:
    from service.bench.servers.fake_remote import serve_fake_remote

    serve_fake_remote(host=args.host, port=args.port, latency_s=args.latency_ms / 1000.0, fail_rate=args.fail_rate)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from service.bench.run import run_bench

    return run_bench(args)


def _tune(args: argparse.Namespace) -> int:
    from service.bench.run import run_tune

    return run_tune(args)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(
        prog="chunkserve", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"chunkserve {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="Run the HTTP server.", description="Run the HTTP server.")
    add_settings_flags(serve)
    serve.add_argument(
        "--port-file", type=Path, default=None, help="Write the bound port to this file once listening (for --port 0)."
    )
    from service.scale.options import add_ray_serve_arguments

    add_ray_serve_arguments(serve)
    serve.set_defaults(func=_serve)

    probe = sub.add_parser("probe", help="Exit 0 if the local server is ready (for container health checks).")
    probe.add_argument("--port", type=int, default=None, help="Port to probe [default: CHUNKSERVE_PORT or 8000].")
    probe.add_argument("--timeout", type=float, default=3.0, help="Seconds to wait for the answer.")
    probe.set_defaults(func=_probe)
    token = sub.add_parser(
        "token",
        help="Print a JWT signed with CHUNKSERVE_JWT_SECRET (development).",
        description="Print a JWT for --sub signed with CHUNKSERVE_JWT_SECRET, with the configured aud and iss.",
    )
    token.add_argument("--sub", required=True, help="The token's subject (who it names).")
    token.add_argument("--ttl", default="1h", help="Lifetime: 90, 45s, 30m, 1h or 2d [default: 1h].")
    token.set_defaults(func=_token)
    from service.offline.command import RUN_WORDING, SERVER_ONLY, add_run_arguments

    offline = sub.add_parser("run", help="Process files offline into JSONL (no server, no HTTP).")
    add_run_arguments(offline)
    add_settings_flags(offline, skip=SERVER_ONLY, wording=RUN_WORDING)
    from service.scale.options import add_ray_run_arguments

    add_ray_run_arguments(offline)
    offline.set_defaults(func=_run)

    fake = sub.add_parser("fake-remote", help="Run a fake remote AI API (tests, benchmarks).")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=9001)
    fake.add_argument("--latency-ms", type=float, default=0.0, help="Default answer latency.")
    fake.add_argument("--fail-rate", type=float, default=0.0, help="Share of requests answered 500.")
    fake.set_defaults(func=_fake_remote)

    from service.bench.run import add_bench_arguments, add_tune_arguments

    bench = sub.add_parser(
        "bench",
        help="Benchmark servers: chunkserve, any OpenAI-compatible one, the naive baseline; sweeps and reports.",
        description=(
            "Measure chunkserve or any OpenAI-compatible server: closed- and open-loop load per scenario, against "
            "the naive baseline (--baseline naive), other servers (--vs, interleaved in rounds) and the in-process "
            "ceiling (--raw); sweeps of batching settings (--sweep). Prints a table; --out DIR writes results.json, "
            "report.md and plots."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_bench_arguments(bench)
    bench.set_defaults(func=_bench)
    tune = sub.add_parser(
        "tune",
        help="Find the batching settings to use on this machine (a small sweep).",
        description="Start chunkserve once per combination of settings, measure, and print the best settings.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_tune_arguments(tune)
    tune.set_defaults(func=_tune)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("chunkserve")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chunkserve`` console script."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
