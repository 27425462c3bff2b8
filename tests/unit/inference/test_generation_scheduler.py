"""The continuous-batching scheduler on tiny random GPT-2 and Llama models: batching never changes a result."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from models.base import Sampling
from models.generation import GenerationModel
from models.loading import LoadOptions, load_local
from service.errors import Overloaded
from service.inference.engine import model_thread
from service.inference.generation.engine import GenerationEngine, Prompt
from service.inference.generation.scheduler import GenerationLimits, GenerationObserver, NullObserver
from service.inference.generation.stream import Finish, GenerationRequest, TokenStream

PROMPTS = [
    "hello",
    "the quick brown fox jumps over the lazy dog and then",
    "a long text is cut into chunks",
    "tokens stream one by one to the client until the end of the text, and the server",
    "cats",
]
MAX_TOKENS = [24, 6, 18, 10, 30]


def _load(path: Path) -> GenerationModel:
    model = load_local("tiny-lm", path, options=LoadOptions(device="cpu"))
    assert isinstance(model, GenerationModel)
    return model


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm(request: pytest.FixtureRequest, tiny_gpt2_dir: Path, tiny_llama_dir: Path) -> GenerationModel:
    return _load(tiny_gpt2_dir if request.param == "gpt2" else tiny_llama_dir)


class StepHook(NullObserver):
    """Runs ``actions[n]`` on the model thread right after decode step ``n``: joins and leaves at exact steps."""

    def __init__(self, actions: dict[int, Callable[[], None]]) -> None:
        self.actions, self.decodes, self.sizes = actions, 0, list[int]()

    def on_step(self, model_id: str, kind: str, sequences: int, tokens: int, seconds: float) -> None:
        self.sizes.append(sequences)
        if kind == "decode":
            self.decodes += 1
            action = self.actions.pop(self.decodes, None)
            if action is not None:
                action()


@pytest.fixture
def engine_factory(lm: GenerationModel) -> Iterator[Callable[..., GenerationEngine]]:
    made: list[GenerationEngine] = []

    def make(limits: GenerationLimits | None = None, observer: GenerationObserver | None = None) -> GenerationEngine:
        limits = limits or GenerationLimits()
        engine = GenerationEngine("tiny-lm", lm, limits, model_thread("tiny-lm", 1), observer=observer)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.scheduler.close(drain=False)
        engine._executor.shutdown(wait=True)


async def _alone(engine: GenerationEngine, ids: list[int], max_tokens: int) -> Finish:
    completion = await engine.complete(Prompt(ids), max_tokens=max_tokens)
    return completion.finish


async def test_greedy_output_is_the_same_alone_and_batched_with_joins_and_leaves(
    lm: GenerationModel, engine_factory: Callable[..., GenerationEngine]
) -> None:
    ids = [lm.encode_prompt(p) for p in PROMPTS]
    solo = engine_factory()
    await solo.start()
    alone = [await _alone(solo, i, n) for i, n in zip(ids, MAX_TOKENS, strict=True)]
    assert all(f.completion_tokens > 3 for f in alone), "the tiny model should write more than a few tokens"

    requests = [
        GenerationRequest(prompt=i, sampling=Sampling(max_tokens=n)) for i, n in zip(ids, MAX_TOKENS, strict=True)
    ]
    streams = [TokenStream(r) for r in requests]
    abandoned = GenerationRequest(prompt=ids[1], sampling=Sampling(max_tokens=200))
    hook = StepHook({})
    batched = engine_factory(observer=hook)
    submit = batched.scheduler.submit

    def submit_all(*joining: GenerationRequest) -> None:
        for request in joining:
            submit(request)

    # 0 starts alone; 1 and 2 join at step 2; 3 joins at step 5 (after 1 left, with 6 tokens); 4 and a request
    # that is abandoned join at step 7; the abandoned one leaves at step 9 while the others keep decoding.
    hook.actions.update(
        {
            2: lambda: submit_all(requests[1], requests[2]),
            5: lambda: submit(requests[3]),
            7: lambda: submit_all(requests[4], abandoned),
            9: abandoned.cancel,
        }
    )
    await batched.start()
    submit(requests[0])
    results = await asyncio.gather(*(s.collect() for s in streams))
    for i, (got, want) in enumerate(zip(results, alone, strict=True)):
        assert got.finish.token_ids == want.token_ids, f"request {i} changed when batched"
        assert got.finish.reason == want.reason
    assert max(hook.sizes) >= 4, f"requests never decoded together: {hook.sizes}"


async def test_a_full_queue_refuses_at_once(
    lm: GenerationModel, engine_factory: Callable[..., GenerationEngine]
) -> None:
    ids = lm.encode_prompt("hello")
    first, second, third = (GenerationRequest(prompt=ids, sampling=Sampling(max_tokens=4)) for _ in range(3))
    refused: list[Exception] = []

    def overfill() -> None:
        engine.scheduler.submit(second)  # waits: one sequence may run at a time
        try:
            engine.scheduler.submit(third)
        except Overloaded as exc:
            refused.append(exc)

    engine = engine_factory(GenerationLimits(max_running=1, max_waiting=1), StepHook({1: overfill}))
    await engine.start()
    engine.scheduler.submit(first)
    done = await asyncio.gather(TokenStream(first).collect(), TokenStream(second).collect())
    assert [d.finish.completion_tokens for d in done] == [4, 4]
    assert len(refused) == 1 and "1 requests waiting" in str(refused[0])


class Recorder(NullObserver):
    """The sequences in each decode step, with the scheduler's turn count when the step ran."""

    def __init__(self) -> None:
        self.engine: GenerationEngine | None = None
        self.decodes: list[tuple[int, int]] = []

    def on_step(self, model_id: str, kind: str, sequences: int, tokens: int, seconds: float) -> None:
        if kind == "decode" and self.engine is not None:
            self.decodes.append((self.engine.scheduler.steps, sequences))


async def test_a_caller_that_goes_away_frees_its_slot_at_the_next_step(
    lm: GenerationModel, engine_factory: Callable[..., GenerationEngine]
) -> None:
    ids = lm.encode_prompt("hello")
    recorder = Recorder()
    engine = recorder.engine = engine_factory(observer=recorder)
    await engine.start()
    stays = engine.stream(Prompt(ids), max_tokens=80)
    leaves = engine.stream(Prompt(ids), max_tokens=80)
    read = asyncio.Event()
    left_at: list[int] = []

    async def reader() -> None:
        async for _ in leaves:
            read.set()

    task = asyncio.create_task(reader())
    await read.wait()
    left_at.append(engine.scheduler.steps)
    task.cancel()  # what a disconnect does to the handler reading the stream
    await asyncio.gather(task, return_exceptions=True)
    done = await stays.collect()
    assert done.finish.reason == "length" or done.finish.token_ids[-1] in lm.eos_ids, "the other one was cut short"
    alone = [steps for steps, size in recorder.decodes if size == 1]
    assert alone, f"the abandoned sequence never left: {recorder.decodes}"
    # The turn running when the caller left may finish; the one after it already runs without the sequence.
    assert alone[0] <= left_at[0] + 1, f"left at turn {left_at[0]}, batch shrank at turn {alone[0]}"
    assert engine.scheduler.running == 0 and engine.scheduler.reserved == 0
