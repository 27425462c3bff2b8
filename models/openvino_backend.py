"""OpenVINO as the forward pass of an encoder: converted once from the torch module, cached, checked against torch.

Only the forward pass moves: tokenization, padding, pooling and normalisation stay the torch path's own code
(``HFModel.predict``), so the two backends differ in the arithmetic of the encoder alone. The conversion is
OpenVINO's own ``convert_model`` on the loaded torch module (no optimum-intel: its pins on transformers would
fight ours, and its pipelines would replace the tokenization and pooling this project already has).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import torch
import transformers

from models._hf import HFModel
from models.base import LoadRefused

# Bump when the conversion below changes what it writes, so old cache entries are not reused.
_FORMAT = "2"
IR_FILE = "model.xml"
MIN_COSINE = 0.9999
# Texts of very different lengths, so the probe batch is padded (the padding path is checked too), plus one as
# long as the model takes (``use_openvino``).
_PROBE = (
    "hi",
    "the service answered every request in time",
    "a longer text about a movie that was good, the food that was bad and the server that kept streaming tokens "
    "to the client while it classified, embedded and ranked each document it was given",
)
_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

log = logging.getLogger(__name__)


class BackendMismatch(LoadRefused):
    """The converted model disagrees with torch on the probe: serving it would change the answers."""


@dataclass(frozen=True, slots=True)
class OpenVINOOptions:
    """Where converted models are cached and how many threads one inference may use (None: OpenVINO's choice)."""

    cache_dir: Path
    threads: int | None = None
    precision: str = "f32"  # OpenVINO's inference precision: "f32", or "bf16" (AMX / AVX-512 BF16 CPUs)


class OpenVINOForward:
    """A compiled OpenVINO model called like the torch module: keyword tensors in, outputs as attributes out."""

    def __init__(self, compiled: ov.CompiledModel, input_names: Sequence[str]) -> None:
        self._request = compiled.create_infer_request()
        self._inputs = tuple(input_names)
        # A port may carry several names (the traced one, "316", beside "last_hidden_state"): expose them all.
        self._outputs = [(sorted(port.get_names()), port) for port in compiled.outputs]

    def __call__(self, **inputs: torch.Tensor) -> Any:
        """Run one padded batch; the outputs are fresh torch tensors (``share_outputs`` off: the next call reuses
        the request's buffers, and /embed_all results keep views of the hidden states)."""
        feed = {name: inputs[name].numpy() for name in self._inputs}
        result = self._request.infer(feed, share_inputs=True, share_outputs=False)
        values = {}
        for names, port in self._outputs:
            tensor = torch.from_numpy(np.asarray(result[port]))
            values.update(dict.fromkeys(names, tensor))
        return _Outputs(values)


class _Outputs:
    """``output.last_hidden_state`` / ``output.logits``, as the ``_results`` of each model reads them."""

    def __init__(self, values: dict[str, torch.Tensor]) -> None:
        self.__dict__.update(values)


def use_openvino(model: HFModel, root: Path, options: OpenVINOOptions) -> Path:
    """Make ``model`` run its forward pass on OpenVINO (converting, or reusing the cached IR); return the IR's path.

    Raises:
        BackendMismatch: OpenVINO's outputs on the probe are further from torch's than ``MIN_COSINE``.
        RuntimeError: OpenVINO could not convert or compile the model.
    """
    # torch's answers first: tracing a module for export has been seen to change what that module computes after
    # (torch.onnx.export, on padded batches), so the reference must not come from a module that was just traced.
    # A full-length input too: the short ones are then mostly padding, where a wrong attention mask would show.
    # Each text alone as well: a faulty build (OpenVINO 2025.0 with this torch) gave NaN for some shapes only.
    probe = model.encode([*_PROBE, " ".join(["hello"] * model.max_input_tokens)])
    batches = [probe, *([enc] for enc in probe)]
    expected = [result for batch in batches for result in model.predict(batch)]
    names = [name for name in _INPUT_NAMES if name != "token_type_ids" or model.uses_token_types]
    ir = cached_ir(model.torch_module, root, model.task.value, names, options.cache_dir)
    forward = OpenVINOForward(compile_ir(ir, options.threads, options.precision), names)
    model.use_forward(forward, backend="openvino", dtype="bfloat16" if options.precision == "bf16" else None)
    model.warm_up()  # as in service, the probe then runs after other shapes did (buffers reused, not fresh)
    cosine = min_cosine(expected, [result for batch in batches for result in model.predict(batch)])
    if not cosine >= MIN_COSINE:  # NaN included
        raise BackendMismatch(
            f"model {model.name!r}: OpenVINO disagrees with torch on the start-up probe (lowest cosine "
            f"{cosine:.6f}, at least {MIN_COSINE} needed); refusing to serve it with backend openvino. Serve it with "
            f"backend torch, or delete the cached conversion {ir.parent} to convert it again"
        )
    model.release_torch_module()
    return ir


def cache_key(root: Path, task: str, input_names: Sequence[str]) -> str:
    """A hash of the model directory's files and of every version the converted graph depends on."""
    digest = hashlib.sha256()
    for part in (_FORMAT, task, ",".join(input_names), ov.__version__, transformers.__version__, torch.__version__):
        digest.update(part.encode() + b"\0")
    for path in sorted(p for p in root.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:32]


def cached_ir(module: torch.nn.Module, root: Path, task: str, input_names: Sequence[str], cache_dir: Path) -> Path:
    """The IR of ``module`` under ``cache_dir``, converted now only when no earlier start left one.

    Raises:
        LoadRefused: ``cache_dir`` cannot be written.
        RuntimeError: the conversion failed.
    """
    target = cache_dir.expanduser() / cache_key(root, task, input_names)
    ir = target / IR_FILE
    if ir.is_file():
        log.info("OpenVINO: reusing the converted model %s", ir)
        return ir
    started = time.perf_counter()
    # Convert into a scratch directory and rename it into place: a crash or a second process converting the same
    # model at the same time never leaves a half-written entry where the next start would look.
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    except OSError as exc:
        raise LoadRefused(
            f"the backend cache {target.parent} cannot be written ({exc}); set backend_cache to a writable directory"
        ) from None
    try:
        # save_model halves weights to fp16 by default; keep them float32, the numbers torch computes with.
        ov.save_model(convert(module, input_names), str(scratch / IR_FILE), compress_to_fp16=False)
        try:
            os.rename(scratch, target)
        except OSError:
            if not ir.is_file():  # not a concurrent conversion that won the race
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("OpenVINO: converted the model in %.1f s, cached as %s", time.perf_counter() - started, ir)
    return ir


def convert(module: torch.nn.Module, input_names: Sequence[str]) -> ov.Model:
    """Trace ``module`` with a small example batch, batch and sequence dimensions left dynamic.

    Raises:
        RuntimeError: OpenVINO could not convert it.
    """
    example = {name: torch.ones((2, 8), dtype=torch.long) for name in input_names}
    if "token_type_ids" in example:
        example["token_type_ids"] = torch.zeros((2, 8), dtype=torch.long)
    shapes = [(name, ov.PartialShape([-1, -1]), ov.Type.i64) for name in input_names]
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracing warns about every data-dependent branch it freezes
            return ov.convert_model(module, example_input=example, input=shapes)
    except Exception as exc:  # the converter raises its own exception types for unsupported operations
        raise RuntimeError(f"OpenVINO could not convert the model: {exc}") from exc


def compile_ir(ir: Path, threads: int | None, precision: str = "f32") -> ov.CompiledModel:
    """Compile the IR for this CPU: ``precision`` (f32 or bf16), one stream, ``threads`` threads per inference."""
    config: dict[str, Any] = {
        # The engine runs one batch at a time on one thread, so one request must use every core: LATENCY gives a
        # single stream; THROUGHPUT would split the cores into streams that only parallel requests could fill.
        "PERFORMANCE_HINT": "LATENCY",
        # On CPUs with AMX or AVX-512 BF16 OpenVINO runs in bf16 unless told otherwise: faster, but not the
        # model's numbers, so only when dtype bfloat16 asks for it (and the start-up check still has the last word).
        "INFERENCE_PRECISION_HINT": precision,
    }
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    return _core().compile_model(str(ir), "CPU", config)


@functools.cache
def _core() -> ov.Core:
    # One Core per process, as OpenVINO advises: each Core loads its own CPU plugin and thread arenas, and several of
    # them being torn down at interpreter exit is the prime suspect of a rare crash after a test run had passed.
    return ov.Core()


def min_cosine(expected: Sequence[Any], actual: Sequence[Any]) -> float:
    """The lowest cosine between matching results: vectors per input, or the batch's scores as one vector."""
    pairs = [(_vector(e), _vector(a)) for e, a in zip(expected, actual, strict=True)]
    if all(e.size == 1 for e, _ in pairs):  # one score per input (rerank): compare the batch's scores
        pairs = [(np.concatenate([e for e, _ in pairs]), np.concatenate([a for _, a in pairs]))]
    # numpy's min, not Python's: NaN must win (min(1.0, nan) is 1.0), or a NaN output would pass the check.
    return float(np.min([_cosine(e, a) for e, a in pairs]))


def _vector(result: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
    raw = getattr(result, "logits", None)  # a Classification: its logits, in label order
    values = list(raw.values()) if isinstance(raw, dict) else result
    return np.asarray(values, dtype=np.float64).ravel()


def _cosine(a: np.ndarray[Any, np.dtype[np.float64]], b: np.ndarray[Any, np.dtype[np.float64]]) -> float:
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norms == 0.0:
        return 1.0 if not a.any() and not b.any() else 0.0
    return float(np.dot(a, b) / norms)
