"""Local Hugging Face models behind one small protocol: load, encode, predict; nothing of asyncio or HTTP."""

from __future__ import annotations

from models.base import Classification, Encoded, Model, Task
from models.classification import ClassificationModel
from models.embedding import EmbeddingModel, Pooling
from models.loading import LoadOptions, load_model
from models.packaged import DEFAULT_MODEL_ID, default_model_path

__all__ = [
    "DEFAULT_MODEL_ID",
    "Classification",
    "ClassificationModel",
    "EmbeddingModel",
    "Encoded",
    "LoadOptions",
    "Model",
    "Pooling",
    "Task",
    "default_model_path",
    "load_model",
]
