"""Settings of the scoring service: what it serves, where it keeps jobs, and its limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from evalsuite.cache import default_cache_path

MIB = 1024 * 1024
DEFAULT_METRICS = ("bertscore", "toxicity", "pii")


def default_data_dir() -> Path:
    """``<evalsuite cache dir>/service``: job inputs, outputs and the jobs database.

    Follows the score cache's folder (``EVALSUITE_CACHE_DIR`` overrides it).
    """
    return default_cache_path().parent / "service"


def _default_metrics() -> dict[str, dict[str, Any]]:
    return {name: {} for name in DEFAULT_METRICS}


class ServiceSettings(BaseModel):
    """Everything ``create_app`` needs; ``evalsuite serve`` builds it from its options.

    >>> ServiceSettings(metrics={"toxicity": {}}).max_records_per_request
    1000
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"  # loopback unless the operator exposes it on purpose
    port: int = Field(default=8080, ge=0, le=65535)
    metrics: dict[str, dict[str, Any]] = Field(default_factory=_default_metrics, min_length=1)
    api_keys_file: Path | None = None  # None: no authentication (the server warns at start)
    data_dir: Path = Field(default_factory=default_data_dir)
    allowed_paths: tuple[Path, ...] = ()  # server-side files that POST /v1/jobs may read
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = Field(default=64, ge=1)
    cache: bool = True
    cache_path: Path | None = None  # None: the default score cache
    warm_up: bool = True  # score one tiny record per metric at start, so models are loaded

    max_body_bytes: int = Field(default=10 * MIB, ge=1)
    max_upload_bytes: int = Field(default=512 * MIB, ge=1)  # POST /v1/jobs only
    max_records_per_request: int = Field(default=1000, ge=1)
    max_text_chars: int = Field(default=100_000, ge=1)  # per text, each reference and sample included
    request_timeout_s: float = Field(default=120.0, gt=0)  # to score; the work stops when it runs out
    read_timeout_s: float = Field(default=30.0, gt=0)  # to send a request's headers, then its body
    upload_timeout_s: float = Field(default=600.0, gt=0)  # to send the body of POST /v1/jobs
    max_pending_requests: int = Field(default=64, ge=1)  # /v1/score requests in flight before 429

    max_wait_ms: float = Field(default=5.0, ge=0)
    token_budget: int = Field(default=16_384, ge=1)  # of a merged batch, in estimated tokens
    max_batch_records: int = Field(default=256, ge=1)
