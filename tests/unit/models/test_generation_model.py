"""The generation model's own decoding against transformers' ``generate()``, and its prompt handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.base import Sampling, Task
from models.generation import DecodeBatch, GenerationModel, Row, reference_generate
from models.loading import LoadOptions, load_local, load_model


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm(request: pytest.FixtureRequest, tiny_gpt2_dir: Path, tiny_llama_dir: Path) -> GenerationModel:
    model = load_local("tiny-lm", tiny_gpt2_dir if request.param == "gpt2" else tiny_llama_dir, options=LoadOptions())
    assert isinstance(model, GenerationModel)
    return model


def test_the_task_is_inferred_and_the_model_runs_in_fp32_on_cpu(lm: GenerationModel) -> None:
    assert lm.task is Task.GENERATION and lm.dtype == "float32" and lm.device == "cpu"
    assert lm.info()["context_length"] == 256


def test_load_model_refuses_a_causal_lm(tiny_gpt2_dir: Path) -> None:
    with pytest.raises(ValueError, match="generation model"):
        load_model("x", tiny_gpt2_dir)


def test_batched_greedy_decoding_equals_transformers_generate(lm: GenerationModel) -> None:
    prompts = [lm.encode_prompt(t) for t in ("hello", "the quick brown fox jumps over the lazy dog", "cats and")]
    batch = DecodeBatch(lm)
    batch.add([Row(key=i, prompt=p, sampling=Sampling(max_tokens=16)) for i, p in enumerate(prompts)])
    for _ in range(15):
        batch.step()
    for row, prompt in zip(batch.rows, prompts, strict=True):
        want = reference_generate(lm, prompt, 16)
        # generate() stops at EOS; the batch ran on regardless, so compare up to where generate() ended.
        assert row.generated[: len(want)] == want


def test_chat_template_or_plain_prompt(lm: GenerationModel) -> None:
    ids = lm.encode_chat([{"role": "user", "content": "hello world"}])
    if lm.chat_template:
        # The template's own tokens: BOS, the user header, the end marker and the assistant header.
        vocab = lm.tokenizer.get_vocab()
        special = [vocab[t] for t in ("<|bos|>", "<|user|>", "<|end|>", "<|assistant|>")]
        assert ids[0] == special[0] and ids[1] == special[1] and ids[-1] == special[3] and special[2] in ids
    else:
        assert lm.decode(ids) == "user: hello world\nassistant:"
