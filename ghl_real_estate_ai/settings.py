"""The one settings class of the service.

Every environment variable the service reads is a field of :class:`Settings`,
declared once here with its meaning, format and default in the field's
docstring, and listed again in the README's configuration table.

Precedence, highest first: keyword arguments given to ``Settings(...)``, the
process environment, a ``.env`` file in the working directory, the defaults
below. With no variable set at all, the service runs in its *embedded*
mode: SQLite under ``./data/``, the in-process cache, the built-in GHL
sandbox and the local trace store.

Nothing is read at import time: build one with ``Settings()`` (or
:func:`load_settings`, which turns a validation error into one readable line).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ghl_real_estate_ai.errors import ConfigurationError

if TYPE_CHECKING:
    from ghl_real_estate_ai.observability.config import TracingConfig

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    """Configuration read from arguments, the environment and ``.env``."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        use_attribute_docstrings=True,
    )

    # --- service -----------------------------------------------------------
    environment: Literal["development", "test", "staging", "production"] = "development"
    """ENVIRONMENT: deployment environment; `production` refuses unsafe defaults
    (unsigned webhooks, open admin endpoints). Also the `deployment.environment`
    resource attribute of every span."""

    data_dir: Path = Path("./data")
    """DATA_DIR: folder for the embedded SQLite database and the local trace store."""

    log_level: str = "INFO"
    """LOG_LEVEL: root log level (DEBUG, INFO, WARNING, ERROR)."""

    log_format: Literal["json", "console"] = "json"
    """LOG_FORMAT: `json` (one object per line, with trace_id/span_id) or `console`."""

    admin_token: str | None = None
    """ADMIN_TOKEN: bearer token for admin and trace-viewer endpoints. Unset: they
    are open in the embedded mode and refused in production."""

    # --- storage and cache -------------------------------------------------
    database_url: str = "sqlite:///./data/jorge.db"
    """DATABASE_URL: `sqlite:///path/to.db` (embedded) or
    `postgresql://user:pass@host:5432/db` (production, through asyncpg)."""

    database_pool_size: int = Field(default=10, ge=1, le=200)
    """DATABASE_POOL_SIZE: maximum PostgreSQL connections per process."""

    redis_url: str | None = None
    """REDIS_URL: `redis://host:6379/0` for a cache and locks shared across
    replicas. Unset: an in-process cache and in-process locks."""

    # --- GHL -----------------------------------------------------------------
    ghl_base_url: str | None = None
    """GHL_BASE_URL: GHL API base, e.g. `https://services.leadconnectorhq.com`.
    Unset: the built-in GHL sandbox served by this app at `/sandbox/ghl`."""

    ghl_api_key: str | None = None
    """GHL_API_KEY: private integration token or OAuth access token (Bearer).
    Required when GHL_BASE_URL is set."""

    ghl_location_id: str = "sandbox-location"
    """GHL_LOCATION_ID: the sub-account (location) the bots work for."""

    ghl_calendar_id: str = "sandbox-calendar"
    """GHL_CALENDAR_ID: calendar used for CMA appointments and showings."""

    ghl_webhook_public_key: str | None = None
    """GHL_WEBHOOK_PUBLIC_KEY: GHL's Ed25519 public key (PEM) for `X-GHL-Signature`."""

    ghl_webhook_rsa_public_key: str | None = None
    """GHL_WEBHOOK_RSA_PUBLIC_KEY: GHL's RSA public key (PEM) for the legacy `X-WH-Signature`."""

    ghl_webhook_hmac_secret: str | None = None
    """GHL_WEBHOOK_HMAC_SECRET: shared secret for HMAC-SHA256 signed custom workflow webhooks."""

    allow_unsigned_webhooks: bool | None = None
    """ALLOW_UNSIGNED_WEBHOOKS: accept webhooks without a signature. Unset: allowed
    except when ENVIRONMENT=production, where setting it true stops start-up."""

    webhook_max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    """WEBHOOK_MAX_BODY_BYTES: larger webhook bodies are answered 413."""

    ghl_rate_limit_per_10s: int = Field(default=100, ge=1)
    """GHL_RATE_LIMIT_PER_10S: GHL API requests allowed per location per 10 s."""

    sandbox_latency_ms: float = Field(default=0.0, ge=0)
    """SANDBOX_LATENCY_MS: delay the GHL sandbox adds to every answer."""

    sandbox_failure_rate: float = Field(default=0.0, ge=0, le=1)
    """SANDBOX_FAILURE_RATE: share of GHL sandbox calls answered 503 (0-1)."""

    # --- bots ----------------------------------------------------------------
    comps_csv_path: Path | None = None
    """COMPS_CSV_PATH: comparable sales CSV for CMAs (your MLS export). Unset: the
    bundled, clearly labelled sample data."""

    mortgage_rate: float = Field(default=0.07, gt=0, lt=1)
    """MORTGAGE_RATE: annual rate used for buyer affordability (0.07 = 7 %)."""

    llm_provider: Literal["none", "anthropic", "openai"] = "none"
    """LLM_PROVIDER: `none` (templates), `anthropic` or `openai` (OpenAI-compatible)."""

    llm_model: str | None = None
    """LLM_MODEL: model name for the LLM provider."""

    llm_api_key: str | None = None
    """LLM_API_KEY: API key for the LLM provider."""

    llm_base_url: str | None = None
    """LLM_BASE_URL: base URL for an OpenAI-compatible provider."""

    followup_poll_seconds: float = Field(default=30.0, gt=0)
    """FOLLOWUP_POLL_SECONDS: how often the in-app worker looks for due follow-ups
    and undelivered outbox items."""

    # --- tracing -------------------------------------------------------------
    otel_enabled: bool = True
    """OTEL_ENABLED: turn tracing on. The embedded default writes spans to the local
    trace store."""

    otel_sdk_disabled: bool = False
    """OTEL_SDK_DISABLED: the standard OpenTelemetry kill switch; true wins over OTEL_ENABLED."""

    otel_service_name: str = "enterprisehub"
    """OTEL_SERVICE_NAME: `service.name` of every span."""

    otel_exporter_type: str = "local"
    """OTEL_EXPORTER_TYPE: comma list of `otlp` (gRPC), `otlp_http`, `console`,
    `local` (SQLite trace store), `none`."""

    otel_endpoint: str | None = None
    """OTEL_ENDPOINT: OTLP endpoint; `http://` is plaintext, `https://` TLS. Falls back
    to OTEL_EXPORTER_OTLP_ENDPOINT, then localhost:4317 (gRPC) or :4318 (HTTP)."""

    otel_exporter_otlp_endpoint: str | None = None
    """OTEL_EXPORTER_OTLP_ENDPOINT: the standard OTLP endpoint variable."""

    otel_exporter_otlp_headers: str | None = None
    """OTEL_EXPORTER_OTLP_HEADERS: `key=value,key2=value2` headers sent with OTLP exports."""

    honeycomb_api_key: str | None = None
    """HONEYCOMB_API_KEY: sent as the `x-honeycomb-team` OTLP header."""

    otel_traces_sampler: str | None = None
    """OTEL_TRACES_SAMPLER: standard sampler name (`parentbased_traceidratio`,
    `traceidratio`, `always_on`, `always_off`, `parentbased_always_on`, ...)."""

    otel_traces_sampler_arg: float | None = Field(default=None, ge=0, le=1)
    """OTEL_TRACES_SAMPLER_ARG: sampling ratio 0-1 for the ratio samplers."""

    otel_bsp_max_queue_size: int = Field(default=2048, ge=1)
    """OTEL_BSP_MAX_QUEUE_SIZE: finished spans each exporter keeps while its backend is
    slow or down; spans beyond it are dropped and counted, never waited for."""

    otel_bsp_schedule_delay: float = Field(default=1000.0, gt=0)
    """OTEL_BSP_SCHEDULE_DELAY: milliseconds between two exports of queued spans."""

    otel_bsp_max_export_batch_size: int = Field(default=512, ge=1)
    """OTEL_BSP_MAX_EXPORT_BATCH_SIZE: spans per export call (capped at the queue size)."""

    otel_exporter_otlp_timeout: float = Field(default=3000.0, gt=0)
    """OTEL_EXPORTER_OTLP_TIMEOUT: milliseconds one OTLP export may take, retries included."""

    otel_capture_content: bool = False
    """OTEL_CAPTURE_CONTENT: let message text, phone numbers and e-mail addresses into
    spans and logs. Off: they are redacted for every exporter."""

    trace_store_path: Path | None = None
    """TRACE_STORE_PATH: SQLite file of the local trace store. Unset: DATA_DIR/traces.db."""

    trace_store_max_spans: int = Field(default=200_000, ge=100)
    """TRACE_STORE_MAX_SPANS: the local trace store keeps at most this many spans."""

    trace_store_max_age_hours: float = Field(default=72.0, gt=0)
    """TRACE_STORE_MAX_AGE_HOURS: spans older than this are dropped from the local store."""

    trace_store_process: bool = True
    """TRACE_STORE_PROCESS: write the local trace store from a process of its own, started and
    stopped with the app, so its inserts never compete with the app for the GIL; ``false``
    writes it from a thread of the app."""

    otlp_export_process: bool = False
    """OTLP_EXPORT_PROCESS: send the OTLP spans from a process of their own, started and
    stopped with the app (redaction, encoding and the network calls leave the app's process);
    ``false`` sends them from a thread of the app."""

    # --- SLOs (jorge slo, alert rules) --------------------------------------
    slo_p95_latency_ms: float = Field(default=2000.0, gt=0)
    """SLO_P95_LATENCY_MS: P95 latency threshold per node and per bot."""

    slo_handoff_failure_rate: float = Field(default=0.05, ge=0, le=1)
    """SLO_HANDOFF_FAILURE_RATE: highest acceptable share of failed handoffs."""

    slo_trace_error_rate: float = Field(default=0.02, ge=0, le=1)
    """SLO_TRACE_ERROR_RATE: highest acceptable share of traces with an error."""

    # --- issue 14: performance --------------------------------------------
    database_trace_statements: bool = False
    """DATABASE_TRACE_STATEMENTS: besides the one span per store operation, trace every
    SQL statement on its own (its text with placeholders, never values). For debugging:
    it multiplies the database spans of a webhook."""

    redis_trace_commands: bool = False
    """REDIS_TRACE_COMMANDS: besides the one ``cache.get``/``cache.set`` span per cache
    operation, trace every Redis command the cache sends (for debugging)."""

    # --- issue 13: reliability ------------------------------------------------
    outbox_max_age_hours: float = Field(default=24.0, gt=0)
    """OUTBOX_MAX_AGE_HOURS: how long an outbound GHL action keeps being retried through a GHL
    outage (capped exponential backoff per location, one probe at a time) before it is marked
    ``dead`` with its reason; ``jorge outbox retry`` sends dead ones again."""

    outbox_max_delay_seconds: float = Field(default=300.0, gt=0)
    """OUTBOX_MAX_DELAY_SECONDS: the longest wait between two probes of a failing GHL location."""

    outbox_owner_timeout_seconds: float = Field(default=20.0, gt=0)
    """OUTBOX_OWNER_TIMEOUT_SECONDS: a process whose outbox heartbeat is older than this is taken
    for dead; the items it was sending are read back from GHL and finished by a live one."""

    contact_order_window_ms: float = Field(default=300.0, ge=0, le=10_000)
    """CONTACT_ORDER_WINDOW_MS: how long after it was written (``dateAdded``) a message waits
    before the bots take it (never longer than this after it arrived; an older one goes at
    once), so that a message of the same contact written just before it but stored a moment
    later (another replica) is answered first. 0 answers at once, in arrival order."""

    webhook_stuck_after_seconds: float = Field(default=30.0, gt=0)
    """WEBHOOK_STUCK_AFTER_SECONDS: an event left ``processing`` this long (its process died
    mid-turn) is taken over by the worker; outbound actions stay once-only by their keys."""

    # --- issue 11: /metrics and /dashboard ------------------------------------
    metrics_token: str | None = None
    """METRICS_TOKEN: when set, `GET /metrics` needs `Authorization: Bearer <token>`
    (Prometheus' `authorization` scrape setting). Unset: `/metrics` is open; it holds
    counts and latencies only, no contact data."""

    @field_validator("database_url")
    @classmethod
    def _known_database_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError(
                f"unsupported scheme in {value!r}: use sqlite:///path.db or postgresql://user@host/db"
            )
        return value

    @property
    def tracing_on(self) -> bool:
        """False when tracing is off for good (OTEL_ENABLED=false or OTEL_SDK_DISABLED=true)."""
        return self.otel_enabled and not self.otel_sdk_disabled

    @property
    def embedded(self) -> bool:
        """True when the GHL sandbox stands in for GHL (no GHL_BASE_URL)."""
        return self.ghl_base_url is None

    @property
    def unsigned_webhooks_allowed(self) -> bool:
        """Whether webhooks without a signature are accepted."""
        if self.allow_unsigned_webhooks is None:
            return self.environment != "production"
        return self.allow_unsigned_webhooks

    @property
    def protect_admin_endpoints(self) -> bool:
        """Whether admin and trace-viewer endpoints require ``ADMIN_TOKEN``.

        They are open only in the embedded mode (GHL sandbox) outside production
        with no token configured.
        """
        return self.admin_token is not None or self.environment == "production" or not self.embedded

    @property
    def resolved_trace_store_path(self) -> Path:
        """Where the local trace store lives."""
        return self.trace_store_path or self.data_dir / "traces.db"

    def tracing_config(self) -> TracingConfig:
        """The tracing library's configuration built from these settings (issue 12).

        The library reads no settings of its own accord; the app hands it this. A service
        name nobody set is left to OTEL_RESOURCE_ATTRIBUTES, as the library does.
        """
        import ghl_real_estate_ai
        from ghl_real_estate_ai.observability.config import TracingConfig

        explicit = self.model_fields_set
        # ENVIRONMENT's default gives way to a deployment.environment in OTEL_RESOURCE_ATTRIBUTES.
        resource_env = "deployment.environment=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
        return TracingConfig(
            enabled=self.otel_enabled,
            sdk_disabled=self.otel_sdk_disabled,
            service_name=self.otel_service_name if "otel_service_name" in explicit else None,
            service_version=ghl_real_estate_ai.__version__,
            environment=None if resource_env and "environment" not in explicit else self.environment,
            exporter_type=self.otel_exporter_type,
            endpoint=self.otel_endpoint,
            otlp_endpoint=self.otel_exporter_otlp_endpoint,
            otlp_headers=self.otel_exporter_otlp_headers,
            otlp_timeout_ms=self.otel_exporter_otlp_timeout,
            honeycomb_api_key=self.honeycomb_api_key,
            traces_sampler=self.otel_traces_sampler,
            traces_sampler_arg=self.otel_traces_sampler_arg,
            bsp_max_queue_size=self.otel_bsp_max_queue_size,
            bsp_schedule_delay_ms=self.otel_bsp_schedule_delay,
            bsp_max_export_batch_size=self.otel_bsp_max_export_batch_size,
            capture_content=self.otel_capture_content,
            trace_store_path=self.resolved_trace_store_path,
            trace_store_max_spans=self.trace_store_max_spans,
            trace_store_max_age_hours=self.trace_store_max_age_hours,
            trace_store_process=self.trace_store_process,
            otlp_export_process=self.otlp_export_process,
        )

    def check_production_safety(self) -> None:
        """Refuse settings that are unsafe in production.

        Raises:
            ConfigurationError: naming the variable and the fix.
        """
        if self.environment != "production":
            return
        if self.allow_unsigned_webhooks:
            raise ConfigurationError(
                "ALLOW_UNSIGNED_WEBHOOKS=true is refused when ENVIRONMENT=production: "
                "set GHL_WEBHOOK_PUBLIC_KEY (or GHL_WEBHOOK_RSA_PUBLIC_KEY / GHL_WEBHOOK_HMAC_SECRET)"
            )
        if not (
            self.ghl_webhook_public_key or self.ghl_webhook_rsa_public_key or self.ghl_webhook_hmac_secret
        ):
            raise ConfigurationError(
                "ENVIRONMENT=production refuses unsigned webhooks and no key is set: set "
                "GHL_WEBHOOK_PUBLIC_KEY (or GHL_WEBHOOK_RSA_PUBLIC_KEY / GHL_WEBHOOK_HMAC_SECRET)"
            )
        if self.ghl_base_url is None:
            raise ConfigurationError(
                "ENVIRONMENT=production cannot run on the GHL sandbox: set GHL_BASE_URL "
                "(https://services.leadconnectorhq.com) and GHL_API_KEY"
            )
        if not self.ghl_api_key:
            raise ConfigurationError("GHL_BASE_URL is set but GHL_API_KEY is not: set GHL_API_KEY")


def load_settings(**overrides: object) -> Settings:
    """Build :class:`Settings`, turning validation errors into one clear line.

    Args:
        **overrides: field values that win over the environment.

    Returns:
        The settings.

    Raises:
        ConfigurationError: a variable has a bad value; the message names it.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]).upper()
            problems.append(f"{name}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None
