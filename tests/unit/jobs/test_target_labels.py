"""A label identifies its target: no two different targets share one (results and --resume key on it)."""

from __future__ import annotations

import itertools

from service.jobs.targets import LocalTarget, target_label
from service.outbound.protocols import RemoteProtocol
from service.outbound.remote import RemoteTarget

URL = "https://api.example/v1"


def test_different_targets_on_one_url_have_different_labels() -> None:
    targets = [
        RemoteTarget(url=URL),
        RemoteTarget(url=URL, protocol=RemoteProtocol.OPENAI_EMBEDDINGS),
        RemoteTarget(url=URL, protocol=RemoteProtocol.OPENAI_EMBEDDINGS, model="small"),
        RemoteTarget(url=URL, protocol=RemoteProtocol.OPENAI_EMBEDDINGS, model="large"),
        RemoteTarget(url=URL, protocol=RemoteProtocol.OPENAI_CHAT, model="large"),
        RemoteTarget(url=URL, protocol=RemoteProtocol.OPENAI_CHAT, model="large", prompt="Summarise."),
        RemoteTarget(url=URL, protocol=RemoteProtocol.OPENAI_CHAT, model="large", prompt="Translate."),
        RemoteTarget(url=URL, headers=(("X-Tenant", "a"),)),
        RemoteTarget(url=URL, headers=(("X-Tenant", "b"),)),
    ]
    labels = [target_label(t) for t in targets]
    assert len(set(labels)) == len(targets), labels
    for a, b in itertools.combinations(targets, 2):
        assert (target_label(a) == target_label(b)) == (a == b)


def test_labels_stay_readable_and_never_show_headers_or_prompts() -> None:
    assert target_label(LocalTarget("tiny-embed")) == "tiny-embed"
    assert target_label(RemoteTarget(url=URL)) == URL  # the classic api_urls shape keeps its plain label
    chat = RemoteTarget(
        url=URL,
        protocol=RemoteProtocol.OPENAI_CHAT,
        model="m",
        prompt="secret plan",
        headers=(("Authorization", "Bearer k"),),
    )
    label = target_label(chat)
    assert label.startswith(f"{URL} (openai-chat, model=m, config=")
    assert "secret" not in label and "Bearer" not in label
