"""Settings: one typed dataclass built from the environment (SPEC §2).

Every value is checked when the settings are built, so a process with a bad
setting stops at start-up with one line naming the variable, never later with a
traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from gridlens.errors import GridLensError
from gridlens.redis_url import RedisUrlError, parse_redis_url

# Hard safety limits of SPEC §4. Configuration may lower them, never raise them.
HARD_MAX_READS_PER_SECOND: Final = 2_500
HARD_MAX_BATCH_SIZE: Final = 500
HARD_MAX_METER_COUNT: Final = 25_000
HARD_MAX_JOBS_PER_PUBLISH: Final = 200
HARD_MAX_QUEUE_DEPTH: Final = 500

SHUTDOWN_MARGIN_S: Final = 5.0  # past the grace period, before a child is killed

# Shares of the emulated fleet's meters with rooftop PV and with an EV charger, when a
# publish names none (docs/emulator.md): EIA RECS 2020, 3.7% of US single-family homes
# generated electricity with solar panels; IEA, 1.8 million plug-in EVs registered in the US
# in 2020 for RECS's 123.5 million homes (1.5%), and both have grown since.
DEFAULT_PV_SHARE: Final = 0.04
DEFAULT_EV_SHARE: Final = 0.02

_NAMESPACE_PATTERN: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_TENANT_SHARE_PATTERN: Final = re.compile(r"^([A-Za-z0-9_]{1,64})=([0-9.]+)/([0-9.]+)$")
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


class SettingsError(GridLensError, ValueError):
    """A setting has a value the process cannot start with."""


@dataclass(frozen=True, kw_only=True)
class Caps:
    """The safety caps in force: the hard limits of SPEC §4 or lower."""

    reads_per_second: int = HARD_MAX_READS_PER_SECOND
    batch_size: int = HARD_MAX_BATCH_SIZE
    meter_count: int = HARD_MAX_METER_COUNT
    jobs_per_publish: int = HARD_MAX_JOBS_PER_PUBLISH
    queue_depth: int = HARD_MAX_QUEUE_DEPTH


@dataclass(frozen=True, kw_only=True)
class MixDefaults:
    """The PV and EV shares of a publish that names none: the tenant's, where configured,
    else the deployment's."""

    pv_share: float = DEFAULT_PV_SHARE
    ev_share: float = DEFAULT_EV_SHARE
    by_tenant: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # (pv, ev)

    def for_tenant(self, tenant_id: str) -> tuple[float, float]:
        """(PV share, EV share) of the tenant's publishes that name none."""
        return self.by_tenant.get(tenant_id, (self.pv_share, self.ev_share))


@dataclass(frozen=True, kw_only=True)
class Settings:
    database_url: str | None = None  # None: the embedded PostgreSQL
    redis_url: str | None = None  # None: the embedded Redis
    api_key: str | None = None  # None: generated and kept in the data dir
    host: str = "127.0.0.1"
    port: int = 5000
    data_dir: Path = field(default_factory=lambda: Path(".gridlens").resolve())
    consumers: int = 2
    auth_reads: bool = False
    redis_namespace: str = "gridlens"  # the hash tag of every Redis key
    caps: Caps = field(default_factory=Caps)
    mix: MixDefaults = field(default_factory=MixDefaults)
    api_pool_size: int = 8  # PostgreSQL connections of one API process
    consumer_concurrency: int = 8  # in-flight jobs per consumer process
    claim_idle_ms: int = 30_000  # pending this long on a dead consumer: claimed
    max_deliveries: int = 5  # then the entry is dead-lettered
    insert_timeout_s: float = 10.0  # statement_timeout of the consumer's inserts
    # On SIGTERM every process finishes its work within this (a consumer its jobs, the API
    # its requests and publishes); the supervisor kills a child SHUTDOWN_MARGIN_S later.
    shutdown_grace_s: float = 20.0
    metrics_port: int | None = None  # a consumer's /metrics port; None: not served
    # A job counts as enqueued once this many replicas have it (WAIT after its XADD).
    redis_min_replicas: int = 0
    # How long a publish rides out an unreachable Redis primary (a failover) before it
    # gives up with a 503; consumers retry for as long as they run.
    failover_timeout_s: float = 30.0
    # Whole days of reads older than this are dropped (gridlens/partitions.py); None: kept.
    retention_days: int | None = None
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = _Env(os.environ if environ is None else environ)
        caps = Caps(
            reads_per_second=env.cap("GRIDLENS_MAX_READS_PER_SECOND", HARD_MAX_READS_PER_SECOND),
            batch_size=env.cap("GRIDLENS_MAX_BATCH_SIZE", HARD_MAX_BATCH_SIZE),
            meter_count=env.cap("GRIDLENS_MAX_METERS", HARD_MAX_METER_COUNT),
            jobs_per_publish=env.cap("GRIDLENS_MAX_JOBS_PER_PUBLISH", HARD_MAX_JOBS_PER_PUBLISH),
            queue_depth=env.cap("GRIDLENS_MAX_QUEUE_DEPTH", HARD_MAX_QUEUE_DEPTH),
        )
        return cls(
            database_url=env.database_url("DATABASE_URL"),
            redis_url=env.redis_url("REDIS_URL"),
            api_key=env.api_key("GRIDLENS_API_KEY"),
            host=env.text("GRIDLENS_HOST", "127.0.0.1"),
            port=env.integer("GRIDLENS_PORT", 5000, low=1, high=65_535),
            data_dir=Path(env.text("GRIDLENS_DATA_DIR", ".gridlens")).expanduser().resolve(),
            consumers=env.integer("GRIDLENS_CONSUMERS", 2, low=0, high=64),
            auth_reads=env.flag("GRIDLENS_AUTH_READS"),
            redis_namespace=env.namespace("GRIDLENS_REDIS_NAMESPACE", "gridlens"),
            caps=caps,
            mix=MixDefaults(
                pv_share=env.share("GRIDLENS_PV_SHARE", DEFAULT_PV_SHARE),
                ev_share=env.share("GRIDLENS_EV_SHARE", DEFAULT_EV_SHARE),
                by_tenant=env.tenant_shares("GRIDLENS_TENANT_SHARES"),
            ),
            api_pool_size=env.integer("GRIDLENS_API_POOL_SIZE", 8, low=1, high=64),
            consumer_concurrency=env.integer("GRIDLENS_CONSUMER_CONCURRENCY", 8, low=5, high=10),
            claim_idle_ms=env.integer("GRIDLENS_CLAIM_IDLE_MS", 30_000, low=1_000, high=3_600_000),
            max_deliveries=env.integer("GRIDLENS_MAX_DELIVERIES", 5, low=1, high=100),
            insert_timeout_s=env.seconds("GRIDLENS_INSERT_TIMEOUT_S", 10.0),
            shutdown_grace_s=env.seconds("GRIDLENS_SHUTDOWN_GRACE_S", 20.0),
            metrics_port=env.integer("GRIDLENS_METRICS_PORT", 0, low=0, high=65_535) or None,
            redis_min_replicas=env.integer("GRIDLENS_REDIS_MIN_REPLICAS", 0, low=0, high=16),
            failover_timeout_s=env.seconds("GRIDLENS_FAILOVER_TIMEOUT_S", 30.0),
            retention_days=env.integer("GRIDLENS_RETENTION_DAYS", 0, low=1, high=36_500)
            if env.raw("GRIDLENS_RETENTION_DAYS")
            else None,
            log_level=env.choice(
                "GRIDLENS_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")
            ),
        )

    @property
    def kill_after_s(self) -> float:
        """How long the supervisor waits for a child it sent SIGTERM before SIGKILL."""
        return self.shutdown_grace_s + SHUTDOWN_MARGIN_S

    def resolved(self, database_url: str, redis_url: str, api_key: str | None) -> Settings:
        """These settings with the servers' URLs (the embedded ones' when unset) and the
        API key (generated when unset) filled in: what a service is given."""
        return replace(self, database_url=database_url, redis_url=redis_url, api_key=api_key)

    @property
    def resolved_database_url(self) -> str:
        return _resolved("DATABASE_URL", self.database_url)

    @property
    def resolved_redis_url(self) -> str:
        return _resolved("REDIS_URL", self.redis_url)

    @property
    def resolved_api_key(self) -> str:
        return _resolved("GRIDLENS_API_KEY", self.api_key)

    @property
    def embedded_postgres(self) -> bool:
        return self.database_url is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None


def _resolved(name: str, value: str | None) -> str:
    if value is None:
        raise SettingsError(f"{name} is not resolved: see Settings.resolved")
    return value


def _is_share(value: float) -> bool:
    """A share of a fleet: 0 to 1."""
    return 0.0 <= value <= 1.0


def _shares(pv: str, ev: str) -> tuple[float, float] | None:
    try:
        pair = (float(pv), float(ev))
    except ValueError:
        return None
    return pair if all(map(_is_share, pair)) else None


def redact_url(url: str) -> str:
    """The URL (or libpq keyword/value string) with its passwords replaced by ***, fit for
    logs and error lines. Several hosts (``host:port,host:port``) are kept as they are."""
    url = _URL_PASSWORD.sub(r"\1:***@", url)
    return _KEYWORD_PASSWORD.sub(r"\1***", url)


_URL_PASSWORD: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):[^@]*@")
_KEYWORD_PASSWORD: Final = re.compile(r"((?:^|\s|[?&])(?:sentinel_)?password=)[^\s&]*")


@dataclass(frozen=True)
class _Env:
    values: Mapping[str, str]

    def raw(self, name: str) -> str | None:
        value = self.values.get(name)
        return None if value is None or value.strip() == "" else value.strip()

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not an integer") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}={value} is outside {low}..{high}")
        return value

    def seconds(self, name: str, default: float) -> float:
        value = self.number(name, default, "a number of seconds")
        if not 0 < value <= 3_600:
            raise SettingsError(f"{name}={value:g} is outside (0, 3600] seconds")
        return value

    def share(self, name: str, default: float) -> float:
        value = self.number(name, default, "a number")
        if not _is_share(value):
            raise SettingsError(f"{name}={value:g} is outside [0, 1]")
        return value

    def number(self, name: str, default: float, what: str) -> float:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not {what}") from None

    def tenant_shares(self, name: str) -> dict[str, tuple[float, float]]:
        """``TENANT=pv/ev`` pairs, comma-separated: ``DEMO_TENANT=0.3/0.1,RURAL=0.1/0``."""
        shares: dict[str, tuple[float, float]] = {}
        for item in (self.raw(name) or "").split(","):
            if not item.strip():
                continue
            match = _TENANT_SHARE_PATTERN.match(item.strip())
            pair = _shares(match[2], match[3]) if match else None
            if match is None or pair is None:
                raise SettingsError(
                    f"{name}: {item.strip()!r} is not TENANT=pv/ev with shares in [0, 1]"
                )
            shares[match[1]] = pair
        return shares

    def cap(self, name: str, hard_limit: int) -> int:
        raw = self.raw(name)
        if raw is not None and raw.lstrip("-").isdigit() and int(raw) > hard_limit:
            raise SettingsError(
                f"{name}={raw} exceeds the hard limit {hard_limit}: "
                "safety caps may be lowered, never raised"
            )
        return self.integer(name, hard_limit, low=1, high=hard_limit)

    def flag(self, name: str) -> bool:
        raw = (self.raw(name) or "").lower()
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        raise SettingsError(f"{name}={raw!r} is not a boolean (use 1 or 0)")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = (self.raw(name) or default).upper()
        if value not in choices:
            raise SettingsError(f"{name}={value!r} is not one of {', '.join(choices)}")
        return value

    def namespace(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not _NAMESPACE_PATTERN.match(value):
            raise SettingsError(f"{name}={value!r} must match {_NAMESPACE_PATTERN.pattern}")
        return value

    def api_key(self, name: str) -> str | None:
        value = self.raw(name)
        if value is not None and len(value) < 16:
            raise SettingsError(f"{name} is too short: use at least 16 characters")
        return value

    def database_url(self, name: str) -> str | None:
        """A postgresql:// URL (several hosts allowed: ``h1:5432,h2:5432``), or a libpq
        keyword/value string (``host=a,b dbname=… target_session_attrs=read-write``)."""
        value = self.raw(name)
        if value is None:
            return None
        scheme = value.partition("://")[0] if "://" in value else None
        if scheme in ("postgres", "postgresql") or (scheme is None and "=" in value):
            return value
        raise SettingsError(
            f"{name} must be a postgresql:// URL or a libpq keyword/value string, "
            f"not {redact_url(value)!r}"
        )

    def redis_url(self, name: str) -> str | None:
        """One server, a Sentinel-monitored primary or a cluster (gridlens/redis_url.py)."""
        value = self.raw(name)
        if value is None:
            return None
        try:
            parse_redis_url(value)
        except RedisUrlError as error:
            raise SettingsError(f"{name}={redact_url(value)!r}: {error}") from None
        return value
