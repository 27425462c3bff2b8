"""/v1/embeddings, /v1/classify and /v1/models over a real server: values, not just status codes."""

from __future__ import annotations

import asyncio
import base64
import random
from pathlib import Path

import httpx
import numpy as np
import pytest

from models.base import Classification, Model, Task
from models.loading import LoadOptions, load_model


@pytest.fixture(scope="module")
def reference_embedder(tiny_bert_dir: Path) -> Model:
    return load_model("ref", tiny_bert_dir, Task.EMBEDDING, LoadOptions(device="cpu"))


@pytest.fixture(scope="module")
def reference_classifier(tiny_classifier_dir: Path) -> Model:
    return load_model("ref-clf", tiny_classifier_dir, Task.CLASSIFICATION, LoadOptions(device="cpu"))


def _alone(model: Model, text: str) -> np.ndarray:
    result: np.ndarray = model.predict(model.encode([text]))[0]
    return result


def _distinct_texts(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    words = "the movie was good bad great terrible food service love hate happy sad fast slow".split()
    # Lengths vary a lot so that length sorting reorders items inside batches.
    return [f"request {i}: " + " ".join(rng.choice(words) for _ in range(rng.randint(1, 60))) for i in range(n)]


async def test_concurrent_clients_each_get_their_own_embedding(tiny_url: str, reference_embedder: Model) -> None:
    texts = _distinct_texts(500)
    expected = [_alone(reference_embedder, t) for t in texts]
    got: dict[int, np.ndarray] = {}
    refused: list[tuple[int, int, str]] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(texts)):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=tiny_url, timeout=60, limits=limits, trust_env=False) as client:
        before = _batch_count(await client.get("/metrics"))

        async def client_loop() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                response = await client.post("/v1/embeddings", json={"input": texts[i], "model": "tiny-embed"})
                if response.status_code != 200:
                    refused.append((i, response.status_code, response.text[:300]))
                    continue
                body = response.json()
                assert body["data"][0]["index"] == 0
                got[i] = np.asarray(body["data"][0]["embedding"], dtype=np.float32)

        await asyncio.gather(*(client_loop() for _ in range(64)))
        after = _batch_count(await client.get("/metrics"))
    assert not refused, refused[:5]
    assert sorted(got) == list(range(500))
    # Cross-talk would be a different vector entirely (differences near 1), not float noise.
    worst = max(range(500), key=lambda i: float(np.abs(got[i] - expected[i]).max()))
    np.testing.assert_allclose(got[worst], expected[worst], atol=1e-5, err_msg=f"input {worst}: the worst match")
    # Batching really happened (otherwise this test would not be testing cross-talk).
    assert after - before < 500, f"{after - before:.0f} model calls for 500 requests: nothing was batched"


def _batch_count(metrics: httpx.Response) -> float:
    for line in metrics.text.splitlines():
        if line.startswith('chunkserve_batch_size_count{model="tiny-embed"}'):
            return float(line.split()[-1])
    return 0.0


def test_a_list_input_equals_its_singles(tiny_url: str, reference_embedder: Model) -> None:
    texts = ["short", "a somewhat longer text about a movie", "x " * 50, "hello world"]
    body = httpx.post(f"{tiny_url}/v1/embeddings", json={"input": texts, "model": "tiny-embed"}).json()
    assert [d["index"] for d in body["data"]] == [0, 1, 2, 3]
    for item, text in zip(body["data"], texts, strict=True):
        vector = np.asarray(item["embedding"], dtype=np.float32)
        np.testing.assert_allclose(vector, _alone(reference_embedder, text), atol=1e-5)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    tokens = sum(e.length for e in reference_embedder.encode(texts))
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert body["model"] == "tiny-embed" and body["object"] == "list"


def test_base64_and_dimensions(tiny_url: str, reference_embedder: Model) -> None:
    text = "the food was great"
    full = _alone(reference_embedder, text)
    body = httpx.post(
        f"{tiny_url}/v1/embeddings", json={"input": text, "model": "tiny-embed", "encoding_format": "base64"}
    ).json()
    decoded = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, full, atol=1e-6)
    body = httpx.post(f"{tiny_url}/v1/embeddings", json={"input": text, "model": "tiny-embed", "dimensions": 8}).json()
    short = np.asarray(body["data"][0]["embedding"])
    assert short.shape == (8,)
    np.testing.assert_allclose(short, full[:8] / np.linalg.norm(full[:8]), atol=1e-5)


def test_openai_client_round_trip(tiny_url: str, reference_embedder: Model) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{tiny_url}/v1", api_key="unused", max_retries=0)
    texts = ["hello world", "the movie was terrible"]
    for fmt in ("float", "base64"):
        result = client.embeddings.create(model="tiny-embed", input=texts, encoding_format=fmt)
        for item, text in zip(result.data, texts, strict=True):
            raw = item.embedding
            # An explicit base64 request hands the string through undecoded, as the client documents.
            vector = (
                np.frombuffer(base64.b64decode(raw), dtype="<f4") if isinstance(raw, str) else np.asarray(raw, "f4")
            )
            np.testing.assert_allclose(vector, _alone(reference_embedder, text), atol=1e-5)
    # The client's own default encoding (base64 in recent versions) decodes to the same numbers.
    default = client.embeddings.create(model="tiny-embed", input="hello world")
    np.testing.assert_allclose(default.data[0].embedding, _alone(reference_embedder, "hello world"), atol=1e-5)
    models = {m.id for m in client.models.list()}
    assert models == {"tiny-embed", "tiny-clf"}
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")


def test_classification_batch_equals_singles(tiny_url: str, reference_classifier: Model) -> None:
    texts = ["i love it", "i hate this film so much", "ok"]
    body = httpx.post(
        f"{tiny_url}/v1/classify", json={"input": texts, "model": "tiny-clf", "return_all_scores": True}
    ).json()
    for item, text in zip(body["data"], texts, strict=True):
        alone = reference_classifier.predict(reference_classifier.encode([text]))[0]
        assert isinstance(alone, Classification)
        assert item["label"] == alone.label
        assert item["score"] == pytest.approx(alone.score, abs=1e-5)
        assert set(item["scores"]) == {"NEGATIVE", "POSITIVE"}
        assert sum(item["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    single = httpx.post(f"{tiny_url}/v1/classify", json={"input": "ok"}).json()
    assert single["model"] == "tiny-clf" and single["data"][0]["scores"] is None


def test_models_list_describes_each_model(tiny_url: str) -> None:
    body = httpx.get(f"{tiny_url}/v1/models").json()
    cards = {m["id"]: m for m in body["data"]}
    assert body["object"] == "list"
    assert cards["tiny-embed"]["task"] == "embedding" and cards["tiny-clf"]["task"] == "classification"
    for card in cards.values():
        assert card["object"] == "model" and card["device"] == "cpu" and card["dtype"] == "float32"
        assert card["max_input_tokens"] > 0
    assert cards["tiny-embed"]["dimensions"] == 32
    assert httpx.get(f"{tiny_url}/v1/models/tiny-clf").json()["id"] == "tiny-clf"
