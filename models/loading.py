"""``load_model``: a local model directory → a warmed-up ``Model`` on the chosen device and precision."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers.utils.logging as hf_logging
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from models._hf import HFModel
from models.base import LoadRefused, Model, Task
from models.classification import ClassificationModel, RerankModel
from models.embedding import EmbeddingModel, read_pooling
from models.generation import GenerationModel

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "tokenizer.model",
)
# Tokenizers without a real limit report int(1e30); anything this large is a sentinel, not a limit.
_NO_LIMIT = 1_000_000


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model: device ("auto", "cpu", "cuda", "cuda:N"), dtype, an input cap, warm-up."""

    device: str = "auto"
    dtype: str = "auto"
    max_input_tokens: int | None = None
    warmup: bool = True
    progress_bars: bool = False  # transformers' own bars (weight loading): off, they land in logs and notebooks
    backend: str = "torch"  # what runs an encoder's forward pass: "torch" or "openvino" (CPU, float32 or bfloat16)
    backend_cache: Path = Path("~/.cache/chunkserve/openvino")  # converted models (model directories may be read-only)
    threads: int | None = None  # threads one forward pass may use on a backend other than torch (None: its choice)


def load_model(
    model_id: str,
    path: str | Path,
    task: Task | None = None,
    options: LoadOptions = LoadOptions(),
) -> Model:
    """Load the encoder (embedding, classification or rerank) in the local directory ``path``; see ``load_local``.

    Raises:
        FileNotFoundError: ``path`` does not exist or lacks config.json or weights.
        ValueError: ``path`` is not a usable encoder directory (a causal LM included), or an option cannot be honoured.
    """
    model = load_local(model_id, path, task, options)
    if isinstance(model, GenerationModel):
        raise ValueError(f"{path} holds a generation model; load it with load_local")
    return model


def load_local(
    model_id: str,
    path: str | Path,
    task: Task | None = None,
    options: LoadOptions = LoadOptions(),
) -> Model | GenerationModel:
    """Load the model in the local directory ``path`` for ``task`` (inferred from its config when None).

    Raises:
        FileNotFoundError: ``path`` does not exist or lacks config.json or weights.
        ValueError: ``path`` is not a usable model directory, or an option cannot be honoured.
    """
    with _progress_bars(options.progress_bars):
        return _load_model(model_id, check_model_dir(path), task, options)


@contextlib.contextmanager
def _progress_bars(wanted: bool) -> Iterator[None]:
    """transformers' weight-loading bar on or off (as ``wanted``) while a model loads, as it was afterwards."""
    before = hf_logging.is_progress_bar_enabled()
    if wanted == before:
        yield
        return
    _set_progress_bars(wanted)
    try:
        yield
    finally:
        _set_progress_bars(before)


def _set_progress_bars(on: bool) -> None:
    # huggingface_hub warns when its own switch is pinned by the environment; transformers' switch still moves.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if on:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
        else:
            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def _load_model(model_id: str, root: Path, task: Task | None, options: LoadOptions) -> Model | GenerationModel:
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    # openvino in bfloat16: torch loads float32 (the reference the start-up check compares against, and what is
    # converted); OpenVINO is then told to compute in bf16.
    ov_precision = "bf16" if options.backend == "openvino" and dtype == torch.bfloat16 else "f32"
    if ov_precision == "bf16":
        dtype = torch.float32
    config = _load(AutoConfig.from_pretrained, root, "config")
    task = task if task is not None else infer_task(config)
    check_backend(model_id, options.backend, task, device, dtype)
    # transformers 5 would otherwise build an empty-vocabulary tokenizer from config.json alone.
    if not any((root / name).is_file() for name in _TOKENIZER_FILES):
        raise FileNotFoundError(f"{root} has no tokenizer: expected one of {', '.join(_TOKENIZER_FILES)}")
    tokenizer = _load(AutoTokenizer.from_pretrained, root, "tokenizer")
    max_tokens = input_limit(root, tokenizer, config, options.max_input_tokens)
    model: HFModel | GenerationModel
    if task is Task.GENERATION:
        decoder: PreTrainedModel = _load(AutoModelForCausalLM.from_pretrained, root, "model")
        model = GenerationModel(model_id, tokenizer, _place(decoder, device, dtype), max_input_tokens=max_tokens)
    elif task is Task.RERANK:
        if config.architectures and not _is_classifier(config):
            raise ValueError(f"{root} holds {config.architectures}, not a cross-encoder (sequence classifier)")
        scorer: PreTrainedModel = _load(AutoModelForSequenceClassification.from_pretrained, root, "model")
        model = RerankModel(model_id, tokenizer, _place(scorer, device, dtype), max_input_tokens=max_tokens)
    elif task is Task.CLASSIFICATION:
        if config.architectures and not _is_classifier(config):
            raise ValueError(
                f"{root} holds {config.architectures}, not a sequence classifier: its head would be random"
            )
        head: PreTrainedModel = _load(AutoModelForSequenceClassification.from_pretrained, root, "model")
        model = ClassificationModel(model_id, tokenizer, _place(head, device, dtype), max_input_tokens=max_tokens)
    else:
        pooling = read_pooling(root)
        encoder: PreTrainedModel = _load(AutoModel.from_pretrained, root, "model")
        model = EmbeddingModel(
            model_id, tokenizer, _place(encoder, device, dtype), max_input_tokens=max_tokens, pooling=pooling
        )
    if options.backend == "openvino" and isinstance(model, HFModel):
        try:
            from models.openvino_backend import OpenVINOOptions, use_openvino  # imports openvino: only when asked for
        except ImportError as exc:
            raise ValueError(f"backend openvino needs OpenVINO: pip install 'chunkserve[openvino]' ({exc})") from None
        use_openvino(
            model,
            root,
            OpenVINOOptions(cache_dir=options.backend_cache, threads=options.threads, precision=ov_precision),
        )
    if options.warmup:
        model.warm_up()
    return model


BACKENDS = ("torch", "openvino")


def check_backend(model_id: str, backend: str, task: Task, device: torch.device, dtype: torch.dtype) -> None:
    """Refuse a backend that cannot serve this model here, before its weights load.

    Raises:
        LoadRefused: an unknown backend, or openvino for a generation model, on a GPU or in float16.
    """
    if backend not in BACKENDS:
        raise LoadRefused(f"unknown backend {backend!r}: use {' or '.join(BACKENDS)}")
    if backend == "torch":
        return
    if task is Task.GENERATION:
        raise LoadRefused(
            f"model {model_id!r} is a generation model, and backend {backend} serves encoders only (embedding, "
            "classification, rerank); serve it with backend torch"
        )
    if device.type != "cpu":
        raise LoadRefused(
            f"backend {backend} runs on the CPU; model {model_id!r} would load on {device} (set device cpu)"
        )
    if dtype not in (torch.float32, torch.bfloat16):
        dtype_name = str(dtype).removeprefix("torch.")
        raise LoadRefused(
            f"backend {backend} runs float32 or bfloat16; model {model_id!r} asks for {dtype_name} (set dtype "
            "float32, bfloat16 or auto)"
        )


def check_model_dir(path: str | Path) -> Path:
    """``path`` as an absolute Path, once it is known to hold a config and weights.

    Raises:
        FileNotFoundError: it does not exist, or lacks config.json or a weights file.
        ValueError: it is not a directory.
    """
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise FileNotFoundError(f"model directory {root} does not exist (models load from local directories only)")
    if not root.is_dir():
        raise LoadRefused(f"model path {root} is a file; give the directory that holds config.json")
    if not (root / "config.json").is_file():
        raise FileNotFoundError(f"{root} is not a model directory: it has no config.json")
    if not any((root / name).is_file() for name in _WEIGHT_FILES):
        raise FileNotFoundError(f"{root} has no weights: expected one of {', '.join(_WEIGHT_FILES)}")
    return root


def infer_task(config: PretrainedConfig) -> Task:
    """Generation for a ``...ForCausalLM``/``...LMHeadModel`` architecture; for a ``...ForSequenceClassification``
    one, rerank with one output (a cross-encoder), else classification; embedding for anything else."""
    if any(arch.endswith(("ForCausalLM", "LMHeadModel")) for arch in config.architectures or []):
        return Task.GENERATION
    if not _is_classifier(config):
        return Task.EMBEDDING
    return Task.RERANK if int(getattr(config, "num_labels", 0) or 0) == 1 else Task.CLASSIFICATION


def resolve_device(spec: str) -> torch.device:
    """The torch device for "auto", "cpu", "cuda" or "cuda:N".

    Raises:
        ValueError: the spec is unknown, or names a CUDA device this machine does not have.
    """
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise LoadRefused(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise LoadRefused(f"unsupported device {spec!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise LoadRefused(f"device {spec!r} asked for, but CUDA is not available here; use cpu or auto")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise LoadRefused(f"device {spec!r} asked for, but this machine has {count} CUDA device(s)")
    return device


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    """The precision for "auto" (bf16 or fp16 on CUDA, fp32 on CPU) or an explicit name.

    Raises:
        ValueError: the name is unknown, or float16 is asked for on CPU.
    """
    if spec == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if spec not in _DTYPES:
        raise LoadRefused(f"unknown dtype {spec!r}: use auto, {', '.join(_DTYPES)}")
    if spec == "float16" and device.type == "cpu":
        raise LoadRefused("float16 is not supported on cpu (slow and lossy there); use float32 or bfloat16")
    return _DTYPES[spec]


def input_limit(root: Path, tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig, requested: int | None) -> int:
    """The most tokens one input may have: the model's own limit, or ``requested`` when that is lower.

    Raises:
        ValueError: ``requested`` is not positive or exceeds the model's limit, or no limit is known.
    """
    if requested is not None and requested < 1:
        raise LoadRefused(f"max_input_tokens must be positive, got {requested}")
    candidates: list[int] = []
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        candidates.append(positions)
    st_limit = _sentence_transformers_limit(root)
    if st_limit is not None:
        candidates.append(st_limit)
    else:
        tokenizer_limit = tokenizer.model_max_length
        if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < _NO_LIMIT:
            candidates.append(tokenizer_limit)
    if not candidates:
        if requested is None:
            raise LoadRefused(f"{root} states no input limit; set max_input_tokens explicitly")
        return requested
    limit = min(candidates)
    if requested is not None and requested > limit:
        raise LoadRefused(
            f"max_input_tokens={requested} is above the model's limit of {limit} tokens ({root}); "
            f"it may only be lowered"
        )
    return requested if requested is not None else limit


def _sentence_transformers_limit(root: Path) -> int | None:
    st_config = root / "sentence_bert_config.json"
    if not st_config.is_file():
        return None
    value = json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length")
    return value if isinstance(value, int) and value > 0 else None


def _is_classifier(config: PretrainedConfig) -> bool:
    return any("ForSequenceClassification" in arch for arch in config.architectures or [])


def _place(module: PreTrainedModel, device: torch.device, dtype: torch.dtype) -> PreTrainedModel:
    """Move to ``device`` in ``dtype`` for inference."""
    # Cast explicitly: transformers 5 otherwise keeps whatever dtype the checkpoint was saved in.
    # (transformers' decorator on ``to`` hides its signature from mypy; it moves the module in place.)
    module.to(device=device, dtype=dtype)  # type: ignore[call-arg]
    torch.nn.Module.eval(module)
    return module


def _load(loader: Any, root: Path, what: str) -> Any:
    """Call a ``from_pretrained`` offline, naming the directory when it fails.

    Raises:
        ValueError: transformers could not load ``what`` from ``root``.
    """
    try:
        return loader(str(root), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise LoadRefused(f"could not load the {what} from {root}: {exc}") from exc
