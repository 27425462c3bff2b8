"""/v1/chat/completions, /v1/completions and /v1/models for generation models, over a real uvicorn server."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from websockets.sync.client import connect as ws_connect

from models.base import Task
from models.generation import GenerationModel
from models.loading import LoadOptions, load_local
from service.api.app import create_app
from service.config import Settings
from service.inference.model_entry import ModelEntry
from tests.integration.conftest import wait_ready
from tests.support.servers import running_server

CONTEXT = 256


@pytest.fixture(scope="module")
def gen_url(tiny_gpt2_dir: Path, tiny_llama_dir: Path, tiny_bert_dir: Path) -> Iterator[str]:
    settings = Settings(
        models=[
            ModelEntry(id="tiny-gpt2", path=tiny_gpt2_dir),  # task inferred from the config
            ModelEntry(id="tiny-llama", path=tiny_llama_dir, task=Task.GENERATION),
            ModelEntry(id="tiny-embed", path=tiny_bert_dir, task=Task.EMBEDDING),
        ],
        device="cpu",
        torch_threads=1,
        max_batch_tokens=2048,
        generation_step_tokens=1024,
        generation_kv_tokens=4096,
    )
    with running_server(create_app(settings)) as url:
        wait_ready(url)
        yield url


@pytest.fixture
def client(gen_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gen_url}/v1", api_key="unused", max_retries=0, timeout=30)


def test_models_lists_generation_models_with_their_context(gen_url: str) -> None:
    cards = {m["id"]: m for m in httpx.get(f"{gen_url}/v1/models", timeout=10).json()["data"]}
    assert cards["tiny-gpt2"]["task"] == "generation" and cards["tiny-gpt2"]["context_length"] == CONTEXT
    assert cards["tiny-gpt2"]["backend"] == "torch"  # generation always runs on torch
    assert cards["tiny-llama"]["chat_template"] is True and cards["tiny-gpt2"]["chat_template"] is False
    assert cards["tiny-embed"]["task"] == "embedding"


def test_chat_round_trip_streamed_equals_whole(client: openai.OpenAI) -> None:
    messages: list[dict[str, str]] = [{"role": "user", "content": "hello world, tell me about the fox"}]
    whole = client.chat.completions.create(model="tiny-llama", messages=messages, max_tokens=20, temperature=0)  # type: ignore[arg-type]
    text = whole.choices[0].message.content or ""
    assert whole.object == "chat.completion" and whole.model == "tiny-llama"
    assert whole.choices[0].finish_reason in {"stop", "length"} and whole.usage is not None
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    assert whole.usage.completion_tokens > 0 and text
    chunks = list(
        client.chat.completions.create(  # type: ignore[call-overload]
            model="tiny-llama",
            messages=messages,
            max_tokens=20,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(pieces) == text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


def test_completion_round_trip_streamed_equals_whole(client: openai.OpenAI) -> None:
    whole = client.completions.create(model="tiny-gpt2", prompt="the quick brown fox", max_tokens=16, temperature=0)
    text = whole.choices[0].text
    assert whole.object == "text_completion" and text
    streamed = list(
        client.completions.create(
            model="tiny-gpt2", prompt="the quick brown fox", max_tokens=16, temperature=0, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in streamed) == text
    assert streamed[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert whole.usage is not None and whole.usage.completion_tokens <= 16


def test_max_tokens_and_stop_end_in_the_right_place(client: openai.OpenAI) -> None:
    prompt = "a long text is cut into chunks"
    short = client.completions.create(model="tiny-gpt2", prompt=prompt, max_tokens=5, temperature=0)
    assert short.choices[0].finish_reason == "length" and short.usage is not None
    assert short.usage.completion_tokens == 5
    full = client.completions.create(model="tiny-gpt2", prompt=prompt, max_tokens=40, temperature=0).choices[0].text
    # A stop string from the middle of the greedy text: the answer must end right before its first occurrence.
    words = [w for w in re.findall(r"\S{3,}", full[5:]) if w in full]
    assert words, f"no usable stop string in {full!r}"
    stop = words[0]
    stopped = client.completions.create(model="tiny-gpt2", prompt=prompt, max_tokens=40, temperature=0, stop=[stop])
    assert stopped.choices[0].text == full[: full.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model="tiny-gpt2", prompt=prompt, max_tokens=40, temperature=0, stop=stop, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == full[: full.index(stop)]


def test_seeded_sampling_is_reproducible(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        answer = client.completions.create(
            model="tiny-gpt2", prompt="hello", max_tokens=24, temperature=1.0, top_p=0.9, seed=seed
        )
        return answer.choices[0].text

    first = sample(7)
    assert sample(7) == first
    assert {sample(s) for s in (1, 2, 3)} != {first}, "different seeds should not all give the seed-7 text"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"temperature": 3}, "temperature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": []}, "messages"),
    ],
)
def test_wrong_or_unsupported_fields_are_422_naming_the_field(
    gen_url: str, body: dict[str, object], param: str
) -> None:
    payload = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], **body}
    answer = httpx.post(f"{gen_url}/v1/chat/completions", json=payload, timeout=10)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["param"] == param


def test_wrong_model_kind_and_unknown_model(gen_url: str) -> None:
    wrong = httpx.post(f"{gen_url}/v1/completions", json={"model": "tiny-embed", "prompt": "hi"}, timeout=10)
    assert wrong.status_code == 422 and wrong.json()["error"]["param"] == "model"
    missing = httpx.post(f"{gen_url}/v1/completions", json={"model": "nope", "prompt": "hi"}, timeout=10)
    assert missing.status_code == 404 and "tiny-gpt2" in missing.json()["error"]["message"]
    embed = httpx.post(f"{gen_url}/v1/embeddings", json={"model": "tiny-gpt2", "input": "hi"}, timeout=10)
    assert embed.status_code == 422 and embed.json()["error"]["param"] == "model"


def test_a_prompt_over_the_context_is_413_unless_truncation_is_asked(gen_url: str) -> None:
    prompt = "the quick brown fox jumps over the lazy dog " * 60
    over = httpx.post(f"{gen_url}/v1/completions", json={"model": "tiny-gpt2", "prompt": prompt}, timeout=10)
    assert over.status_code == 413 and over.json()["error"]["param"] == "prompt"
    assert str(CONTEXT) in over.json()["error"]["message"]
    body = {"model": "tiny-gpt2", "prompt": prompt, "max_tokens": 8, "temperature": 0, "truncate_prompt_tokens": -1}
    cut = httpx.post(f"{gen_url}/v1/completions", json=body, timeout=30)
    assert cut.status_code == 200, cut.text
    usage = cut.json()["usage"]
    # The prompt keeps its last context-1 tokens; the answer gets the one position left.
    assert usage["prompt_tokens"] == CONTEXT - 1 and usage["completion_tokens"] == 1
    assert cut.json()["choices"][0]["finish_reason"] == "length"


def test_generation_metrics_are_exposed(gen_url: str, client: openai.OpenAI) -> None:
    client.completions.create(model="tiny-gpt2", prompt="hello", max_tokens=3, temperature=0)
    text = httpx.get(f"{gen_url}/metrics", timeout=10).text
    for name in (
        'chunkserve_generation_time_to_first_token_seconds_count{model="tiny-gpt2"}',
        'chunkserve_generation_inter_token_seconds_count{model="tiny-gpt2"}',
        'chunkserve_generation_output_tokens_total{model="tiny-gpt2"}',
        'chunkserve_generation_running_sequences{model="tiny-gpt2"} 0.0',
        'chunkserve_generation_waiting_sequences{model="tiny-gpt2"} 0.0',
        'chunkserve_generation_kv_cache_tokens{model="tiny-gpt2"}',
        'chunkserve_generation_step_sequences_count{kind="decode",model="tiny-gpt2"}',
    ):
        assert name in text, name


def test_process_runs_a_generation_model_on_every_chunk(gen_url: str) -> None:
    text = "The quick brown fox jumps. It runs over the lazy dog! Cats and dogs live together in the house."
    target = {"model": "tiny-llama", "prompt": "Summarise: {text}", "max_tokens": 8}
    body = {"text": text, "chunk_size": 30, "targets": [target]}
    answer = httpx.post(f"{gen_url}/v1/process", json=body, timeout=60).json()
    assert answer["total"] >= 3 and answer["failed"] == 0, answer
    for chunk, result in zip(answer["chunks"], answer["results"], strict=True):
        messages = [{"role": "user", "content": f"Summarise: {text[chunk['start'] : chunk['end']]}"}]
        same = {"model": "tiny-llama", "messages": messages, "max_tokens": 8, "temperature": 0}
        want = httpx.post(f"{gen_url}/v1/chat/completions", json=same, timeout=30).json()
        assert result["result"]["text"] == want["choices"][0]["message"]["content"]
        assert result["result"]["completion_tokens"] == want["usage"]["completion_tokens"]


def test_process_refuses_a_prompt_for_an_encoder(gen_url: str) -> None:
    body = {"text": "Some text.", "targets": [{"model": "tiny-embed", "prompt": "Summarise: {text}"}]}
    answer = httpx.post(f"{gen_url}/v1/process", json=body, timeout=10)
    assert answer.status_code == 422 and answer.json()["error"]["param"] == "targets"


def test_websocket_chat_keeps_the_conversation(gen_url: str, tiny_llama_dir: Path) -> None:
    reference = load_local("ref", tiny_llama_dir, options=LoadOptions(device="cpu"))
    assert isinstance(reference, GenerationModel)
    history: list[dict[str, str]] = []
    with ws_connect(gen_url.replace("http://", "ws://") + "/v1/ws", open_timeout=10) as ws:
        for i, text in enumerate(["hello world", "tell me about the fox", "and the dog?"]):
            job = {"job_id": f"turn-{i}", "model": "tiny-llama", "message": text, "max_tokens": 6}
            ws.send(json.dumps(job))
            tokens, done = [], None
            while done is None:
                message = json.loads(ws.recv(timeout=30))
                assert message["job_id"] == f"turn-{i}", message
                if message["type"] == "token":
                    tokens.append(message["text"])
                else:
                    assert message["type"] == "done", message
                    done = message
            history.append({"role": "user", "content": text})
            # The model saw every earlier turn: the prompt is the chat template over the whole conversation.
            assert done["usage"]["prompt_tokens"] == len(reference.encode_chat(history))
            assert "".join(tokens) == done["text"] and done["dropped_messages"] == 0
            same = {"model": "tiny-llama", "messages": history, "max_tokens": 6, "temperature": 0}
            want = httpx.post(f"{gen_url}/v1/chat/completions", json=same, timeout=30).json()
            assert done["text"] == want["choices"][0]["message"]["content"]
            history.append({"role": "assistant", "content": done["text"]})


def test_process_reduce_combines_the_chunk_results_in_order(gen_url: str) -> None:
    text = "The quick brown fox jumps. It runs over the lazy dog! Cats and dogs live together in the house."
    body = {
        "text": text,
        "chunk_size": 30,
        "targets": [{"model": "tiny-gpt2", "prompt": "Summarise: {text}", "max_tokens": 4}],
        "reduce": {"model": "tiny-llama", "prompt": "Combine: {results}", "max_tokens": 6},
    }
    answer = httpx.post(f"{gen_url}/v1/process", json=body, timeout=60).json()
    assert answer["failed"] == 0 and answer["reduce"]["success"], answer
    joined = "\n\n".join(r["result"]["text"] for r in answer["results"])
    same = {"model": "tiny-llama", "messages": [{"role": "user", "content": f"Combine: {joined}"}], "max_tokens": 6}
    want = httpx.post(f"{gen_url}/v1/chat/completions", json={**same, "temperature": 0}, timeout=30).json()
    assert answer["reduce"]["result"]["text"] == want["choices"][0]["message"]["content"]
    assert answer["reduce"]["inputs"] == answer["total"]
    lines = httpx.post(f"{gen_url}/v1/process/stream", json=body, timeout=60).text.splitlines()
    at = lines.index("event: reduce")
    data = next(line for line in lines[at:] if line.startswith("data: "))
    assert json.loads(data[6:])["result"]["text"] == want["choices"][0]["message"]["content"]
    refused = httpx.post(f"{gen_url}/v1/process", json={**body, "reduce": {"model": "tiny-embed"}}, timeout=10)
    assert refused.status_code == 422 and refused.json()["error"]["param"] == "reduce.model"


def test_two_prompts_on_one_model_are_two_targets_in_every_output(gen_url: str) -> None:
    text = "The quick brown fox jumps. It runs over the lazy dog! Cats and dogs live together."
    prompts = ["Summarise: {text}", "Translate: {text}", "Title: {text}"]
    targets: list[dict[str, object]] = [{"model": "tiny-gpt2", "prompt": p, "max_tokens": 4} for p in prompts]
    targets[2]["name"] = "title"
    labels = ["tiny-gpt2", "tiny-gpt2#2", "title"]  # the later uses of a label get #2, #3... unless named
    body = {"text": text, "chunk_size": 30, "targets": targets, "assignment": "broadcast"}
    answer = httpx.post(f"{gen_url}/v1/process", json=body, timeout=60).json()
    chunks = {c["index"]: text[c["start"] : c["end"]] for c in answer["chunks"]}
    assert answer["failed"] == 0 and answer["total"] == 3 * len(chunks) >= 6, answer
    assert [r["target"] for r in answer["results"]] == labels * len(chunks)  # chunk order, then target order
    want = {}
    for index, chunk in chunks.items():
        for label, prompt in zip(labels, prompts, strict=True):
            same = {"model": "tiny-gpt2", "prompt": prompt.replace("{text}", chunk), "max_tokens": 4, "temperature": 0}
            reply = httpx.post(f"{gen_url}/v1/completions", json=same, timeout=30).json()
            want[(index, label)] = reply["choices"][0]["text"]
    assert {(r["index"], r["target"]): r["result"]["text"] for r in answer["results"]} == want
    lines = httpx.post(f"{gen_url}/v1/process/stream", json=body, timeout=60).text.splitlines()
    # Each "event: result" line is followed by its "data: " line.
    streamed = [json.loads(d[6:]) for e, d in itertools.pairwise(lines) if e == "event: result"]
    assert {(r["index"], r["target"]): r["result"]["text"] for r in streamed} == want
    with ws_connect(gen_url.replace("http://", "ws://") + "/v1/ws", open_timeout=10) as ws:
        ws.send(json.dumps({"job_id": "two", **body}))
        messages: list[dict[str, Any]] = []
        while not messages or messages[-1]["type"] not in {"done", "error"}:
            messages.append(json.loads(ws.recv(timeout=60)))
    dispatched = next(m for m in messages if m.get("step") == "dispatched")
    assert dispatched["targets"] == sorted(labels)
    results = [m for m in messages if m["type"] == "result"]
    assert {(r["index"], r["target"]): r["result"]["text"] for r in results} == want
    clash = {**body, "targets": [targets[0], {**targets[1], "name": "tiny-gpt2"}]}
    refused = httpx.post(f"{gen_url}/v1/process", json=clash, timeout=10)
    assert refused.status_code == 422 and refused.json()["error"]["param"] == "targets[1].name", refused.text
