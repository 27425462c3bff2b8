"""Log format: text for a person at a terminal, JSON otherwise; values travel as fields, not inside the message."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.loading import LoadOptions, load_model
from service.config import Settings
from service.inference.model_entry import ModelEntry
from service.inference.registry import ModelRegistry
from service.observability.logs import JsonFormatter, TextFormatter, configure_logging, resolve_format
from service.observability.metrics import Metrics
from service.runtime import default_loader, load_engines


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def _restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("_restore_root")
@pytest.mark.parametrize(("stream", "expected"), [(_Terminal(), TextFormatter), (io.StringIO(), JsonFormatter)])
def test_auto_is_text_on_a_terminal_and_json_elsewhere(
    monkeypatch: pytest.MonkeyPatch, stream: io.StringIO, expected: type[logging.Formatter]
) -> None:
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging("info", "auto")
    [handler] = logging.getLogger().handlers
    assert type(handler.formatter) is expected
    assert resolve_format("json") == "json" and resolve_format("text") == "text"


def test_auto_is_the_default() -> None:
    assert Settings().log_format == "auto"


async def test_the_model_ready_line_carries_its_details_as_fields(
    tiny_bert_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(models=[ModelEntry(id="tiny", path=tiny_bert_dir)], device="cpu", torch_threads=1)
    registry = ModelRegistry(expected=["tiny"])
    with caplog.at_level(logging.INFO, logger="chunkserve"):
        await load_engines(settings, registry, default_loader, Metrics())
    await registry.close(drain=True)
    [record] = [r for r in caplog.records if r.getMessage().startswith("model tiny ready")]
    assert record.getMessage() == "model tiny ready"  # no dict repr inside the message
    line = json.loads(JsonFormatter().format(record))
    assert (line["model"], line["task"], line["device"], line["dimensions"]) == ("tiny", "embedding", "cpu", 32)


def test_loading_a_model_shows_no_progress_bar(tiny_bert_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    capfd.readouterr()
    load_model("quiet", tiny_bert_dir)
    captured = capfd.readouterr()
    assert "Loading weights" not in captured.err and "it/s" not in captured.err, captured.err[-300:]


def test_progress_bars_show_when_asked(tiny_bert_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    capfd.readouterr()
    load_model("loud", tiny_bert_dir, options=LoadOptions(progress_bars=True))
    assert "Loading weights" in capfd.readouterr().err
    assert Settings(hf_progress_bars=True).hf_progress_bars and not Settings().hf_progress_bars
