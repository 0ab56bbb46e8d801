"""The one settings object: every backend choice and secret, from ``ROIML_*`` variables or ``.env``.

No other module reads the environment. Call :func:`get_settings` (cached) or build a
:class:`Settings` explicitly in tests and pass it down.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Environment", "Settings", "get_settings"]

# The range a pinned ``today`` may take: the product's data starts this century, and a world
# or a replay more than ten years past the real date is a typo, not a demo.
_EARLIEST_TODAY = date(2000, 1, 1)
_LATEST_TODAY_AHEAD = timedelta(days=3653)


def _check_today(value: date) -> date:
    """``value`` if it may be pinned as the product's today; ValueError saying why not."""
    latest = datetime.now(UTC).date() + _LATEST_TODAY_AHEAD
    if value < _EARLIEST_TODAY:
        raise ValueError(f"today {value} is before {_EARLIEST_TODAY}; give a date from then on")
    if value > latest:
        raise ValueError(
            f"today {value} is more than ten years past the real date; give one up to {latest}"
        )
    return value


class Environment(StrEnum):
    """Where the process runs; production refuses unsafe defaults."""

    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Typed configuration. Embedded defaults need no server at all."""

    model_config = SettingsConfigDict(
        env_prefix="ROIML_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    environment: Environment = Environment.DEVELOPMENT
    data_dir: Path = Field(default=Path("data"), description="Root of local files and Parquet.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default is a SQLite file under data_dir.",
    )
    redis_url: str | None = Field(
        default=None, description="Redis for the online store; None uses the embedded store."
    )
    # The API's bounds on its dependencies (docs/API.md, "Degradation"): a dead or hung one
    # costs a timeout a few times, then microseconds while its breaker is open.
    redis_connect_timeout_ms: float = Field(
        default=50, gt=0, le=10_000, description="The online read's Redis connect timeout."
    )
    redis_read_timeout_ms: float = Field(
        default=50, gt=0, le=10_000, description="The online read's Redis socket timeout."
    )
    database_connect_timeout_seconds: int = Field(
        default=2, ge=2, le=60, description="The API's PostgreSQL connect timeout (libpq: >= 2)."
    )
    database_statement_timeout_ms: int = Field(
        default=2000, ge=10, le=600_000, description="The API's bound on one SQL statement."
    )
    database_read_timeout_ms: int = Field(
        default=300, ge=10, le=600_000, description="Bound on a prediction's warm-store reads."
    )
    database_pool_timeout_seconds: float = Field(
        default=1.0, gt=0, le=60, description="The API's wait for a pooled connection."
    )
    breaker_failures: int = Field(
        default=3, ge=1, le=100, description="Consecutive failures that open a breaker."
    )
    breaker_cooldown_seconds: float = Field(
        default=1.0, gt=0, le=60, description="An open breaker's wait before its probe."
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; default is SQLite under data_dir."
    )
    mlflow_registry_uri: str | None = None
    tenant_id: str = Field(default="demo", description="Tenant used by the CLI when none given.")
    app_role: str = Field(
        default="roiml_app",
        description="PostgreSQL role the API and jobs use; row-level security applies to it.",
    )
    jwt_secret: SecretStr | None = None
    jwt_public_key: str | None = None
    jwt_algorithm: str = "HS256"
    # None only until validated: then on exactly when a key is set (see _auth_follows_the_key).
    auth_enabled: bool | None = Field(
        default=None,
        description="Require bearer tokens. Unset: on exactly when ROIML_JWT_SECRET or "
        "ROIML_JWT_PUBLIC_KEY is set; false with a key set refuses to start.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the Prometheus scraper: /metrics shows it every tenant's "
        "series (a tenant's own token sees only its own). Keep it as secret as the JWT key.",
    )
    cors_origins: list[str] = Field(default_factory=list)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="How processes log: text, a line for a person at a terminal; json, one "
        "object per line (ts, level, logger, message, request_id, extras) for a log shipper "
        "(production; the compose file sets it).",
    )
    access_log: bool = Field(
        default=True,
        description="One log line per API request on the roiml.access logger (method, route "
        "template, status, duration, request id, tenant, client); uvicorn's own access log "
        "stays off.",
    )
    today: date | None = Field(
        default=None,
        description="Pins the product's today, for demos and replays; None = the real date (UTC).",
    )
    world_chunk_users: int = Field(
        default=5000, ge=100, le=200_000, description="Users generated per chunk (bounds memory)."
    )

    # --- serving -------------------------------------------------------------------------------
    api_host: str = Field(default="127.0.0.1", description="Address `roiml serve` listens on.")
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_workers: int = Field(default=1, ge=1, le=64, description="Server processes.")
    api_batch_threads: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Threads per server process serving a batch's models side by side.",
    )
    model_poll_seconds: float = Field(
        default=30.0, gt=0, description="How often the API checks the registry's aliases."
    )
    model_load_timeout_seconds: float = Field(
        default=120.0, gt=0, le=3600, description="Bound on loading one model from the registry."
    )
    jwt_tenant_claim: str = Field(
        default="tenant_id", description="Token claim naming the tenant of every read and write."
    )
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=600)
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated proxy addresses or networks whose X-Forwarded-For / "
        "X-Forwarded-Proto the server believes; empty: none, the peer address is the client.",
    )
    rate_limit_per_minute: int = Field(
        default=60_000, ge=1, description="Requests per minute per tenant and client."
    )
    rate_limit_burst: int = Field(
        default=2_000, ge=1, description="Requests a client may send at once above the rate."
    )
    prediction_log_batch_size: int = Field(default=500, ge=1, le=100_000)
    prediction_log_flush_seconds: float = Field(default=0.5, gt=0, le=60)
    prediction_log_buffer_max_mb: int = Field(
        default=512, ge=1, description="Disk kept for predictions while the database is away."
    )
    api_max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        le=1_073_741_824,
        description="Largest request body the API reads; a larger one is a 413. A batch of "
        "1000 requests without features is ~110 kB; with every feature given, ~4 kB an item.",
    )
    api_max_extrapolation_days: int = Field(
        default=365,
        ge=0,
        le=36_500,
        description="A prediction for a day more than this many days past the day the tenant's "
        "data are fresh through is refused (422); within it, the answer says how far it "
        "extrapolates (docs/API.md, 'Extrapolation'). 0 refuses any extrapolation.",
    )

    # --- monitoring (docs/MONITORING.md: methods, defaults and why) ----------------------------
    monitoring_numeric_method: Literal["auto", "wasserstein", "psi", "ks"] = Field(
        default="auto",
        description="Drift test of numeric features; auto: KS on small samples, else Wasserstein.",
    )
    monitoring_categorical_method: Literal["auto", "psi", "chi2"] = Field(
        default="auto",
        description="Drift test of categorical features; auto: chi2 small, else PSI.",
    )
    monitoring_wasserstein_threshold: float = Field(
        default=0.1, gt=0, description="Drift when W1 / reference std exceeds it (Evidently's)."
    )
    monitoring_psi_threshold: float = Field(default=0.2, gt=0, description="Drift when PSI > it.")
    monitoring_ks_pvalue: float = Field(default=0.05, gt=0, lt=1, description="Drift when p < it.")
    monitoring_chi2_pvalue: float = Field(default=0.05, gt=0, lt=1)
    monitoring_bonferroni: bool = Field(
        default=True, description="Divide p-value thresholds by the number of features tested."
    )
    monitoring_psi_bins: int = Field(default=10, ge=2, le=100)
    monitoring_shared_threshold: float = Field(
        default=1.0,
        gt=0,
        description="A SHARED feature (one step for everyone: a rate, a month of market figures, "
        "a campaign) drifts when it moved by more than this many training-reference standard "
        "deviations against the reference.",
    )
    monitoring_mean_threshold: float = Field(
        default=0.3,
        gt=0,
        description="A feature the tenant's sends shape (rates over its emails, clocks their "
        "opens restart) drifts when its mean moved by more than this many reference standard "
        "deviations.",
    )
    monitoring_reference_days: int = Field(
        default=7,
        ge=0,
        le=90,
        description="Days of served traffic before the period that make its drift reference "
        "(0: always the training reference); the training reference is used until they hold "
        "ROIML_MONITORING_MIN_PREDICTIONS predictions.",
    )
    monitoring_small_sample_rows: int = Field(
        default=1000, ge=0, description="auto uses KS / chi2 while a side has at most this many."
    )
    monitoring_categorical_max_levels: int = Field(
        default=2, ge=0, description="A feature with at most this many values is categorical."
    )
    monitoring_drift_rules: dict[str, str] = Field(
        default_factory=dict,
        description='Per-feature method[:threshold], a JSON object: {"mortgage_rate": "psi:0.25"}.',
    )
    monitoring_decay_tolerance: float = Field(
        default=0.1, gt=0, lt=1, description="Decay when a metric is this much (relative) worse."
    )
    monitoring_min_labels: int = Field(
        default=30, ge=1, description="Labelled predictions needed before realised metrics count."
    )
    monitoring_min_predictions: int = Field(
        default=50,
        ge=1,
        description="Predictions a period needs before drift and decay are judged at all.",
    )
    monitoring_threads: int = Field(default=2, ge=1, le=64, description="Threads of drift maths.")
    monitoring_webhook_url: str | None = Field(
        default=None, description="Alerts are POSTed here as JSON; unset: database and log only."
    )
    monitoring_webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    monitoring_webhook_retries: int = Field(
        default=3, ge=0, le=10, description="Retries after a failed POST, with doubling backoff."
    )
    monitoring_webhook_backoff_seconds: float = Field(default=0.5, ge=0, le=30)

    @field_validator("tenant_id")
    @classmethod
    def _tenant_is_slug(cls, value: str) -> str:
        if not value or len(value) > 64 or not value.replace("_", "").replace("-", "").isalnum():
            raise ValueError("tenant_id must be 1-64 letters, digits, '-' or '_'")
        return value

    def current_date(self) -> date:
        """The product's today: the pinned ``today``, else the real UTC date (never the
        machine's local date)."""
        return self.today or datetime.now(UTC).date()

    @field_validator("today")
    @classmethod
    def _today_is_plausible(cls, value: date | None) -> date | None:
        return None if value is None else _check_today(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: str) -> str:
        for item in (part.strip() for part in value.split(",")):
            if not item or item == "*":
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {item!r} is not an IP address or network; give the "
                    "proxies' addresses, comma-separated (e.g. 10.0.0.5,10.1.0.0/16)"
                ) from None
        return value

    @field_validator("auth_enabled")
    @classmethod
    def _auth_not_off_beside_a_key(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        # After the key fields: an explicit false beside a key is a contradiction, not a
        # preference. A field validator rather than the model's, whose error would echo every
        # input, the secret included.
        secret = info.data.get("jwt_secret")
        has_key = bool(secret and secret.get_secret_value()) or bool(
            info.data.get("jwt_public_key")
        )
        if has_key and value is False:
            raise ValueError(
                "ROIML_AUTH_ENABLED=false but ROIML_JWT_SECRET or ROIML_JWT_PUBLIC_KEY is set: "
                "remove ROIML_AUTH_ENABLED=false (a configured key turns authentication on), or "
                "unset the key to serve without authentication (never in production)"
            )
        return value

    @model_validator(mode="after")
    def _auth_follows_the_key(self) -> Settings:
        # A key configured while auth stayed off was the audit's "silently off".
        if self.auth_enabled is None:
            self.auth_enabled = bool(
                (self.jwt_secret and self.jwt_secret.get_secret_value()) or self.jwt_public_key
            )
        return self

    @model_validator(mode="after")
    def _production_needs_keys(self) -> Settings:
        if self.environment is Environment.PRODUCTION:
            if self.jwt_secret is None and self.jwt_public_key is None:
                raise ValueError(
                    "production mode needs ROIML_JWT_SECRET or ROIML_JWT_PUBLIC_KEY; "
                    "refusing to start with authentication off"
                )
            self.auth_enabled = True
        return self

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``sqlite:///<data_dir>/roiml.db``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'roiml.db').resolve()}"

    @property
    def resolved_mlflow_tracking_uri(self) -> str:
        """The MLflow tracking URI, defaulting to a SQLite store under ``data_dir``."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    @property
    def online_store_path(self) -> Path:
        """The embedded online store's SQLite file, used when ``redis_url`` is None."""
        return self.data_dir / "online.db"

    @property
    def prediction_buffer_dir(self) -> Path:
        """Where predictions wait, on disk, while the database cannot take them."""
        return self.data_dir / "prediction-buffer"

    @property
    def world_dir(self) -> Path:
        """Where the simulated world keeps its ground truth (apart from the source tables)."""
        return self.data_dir / "world"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
