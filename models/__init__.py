"""Local Hugging Face models behind one small protocol: load, encode, predict; nothing of asyncio or HTTP.

Names are imported on first use: ``from models.base import Task`` (settings, the CLI) must not pay for importing
torch and transformers, which take seconds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.base import Classification, Encoded, LoadRefused, Model, Task
    from models.classification import ClassificationModel
    from models.embedding import EmbeddingModel, Pooling
    from models.loading import LoadOptions, load_model
    from models.packaged import DEFAULT_MODEL_ID, default_model_path

_WHERE = {
    "Classification": "models.base",
    "Encoded": "models.base",
    "LoadRefused": "models.base",
    "Model": "models.base",
    "Task": "models.base",
    "ClassificationModel": "models.classification",
    "EmbeddingModel": "models.embedding",
    "Pooling": "models.embedding",
    "LoadOptions": "models.loading",
    "load_model": "models.loading",
    "DEFAULT_MODEL_ID": "models.packaged",
    "default_model_path": "models.packaged",
}

__all__ = [
    "DEFAULT_MODEL_ID",
    "Classification",
    "ClassificationModel",
    "EmbeddingModel",
    "Encoded",
    "LoadOptions",
    "LoadRefused",
    "Model",
    "Pooling",
    "Task",
    "default_model_path",
    "load_model",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
