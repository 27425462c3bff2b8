"""A real server with backend openvino answers what a torch server answers, and says which backend serves what."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.api.app import create_app
from service.inference.model_entry import ModelEntry
from tests.integration.conftest import tiny_settings, wait_ready
from tests.support.servers import running_server

TEXTS = [
    "cat",
    "the movie was good and the food was great, the service slow",
    "a test",
    " ".join(["stream generate classify embed rank query document"] * 30),
    "hello world and the dog",
]


@pytest.fixture(scope="module")
def openvino_url(
    tiny_bert_dir: Path, tiny_classifier_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    cache = tmp_path_factory.mktemp("openvino-cache")
    settings = tiny_settings(tiny_bert_dir, tiny_classifier_dir, backend="openvino", backend_cache=cache)
    with running_server(create_app(settings)) as url:
        wait_ready(url, timeout_s=120)  # converting two models on a busy 2-core machine
        yield url


def _embeddings(url: str) -> np.ndarray:
    response = httpx.post(f"{url}/v1/embeddings", json={"model": "tiny-embed", "input": TEXTS}, timeout=30)
    assert response.status_code == 200, response.text
    return np.array([row["embedding"] for row in response.json()["data"]])


def test_openvino_embeddings_equal_the_torch_servers(tiny_url: str, openvino_url: str) -> None:
    torch_rows, openvino_rows = _embeddings(tiny_url), _embeddings(openvino_url)
    assert openvino_rows.shape == torch_rows.shape == (len(TEXTS), 32)
    cosines = (torch_rows * openvino_rows).sum(axis=1) / (
        np.linalg.norm(torch_rows, axis=1) * np.linalg.norm(openvino_rows, axis=1)
    )
    assert cosines.min() >= 0.9999, cosines


def test_openvino_classification_equals_the_torch_servers(tiny_url: str, openvino_url: str) -> None:
    def classify(url: str) -> list[dict[str, object]]:
        response = httpx.post(f"{url}/v1/classify", json={"model": "tiny-clf", "input": TEXTS}, timeout=30)
        assert response.status_code == 200, response.text
        rows: list[dict[str, object]] = response.json()["data"]
        return rows

    for want, got in zip(classify(tiny_url), classify(openvino_url), strict=True):
        assert got["label"] == want["label"]
        assert got["scores"] == pytest.approx(want["scores"], abs=1e-5)


def test_the_models_list_names_each_models_backend(tiny_url: str, openvino_url: str) -> None:
    def backends(url: str) -> dict[str, str]:
        return {card["id"]: card["backend"] for card in httpx.get(f"{url}/v1/models", timeout=10).json()["data"]}

    assert backends(tiny_url) == {"tiny-embed": "torch", "tiny-clf": "torch"}
    assert backends(openvino_url) == {"tiny-embed": "openvino", "tiny-clf": "openvino"}


def test_a_generation_model_under_openvino_fails_start_up_with_the_reason_and_no_traceback(
    tiny_bert_dir: Path,
    tiny_classifier_dir: Path,
    tiny_gpt2_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The task is inferred from the directory, so only the loader can tell it is a generation model.
    models = [ModelEntry(id="tiny-gpt2", path=tiny_gpt2_dir)]
    settings = tiny_settings(
        tiny_bert_dir, tiny_classifier_dir, models=models, backend="openvino", backend_cache=tmp_path
    )
    with caplog.at_level(logging.ERROR), running_server(create_app(settings)) as url:
        deadline = time.monotonic() + 60
        while (health := httpx.get(f"{url}/health")).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert health.status_code == 503
        assert "generation model" in health.text and "backend torch" in health.text
    records = [r for r in caplog.records if r.getMessage().startswith("start-up failed")]
    assert records and not records[0].exc_info  # the message says all: no traceback for a refusal
