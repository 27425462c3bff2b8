"""Fuzz every operation of the OpenAPI schema against a real server: no input may produce a 5xx.

Bounded: a few dozen examples per operation, tiny models, small limits. DNS is replaced by a resolver that answers
127.0.0.1 for every host, IP-literal URLs are rewritten to loopback, and loopback is not allowlisted, so fuzzed remote
targets are refused (422) before any connection: the run never leaves this machine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err, Ok

from service.api.app import create_app
from tests.integration.conftest import tiny_settings, wait_ready
from tests.support.servers import running_server

MAX_EXAMPLES = 50


async def _loopback_resolver(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


@pytest.fixture(scope="module")
def fuzz_url(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> Iterator[str]:
    app_settings = tiny_settings(
        tiny_bert_dir,
        tiny_classifier_dir,
        max_text_chars=20_000,
        max_chunks=64,
        max_inputs_per_request=16,
        max_input_chars=2000,
        remote_timeout_s=2,
        remote_max_timeout_s=5,
    )
    with running_server(create_app(app_settings, resolver=_loopback_resolver)) as url:
        wait_ready(url)
        yield url


_IP_LITERAL = re.compile(r"^[0-9a-fA-FxX.:]+$")


def _loopback_only(url: object) -> object:
    # IP literals skip the resolver; a generated public one must not become a real connection.
    if not isinstance(url, str):
        return url
    try:
        host = httpx.URL(url.strip()).host
    except (httpx.InvalidURL, ValueError, TypeError):
        return url
    return "http://127.0.0.1:9/" if _IP_LITERAL.match(host) else url


def _keep_remote_targets_on_loopback(case: schemathesis.Case[Any]) -> None:
    body: Any = case.body
    if not isinstance(body, dict):
        return
    if isinstance(body.get("api_urls"), list):
        body["api_urls"] = [_loopback_only(u) for u in body["api_urls"]]
    targets = body.get("targets")
    for target in targets if isinstance(targets, list) else []:
        if isinstance(target, dict) and "url" in target:
            target["url"] = _loopback_only(target["url"])


def _fuzz(operation: APIOperation[Any, Any, Any, Any], base_url: str) -> str | None:
    """Run one operation's examples, valid and invalid; the failure (with a curl to reproduce it) or None."""

    @given(case=st.one_of(*(operation.as_strategy(mode) for mode in GenerationMode)))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: schemathesis.Case[Any]) -> None:
        _keep_remote_targets_on_loopback(case)
        case.call_and_validate(base_url=base_url, checks=[not_a_server_error], timeout=30)

    try:
        run()
    except AssertionError as failure:  # schemathesis raises a FailureGroup, an AssertionError, shrunk
        return f"{operation.label}: {failure}"
    return None


def test_no_input_makes_the_server_fail(fuzz_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_url}/openapi.json")
    results = list(schema.get_all_operations())
    broken = [result.err() for result in results if isinstance(result, Err)]
    assert not broken, broken
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) >= 10, [op.label for op in operations]
    failures = [failure for op in operations if (failure := _fuzz(op, fuzz_url)) is not None]
    assert not failures, "\n\n".join(failures)
