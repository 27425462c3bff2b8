"""The models package on tiny random BERTs, plus one check of the real default model against sentence-transformers."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from models import (
    Classification,
    ClassificationModel,
    EmbeddingModel,
    LoadOptions,
    Model,
    Pooling,
    Task,
    default_model_path,
    load_model,
)
from models.embedding import read_pooling
from models.loading import infer_task, resolve_device, resolve_dtype
from tests.support.texts import MIXED_TEXTS
from tests.support.tiny_models import make_tiny_classifier

CPU = LoadOptions(device="cpu", warmup=False)
# Very different lengths in one batch, the last two past the tiny models' 128-token limit.
MIXED = [
    "hi",
    "the movie was great",
    "",
    "a dog and a cat play with the guitar in the world of tests " * 3,
    "unseen-wörd xyz " * 40,
    "hello world " * 100,
]


def _vectors(model: Model, texts: list[str]) -> np.ndarray:
    return np.vstack(model.predict(model.encode(texts)))


def test_embedding_batch_equals_its_singles(tiny_embedder: Model) -> None:
    batch = _vectors(tiny_embedder, MIXED)
    singles = np.vstack([_vectors(tiny_embedder, [text]) for text in MIXED])
    np.testing.assert_allclose(batch, singles, atol=1e-5)


def test_classification_batch_equals_its_singles(tiny_classifier: Model) -> None:
    batch = tiny_classifier.predict(tiny_classifier.encode(MIXED))
    singles = [tiny_classifier.predict(tiny_classifier.encode([text]))[0] for text in MIXED]
    assert [r.label for r in batch] == [r.label for r in singles]
    for got, want in zip(batch, singles, strict=True):
        assert got.scores == pytest.approx(want.scores, abs=1e-5)
        assert got.score == pytest.approx(want.score, abs=1e-5)


def test_embeddings_are_unit_norm_float32_rows(tiny_embedder: Model) -> None:
    rows = tiny_embedder.predict(tiny_embedder.encode(MIXED))
    assert len(rows) == len(MIXED)
    for row in rows:
        assert row.dtype == np.float32 and row.shape == (32,)
        assert float(np.linalg.norm(row)) == pytest.approx(1.0, abs=1e-5)


def test_embedding_is_the_normalised_mean_of_the_encoder_states(tiny_bert_dir: Path, tiny_embedder: Model) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    encoder = AutoModel.from_pretrained(tiny_bert_dir).eval()
    with torch.inference_mode():
        states = encoder(**tok(["the movie was great"], return_tensors="pt")).last_hidden_state[0]
    want = torch.nn.functional.normalize(states.mean(dim=0), dim=0).numpy()
    np.testing.assert_allclose(_vectors(tiny_embedder, ["the movie was great"])[0], want, atol=1e-5)


def test_classification_is_the_softmax_of_the_logits(tiny_classifier_dir: Path, tiny_classifier: Model) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_classifier_dir)
    head = AutoModelForSequenceClassification.from_pretrained(tiny_classifier_dir).eval()
    with torch.inference_mode():
        probs = torch.softmax(head(**tok(["i love it"], return_tensors="pt")).logits[0], dim=-1).tolist()
    [result] = tiny_classifier.predict(tiny_classifier.encode(["i love it"]))
    assert isinstance(result, Classification)
    assert list(result.scores) == ["NEGATIVE", "POSITIVE"]
    assert list(result.scores.values()) == pytest.approx(probs, abs=1e-6)
    assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-6)
    assert result.label == ["NEGATIVE", "POSITIVE"][int(np.argmax(probs))]
    assert result.score == max(result.scores.values())


def test_token_counts_and_ids_equal_the_tokenizers(tiny_bert_dir: Path, tiny_embedder: Model) -> None:
    want = AutoTokenizer.from_pretrained(tiny_bert_dir)(MIXED)["input_ids"]
    assert tiny_embedder.count_tokens(MIXED) == [len(ids) for ids in want]
    for enc, ids in zip(tiny_embedder.encode(MIXED), want, strict=True):
        if not enc.truncated:
            assert enc.ids == ids


def test_a_long_input_is_truncated_as_the_tokenizer_would(tiny_bert_dir: Path, tiny_embedder: Model) -> None:
    text = "hello world " * 100
    [enc] = tiny_embedder.encode([text])
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    assert enc.truncated and enc.original_length == 202
    assert enc.length == tiny_embedder.max_input_tokens == 128
    assert enc.ids == tok(text, truncation=True, max_length=128)["input_ids"]
    assert enc.ids[-1] == tok.sep_token_id


def test_the_task_is_inferred_from_the_config(
    tiny_bert_dir: Path, tiny_classifier_dir: Path, tiny_embedder: Model, tiny_classifier: Model
) -> None:
    assert infer_task(AutoConfig.from_pretrained(tiny_bert_dir)) is Task.EMBEDDING
    assert infer_task(AutoConfig.from_pretrained(tiny_classifier_dir)) is Task.CLASSIFICATION
    assert isinstance(tiny_embedder, EmbeddingModel) and tiny_embedder.task is Task.EMBEDDING
    assert isinstance(tiny_classifier, ClassificationModel) and tiny_classifier.task is Task.CLASSIFICATION
    assert isinstance(tiny_embedder, Model) and isinstance(tiny_classifier, Model)


def test_a_classifier_can_be_served_as_an_embedder_but_not_the_reverse(
    tiny_bert_dir: Path, tiny_classifier_dir: Path
) -> None:
    as_embedder = load_model("c", tiny_classifier_dir, Task.EMBEDDING, CPU)
    assert isinstance(as_embedder, EmbeddingModel) and as_embedder.dimensions == 32
    with pytest.raises(ValueError, match="not a sequence classifier"):
        load_model("e", tiny_bert_dir, Task.CLASSIFICATION, CPU)


def test_labels_come_from_the_config_in_logit_order(tmp_path: Path) -> None:
    model = load_model("three", make_tiny_classifier(tmp_path, labels=("b", "c", "a")), options=CPU)
    assert model.info()["labels"] == ["b", "c", "a"]
    [result] = model.predict(model.encode(["good"]))
    assert list(result.scores) == ["b", "c", "a"]


def test_info_describes_the_model(tiny_embedder: Model, tiny_classifier: Model) -> None:
    assert tiny_embedder.info() == {
        "id": "tiny-embed",
        "task": "embedding",
        "device": "cpu",
        "dtype": "float32",
        "max_input_tokens": 128,
        "backend": "torch",
        "dimensions": 32,
    }
    assert tiny_classifier.info() == {
        "id": "tiny-clf",
        "task": "classification",
        "device": "cpu",
        "dtype": "float32",
        "max_input_tokens": 128,
        "backend": "torch",
        "labels": ["NEGATIVE", "POSITIVE"],
    }


def test_an_empty_batch_gives_no_results(tiny_embedder: Model, tiny_classifier: Model) -> None:
    assert tiny_embedder.predict([]) == [] and tiny_classifier.predict([]) == []
    assert tiny_embedder.encode([]) == []


def test_max_input_tokens_can_be_lowered(tiny_bert_dir: Path) -> None:
    model = load_model("short", tiny_bert_dir, options=LoadOptions(device="cpu", max_input_tokens=16))
    [enc] = model.encode(["hello world " * 100])
    assert model.max_input_tokens == 16 and model.info()["max_input_tokens"] == 16
    assert enc.length == 16 and enc.original_length == 202 and enc.truncated
    assert model.count_tokens(["hello world " * 100]) == [202]


@pytest.mark.parametrize(
    ("requested", "message"),
    [(129, "max_input_tokens=129 is above the model's limit of 128"), (0, "must be positive"), (2, "no room")],
)
def test_max_input_tokens_cannot_be_raised_or_emptied(tiny_bert_dir: Path, requested: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_model("bad", tiny_bert_dir, options=LoadOptions(device="cpu", max_input_tokens=requested))


def test_bad_paths_are_refused_with_the_path_named(tmp_path: Path, tiny_bert_dir: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(missing))} does not exist"):
        load_model("m", missing, options=CPU)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match=r"file\.txt is a file"):
        load_model("m", tmp_path / "file.txt", options=CPU)
    empty = tmp_path / "empty"
    empty.mkdir()
    where = re.escape(str(empty))
    with pytest.raises(FileNotFoundError, match=rf"{where} is not a model directory: it has no config\.json"):
        load_model("m", empty, options=CPU)
    shutil.copy(tiny_bert_dir / "config.json", empty / "config.json")
    with pytest.raises(FileNotFoundError, match=f"{where} has no weights"):
        load_model("m", empty, options=CPU)
    shutil.copy(tiny_bert_dir / "model.safetensors", empty / "model.safetensors")
    with pytest.raises(FileNotFoundError, match=f"{where} has no tokenizer"):
        load_model("m", empty, options=CPU)
    (empty / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match=f"could not load the tokenizer from {where}"):
        load_model("m", empty, options=CPU)


def test_devices_are_resolved_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") == resolve_device("cpu")
    with pytest.raises(ValueError, match="'cuda' asked for, but CUDA is not available"):
        resolve_device("cuda")
    for spec in ("tpu", "meta"):
        with pytest.raises(ValueError, match=f"device {spec!r}"):
            resolve_device(spec)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="'cuda:2' asked for, but this machine has 2 CUDA device"):
        resolve_device("cuda:2")


def test_dtypes_are_resolved_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_dtype("auto", cpu) is torch.float32
    assert resolve_dtype("bfloat16", cpu) is torch.bfloat16
    assert resolve_dtype("float16", cuda) is torch.float16
    for supported, want in ((True, torch.bfloat16), (False, torch.float16)):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda supported=supported: supported)
        assert resolve_dtype("auto", cuda) is want
    with pytest.raises(ValueError, match="float16 is not supported on cpu"):
        resolve_dtype("float16", cpu)
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        resolve_dtype("int8", cpu)


def test_bfloat16_on_cpu_is_an_opt_in_that_stays_close(tiny_bert_dir: Path, tiny_embedder: Model) -> None:
    half = load_model("bf16", tiny_bert_dir, options=LoadOptions(device="cpu", dtype="bfloat16"))
    assert half.dtype == "bfloat16"
    got, want = _vectors(half, MIXED), _vectors(tiny_embedder, MIXED)
    assert got.dtype == np.float32
    assert np.all((got * want).sum(axis=1) > 0.99)


def _sentence_transformers_dir(src: Path, dst: Path, pooling: dict[str, object], normalize: bool) -> Path:
    shutil.copytree(src, dst)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (dst / "modules.json").write_text(json.dumps(modules))
    (dst / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    (dst / "1_Pooling").mkdir()
    (dst / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **pooling}))
    return dst


def test_cls_pooling_without_normalize_matches_sentence_transformers(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    root = _sentence_transformers_dir(
        tiny_bert_dir, tmp_path / "st", {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, False
    )
    model = load_model("st", root, options=CPU)
    assert isinstance(model, EmbeddingModel)
    assert model.pooling == Pooling(mode="cls", normalize=False) and model.max_input_tokens == 64
    texts = [*MIXED[:4], "hello world " * 50]
    want = SentenceTransformer(str(root), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(_vectors(model, texts), want, atol=1e-5)


def test_pooling_is_read_from_either_config_format(tmp_path: Path, tiny_bert_dir: Path) -> None:
    assert read_pooling(tiny_bert_dir) == Pooling(mode="mean", normalize=True)
    root = _sentence_transformers_dir(tiny_bert_dir, tmp_path / "new", {"pooling_mode": "mean"}, True)
    assert read_pooling(root) == Pooling(mode="mean", normalize=True)
    root = _sentence_transformers_dir(tiny_bert_dir, tmp_path / "max", {"pooling_mode_max_tokens": True}, True)
    with pytest.raises(ValueError, match=r"asks for pooling \['max'\]"):
        read_pooling(root)
    modules = json.loads((root / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (root / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match=r"modules \['Dense'\]"):
        read_pooling(root)


@pytest.mark.slow
def test_the_default_model_matches_sentence_transformers() -> None:
    from sentence_transformers import SentenceTransformer

    texts = MIXED_TEXTS
    model = load_model("all-MiniLM-L6-v2", default_model_path(), options=LoadOptions(device="cpu"))
    assert model.info()["dimensions"] == 384 and model.max_input_tokens == 256
    encoded = model.encode(texts)
    assert encoded[2].truncated and encoded[2].length == 256
    got = np.vstack(model.predict(encoded))
    want = SentenceTransformer(str(default_model_path()), device="cpu").encode(texts, normalize_embeddings=True)
    assert got.shape == want.shape == (len(texts), 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosines = (got * want).sum(axis=1) / np.linalg.norm(want, axis=1)
    assert np.all(cosines >= 0.9999), cosines
