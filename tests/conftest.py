"""Shared test set-up: offline Hugging Face, tiny random-weight models built once per session."""

from __future__ import annotations

import os

# Read by transformers / huggingface_hub at import time, so it must come before any import of them.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from pathlib import Path

import pytest

from models.base import Model
from models.loading import LoadOptions, load_model
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
def tiny_embedder(tiny_bert_dir: Path) -> Model:
    """The tiny encoder loaded on CPU as an embedding model."""
    return load_model("tiny-embed", tiny_bert_dir, options=LoadOptions(device="cpu"))


@pytest.fixture(scope="session")
def tiny_classifier(tiny_classifier_dir: Path) -> Model:
    """The tiny classifier loaded on CPU."""
    return load_model("tiny-clf", tiny_classifier_dir, options=LoadOptions(device="cpu"))
