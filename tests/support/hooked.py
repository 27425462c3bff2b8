"""A model loader for tests that hold generation inside the model: a hook runs before every forward pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from models.base import Model
from models.generation import GenerationModel
from models.loading import LoadOptions
from service.inference.model_entry import ModelEntry
from service.runtime import Loader, local_loader


def loader_with_forward_hook(hook: Callable[[], None]) -> Loader:
    """``local_loader`` whose generation model calls ``hook`` (on the model thread) before each forward pass.

    The hook goes in after loading and warm-up, so only the requests' passes meet it.
    """

    def loader(entry: ModelEntry, options: LoadOptions) -> Model | GenerationModel:
        model = local_loader(entry, options)
        assert isinstance(model, GenerationModel), f"{entry.id} is not a generation model"
        forward = model.module.forward

        def hooked(*args: Any, **kwargs: Any) -> Any:
            hook()
            return forward(*args, **kwargs)

        model.module.forward = hooked  # type: ignore[method-assign]
        return model

    return loader
