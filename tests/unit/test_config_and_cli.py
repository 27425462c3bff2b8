"""Settings: env, flags over env, model specs, and refusals that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.base import Task
from service.cli import ENV_ONLY, build_parser, settings_from_args
from service.config import DEFAULT_MODEL_ID, Settings
from service.inference.model_entry import ModelEntry

pytestmark = pytest.mark.usefixtures("clean_env")  # tests/unit/conftest.py


def test_defaults_serve_the_packaged_model_on_loopback() -> None:
    settings = Settings()
    assert settings.host == "127.0.0.1" and settings.port == 8000
    [entry] = settings.model_entries()
    assert entry.id == DEFAULT_MODEL_ID and entry.path is None and entry.task is Task.EMBEDDING


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("e5=/models/e5", ModelEntry(id="e5", path=Path("/models/e5"), task=None)),
        ("clf=/m/sst2:classification", ModelEntry(id="clf", path=Path("/m/sst2"), task=Task.CLASSIFICATION)),
        (
            "/models/bge-small:embedding",
            ModelEntry(id="bge-small", path=Path("/models/bge-small"), task=Task.EMBEDDING),
        ),
    ],
)
def test_model_specs_parse(spec: str, expected: ModelEntry) -> None:
    assert ModelEntry.parse(spec) == expected


def test_unknown_task_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown task 'embed'"):
        ModelEntry.parse("x=/nowhere/model:embed")


def test_environment_models_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHUNKSERVE_MODELS", "a=/m/a, b=/m/b:classification")
    monkeypatch.setenv("CHUNKSERVE_MAX_BATCH_SIZE", "8")
    settings = Settings()
    assert [m.id for m in settings.models] == ["a", "b"]
    assert settings.models[1].task is Task.CLASSIFICATION
    assert settings.max_batch_size == 8


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHUNKSERVE_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("CHUNKSERVE_PORT", "9000")
    args = build_parser().parse_args(
        ["serve", "--max-batch-size", "4", "--model", "a=/m/a", "--model", "b=/m/b", "--no-truncate"]
    )
    settings = settings_from_args(args)
    assert settings.max_batch_size == 4  # flag wins
    assert settings.port == 9000  # env still applies where no flag was given
    assert [m.id for m in settings.models] == ["a", "b"]
    assert settings.truncate is False


def test_serve_help_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = capsys.readouterr().out
    for name in Settings.model_fields:
        if name in ENV_ONLY:
            assert f"--{name.replace('_', '-')}" not in text
            continue
        flag = "--model" if name == "models" else "--" + name.replace("_", "-")
        assert flag in text, flag
        assert f"CHUNKSERVE_{name.upper()}" in text


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["serve", "--max-batch-size", "0"], "max_batch_size"),
        (["serve", "--max-batch-size", "64", "--batch-window", "16"], "CHUNKSERVE_BATCH_WINDOW"),
        (["serve", "--model", "a=/m/a", "--model", "a=/m/b"], "repeated: a"),
        (["serve", "--port", "70000"], "port"),
    ],
)
def test_impossible_settings_are_refused_with_the_fix(argv: list[str], fragment: str) -> None:
    args = build_parser().parse_args(argv)
    with pytest.raises(SystemExit) as exc_info:
        settings_from_args(args)
    assert fragment in str(exc_info.value)
