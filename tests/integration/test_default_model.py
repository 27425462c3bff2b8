"""The real packaged all-MiniLM-L6-v2, served with no model configuration, matches sentence-transformers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from models.packaged import default_model_path
from service.api.app import create_app
from service.config import DEFAULT_MODEL_ID, Settings
from tests.integration.conftest import wait_ready
from tests.support.servers import running_server

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Embeddings map sentences to vectors.",
    "长文本需要被切分成小块。",
    "A much longer passage. " * 80,
]


@pytest.fixture(scope="module")
def default_server() -> Iterator[str]:
    settings = Settings(device="cpu", torch_threads=1, max_batch_tokens=16384)
    with running_server(create_app(settings)) as url:
        wait_ready(url, timeout_s=120)
        yield url


@pytest.mark.slow
def test_default_model_matches_sentence_transformers(default_server: str) -> None:
    from sentence_transformers import SentenceTransformer

    models = httpx.get(f"{default_server}/v1/models").json()["data"]
    assert [m["id"] for m in models] == [DEFAULT_MODEL_ID]
    assert models[0]["dimensions"] == 384
    assert models[0]["max_input_tokens"] == 256
    body = httpx.post(f"{default_server}/v1/embeddings", json={"input": TEXTS, "model": DEFAULT_MODEL_ID}, timeout=60)
    assert body.status_code == 200
    served = np.asarray([d["embedding"] for d in body.json()["data"]], dtype=np.float32)
    assert served.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)
    reference = SentenceTransformer(str(default_model_path()), device="cpu").encode(TEXTS, normalize_embeddings=True)
    cosines = (served * reference).sum(axis=1)
    assert cosines.min() >= 0.9999, cosines
