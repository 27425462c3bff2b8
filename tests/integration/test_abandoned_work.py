"""/v1/embeddings and /v1/classify drop the queued inputs of a client that has gone; start-up failures log a trace."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import httpx
import pytest

from models.base import Model
from models.loading import LoadOptions
from service.api.app import create_app
from service.inference.model_entry import ModelEntry
from tests.integration.conftest import tiny_settings, wait_ready
from tests.support.servers import running_server


@pytest.mark.parametrize(("path", "model_id"), [("/v1/embeddings", "tiny-embed"), ("/v1/classify", "tiny-clf")])
def test_a_client_that_leaves_takes_its_queued_inputs_with_it(
    tiny_bert_dir: Path, tiny_classifier_dir: Path, path: str, model_id: str
) -> None:
    app = create_app(tiny_settings(tiny_bert_dir, tiny_classifier_dir, max_batch_size=1, batch_window=1))
    with running_server(app) as url:
        wait_ready(url)
        engine = app.state.registry.engines[model_id]
        real_predict = engine.model.predict
        entered, release = threading.Event(), threading.Event()

        def gated_predict(batch: list[object]) -> list[object]:
            entered.set()
            release.wait(30)
            return real_predict(batch)  # type: ignore[no-any-return]

        engine.model.predict = gated_predict  # hold the model so that the second request's inputs wait in the queue
        holder: list[httpx.Response] = []
        first = threading.Thread(
            target=lambda: holder.append(httpx.post(f"{url}{path}", json={"input": "first"}, timeout=60))
        )
        first.start()
        try:
            assert entered.wait(30)
            inputs = [f"abandoned {i}" for i in range(10)]
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{url}{path}", json={"input": inputs}, timeout=httpx.Timeout(30, read=0.5))
            deadline = time.monotonic() + 30
            while engine.counts.dropped < 10 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            release.set()
            first.join(30)
        assert holder and holder[0].status_code == 200
        assert engine.counts.dropped == 10
        assert engine.counts.completed == 1  # only the first request was computed


def test_a_start_up_failure_is_logged_with_its_traceback(
    tiny_bert_dir: Path, tiny_classifier_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_loader(entry: ModelEntry, options: LoadOptions) -> Model:
        raise OSError("the model directory is unreadable")

    app = create_app(tiny_settings(tiny_bert_dir, tiny_classifier_dir), loader=broken_loader)
    with caplog.at_level(logging.ERROR), running_server(app) as url:
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/health").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.01)
    records = [r for r in caplog.records if r.getMessage().startswith("start-up failed")]
    assert records, [r.getMessage() for r in caplog.records]
    assert records[0].exc_info is not None and records[0].exc_info[0] is OSError
