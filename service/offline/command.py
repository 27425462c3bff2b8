"""``chunkserve run``: its flags (besides the model and budget settings, which come from ``Settings``) and body."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import logging
import sys
from pathlib import Path
from typing import Any

from service.config import Settings
from service.jobs.chunking import Strategy
from service.jobs.targets import Assignment
from service.offline.options import EXIT_BY_SIGNAL, RunOptions, Summary
from service.offline.reader import check_inputs

# Settings that only mean something to a server; `chunkserve run` takes every other one as a flag.
SERVER_ONLY = frozenset(
    {"host", "port", "cors_origins", "max_inputs_per_request", "max_input_chars", "max_queue", "max_targets"}
    | {"cors_methods", "cors_headers", "cors_allow_credentials", "auth_mode", "api_key_file", "jwt_public_key"}
    | {"jwt_algorithm", "jwt_audience", "jwt_issuer", "jwt_leeway_s", "auth_metrics", "insecure"}
    | {"rate_limit_per_s", "rate_limit_burst", "max_jobs_per_caller", "max_body_bytes", "max_ws_message_bytes"}
    | {"shutdown_timeout_s", "workers"}
)
# The settings' own descriptions speak of a server; these say the same for `chunkserve run`.
RUN_WORDING = {
    "models": (
        "Models to load, comma-separated ID=PATH[:TASK] (task: embedding|classification|rerank, inferred when "
        "omitted). Empty: the packaged all-MiniLM-L6-v2. The flag --model may be repeated."
    ),
    "truncate": "Cut chunks longer than the model's limit (true) or fail them with InputTooLarge (false).",
    "max_text_chars": "Longest document, in characters; longer ones are skipped and reported.",
    "max_chunks": "Most chunks one document may be split into; documents beyond it are skipped and reported.",
}
EXIT_USAGE = 2
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter

DESCRIPTION = """\
Chunk documents and process every chunk with local models (micro-batched, as in the server) or remote APIs,
appending one JSON line per chunk result to OUTPUT. Inputs: .txt/.md files (one document each), directories of
them (recursive, sorted), .jsonl files (one document per line) and - (JSONL on stdin).
Exit status: 0 all succeeded; 1 some chunk or record failed (0 with --allow-failures); 2 bad usage;
130/143 interrupted by SIGINT/SIGTERM (the output ends on a complete line; --resume continues it)."""


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The run command's own flags."""
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="Files, directories, or - for JSONL on stdin.")
    parser.add_argument("-o", "--output", type=Path, required=True, help="JSONL file the results are appended to.")
    parser.add_argument("--text-field", default="text", help="JSONL field holding the text (default: text).")
    parser.add_argument(
        "--id-field", default=None, help="JSONL field holding the document id (default: FILE:LINE as the id)."
    )
    parser.add_argument(
        "--target",
        action="append",
        dest="targets",
        default=[],
        metavar="TARGET",
        help=(
            "Where chunks go (repeatable): a local model id, an http(s) URL (a generic remote), or a /v1/process "
            'target object as JSON, e.g. \'{"url": "https://api.openai.com/v1", "protocol": "openai-embeddings", '
            '"model": "text-embedding-3-small"}\'. Default: the first model.'
        ),
    )
    parser.add_argument("--api-url", action="append", dest="api_urls", default=[], help="A generic remote endpoint.")
    parser.add_argument(
        "--chunking",
        choices=[s.value for s in Strategy],
        default=Strategy.SENTENCES.value,
        help="sentences packs whole sentences; chars cuts at a fixed size; tokens counts the model's tokens "
        "(default: sentences).",
    )
    parser.add_argument(
        "--chunk-size", type=int, default=500, help="Characters (tokens for --chunking tokens) (default: 500)."
    )
    parser.add_argument("--overlap", type=int, default=0, help="Characters (tokens) each chunk repeats (default: 0).")
    parser.add_argument(
        "--assignment",
        choices=[a.value for a in Assignment],
        default=Assignment.ROUND_ROBIN.value,
        help="round_robin: chunk i to target i mod n; broadcast: every chunk to every target (default: round_robin).",
    )
    parser.add_argument(
        "--ordered",
        action="store_true",
        help="Write lines in document and chunk order (default: completion order, which never holds results back).",
    )
    parser.add_argument(
        "--timeout-s", type=float, default=None, help="Per-chunk deadline, queueing included (default: the largest)."
    )
    parser.add_argument(
        "--aggregate", choices=["mean"], default=None, help="Also write each document's mean embedding per target."
    )
    parser.add_argument("--resume", action="store_true", help="Skip results already in OUTPUT and append the rest.")
    parser.add_argument("--overwrite", action="store_true", help="Replace OUTPUT if it exists.")
    parser.add_argument("--fail-fast", action="store_true", help="Stop at the first bad record or failed chunk.")
    parser.add_argument("--allow-failures", action="store_true", help="Exit 0 even if chunks or records failed.")
    parser.add_argument("-q", "--quiet", action="store_true", help="No progress bar and no summary.")
    parser.add_argument(
        "--max-in-flight", type=int, default=None, help="Chunks in flight (default: batch window + max batch size)."
    )
    parser.add_argument("--summary-json", type=Path, default=None, help="Also write the summary as JSON here.")


def limit_heap_growth(threshold: int = 1 << 20) -> bool:
    """Have glibc serve blocks over ``threshold`` bytes with mmap, handed back to the system when freed.

    Tensors of ever-changing batch shapes otherwise fragment the heap and RSS creeps up over a long run (measured
    with the default model: a flat 760 MB instead of 1.1-1.3 GB growing with the corpus). False off glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


def _target(value: str) -> str | dict[str, Any]:
    if value.lstrip().startswith("{"):
        parsed = json.loads(value)
        if not isinstance(parsed, dict):
            raise ValueError(f"--target {value!r}: expected a JSON object")
        return parsed
    return value


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """The run the parsed flags describe.

    Raises:
        ValueError: a bad option or target.
    """
    return RunOptions.build(
        args.inputs,
        args.output,
        targets=[_target(t) for t in args.targets],
        api_urls=args.api_urls,
        chunking=args.chunking,
        assignment=args.assignment,
        text_field=args.text_field,
        id_field=args.id_field,
        chunk_size=args.chunk_size,
        overlap=args.overlap,
        timeout_s=args.timeout_s,
        aggregate=args.aggregate,
        resume=args.resume,
        overwrite=args.overwrite,
        fail_fast=args.fail_fast,
        max_in_flight=args.max_in_flight,
        quiet=args.quiet,
        ordered=args.ordered,
    )


def finish(args: argparse.Namespace, summary: Summary) -> int:
    """Print and write the summary as asked; the exit status."""
    if not args.quiet:
        print(f"chunkserve run: {summary.describe()}", file=sys.stderr)
    if args.summary_json is not None:
        args.summary_json.write_text(json.dumps(summary.as_dict(), indent=2))
    return summary.exit_code(args.allow_failures)


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run the command the parsed flags describe; returns the exit status."""
    level = settings.log_level if "log_level" in settings.model_fields_set else "warning"
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for entry in settings.models:
        if entry.path is not None and not entry.path.is_dir():
            return usage(f"model {entry.id!r}: {entry.path} is not a directory")
    # Checked here rather than per document: a bad value would otherwise skip every document, one by one.
    if args.timeout_s is not None and not 0 < args.timeout_s <= settings.remote_max_timeout_s:
        limit = settings.remote_max_timeout_s
        return usage(
            f"--timeout-s must be in (0, {limit}] (raise --remote-max-timeout-s for more), got {args.timeout_s}"
        )
    try:
        options = options_from_args(args)
        # Usage errors are answered before torch is imported (seconds): inputs, then the output.
        check_inputs(options.inputs)
        options.check_output()
    except (ValueError, FileExistsError) as exc:
        return usage(str(exc))
    from service.offline.session import run_async  # loads torch: only when the command runs

    try:
        summary = asyncio.run(run_async(options, settings, handle_signals=True))
    except (ValueError, FileExistsError) as exc:
        return usage(str(exc))
    except KeyboardInterrupt:  # before the signal handlers were installed: nothing was written yet
        return EXIT_BY_SIGNAL["SIGINT"]
    return finish(args, summary)


def usage(message: str) -> int:
    """Report bad usage on stderr; the exit status 2."""
    print(f"chunkserve run: {message}", file=sys.stderr)
    return EXIT_USAGE
