"""A label identifies its target: no two different targets share one (results and --resume key on it)."""

from __future__ import annotations

import itertools

import pytest

from service.errors import InvalidInput
from service.jobs.targets import LocalTarget, distinct_labels, target_label
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


def test_distinct_targets_sharing_a_label_get_numbered_stable_labels() -> None:
    summarise, translate = LocalTarget("llm", prompt="Summarise: {text}"), LocalTarget("llm", prompt="Translate")
    labelled = distinct_labels([summarise, translate, summarise, LocalTarget("llm", max_tokens=9)])
    assert [target_label(t) for t in labelled] == ["llm", "llm#2", "llm", "llm#3"]  # equal targets: one label
    assert distinct_labels([summarise, translate]) == labelled[:2]  # the same list, the same labels (--resume)
    named = distinct_labels([summarise, LocalTarget("llm", prompt="T", name="tr"), RemoteTarget(URL, name="r")])
    assert [target_label(t) for t in named] == ["llm", "tr", "r"]
    # A default numbered label never takes a name given later; a given name never takes another's label.
    assert [target_label(t) for t in distinct_labels([summarise, LocalTarget("llm#2"), translate])] == [
        "llm",
        "llm#2",
        "llm#3",
    ]
    with pytest.raises(InvalidInput) as clash:
        distinct_labels([RemoteTarget(URL), summarise, LocalTarget("x", name="llm")], first_spec=1)
    assert clash.value.field == "targets[1].name"
