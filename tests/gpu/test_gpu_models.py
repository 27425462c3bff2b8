"""The models package on CUDA: half precision stays close to CPU fp32, and a batch still equals its singles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models import LoadOptions, Model, default_model_path, load_model
from tests.support.texts import MIXED_TEXTS

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

TEXTS = MIXED_TEXTS


def _vectors(model: Model, texts: list[str]) -> np.ndarray:
    return np.vstack(model.predict(model.encode(texts)))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cosines: np.ndarray = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return cosines


@pytest.fixture(scope="module")
def cpu_reference() -> np.ndarray:
    model = load_model("ref", default_model_path(), options=LoadOptions(device="cpu", warmup=False))
    return _vectors(model, TEXTS)


@pytest.mark.parametrize("dtype", ["auto", "float16", "bfloat16"])
def test_default_model_in_half_precision_matches_cpu_fp32(dtype: str, cpu_reference: np.ndarray) -> None:
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    model = load_model("gpu", default_model_path(), options=LoadOptions(device="cuda", dtype=dtype))
    assert model.device.startswith("cuda") and model.dtype in {"float16", "bfloat16"}
    got = _vectors(model, TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    cosines = _cosines(got, cpu_reference)
    assert np.all(cosines >= 0.999), cosines


def test_batch_equals_its_singles_on_cuda() -> None:
    model = load_model("gpu", default_model_path(), options=LoadOptions(device="cuda"))
    batch = _vectors(model, TEXTS)
    singles = np.vstack([_vectors(model, [text]) for text in TEXTS])
    cosines = _cosines(batch, singles)
    assert np.all(cosines >= 0.999), cosines


def test_tiny_classifier_on_cuda_agrees_with_cpu(tiny_classifier_dir: Path, tiny_classifier: Model) -> None:
    model = load_model("gpu-clf", tiny_classifier_dir, options=LoadOptions(device="cuda", dtype="float32"))
    got = model.predict(model.encode(TEXTS))
    want = tiny_classifier.predict(tiny_classifier.encode(TEXTS))
    assert [r.label for r in got] == [r.label for r in want]
    for g, w in zip(got, want, strict=True):
        assert g.scores == pytest.approx(w.scores, abs=1e-4)
