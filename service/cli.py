"""The ``chunkserve`` command: serve | run | bench | fake-remote."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import types
import typing
from collections.abc import Collection, Sequence
from typing import Any

from pydantic import ValidationError

from service.config import Settings

# Before transformers is imported anywhere: the server never reaches a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# Secrets stay out of command lines (visible in ps and shell history): environment only.
ENV_ONLY = frozenset({"remote_api_keys"})


def _flag(name: str) -> str:
    return "--model" if name == "models" else "--" + name.replace("_", "-")


def add_settings_flags(parser: argparse.ArgumentParser, skip: Collection[str] = ()) -> None:
    """One flag per Settings field (but those in ``skip``), its help taken from the field's description."""
    for name, field in Settings.model_fields.items():
        if name in ENV_ONLY or name in skip:
            continue
        env = f"CHUNKSERVE_{name.upper()}"
        default = "none" if field.default is None else field.default
        if name == "models":
            default = "the packaged all-MiniLM-L6-v2"
        help_text = f"{field.description} [env {env}; default: {default}]"
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
    import uvicorn

    from service.api.app import create_app

    settings = settings_from_args(args)
    for entry in settings.models:
        if entry.path is not None and not entry.path.is_dir():
            raise SystemExit(f"chunkserve: model {entry.id!r}: {entry.path} is not a directory")
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    failure: list[str] = []
    server: uvicorn.Server | None = None

    def on_fatal(reason: str) -> None:
        failure.append(reason)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_fatal=on_fatal)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        lifespan="on",
        timeout_graceful_shutdown=25,
        server_header=False,
    )
    server = uvicorn.Server(config)
    server.run()
    if failure:
        print(f"chunkserve: start-up failed: {failure[0]}", file=sys.stderr)
        return 1
    return 0


def _run(args: argparse.Namespace) -> int:
    from service.offline.command import limit_heap_growth, run_command

    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # the operator's own allocator tuning wins
        limit_heap_growth()

    return run_command(args, settings_from_args(args))


def _fake_remote(args: argparse.Namespace) -> int:
    from service.bench.fake_remote import serve_fake_remote

    serve_fake_remote(host=args.host, port=args.port, latency_s=args.latency_ms / 1000.0, fail_rate=args.fail_rate)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from service.bench.run import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(prog="chunkserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="Run the HTTP server.", description="Run the HTTP server.")
    add_settings_flags(serve)
    serve.set_defaults(func=_serve)

    from service.offline.command import SERVER_ONLY, add_run_arguments

    offline = sub.add_parser("run", help="Process files offline into JSONL (no server, no HTTP).")
    add_run_arguments(offline)
    add_settings_flags(offline, skip=SERVER_ONLY)
    offline.set_defaults(func=_run)

    fake = sub.add_parser("fake-remote", help="Run a fake remote AI API (tests, benchmarks).")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=9001)
    fake.add_argument("--latency-ms", type=float, default=0.0, help="Default answer latency.")
    fake.add_argument("--fail-rate", type=float, default=0.0, help="Share of requests answered 500.")
    fake.set_defaults(func=_fake_remote)

    from service.bench.run import add_bench_arguments

    bench = sub.add_parser("bench", help="Measure a running server (and the in-process ceiling).")
    add_bench_arguments(bench)
    bench.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chunkserve`` console script."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
