"""The one place where configuration is read.

Every setting comes from an environment variable (or a ``.env`` file in the working
directory) with the same name in upper case. docs/configuration.md lists them all with their
defaults, generated from this class (``wa-dev config-docs``): every field needs a description. With no ``DATABASE_URL`` and no ``REDIS_URL`` the service runs on
its embedded default: a SQLite file under ``WA_DATA_DIR`` and an in-process cache.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Meta's documented maximum webhook payload (WhatsApp webhooks overview: "up to 3 MB").
META_MAX_PAYLOAD_BYTES = 3 * 1024 * 1024


class Settings(BaseSettings):
    """Service settings, read once per process from the environment.

    Secrets are :class:`pydantic.SecretStr` so they never appear in ``repr`` or logs.
    """

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True)

    # --- logging -------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="Log level; at INFO and above no line carries secrets, bodies or phone numbers."
    )
    log_format: Literal["text", "json"] = Field(default="text", description="text for people, json (one object per line: time, level, logger, message, extras such as request_id) for shipping.")

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _case_insensitive(cls, value: object, info) -> object:
        if isinstance(value, str):
            return value.upper() if info.field_name == "log_level" else value.lower()
        return value

    # --- storage -------------------------------------------------------------------
    data_dir: Path = Field(
        default=Path("var"),
        validation_alias="WA_DATA_DIR",
        description="Folder of the embedded default: SQLite file, dagster_home/, media/, logs/ of `up` (relative to the working directory).",
    )
    database_url: str | None = Field(
        default=None,
        description="postgresql://user@host:port/db for production; unset = SQLite file in WA_DATA_DIR.",
    )
    redis_url: str | None = Field(default=None, description="redis://host:port/db for the onboarding cache and the rate-limit counters (best effort); unset = in-process.")

    # --- Meta app ------------------------------------------------------------------
    meta_app_id: str | None = Field(
        default=None, validation_alias="META_APP_ID",
        description="The Meta app's App ID; `up` without it runs the local Graph emulator.",
    )
    meta_config_id: str | None = Field(default=None, description="The Embedded Signup configuration id (Facebook Login for Business → Configurations).")
    meta_app_secret: SecretStr | None = Field(
        default=None, description="Meta app secret, the HMAC key of X-Hub-Signature-256; unset = the receiver answers 503 (`up` uses a demo secret)."
    )
    meta_app_secret_previous: SecretStr | None = Field(
        default=None, description="The app secret before a rotation: still verifies webhooks during the grace period."
    )
    meta_app_secret_previous_until: datetime | None = Field(
        default=None,
        description="End of the rotation's grace period (ISO-8601 instant, UTC when no offset): after it the previous secret verifies nothing.",
    )
    meta_webhook_verify_token: SecretStr | None = Field(default=None, description="Token of Meta's hub.verify_token handshake; unset = 503.")
    meta_app_access_token: SecretStr | None = Field(default=None, description="App token for debug_token; unset = META_APP_ID|META_APP_SECRET.")
    meta_webhook_callback_url: str | None = Field(
        default=None,
        description="The public Callback URL set in the Meta App Dashboard (https://your-host/api/v1/whatsapp/webhook); "
        "`wa-onboarding doctor` round-trips to it. Unset: the doctor uses the URL Meta has on file.",
    )
    token_encryption_key: SecretStr | None = Field(
        default=None, description="64 hex characters (32 bytes) encrypting business tokens; required: the receiver refuses to start without it."
    )
    graph_api_base_url: str = Field(
        default="https://graph.facebook.com", description="Graph API host; surrounding blanks are stripped, a control character is refused at start-up."
    )
    graph_api_version: str = Field(default="v25.0", description="Graph API version (stripped; a control character is refused at start-up).")
    sentry_dsn: SecretStr | None = Field(default=None, description="Alerts also go to Sentry as events when set (alerts only, no global error capture).")

    # --- receiver ------------------------------------------------------------------
    webhook_max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=META_MAX_PAYLOAD_BYTES,
        description="Largest accepted webhook body in bytes; at least Meta's 3 MB.",
    )
    webhook_body_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Longest time to read one request body once its headers are in (seconds; every route under `wa-onboarding serve`, the webhook route under any server); a slower client gets 408 (Meta redelivers).",
    )
    webhook_max_concurrent_bodies: int = Field(
        default=256,
        ge=1,
        description="Webhook bodies read at once per receiver process; past that a delivery gets 503 at once (Meta redelivers).",
    )
    http_header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Longest time a client may take to send one request's headers (seconds; `wa-onboarding serve`); then 408 and the connection is closed.",
    )
    db_pool_size: int = Field(default=4, ge=1, description=(
        "Receiver connections per worker (Postgres), which is also how many landing commits run at once; "
        "deliveries beyond that share the next commit (LANDING_BATCH_MAX_ROWS)."))
    db_timeout_seconds: float = Field(
        default=5.0, gt=0, description="How long the receiver waits for the database (connection, pool, SQLite lock) before answering 503 (seconds)."
    )
    landing_batch_max_rows: int = Field(default=100, ge=1, description=(
        "Postgres: most deliveries one landing commit carries. Deliveries that arrive while every pooled connection is busy share "
        "the next commit (group commit); each still gets its 200 only after its own row is committed. 1 turns grouping off."))
    landing_batch_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1, description=(
        "Postgres: most body bytes one landing commit carries (a single delivery is never refused for it)."))

    # --- processing ----------------------------------------------------------------
    processing_batch_size: int = Field(default=1000, ge=1, le=5000, description="Webhook rows claimed and applied set-based per batch.")
    processing_max_attempts: int = Field(default=5, ge=1, description="Attempts before a webhook row is dead.")
    processing_retry_base_seconds: float = Field(default=30.0, gt=0, description="First retry delay (seconds); doubles per attempt, jittered to 50-100 %.")
    processing_retry_max_seconds: float = Field(default=3600.0, gt=0, description="Cap on one retry delay (seconds).")
    processing_lease_seconds: float = Field(
        default=300.0, gt=0, description="A claimed row whose run died is claimable again after this long."
    )
    processing_run_max_seconds: float = Field(
        default=300.0,
        gt=0,
        description="A processing run rolls over after this long: it stops claiming and the sensor's next run of its shard takes over.",
    )
    processing_idle_exit_seconds: float | None = Field(
        default=None,
        ge=0,
        description="Unset: a sensor-launched run stays alive while idle until its rollover; a number: it ends after that long idle (and the sensor starts one only when rows wait). Manual runs drain and end.",
    )
    processing_poll_seconds: float = Field(
        default=0.2, gt=0, description="Idle poll interval of a run no notification can wake (SQLite checks for a change this often)."
    )
    processing_listen_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Postgres: an idle run woken by LISTEN/NOTIFY still claims this often (retries due, leases expired, a lost notification).",
    )
    processing_rollover_lead_seconds: float = Field(
        default=60.0,
        gt=0,
        description="The sensor starts a shard's next run this long before the current run's PROCESSING_RUN_MAX_SECONDS is up.",
    )
    landing_notify: bool = Field(
        default=True,
        description="Postgres: the receiver sends NOTIFY wa_webhook_landed with each landing so idle processing runs wake at once.",
    )
    processing_org_webhooks_per_minute: int = Field(
        default=0,
        ge=0,
        description="Opt-in cap per organization: webhook rows claimed per rolling minute, across all runs; 0 = no cap.",
    )
    processing_org_max_in_flight: int = Field(
        default=0, ge=0, description="Opt-in cap per organization: webhook rows leased at once, across all runs; 0 = no cap."
    )
    processing_shards: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Processing shards: one long-lived run per shard, each owning the organization lanes whose stable hash maps to it; every claimer must use the same value.",
    )

    # --- operations: alerts, checks, Dagster storage ------------------------------
    slack_webhook_url: SecretStr | None = Field(
        default=None, description="Slack incoming-webhook URL; alerts are posted there when set."
    )
    alert_environment: str = Field(default="production", description="Environment name sent with alerts (Sentry, Slack); production (or prod) adds the production start-up warnings; `up` sets demo.")
    alert_repeat_seconds: float = Field(
        default=3600.0, ge=0, description="An open alert with the same kind and key is re-sent at most this often."
    )
    check_dead_letters_max: int = Field(
        default=0, ge=0, description="Asset check dead_letters_24h: dead-letter webhooks received in the last 24 h above this fail."
    )
    check_backlog_max_age_seconds: float = Field(
        default=600.0, gt=0, description="Asset check backlog_age: the oldest claimable webhook may wait at most this long (seconds)."
    )
    check_parked_max_age_seconds: float = Field(
        default=3600.0, gt=0, description="Asset check parked_items_age: edits/revokes parked for a missing original longer than this (seconds) fail."
    )
    dagster_run_retention_days: float = Field(
        default=30.0, gt=0, le=36500, description="Finished Dagster runs (and their event logs and captured output) older than this are deleted daily by purge_dagster_runs."
    )

    # --- inbound media (Meta, WhatsApp Cloud API "Media") --------------------------------------------
    media_storage_url: str | None = Field(
        default=None,
        description="Where media files go: file:///path or s3://bucket/prefix (fsspec); unset = WA_DATA_DIR/media on local disk.",
    )
    media_s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (MinIO, R2, moto…); unset = AWS.")
    media_s3_access_key_id: SecretStr | None = Field(default=None, description="S3 access key id; unset = the usual AWS credential chain.")
    media_s3_secret_access_key: SecretStr | None = Field(default=None, description="S3 secret access key.")
    media_s3_region: str | None = Field(default=None, description="S3 region name, if the endpoint needs one.")
    media_max_bytes: int = Field(
        default=100 * 1024 * 1024, ge=1, description="Largest media file downloaded (bytes); Meta's inbound cap is 100 MB (§9.2); larger ones are failed."
    )
    media_download_concurrency: int = Field(default=4, ge=1, le=64, description="Media files downloaded at once by one download run.")
    media_max_attempts: int = Field(default=6, ge=1, description="Download attempts of one media file before it is failed.")
    media_retry_base_seconds: float = Field(default=30.0, gt=0, description="First media retry delay (seconds); doubles per attempt, at most 1 h.")

    # --- retention and admin -------------------------------------------------------------
    retention_days: float = Field(
        default=30.0, gt=0, description="Bodies of processed webhooks older than this many days are removed daily (the rows are kept)."
    )
    event_retention_days: float = Field(
        default=30.0, gt=0, description="Events of the event feed (and push delivery attempts) older than this many days are purged daily."
    )

    # --- event push (Standard Webhooks) ---------------------------------------------------
    event_push_timeout_seconds: float = Field(default=10.0, gt=0, le=120, description="Timeout of one push request to an organization's endpoint.")
    event_push_batch_size: int = Field(default=100, ge=1, le=1000, description="Events per push request at most (one when caught up, more when behind).")
    event_push_retry_base_seconds: float = Field(default=5.0, gt=0, description="First retry delay after a failed push (seconds); base × 2^(failures−1), capped by EVENT_PUSH_RETRY_MAX_SECONDS.")
    event_push_retry_max_seconds: float = Field(default=21600.0, gt=0, description="Longest delay between two push attempts (6 h).")
    event_push_retry_window_hours: float = Field(default=72.0, gt=0, description="An endpoint failing for this long (3 days) is disabled.")
    event_push_disable_after_failures: int = Field(
        default=30, ge=1, description="An endpoint is disabled (with an alert) after this many consecutive failed attempts."
    )
    event_push_concurrency: int = Field(default=8, ge=1, le=64, description="Endpoints delivered to in parallel by the delivery run.")
    event_push_run_max_seconds: float = Field(default=3600.0, gt=0, description="A delivery run hands over to the next one after this long.")
    event_push_idle_poll_seconds: float = Field(default=5.0, gt=0, description="An idle delivery run looks for due retries this often.")
    event_push_keep_alive: bool = Field(
        default=False,
        description="Keep one deliver_events run alive even while no organization has an enabled push endpoint, so the very first "
        "endpoint set gets its first push within about a second (one more process, ~150 MB, on an idle stack); false (default): "
        "a run only while some endpoint is enabled, so the first push after enabling the first one waits for the sensor tick "
        "(about 5 s) plus a run launch (about 5-10 s); once a run is up every push is woken at once by the commit.",
    )
    # --- receiver: rejected deliveries, admin API, API docs, metrics, CORS -----------
    webhook_rejection_retention_days: float = Field(
        default=14.0, gt=0, description="Records of rejected webhook deliveries (bad signature, too large) older than this many days are deleted daily."
    )
    webhook_rejections_recorded_per_minute: int = Field(
        default=120, ge=0, le=100_000,
        description="Per receiver process: rejected deliveries recorded one by one per minute; past it they are counted in aggregate rows.",
    )
    webhook_rejection_alert_per_minute: int = Field(
        default=60, ge=1, description="Per receiver process: rejected deliveries in one minute that raise the webhook_rejections alert.",
    )
    admin_api_token: SecretStr | None = Field(
        default=None, description="Bearer token of the admin API (/api/admin/...); unset = admin API disabled (503)."
    )

    api_docs: Literal["on", "admin", "off"] = Field(
        default="off",
        description="/docs, /redoc and /openapi.json (local assets): on = public, admin = ADMIN_API_TOKEN bearer required (401 without, 403 wrong), off = 404 (`up` sets on).",
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="Bearer token required by GET /metrics when set (401 without, 403 wrong); unset = /metrics is public (the demo)."
    )

    cors_allowed_origins: str = Field(
        default="", description="Comma-separated origins of the web app allowed to call the API from a browser; empty = none."
    )

    # --- rate limits -------------------------------------------------------------------
    webhook_bad_signature_limit: str = Field(
        default="1000/minute",
        description="Per IP: webhook deliveries failing the signature check before 429. Rate limits are one `N/second`, `/minute`, "
        "`/hour` or `/day` (`limits` notation, also `N per M minutes`); a malformed one is refused at start-up.",
    )
    api_ip_limit: str = Field(default="300/minute", description="Per IP: calls to the web app's API (a rate limit, as above).")
    api_org_limit: str = Field(default="100/minute", description="Per organization: calls to the web app's API (a rate limit, as above).")
    rate_limit_prefix: str = Field(default="wa", description="Key prefix of the rate-limit counters in Redis.")

    # --- onboarding (Embedded Signup) and the web app's API ---------------------------
    token_encryption_previous_keys: SecretStr | None = Field(
        default=None, description="Comma-separated older TOKEN_ENCRYPTION_KEY values that still decrypt (rotation)."
    )
    jwt_secret: SecretStr | None = Field(default=None, description="HS256 secret of the SaaS's bearer JWTs.")
    jwt_public_key: str | None = Field(default=None, description="PEM public key of the SaaS's JWTs (RS256/ES256).")
    jwt_algorithms: str = Field(default="HS256", description="Accepted JWT algorithms, comma separated.")
    jwt_org_claim: str = Field(default="org_id", description="JWT claim holding the organization's external id.")
    jwt_audience: str | None = Field(default=None, description="Required JWT audience, if set; in production start-up warns when it is unset.")
    jwt_issuer: str | None = Field(default=None, description="Required JWT issuer, if set.")
    onboarding_ttl_seconds: int = Field(default=86400, ge=60, description="Life of an onboarding tracking code (24 h).")
    onboarding_hosted_url: str = Field(
        default="https://business.facebook.com/messaging/whatsapp/onboard/",
        description="Meta's hosted Embedded Signup page the onboarding URL points to.",
    )
    embedded_signup_sdk_url: str = Field(
        default="https://connect.facebook.net/en_US/sdk.js", description="Facebook JavaScript SDK the onboarding page loads."
    )
    embedded_signup_message_origins: str = Field(
        default="facebook.com",
        description="Comma-separated host suffixes whose WA_EMBEDDED_SIGNUP messages the page accepts.",
    )
    history_stall_hours: float = Field(
        default=6.0,
        gt=0,
        description="A coexistence history request Meta accepted with no history webhook after this many hours is stalled (alert).",
    )
    token_expiring_soon_days: float = Field(
        default=7.0, gt=0, description="A business token expiring within this many days is reported expiring_soon."
    )
    register_pin: SecretStr | None = Field(
        default=None, description="6-digit two-step verification PIN used to register non-coexistence numbers."
    )

    @field_validator("graph_api_base_url", "graph_api_version")
    @classmethod
    def _no_control_characters(cls, value: str, info) -> str:
        value = value.strip()
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError(f"{info.field_name.upper()} contains a control character: remove it")
        return value

    @field_validator("webhook_bad_signature_limit", "api_ip_limit", "api_org_limit")
    @classmethod
    def _a_rate_limit(cls, value: str, info) -> str:
        import limits

        value = value.strip()
        try:
            if len(limits.parse_many(value)) == 1:
                return value
        except ValueError:
            pass
        raise ValueError(f"{info.field_name.upper()}={value!r} is not one rate limit such as 1000/minute (N/second, /minute, /hour or /day)")

    @field_validator("api_docs", mode="before")
    @classmethod
    def _api_docs_lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("meta_app_secret_previous_until", mode="before")
    @classmethod
    def _blank_until_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("meta_app_secret_previous_until")
    @classmethod
    def _until_is_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)

    @field_validator("database_url")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("processing_idle_exit_seconds", mode="before")
    @classmethod
    def _blank_idle_exit_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _rollover_lead_within_run(self) -> "Settings":
        if self.processing_rollover_lead_seconds >= self.processing_run_max_seconds:
            raise ValueError("PROCESSING_ROLLOVER_LEAD_SECONDS must be below PROCESSING_RUN_MAX_SECONDS")
        return self

    @field_validator("redis_url", "meta_webhook_callback_url")
    @classmethod
    def _blank_redis_is_unset(cls, value: str | None) -> str | None:
        return value or None

    # --- derived -------------------------------------------------------------------
    @property
    def is_production(self) -> bool:
        """True unless ``ALERT_ENVIRONMENT`` names another environment than ``production``
        (its default; ``up`` runs the demo with ``demo``)."""
        return self.alert_environment.strip().lower() in ("production", "prod")

    def previous_app_secret(self, now: datetime | None = None) -> str | None:
        """The previous app secret while it may still verify at ``now`` (UTC; default: now):
        ``None`` when unset or once ``META_APP_SECRET_PREVIOUS_UNTIL`` has passed."""
        previous = self.meta_app_secret_previous
        if previous is None or not previous.get_secret_value():
            return None
        until = self.meta_app_secret_previous_until
        if until is not None and (now or datetime.now(timezone.utc)) >= until:
            return None
        return previous.get_secret_value()

    def startup_warnings(self, now: datetime | None = None) -> list[str]:
        """Configuration that works but is probably a mistake, one sentence each (logged at
        start-up): a previous app secret with no end or past its end, and no ``JWT_AUDIENCE``
        in production (a JWT minted for another service of the SaaS would be accepted)."""
        now = now or datetime.now(timezone.utc)
        warnings = []
        previous = self.meta_app_secret_previous
        if previous is not None and previous.get_secret_value():
            until = self.meta_app_secret_previous_until
            if until is None:
                warnings.append(
                    "META_APP_SECRET_PREVIOUS is set without META_APP_SECRET_PREVIOUS_UNTIL: the previous app secret "
                    "verifies webhooks for as long as it is set; set the end of the grace period"
                )
            elif now >= until:
                warnings.append(
                    f"the grace period of META_APP_SECRET_PREVIOUS ended at {until.isoformat()}: deliveries signed with "
                    "the previous app secret are rejected; remove META_APP_SECRET_PREVIOUS"
                )
        if self.is_production and not self.jwt_audience:
            warnings.append(
                "JWT_AUDIENCE is not set in production: any JWT signed with the API key is accepted whatever its audience; "
                "set JWT_AUDIENCE to the audience the SaaS mints for this service"
            )
        return warnings

    @property
    def sqlite_path(self) -> Path:
        """Path of the embedded SQLite database used when ``DATABASE_URL`` is unset."""
        return self.data_dir / "wa_onboarding.sqlite3"

    @property
    def is_postgres(self) -> bool:
        """True when ``DATABASE_URL`` points at Postgres."""
        return bool(self.database_url) and self.database_url.split(":", 1)[0].startswith("postgres")

    @property
    def sync_database_url(self) -> str:
        """SQLAlchemy URL for synchronous use (psycopg 3 on Postgres, pysqlite otherwise)."""
        if not self.database_url:
            return f"sqlite:///{self.sqlite_path.resolve()}"
        scheme, rest = self.database_url.split("://", 1)
        if scheme in ("postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg2"):
            return f"postgresql+psycopg://{rest}"
        return self.database_url

    @property
    def asyncpg_dsn(self) -> str:
        """Plain ``postgresql://`` DSN for asyncpg (the receiver's driver)."""
        if not self.is_postgres:
            raise ValueError("asyncpg_dsn needs a Postgres DATABASE_URL")
        return "postgresql://" + self.database_url.split("://", 1)[1]

    @property
    def graph_api_url(self) -> str:
        """Versioned Graph API root, e.g. ``https://graph.facebook.com/v25.0``."""
        return f"{self.graph_api_base_url.rstrip('/')}/{self.graph_api_version}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide :class:`Settings` (cached; call ``get_settings.cache_clear()`` in tests)."""
    return Settings()
