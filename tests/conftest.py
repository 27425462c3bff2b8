"""Shared test set-up: offline Hugging Face, tiny random-weight models built once per session."""

from __future__ import annotations

import os
import sys

# Read by transformers / huggingface_hub at import time, so it must come before any import of them.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from pathlib import Path

import pytest

from models.base import Model
from models.loading import LoadOptions, load_model
from tests.support.tiny_lms import make_tiny_gpt2, make_tiny_llama
from tests.support.tiny_models import make_tiny_bert, make_tiny_classifier, make_tiny_cross_encoder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT encoder (32 dims, 128 tokens) saved once per session."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT classifier (NEGATIVE / POSITIVE) saved once per session."""
    return make_tiny_classifier(tmp_path_factory.mktemp("tiny-classifier"))


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random one-output BERT cross-encoder (rerank) saved once per session."""
    return make_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-cross-encoder"))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GPT-2 (plain prompts, 256-token context) saved once per session."""
    return make_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (chat template, BOS, grouped-query attention) saved once per session."""
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_embedder(tiny_bert_dir: Path) -> Model:
    """The tiny encoder loaded on CPU as an embedding model."""
    return load_model("tiny-embed", tiny_bert_dir, options=LoadOptions(device="cpu"))


@pytest.fixture(scope="session")
def tiny_classifier(tiny_classifier_dir: Path) -> Model:
    """The tiny classifier loaded on CPU."""
    return load_model("tiny-clf", tiny_classifier_dir, options=LoadOptions(device="cpu"))


_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remember pytest's verdict for ``pytest_unconfigure`` below."""
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the test process with pytest's own exit status once everything is reported, skipping finalization.

    One test process loads torch, OpenVINO (TBB threads), Ray's client and aiohttp together; about one full run in
    four then crashed with SIGSEGV in interpreter finalization, after every test had passed and the summary was
    printed, which turned a green run red. Nothing a test checks happens after this point (the summary, the
    JUnit file and the cache are written in earlier hooks), so the process leaves without running native
    destructors. ``CHUNKSERVE_TEST_NORMAL_EXIT=1`` keeps the normal exit, to look for the crash.
    """
    if not _EXIT_STATUS or os.environ.get("CHUNKSERVE_TEST_NORMAL_EXIT") == "1":
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS[-1])
