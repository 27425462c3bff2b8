"""Settings: the only module that reads the environment (prefix ``CHUNKSERVE_``).

Every field's description is also its ``chunkserve serve --help`` text; a command-line flag overrides its
environment variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.base import Task

DEFAULT_MODEL_ID = "all-MiniLM-L6-v2"


class ModelEntry(BaseModel):
    """One served model: its public id, a local directory and optionally the task (inferred when absent)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:/-]+$")
    path: Path | None = Field(default=None, description="Local model directory; None means the packaged default.")
    task: Task | None = None

    @classmethod
    def parse(cls, spec: str) -> ModelEntry:
        """Parse ``ID=PATH[:TASK]`` (or just ``PATH``, whose directory name becomes the id).

        Raises:
            ValueError: the spec is empty or names an unknown task.
        """
        spec = spec.strip()
        if not spec:
            raise ValueError("empty model spec; expected ID=PATH[:TASK]")
        model_id, sep, rest = spec.partition("=")
        if not sep:
            model_id, rest = "", spec
        task: Task | None = None
        head, colon, tail = rest.rpartition(":")
        if colon and tail in {t.value for t in Task}:
            rest, task = head, Task(tail)
        elif colon and "/" not in tail and tail and not Path(rest).exists():
            tasks = ", ".join(t.value for t in Task)
            raise ValueError(f"unknown task {tail!r} in model spec {spec!r}; use one of: {tasks}")
        path = Path(rest).expanduser()
        return cls(id=model_id or path.name, path=path, task=task)


def _split_models(value: object) -> object:
    if isinstance(value, str):
        return [ModelEntry.parse(part) for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        return [ModelEntry.parse(v) if isinstance(v, str) else v for v in value]
    return value


class Settings(BaseSettings):
    """Everything chunkserve can be told, from flags, ``CHUNKSERVE_*`` variables or a ``.env`` file."""

    model_config = SettingsConfigDict(env_prefix="CHUNKSERVE_", env_file=".env", extra="ignore", frozen=True)

    host: str = Field(default="127.0.0.1", description="Address to bind. Use 0.0.0.0 to expose the server.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to bind (0 picks a free one).")
    models: Annotated[list[ModelEntry], NoDecode] = Field(
        default_factory=list,
        description=(
            "Models to serve, comma-separated ID=PATH[:TASK] (task: embedding|classification, inferred when "
            f"omitted). Empty: the packaged {DEFAULT_MODEL_ID}. The flag --model may be repeated."
        ),
    )
    device: str = Field(
        default="auto",
        description="Where models run: auto (CUDA when available, else CPU), cpu, cuda, cuda:N.",
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto", description="Model precision: auto means fp16/bf16 on CUDA and fp32 on CPU."
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Intra-op threads for torch on CPU. Unset: one per core, at most 4.",
    )
    max_batch_size: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description=(
            "Most inputs in one model call; unset: 8 on CPU (small length-sorted batches are fastest there), "
            "64 on a GPU."
        ),
    )
    max_wait_ms: float = Field(
        default=2.0,
        ge=0,
        le=10_000,
        description="How long the first queued input may wait for batch-mates before the batch runs.",
    )
    max_batch_tokens: int = Field(
        default=16384,
        ge=1,
        description="Token budget of one batch, counted as longest input x batch size (padding included).",
    )
    max_queue: int = Field(
        default=2048,
        ge=1,
        description="Inputs that may wait per model; beyond it requests get 503 + Retry-After.",
    )
    batch_window: int = Field(
        default=256,
        ge=1,
        description="Queued inputs looked at together and length-sorted to cut padding (>= max batch size).",
    )
    truncate: bool = Field(
        default=True,
        description="Cut inputs longer than the model's limit (true) or refuse them with 413 (false).",
    )
    max_inputs_per_request: int = Field(
        default=2048, ge=1, description="Most inputs in one /v1/embeddings or /v1/classify call."
    )
    max_input_chars: int = Field(default=100_000, ge=1, description="Longest single input string, in characters.")
    max_text_chars: int = Field(
        default=2_000_000, ge=1, description="Longest text accepted by /v1/process, in characters."
    )
    max_chunks: int = Field(default=10_000, ge=1, description="Most chunks one text may be split into (else 413).")
    max_targets: int = Field(default=32, ge=1, description="Most targets (local and remote) in one request.")
    remote_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Comma-separated hosts, host:port or CIDRs that remote targets may reach even though they are "
            "loopback/private (everything public is allowed; private, metadata and loopback are refused)."
        ),
    )
    remote_api_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=dict,
        description="Comma-separated HOST=KEY pairs sent as Bearer tokens to remote targets on that host.",
    )
    remote_timeout_s: float = Field(default=30.0, gt=0, le=600, description="Default per-call remote timeout.")
    remote_max_timeout_s: float = Field(
        default=120.0, gt=0, le=3600, description="Largest timeout_s (and overall deadline) a request may ask for."
    )
    remote_per_host_limit: int = Field(
        default=64, ge=1, le=10_000, description="Concurrent calls per remote host (across all requests)."
    )
    remote_retries: int = Field(
        default=3, ge=1, le=10, description="Tries per chunk on connect errors, 429 and 5xx (Retry-After honoured)."
    )
    remote_max_response_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Largest remote answer read, in bytes."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated browser origins allowed to call the API and open WebSockets (none by default).",
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        default="info", description="Log level of chunkserve and uvicorn."
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="Logs as one JSON object per line (json) or as plain text for people (text)."
    )
    shutdown_timeout_s: float = Field(
        default=25.0,
        gt=0,
        le=3600,
        description=(
            "On SIGTERM, how long requests, streams and WebSocket jobs in flight may take to finish before they "
            "are cancelled. Keep it under the orchestrator's grace period (30 s in Kubernetes and Docker)."
        ),
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Server processes on one port; each loads its own copy of every model (memory x N).",
    )

    @field_validator("models", mode="before")
    @classmethod
    def _parse_models(cls, value: object) -> object:
        return _split_models(value)

    @field_validator("remote_allowlist", "cors_origins", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("remote_api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            pairs = [part.strip().partition("=") for part in value.split(",") if part.strip()]
            bad = [host for host, sep, key in pairs if not sep or not key]
            if bad:
                raise ValueError(f"expected HOST=KEY pairs; no key for: {', '.join(bad)}")
            return {host.strip().lower(): key.strip() for host, _, key in pairs}
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        ids = [m.id for m in self.models]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"model ids must be unique; repeated: {', '.join(duplicates)}")
        if self.max_batch_size is not None and self.batch_window < self.max_batch_size:
            raise ValueError(
                f"batch_window ({self.batch_window}) must be >= max_batch_size ({self.max_batch_size}); "
                "raise CHUNKSERVE_BATCH_WINDOW or lower CHUNKSERVE_MAX_BATCH_SIZE"
            )
        return self

    def model_entries(self) -> list[ModelEntry]:
        """The configured models, or the packaged default when none is configured."""
        return list(self.models) or [ModelEntry(id=DEFAULT_MODEL_ID, path=None, task=Task.EMBEDDING)]
