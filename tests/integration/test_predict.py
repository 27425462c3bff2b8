"""The classic ``POST /predict/``: 100-character chunks, classified through the pipeline and the batcher."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.base import Task
from service.api.app import create_app
from service.inference.model_entry import ModelEntry
from tests.integration.conftest import tiny_settings, wait_ready
from tests.support.servers import running_server

TEXT = "".join(f"Line {i:03d} of a text long enough to be cut in several chunks. " for i in range(6)) + "The end."


def _batched_inputs(url: str, model: str) -> int:
    """How many inputs the model's batcher has run, from /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10, trust_env=False).text
    found = re.search(rf'^chunkserve_batch_size_sum{{model="{model}"}} ([0-9.e+]+)$', text, flags=re.M)
    return int(float(found.group(1))) if found else 0


def test_predict_classifies_each_100_character_chunk_through_the_batcher(tiny_url: str) -> None:
    before = _batched_inputs(tiny_url, "tiny-clf")
    response = httpx.post(f"{tiny_url}/predict/", json={"text": TEXT}, timeout=30, trust_env=False)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny-clf"
    predictions = body["predictions"]
    assert len(TEXT) == 368 and len(predictions) == 4  # ceil(368 / 100)
    assert [(p["index"], p["start"], p["end"]) for p in predictions] == [
        (0, 0, 100),
        (1, 100, 200),
        (2, 200, 300),
        (3, 300, 368),
    ]
    for p in predictions:
        assert set(p) == {"index", "start", "end", "label", "score", "scores"}
        assert set(p["scores"]) == {"NEGATIVE", "POSITIVE"}
        assert p["label"] == max(p["scores"], key=p["scores"].get)
        assert p["score"] == pytest.approx(p["scores"][p["label"]])
        assert sum(p["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    # The same chunks through /v1/classify give the same labels: one model, one batcher.
    chunks = [TEXT[p["start"] : p["end"]] for p in predictions]
    direct = httpx.post(
        f"{tiny_url}/v1/classify",
        json={"model": "tiny-clf", "input": chunks, "return_all_scores": True},
        timeout=30,
        trust_env=False,
    ).json()["data"]
    for p, d in zip(predictions, direct, strict=True):
        assert p["label"] == d["label"]
        assert p["score"] == pytest.approx(d["score"], abs=1e-5)
    assert _batched_inputs(tiny_url, "tiny-clf") - before == 4 + 4  # /predict/'s four chunks, then /v1/classify's


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "text"), ({"text": ""}, "text"), ({"text": 5}, "text")],
)
def test_predict_refuses_a_bad_body_naming_the_field(tiny_url: str, body: dict[str, object], field: str) -> None:
    response = httpx.post(f"{tiny_url}/predict/", json=body, timeout=30, trust_env=False)
    assert response.status_code == 422
    assert field in (response.json()["error"]["param"] or "")


@pytest.fixture(scope="module")
def embed_only_url(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> Iterator[str]:
    models = [ModelEntry(id="tiny-embed", path=tiny_bert_dir, task=Task.EMBEDDING)]
    with running_server(create_app(tiny_settings(tiny_bert_dir, tiny_classifier_dir, models=models))) as url:
        wait_ready(url)
        yield url


def test_predict_without_a_classification_model_says_which_to_configure(embed_only_url: str) -> None:
    response = httpx.post(f"{embed_only_url}/predict/", json={"text": TEXT}, timeout=30, trust_env=False)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "classification model" in error["message"] and ":classification" in error["message"]
    assert _batched_inputs(embed_only_url, "tiny-embed") == 0  # refused before any chunk reached a model
