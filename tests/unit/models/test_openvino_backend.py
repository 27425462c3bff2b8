"""The openvino backend: same answers as torch, converted once and cached, refused when it disagrees."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.base import Classification, Encoded, LoadRefused, Model
from models.loading import LoadOptions, load_local, load_model
from models.openvino_backend import IR_FILE, MIN_COSINE, BackendMismatch, cache_key, min_cosine
from tests.support.tiny_models import make_tiny_bert

TEXTS = [
    "cat",
    "the movie was good and the food was great",
    "a test",
    " ".join(["stream generate classify embed rank query document"] * 30),  # over the 128-token limit: cut
    "hello world and the dog",
]


def _openvino(cache: Path) -> LoadOptions:
    return LoadOptions(device="cpu", backend="openvino", backend_cache=cache, threads=1)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _files(root: Path) -> dict[Path, tuple[int, int]]:
    """Every file under ``root`` with its inode and modification time: a rewrite changes one of them."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openvino-cache")


@pytest.fixture(scope="module")
def ov_embedder(tiny_bert_dir: Path, cache: Path) -> Model:
    return load_model("tiny-embed-ov", tiny_bert_dir, options=_openvino(cache))


@pytest.fixture(scope="module")
def ov_classifier(tiny_classifier_dir: Path, cache: Path) -> Model:
    return load_model("tiny-clf-ov", tiny_classifier_dir, options=_openvino(cache))


def test_embeddings_match_torch_per_input_in_a_padded_batch(tiny_embedder: Model, ov_embedder: Model) -> None:
    assert (tiny_embedder.info()["backend"], ov_embedder.info()["backend"]) == ("torch", "openvino")
    batch = tiny_embedder.encode(TEXTS)
    assert len({enc.length for enc in batch}) == len(TEXTS) and batch[3].truncated  # padded: lengths all differ
    # Unnormalised rows too (and every token's state): pooling and normalisation are the torch path's own code.
    batch += [Encoded(ids=batch[1].ids, original_length=batch[1].length, normalize=False, all_tokens=True)]
    expected, actual = tiny_embedder.predict(batch), ov_embedder.predict(ov_embedder.encode(TEXTS) + batch[-1:])
    for want, got in zip(expected, actual, strict=True):
        assert got.shape == want.shape
        assert _cosine(want.ravel(), got.ravel()) >= MIN_COSINE
    assert np.linalg.norm(actual[0]) == pytest.approx(1.0, abs=1e-5)
    assert actual[-1].shape == (batch[1].length, 32)


def test_classification_scores_match_torch(tiny_classifier: Model, ov_classifier: Model) -> None:
    expected: list[Classification] = tiny_classifier.predict(tiny_classifier.encode(TEXTS))
    actual: list[Classification] = ov_classifier.predict(ov_classifier.encode(TEXTS))
    for want, got in zip(expected, actual, strict=True):
        assert got.label == want.label
        assert got.scores == pytest.approx(want.scores, abs=1e-5)
        assert want.logits is not None and got.logits is not None
        assert _cosine(np.array(list(want.logits.values())), np.array(list(got.logits.values()))) >= MIN_COSINE


def test_a_second_load_reuses_the_cached_conversion(tiny_bert_dir: Path, cache: Path, ov_embedder: Model) -> None:
    before = _files(cache)
    assert sum(p.name == IR_FILE for p in before) == len(list(cache.iterdir()))  # one IR per converted model
    again = load_model("tiny-embed-ov", tiny_bert_dir, options=_openvino(cache))
    assert _files(cache) == before  # nothing converted or rewritten: same files, same inodes, same times
    texts = TEXTS[:2]
    for a, b in zip(again.predict(again.encode(texts)), ov_embedder.predict(ov_embedder.encode(texts)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_cached_conversion_that_disagrees_with_torch_is_refused_with_its_cosine(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    # A cache entry holding another model's graph (as a stale or damaged cache would): valid IR, wrong numbers.
    other = make_tiny_bert(tmp_path / "other", seed=1)
    load_model("other", other, options=_openvino(tmp_path / "scratch"))
    (converted,) = (tmp_path / "scratch").iterdir()
    entry = (
        tmp_path / "cache" / cache_key(tiny_bert_dir, "embedding", ["input_ids", "attention_mask", "token_type_ids"])
    )
    shutil.copytree(converted, entry)
    with pytest.raises(BackendMismatch) as refused:
        load_model("tiny-embed", tiny_bert_dir, options=_openvino(tmp_path / "cache"))
    message = str(refused.value)
    figure = re.search(r"lowest cosine (-?[0-9.]+)", message)
    assert figure is not None and float(figure.group(1)) < MIN_COSINE, message
    assert str(entry) in message and "backend torch" in message


def test_generation_models_are_refused_before_loading(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(LoadRefused, match=r"generation model.*serve it with backend torch"):
        load_local("tiny-gpt2", tiny_gpt2_dir, options=_openvino(tmp_path))
    assert not tmp_path.joinpath("any").exists() and list(tmp_path.iterdir()) == []  # nothing was converted


def test_an_unknown_backend_or_precision_is_refused(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(LoadRefused, match="unknown backend 'onnx'"):
        load_model("x", tiny_bert_dir, options=LoadOptions(device="cpu", backend="onnx"))
    with pytest.raises(LoadRefused, match="float16 is not supported on cpu"):
        load_model("x", tiny_bert_dir, options=LoadOptions(device="cpu", dtype="float16", backend="openvino"))


def test_bfloat16_runs_openvino_in_bf16_still_checked_against_torch_float32(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    torch_model = load_model("tiny-embed", tiny_bert_dir, options=LoadOptions(device="cpu"))
    options = LoadOptions(device="cpu", backend="openvino", backend_cache=tmp_path, threads=1, dtype="bfloat16")
    model = load_model("tiny-embed-bf16", tiny_bert_dir, options=options)
    assert model.info()["backend"] == "openvino" and model.info()["dtype"] == "bfloat16"
    assert torch_model.info()["dtype"] == "float32"
    # What OpenVINO computes in: bf16 where the CPU has bf16 units (AMX, AVX-512 BF16), else it keeps f32.
    from models.openvino_backend import compile_ir

    (ir,) = tmp_path.rglob("*.xml")
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    has_bf16 = "amx_bf16" in flags or "avx512_bf16" in flags
    hint = compile_ir(ir, 1, "bf16").get_property("INFERENCE_PRECISION_HINT").to_string()
    assert hint == "bf16" if has_bf16 else hint in ("bf16", "f32"), hint
    assert compile_ir(ir, 1).get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"
    expected = torch_model.predict(torch_model.encode(TEXTS))
    actual = model.predict(model.encode(TEXTS))
    for want, got in zip(expected, actual, strict=True):
        assert _cosine(want.ravel(), got.ravel()) >= MIN_COSINE


def test_a_nan_output_fails_the_agreement_check() -> None:
    # Python's min(1.0, nan) is 1.0: a NaN row must not hide behind a good one (OpenVINO 2025.0 gave such rows).
    ones = np.ones(4, dtype=np.float32)
    assert np.isnan(min_cosine([ones, ones], [ones, np.full(4, np.nan, dtype=np.float32)]))
    assert min_cosine([ones, ones], [ones, -ones]) == pytest.approx(-1.0)
    # One score per input (rerank): the batch's scores are compared as one vector.
    assert min_cosine([1.0, 2.0], [2.0, 1.0]) == pytest.approx(0.8)


def test_a_cache_that_cannot_be_written_is_refused_by_name(tiny_bert_dir: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory", encoding="utf-8")
    with pytest.raises(LoadRefused, match=r"backend cache .*a-file/cache cannot be written.*set backend_cache"):
        load_model("tiny-embed", tiny_bert_dir, options=_openvino(blocked / "cache"))
