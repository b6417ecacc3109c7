"""Settings from the environment, with the original design's names kept."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import msgspec

from ledger import errors, tenancy

VARIABLES: Final = frozenset(
    {
        "DATABASE_URL",
        "LISTEN_DATABASE_URL",
        "MIGRATE_DATABASE_URL",
        "READ_DATABASE_URL",
        "SERVER_HOST",
        "SERVER_PORT",
        "API_SHUTDOWN_GRACE_SECONDS",
        "WORKER_COUNT",
        "WORKER_METRICS_PORT",
        "WORKER_SHUTDOWN_GRACE_SECONDS",
        "WORKER_LEASE_SECONDS",
        "WORKER_POLL_SECONDS",
        "WORKER_RESERVE_SLOTS",
        "WORKER_QUIET_BULK_LIMIT",
        "WORKER_QUIET_BULK_PAUSE_SECONDS",
        "FEED_POLL_SECONDS",
        "LEDGER_HANDLERS",
        "JWT_SECRET",
        "JWT_PUBLIC_KEY",
        "JWT_ALGORITHMS",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "JWT_LEEWAY_SECONDS",
        "JWT_TENANT_CLAIM",
        "TENANCY",
        "METRICS_TENANT_LABEL",
        "MAX_BODY_BYTES",
        "MAX_HEADER_BYTES",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "LEDGER_DATA_DIR",
        "LEDGER_PG_PORT",
        "LEDGER_PG_USER",
        "STORAGE_ROOT",
        "LEDGER_AUDIT_KEY",
        "AUDIT_CHECKPOINT_INTERVAL_SECONDS",
        "AUDIT_INTEGRATE_INTERVAL_SECONDS",
        "WEBHOOK_ALLOWED_NETWORKS",
        "WEBHOOK_SECRET",
        "WEBHOOK_TIMEOUT_SECONDS",
    }
)
"""Every environment variable the service reads (a test holds this list, the code and the README equal)."""

LOG_FORMATS: Final = ("auto", "json", "text")
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None = None
    listen_database_url: str | None = None
    migrate_database_url: str | None = None
    # A streaming replica for the API's reads that may lag (feed, stats); never writes or claims.
    read_database_url: str | None = None
    server_host: str = "127.0.0.1"
    server_port: int = 8080
    api_shutdown_grace_seconds: int = 30  # at SIGTERM, how long requests in flight may run on
    worker_count: int = 5
    jwt_secret: str | None = None
    log_level: str = "info"
    log_format: str = "auto"
    worker_metrics_port: int = 9464
    worker_shutdown_grace_seconds: float = 30.0
    worker_lease_seconds: float = 30.0
    worker_poll_seconds: float = 10.0
    # Slots a worker keeps for quiet tenants (None: one per 100 slots; workers.pool).
    worker_reserve_slots: int | None = None
    # While quiet work runs in the reserve: the bulk claim's most jobs a round (0: no
    # limit) and its pause before each round (workers.pool).
    worker_quiet_bulk_limit: int = 32
    worker_quiet_bulk_pause_seconds: float = 0.002
    feed_poll_seconds: float = 5.0  # the live feed's poll behind LISTEN/NOTIFY
    handler_modules: tuple[str, ...] = ()
    data_dir: Path = Path(".ledger")
    pg_port: int = 55432
    storage_root: Path | None = None
    audit_key: Path | None = None
    audit_checkpoint_interval_seconds: int = 3600
    audit_integrate_interval_seconds: float = 5.0  # new events into the stored tree (0: never)
    jwt_public_key: str | None = None  # PEM text, or a path to a PEM file
    jwt_algorithms: tuple[str, ...] = ()  # empty: HS256 with a secret, RS256/ES256 with a key
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: float = 30.0
    max_body_bytes: int = 1024 * 1024
    max_header_bytes: int = 32 * 1024
    # optional: a token without the tenant claim acts in `default`; required: it is refused.
    tenancy_mode: tenancy.Mode = "optional"
    jwt_tenant_claim: str = "tenant"
    metrics_tenant_label: bool = False  # /metrics: the queue gauges by tenant too
    # Webhooks (issue #19): CIDRs a webhook may be sent to though not public (SSRF guard),
    # the secret that signs jobs' own webhooks, and an attempt's total time limit.
    webhook_allowed_networks: str | None = None
    webhook_secret: str | None = None
    webhook_timeout_seconds: float = 15.0

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def storage(self) -> Path:
        return self.storage_root or self.data_dir / "storage"

    @property
    def audit_key_path(self) -> Path:
        """The Ed25519 key that signs audit checkpoints: a file, never in the database."""
        return self.audit_key or self.data_dir / "audit-ed25519.pem"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise errors.ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise errors.ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value >= minimum or value == float("inf"):
        raise errors.ConfigError(f"{name} must be a finite number ≥ {minimum:g}, got {raw!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise errors.ConfigError(f"{name} must be 1 or 0 (true/false, yes/no, on/off), got {raw!r}")


def _tenancy(env: Mapping[str, str]) -> tenancy.Mode:
    raw = (env.get("TENANCY") or "optional").strip().lower()
    for mode in tenancy.MODES:
        if raw == mode:
            return mode
    raise errors.ConfigError(f"TENANCY must be one of {', '.join(tenancy.MODES)}, got {raw!r}")


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings; empty variables count as unset."""
    env = os.environ if env is None else env

    def text(name: str) -> str | None:
        value = env.get(name)
        return value or None

    storage = text("STORAGE_ROOT")
    audit_key = text("LEDGER_AUDIT_KEY")
    settings = Settings(
        database_url=text("DATABASE_URL"),
        listen_database_url=text("LISTEN_DATABASE_URL"),
        migrate_database_url=text("MIGRATE_DATABASE_URL"),
        read_database_url=text("READ_DATABASE_URL"),
        server_host=text("SERVER_HOST") or "127.0.0.1",
        server_port=_int(env, "SERVER_PORT", 8080),
        api_shutdown_grace_seconds=_int(env, "API_SHUTDOWN_GRACE_SECONDS", 30),
        worker_count=_int(env, "WORKER_COUNT", 5),
        jwt_secret=text("JWT_SECRET"),
        log_level=(text("LOG_LEVEL") or "info").lower(),
        log_format=(text("LOG_FORMAT") or "auto").lower(),
        worker_metrics_port=_int(env, "WORKER_METRICS_PORT", 9464),
        worker_shutdown_grace_seconds=_float(
            env, "WORKER_SHUTDOWN_GRACE_SECONDS", 30.0, minimum=0.0
        ),
        worker_lease_seconds=_float(env, "WORKER_LEASE_SECONDS", 30.0, minimum=0.5),
        worker_poll_seconds=_float(env, "WORKER_POLL_SECONDS", 10.0, minimum=0.05),
        worker_reserve_slots=(
            _int(env, "WORKER_RESERVE_SLOTS", 0) if text("WORKER_RESERVE_SLOTS") else None
        ),
        worker_quiet_bulk_limit=_int(env, "WORKER_QUIET_BULK_LIMIT", 32),
        worker_quiet_bulk_pause_seconds=_float(
            env, "WORKER_QUIET_BULK_PAUSE_SECONDS", 0.002, minimum=0.0
        ),
        feed_poll_seconds=_float(env, "FEED_POLL_SECONDS", 5.0, minimum=0.05),
        handler_modules=tuple(
            name.strip() for name in (text("LEDGER_HANDLERS") or "").split(",") if name.strip()
        ),
        data_dir=Path(text("LEDGER_DATA_DIR") or ".ledger"),
        pg_port=_int(env, "LEDGER_PG_PORT", 55432),
        storage_root=Path(storage) if storage else None,
        audit_key=Path(audit_key) if audit_key else None,
        audit_checkpoint_interval_seconds=_int(env, "AUDIT_CHECKPOINT_INTERVAL_SECONDS", 3600),
        audit_integrate_interval_seconds=_float(
            env, "AUDIT_INTEGRATE_INTERVAL_SECONDS", 5.0, minimum=0.0
        ),
        jwt_public_key=text("JWT_PUBLIC_KEY"),
        jwt_algorithms=tuple(
            a.strip() for a in (text("JWT_ALGORITHMS") or "").split(",") if a.strip()
        ),
        jwt_issuer=text("JWT_ISSUER"),
        jwt_audience=text("JWT_AUDIENCE"),
        jwt_leeway_seconds=float(_int(env, "JWT_LEEWAY_SECONDS", 30)),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", 1024 * 1024),
        max_header_bytes=_int(env, "MAX_HEADER_BYTES", 32 * 1024),
        tenancy_mode=_tenancy(env),
        jwt_tenant_claim=text("JWT_TENANT_CLAIM") or "tenant",
        metrics_tenant_label=_bool(env, "METRICS_TENANT_LABEL", False),
        webhook_allowed_networks=text("WEBHOOK_ALLOWED_NETWORKS"),
        webhook_secret=text("WEBHOOK_SECRET"),
        webhook_timeout_seconds=_float(env, "WEBHOOK_TIMEOUT_SECONDS", 15.0, minimum=0.1),
    )
    if settings.audit_checkpoint_interval_seconds < 0:
        raise errors.ConfigError("AUDIT_CHECKPOINT_INTERVAL_SECONDS must be 0 (off) or more")
    if settings.api_shutdown_grace_seconds < 0:
        raise errors.ConfigError("API_SHUTDOWN_GRACE_SECONDS must be 0 or more")
    if settings.worker_count < 0:
        raise errors.ConfigError("WORKER_COUNT must be 0 or more")
    if settings.worker_reserve_slots is not None and settings.worker_reserve_slots < 0:
        raise errors.ConfigError("WORKER_RESERVE_SLOTS must be 0 or more")
    if settings.worker_quiet_bulk_limit < 0:
        raise errors.ConfigError("WORKER_QUIET_BULK_LIMIT must be 0 (no limit) or more")
    if settings.max_body_bytes < 1:
        raise errors.ConfigError("MAX_BODY_BYTES must be 1 or more")
    if settings.max_header_bytes < 1024:
        raise errors.ConfigError("MAX_HEADER_BYTES must be 1024 or more")
    if settings.log_level not in ("debug", "info", "warning", "error", "critical"):
        raise errors.ConfigError(f"LOG_LEVEL {settings.log_level!r} is not a log level")
    if settings.log_format not in LOG_FORMATS:
        raise errors.ConfigError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
    if not 0 <= settings.worker_metrics_port <= 65535:
        raise errors.ConfigError("WORKER_METRICS_PORT must be a port number (0: no metrics server)")
    if settings.webhook_secret is not None and not settings.webhook_secret.startswith("whsec_"):
        raise errors.ConfigError("WEBHOOK_SECRET must be a whsec_<base64> secret")
    return settings
