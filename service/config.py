"""Settings: the only module that reads the environment (prefix ``CHUNKSERVE_``).

Every field's description is also its ``chunkserve serve --help`` text; a command-line flag overrides its
environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.base import Task
from service.inference.model_entry import ModelEntry, split_models
from service.security.credentials import SigningAlgorithm, load_api_keys, load_jwt_verification
from service.security.verify import JwtKey, JwtPolicy, check_cors, is_loopback_host

DEFAULT_MODEL_ID = "all-MiniLM-L6-v2"


class Settings(BaseSettings):
    """Everything chunkserve can be told, from flags, ``CHUNKSERVE_*`` variables or a ``.env`` file."""

    # hide_input_in_errors: a refused setting must not print the secrets next to it.
    model_config = SettingsConfigDict(
        env_prefix="CHUNKSERVE_", env_file=".env", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    host: str = Field(default="127.0.0.1", description="Address to bind. Use 0.0.0.0 to expose the server.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to bind (0 picks a free one).")
    models: Annotated[list[ModelEntry], NoDecode] = Field(
        default_factory=list,
        description=(
            "Models to serve, comma-separated ID=PATH[:TASK] (task: embedding|classification|rerank|generation, "
            f"inferred when omitted). Empty: the packaged {DEFAULT_MODEL_ID}. The flag --model may be repeated."
        ),
    )
    device: str = Field(
        default="auto",
        description="Where models run: auto (CUDA when available, else CPU), cpu, cuda, cuda:N.",
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto", description="Model precision: auto means fp16/bf16 on CUDA and fp32 on CPU."
    )
    backend: Literal["torch", "openvino"] = Field(
        default="torch",
        description=(
            "What runs the encoder models (embedding, classification, rerank) on CPU: torch, or openvino (converted "
            "once, cached, checked against torch at start; CPU only, float32, or bf16 with dtype bfloat16). Generation "
            "always runs on torch."
        ),
    )
    backend_cache: Path = Field(
        default=Path("~/.cache/chunkserve/openvino"),
        description="Where the openvino backend keeps converted models, keyed by the model's files and versions.",
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Intra-op threads for torch on CPU. Unset: one per usable core (CPU affinity), at most 4.",
    )
    max_batch_size: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description=(
            "Most inputs in one model call; unset: chosen from the machine (service/inference/machine.py): 8 on a "
            "CPU with fewer than 8 usable cores (small length-sorted batches are fastest there), 16 from 8 cores, "
            "64 on a GPU."
        ),
    )
    max_wait_ms: float | None = Field(
        default=None,
        ge=0,
        le=10_000,
        description=(
            "How long the first queued input may wait for batch-mates before the batch runs; unset: 0 on CPU "
            "(batches still form while the model is busy), 2 on a GPU."
        ),
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
    batch_overhead_tokens: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description=(
            "What one more model call costs, in padded tokens; the batcher cuts each length-sorted window where that "
            "is cheapest (smaller batches where lengths jump). Unset: measured at start-up for each model."
        ),
    )
    generation_max_running: int = Field(
        default=16, ge=1, le=4096, description="Sequences a generation model decodes together (continuous batching)."
    )
    generation_step_tokens: int = Field(
        default=4096,
        ge=1,
        description="Prompt tokens prefilled in one generation step (joining requests beyond it wait a step).",
    )
    generation_kv_tokens: int = Field(
        default=65536,
        ge=1,
        description="KV-cache budget per generation model, in tokens reserved (prompt + max_tokens per sequence).",
    )
    generation_max_queue: int = Field(
        default=256, ge=1, description="Generation requests that may wait per model; beyond it 503 + Retry-After."
    )
    generation_max_tokens: int = Field(
        default=256, ge=1, description="Tokens generated when a request names no max_tokens."
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
    cors_methods: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["GET", "POST"], description="Comma-separated HTTP methods allowed from those origins."
    )
    cors_headers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["Authorization", "Content-Type", "X-Request-ID"],
        description="Comma-separated request headers allowed from those origins.",
    )
    cors_allow_credentials: bool = Field(
        default=False, description="Let browsers send cookies/credentials cross-origin (never with origin *)."
    )
    auth_mode: Literal["none", "api-key", "jwt"] = Field(
        default="none",
        description=(
            "How callers authenticate: none (refused on a non-loopback host unless --insecure), "
            "api-key (Authorization: Bearer KEY) or jwt (Authorization: Bearer JWT)."
        ),
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated API keys, each KEY or NAME:KEY, at least 16 characters (environment only).",
    )
    api_key_file: Path | None = Field(
        default=None, description="File of API keys, one KEY or NAME:KEY per line (# comments), added to api_keys."
    )
    jwt_secret: SecretStr | None = Field(
        default=None, description="HMAC secret (>= 32 bytes) that JWTs are signed with, HS256 (environment only)."
    )
    jwt_public_key: str | None = Field(
        default=None,
        description="PEM public key, or the path of a PEM file, that JWTs are verified with (RSA: RS256, EC: ES256).",
    )
    jwt_algorithm: SigningAlgorithm | None = Field(
        default=None,
        description="The one JWT algorithm accepted. Unset: HS256 for a secret, RS256 or ES256/384/512 for a key.",
    )
    jwt_audience: str | None = Field(default=None, description="Required aud claim of JWTs (unchecked when unset).")
    jwt_issuer: str | None = Field(default=None, description="Required iss claim of JWTs (unchecked when unset).")
    jwt_leeway_s: float = Field(default=10.0, ge=0, le=300, description="Clock skew allowed on exp and nbf.")
    auth_metrics: bool = Field(
        default=False, description="Require credentials on /metrics too (/health and /ready stay open)."
    )
    insecure: bool = Field(
        default=False, description="Allow auth_mode none on a non-loopback host (only behind an authenticating proxy)."
    )
    rate_limit_per_s: float = Field(
        default=0.0,
        ge=0,
        description="Requests per second per caller (key, token sub, or address with auth none); 0: no limit.",
    )
    rate_limit_burst: int = Field(default=20, ge=1, description="Requests a caller may send at once above the rate.")
    max_jobs_per_caller: int = Field(
        default=32,
        ge=0,
        description="Jobs (/v1/process, its stream, WebSocket jobs) one caller may run at once; 0: no limit; 429 over.",
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest request body, in bytes (413, before it is read)."
    )
    max_ws_message_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Largest WebSocket message, in bytes."
    )
    job_window: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Chunk calls one job runs at once; the next starts as a result is taken (bounds memory per job).",
    )
    max_job_result_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024,
        description="Bytes of results one job may hold; past it its remaining chunks fail with result_budget.",
    )
    max_header_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest request line plus headers, in bytes (431 over it)."
    )
    max_headers: int = Field(default=100, ge=8, description="Most request headers (431 over it).")
    header_timeout_s: float = Field(
        default=30.0, gt=0, le=3600, description="Time a client has to send a request's line and headers (408)."
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Grace a client has to send its request body, on top of the body_min_bytes_per_s floor (408).",
    )
    body_min_bytes_per_s: int = Field(
        default=8192, ge=1, description="Slowest average rate a request body may arrive at after the grace (408)."
    )
    timeout_keep_alive_s: int = Field(
        default=75,
        ge=1,
        le=3600,
        description=(
            "How long an idle keep-alive connection stays open. Keep it above any proxy's or client's idle "
            "timeout (about 60 s for reverse proxies), or a reused connection may be closed under a request."
        ),
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        default="info", description="Log level of chunkserve and uvicorn."
    )
    hf_progress_bars: bool = Field(
        default=False,
        description="Show the Hugging Face libraries' own progress bars while a model loads (off: logs stay clean).",
    )
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description=(
            "Logs as one JSON object per line (json) or as plain text for people (text); auto: text when stderr "
            "is a terminal, JSON otherwise (pipes, files, containers)."
        ),
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
        return split_models(value)

    @field_validator("remote_allowlist", "cors_origins", "cors_methods", "cors_headers", "api_keys", mode="before")
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
        self._check_backend()
        if self.max_batch_size is not None and self.batch_window < self.max_batch_size:
            raise ValueError(
                f"batch_window ({self.batch_window}) must be >= max_batch_size ({self.max_batch_size}); "
                "raise CHUNKSERVE_BATCH_WINDOW or lower CHUNKSERVE_MAX_BATCH_SIZE"
            )
        return self

    def _check_backend(self) -> None:
        """Refuse, before anything loads, what the openvino backend cannot do (the loader checks inferred tasks)."""
        if self.backend == "torch":
            return
        generators = [m.id for m in self.models if m.task is Task.GENERATION]
        if generators:
            raise ValueError(
                f"backend openvino serves encoders only; {', '.join(generators)} is a generation model: use "
                "backend torch (CHUNKSERVE_BACKEND / --backend)"
            )
        if self.dtype == "float16":
            raise ValueError(
                "backend openvino runs float32 or bfloat16; set dtype auto, float32 or bfloat16, not float16"
            )
        if self.device.startswith("cuda"):
            raise ValueError(f"backend openvino runs on the CPU; set device cpu or auto, not {self.device}")

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        if self.auth_mode == "none" and not self.insecure and not is_loopback_host(self.host):
            raise ValueError(
                f"refusing to serve on {self.host} without authentication: anyone who can reach it could run the "
                "models and make it call URLs. Set CHUNKSERVE_AUTH_MODE=api-key or jwt, or pass --insecure "
                "(CHUNKSERVE_INSECURE=true) if a proxy in front of it authenticates callers"
            )
        if self.auth_mode == "api-key":
            self.api_key_table()
        elif self.auth_mode == "jwt":
            self.jwt_verification()
        check_cors(self.cors_origins, self.cors_methods, self.cors_headers, self.cors_allow_credentials)
        return self

    def api_key_table(self) -> dict[str, str]:
        """The API keys, from CHUNKSERVE_API_KEYS and the keys file, by name.

        Raises:
            ValueError: no keys, an unreadable file, or a bad key (the message never shows a key).
        """
        return load_api_keys((key.get_secret_value() for key in self.api_keys), self.api_key_file)

    def jwt_verification(self) -> tuple[JwtKey, JwtPolicy]:
        """The key and the policy JWTs are checked against.

        Raises:
            ValueError: neither or both of a secret and a public key, or one that does not fit the algorithm.
        """
        return load_jwt_verification(
            None if self.jwt_secret is None else self.jwt_secret.get_secret_value(),
            self.jwt_public_key,
            self.jwt_algorithm,
            audience=self.jwt_audience,
            issuer=self.jwt_issuer,
            leeway_s=self.jwt_leeway_s,
        )

    def model_entries(self) -> list[ModelEntry]:
        """The configured models, or the packaged default when none is configured."""
        return list(self.models) or [ModelEntry(id=DEFAULT_MODEL_ID, path=None, task=Task.EMBEDDING)]


def chunkserve_environment() -> dict[str, str]:
    """The ``CHUNKSERVE_*`` variables set here, to hand on to processes elsewhere (Ray replicas and workers)."""
    return {name: value for name, value in os.environ.items() if name.startswith("CHUNKSERVE_")}
