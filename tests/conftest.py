"""Shared test set-up: offline Hugging Face, tiny random-weight models built once per session."""

from __future__ import annotations

import os

# Read by transformers / huggingface_hub at import time, so it must come before any import of them.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
