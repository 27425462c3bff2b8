"""TEI-style routes against a real server with tiny models: same vectors as /v1/embeddings, TEI's shapes and errors."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertForSequenceClassification

from models.base import Task
from service.api.app import create_app
from service.inference.model_entry import ModelEntry
from tests.integration.conftest import tiny_settings, wait_ready
from tests.support.servers import running_server

TEXTS = ["the movie was great", "the food was bad and slow", "hello world"]


@pytest.fixture(scope="module")
def server(tiny_bert_dir: Path, tiny_classifier_dir: Path, tiny_cross_encoder_dir: Path) -> Iterator[str]:
    settings = tiny_settings(tiny_bert_dir, tiny_classifier_dir)
    models = [*settings.models, ModelEntry(id="tiny-rerank", path=tiny_cross_encoder_dir, task=None)]
    with running_server(create_app(settings.model_copy(update={"models": models}))) as url:
        wait_ready(url)
        yield url


def _post(server: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server}{path}", json=body, timeout=30)


def test_embed_gives_the_same_vectors_as_the_openai_route(server: str) -> None:
    tei = _post(server, "/embed", {"inputs": TEXTS})
    openai = _post(server, "/v1/embeddings", {"model": "tiny-embed", "input": TEXTS})
    assert tei.status_code == 200, tei.text
    assert tei.json() == [item["embedding"] for item in openai.json()["data"]]
    one = _post(server, "/embed", {"inputs": TEXTS[0]}).json()
    assert one == tei.json()[:1]


def test_embed_without_normalising_gives_the_raw_pooled_vector(server: str) -> None:
    normalised = np.asarray(_post(server, "/embed", {"inputs": TEXTS}).json())
    raw = np.asarray(_post(server, "/embed", {"inputs": TEXTS, "normalize": False}).json())
    norms = np.linalg.norm(raw, axis=1)
    assert np.all(np.abs(norms - 1.0) > 1e-3), norms
    np.testing.assert_allclose(raw / norms[:, None], normalised, atol=1e-6)


def test_embed_all_gives_one_vector_per_token(server: str) -> None:
    states = _post(server, "/embed_all", {"inputs": TEXTS}).json()
    tokens = _post(server, "/tokenize", {"inputs": TEXTS}).json()
    assert [len(s) for s in states] == [len(t) for t in tokens]
    assert {len(vector) for s in states for vector in s} == {32}
    # Mean over the tokens, normalised, is the pooled embedding.
    pooled = np.asarray(_post(server, "/embed", {"inputs": TEXTS}).json())
    for i, s in enumerate(states):
        mean = np.mean(np.asarray(s), axis=0)
        np.testing.assert_allclose(mean / np.linalg.norm(mean), pooled[i], atol=1e-5)


def test_tokenize_shows_ids_texts_and_spans(server: str) -> None:
    [row] = _post(server, "/tokenize", {"inputs": "Hello world"}).json()
    assert row[0] == {"id": 2, "text": "[CLS]", "special": True, "start": None, "stop": None}
    assert row[-1]["special"] and row[-1]["text"] == "[SEP]"
    assert [(t["text"], t["start"], t["stop"]) for t in row[1:-1]] == [("Hello", 0, 5), ("world", 6, 11)]
    [bare] = _post(server, "/tokenize", {"inputs": ["Hello world"], "add_special_tokens": False}).json()
    assert [t["id"] for t in bare] == [t["id"] for t in row[1:-1]]


def test_predict_ranks_every_label_like_v1_classify(server: str) -> None:
    answer = _post(server, "/predict", {"inputs": TEXTS[0]}).json()
    assert {p["label"] for p in answer} == {"NEGATIVE", "POSITIVE"}
    assert answer[0]["score"] >= answer[1]["score"] and math.isclose(sum(p["score"] for p in answer), 1, rel_tol=1e-6)
    classic = _post(server, "/v1/classify", {"model": "tiny-clf", "input": TEXTS[0]}).json()["data"][0]
    assert (answer[0]["label"], answer[0]["score"]) == (classic["label"], classic["score"])
    raw = _post(server, "/predict", {"inputs": TEXTS[0], "raw_scores": True}).json()
    logits = {p["label"]: p["score"] for p in raw}
    total = sum(math.exp(v) for v in logits.values())
    for p in answer:
        assert math.isclose(math.exp(logits[p["label"]]) / total, p["score"], rel_tol=1e-5)


def test_predict_takes_pairs_and_batches(server: str) -> None:
    pair = _post(server, "/predict", {"inputs": ["good food", "bad service"]}).json()
    batch = _post(server, "/predict", {"inputs": [["good food"], ["good food", "bad service"]]}).json()
    assert len(batch) == 2 and batch[1] == pair
    assert batch[0] == _post(server, "/predict", {"inputs": "good food"}).json()
    assert pair != batch[0]  # the second text (and its segment ids) reached the model


def test_rerank_scores_pairs_like_the_cross_encoder_itself(server: str, tiny_cross_encoder_dir: Path) -> None:
    query, texts = "what is a dog", ["the dog", "a movie about food", "the cat and the dog"]
    ranks = _post(server, "/rerank", {"query": query, "texts": texts, "return_text": True}).json()
    assert sorted(r["index"] for r in ranks) == [0, 1, 2]
    assert [r["score"] for r in ranks] == sorted((r["score"] for r in ranks), reverse=True)
    assert all(r["text"] == texts[r["index"]] for r in ranks)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_cross_encoder_dir))
    module = BertForSequenceClassification.from_pretrained(str(tiny_cross_encoder_dir))
    torch.nn.Module.eval(module)
    with torch.inference_mode():
        logits = module(**tokenizer([query] * 3, texts, return_tensors="pt", padding=True)).logits[:, 0].tolist()
    for r in ranks:
        assert math.isclose(r["score"], 1 / (1 + math.exp(-logits[r["index"]])), rel_tol=1e-4)
    raw = _post(server, "/rerank", {"query": query, "texts": texts, "raw_scores": True}).json()
    assert "text" not in raw[0]
    assert {r["index"]: r["score"] for r in raw} == pytest.approx(dict(enumerate(logits)), rel=1e-4)


def test_info_describes_the_served_model(server: str) -> None:
    info = _post_get(server, "/info")
    assert info["model_id"] == "tiny-embed" and info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert (info["max_input_length"], info["max_client_batch_size"], info["auto_truncate"]) == (128, 64, True)
    assert info["models"] == ["tiny-clf", "tiny-embed", "tiny-rerank"]
    rerank = _post_get(server, "/info?model=tiny-rerank")
    assert rerank["model_type"] == {"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}}


def _post_get(server: str, path: str) -> dict[str, Any]:
    response = httpx.get(f"{server}{path}", timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("path", "body", "status", "error_type", "fragment"),
    [
        ("/rerank", {"query": "q", "texts": ["a"], "model": "tiny-embed"}, 424, "backend", "not rerank"),
        ("/embed", {"inputs": "a", "model": "tiny-rerank"}, 424, "backend", "not embedding"),
        ("/embed", {"inputs": []}, 422, "validation", "inputs"),
        ("/embed", {"inputs": "a", "prompt_name": "query"}, 422, "validation", "prompt_name"),
        ("/embed", {"inputs": "a", "truncation_direction": "left"}, 422, "validation", "truncation_direction"),
        ("/embed", {"inputs": " ".join(["dog"] * 300), "truncate": False}, 413, "validation", "128"),
        ("/rerank", {"query": "q", "texts": []}, 422, "validation", "texts"),
        ("/predict", {"inputs": ["only one"]}, 422, "validation", "inputs"),
        ("/embed", {"inputs": "a", "model": "nope"}, 404, "validation", "nope"),
        ("/embed_all", {"inputs": [" ".join(["dog"] * 100)] * 30}, 413, "validation", "vector per token"),
    ],
)
def test_errors_have_the_tei_shape(
    server: str, path: str, body: dict[str, Any], status: int, error_type: str, fragment: str
) -> None:
    response = _post(server, path, body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert set(payload) == {"error", "error_type"} and payload["error_type"] == error_type
    assert fragment in payload["error"]


def test_truncate_true_cuts_a_long_input(server: str) -> None:
    long_text = " ".join(["dog"] * 300)
    cut = _post(server, "/embed", {"inputs": long_text, "truncate": True})
    assert cut.status_code == 200 and len(cut.json()[0]) == 32


def test_the_rerank_task_is_inferred_from_a_one_output_head(server: str) -> None:
    card = httpx.get(f"{server}/v1/models/tiny-rerank", timeout=30).json()
    assert card["task"] == Task.RERANK.value


def test_the_documented_examples_succeed_here(server: str) -> None:
    schema = httpx.get(f"{server}/openapi.json", timeout=30).json()
    for path in ("/embed", "/embed_all", "/tokenize", "/predict", "/rerank"):
        content = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        example = next(iter(content["examples"].values()))["value"]
        response = _post(server, path, example)
        assert response.status_code == 200, (path, response.text)
        assert isinstance(response.json(), list) and response.json(), path
