"""The backend settings: what they accept, what they refuse (naming the field), what reaches the loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.cli import build_parser, settings_from_args
from service.config import Settings
from service.runtime import load_options


def _refusal(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as refused:
        settings_from_args(build_parser().parse_args(["serve", *argv]))
    return str(refused.value)


def test_an_unknown_backend_in_the_environment_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHUNKSERVE_BACKEND", "onnx")
    message = _refusal([])
    assert "backend:" in message and "'torch' or 'openvino'" in message


def test_an_unknown_backend_flag_is_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--backend", "onnx"])
    assert "--backend: invalid choice: 'onnx'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--model", "g=/m/g:generation"], "g is a generation model: use backend torch"),
        (["--dtype", "float16"], "backend openvino runs float32 or bfloat16"),
        (["--device", "cuda:0"], "backend openvino runs on the CPU"),
    ],
)
def test_what_openvino_cannot_serve_is_refused_before_loading(argv: list[str], fragment: str) -> None:
    assert fragment in _refusal(["--backend", "openvino", *argv])


def test_the_loader_is_told_the_backend_its_cache_and_threads(tmp_path: Path) -> None:
    settings = settings_from_args(
        build_parser().parse_args(["serve", "--backend", "openvino", "--backend-cache", str(tmp_path)])
    )
    options = load_options(settings, threads=3)
    assert (options.backend, options.backend_cache, options.threads) == ("openvino", tmp_path, 3)
    assert options.device == "cpu"  # auto would pick a GPU where there is one; OpenVINO runs on the CPU here
    defaults = load_options(Settings(), threads=2)
    assert (defaults.backend, defaults.device) == ("torch", "auto")
    assert defaults.backend_cache == Path("~/.cache/chunkserve/openvino")
