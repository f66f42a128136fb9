"""Pipeline settings, read from the environment with defaults.

Every setting has a `CANCEL_PIPELINE_*` variable. They are read once when the definitions are loaded (the
windows, schedules and sensor are built from them), so a change takes effect on the next code-location
reload. Invalid values fail loudly at load time, naming the variable.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from cancel_pipeline.embedded import DEMO_STORE
from cancel_pipeline.stuck_rule import DEFAULT_STUCK_THRESHOLDS

DEFAULT_DUCKDB_PATH = f"data/{DEMO_STORE}.duckdb"
"""The default DuckDB file of the built-in demo store; a real store's is `data/<store>.duckdb`."""
DEFAULT_DUCKDB_MEMORY_LIMIT = "1GB"
_MEMORY_LIMIT = re.compile(r"(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)
DEFAULT_DELIVERY_OVERDUE_HOURS = 6.0
_MAX_HOURS = 24 * 366
"""A year: the longest duration a setting may take (beyond it a timedelta overflows soon enough)."""


class SettingsError(ValueError):
    """An environment variable holds a value the pipeline cannot use."""


@dataclass(frozen=True)
class PipelineSettings:
    """Everything about *when* and *what* the pipeline reads; credentials live in the Shopify resource."""

    first_window_start: datetime
    """Start of the first window of both raw assets (UTC). `CANCEL_PIPELINE_FIRST_WINDOW`."""
    overlap: timedelta
    """How far before a window's start it is re-read, for orders that became visible late.
    `CANCEL_PIPELINE_OVERLAP_MINUTES`."""
    settle_delay: timedelta
    """How long after a window closes its scheduled run starts. `CANCEL_PIPELINE_SETTLE_DELAY_MINUTES`."""
    canceled_window_minutes: int
    """Minutes between two ticks of the cancellation schedule (`raw_canceled_order_pages`, partitioned by
    day: each tick reads what is new in the day's partition). `CANCEL_PIPELINE_CANCELED_WINDOW_MINUTES`."""
    updated_window_minutes: int
    """Minutes between two ticks of the updates schedule (`raw_updated_order_pages`).
    `CANCEL_PIPELINE_UPDATED_WINDOW_MINUTES`."""
    reconciliation_hour: int
    """UTC hour of the daily reconciliation. `CANCEL_PIPELINE_RECONCILIATION_HOUR`."""
    reconciliation_minute: int
    """Minute of that hour. `CANCEL_PIPELINE_RECONCILIATION_MINUTE`."""
    sensor_interval_seconds: int
    """Minimum time between two ticks of the cancellation sensor. `CANCEL_PIPELINE_SENSOR_INTERVAL_SECONDS`."""
    duckdb_path: str
    """The DuckDB file. `CANCEL_PIPELINE_DUCKDB`; default per store, `data/<store>.duckdb`."""
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT
    """DuckDB's `memory_limit` for the pipeline's connections: beyond it DuckDB spills to disk, so a run's
    memory does not grow with the size of a backfill. `CANCEL_PIPELINE_DUCKDB_MEMORY_LIMIT`."""
    stuck_thresholds: Mapping[str, timedelta] = field(default_factory=lambda: dict(DEFAULT_STUCK_THRESHOLDS))
    """How long an order of each `source_name` may stay in 'created' (key `other`: any other source).
    `CANCEL_PIPELINE_STUCK_THRESHOLDS_HOURS`, e.g. `pos=1,web=24,shopify_draft_order=48,other=24`."""
    delivery_overdue: timedelta = timedelta(hours=DEFAULT_DELIVERY_OVERDUE_HOURS)
    """How long a cancellation notice may wait undelivered (pending, retrying or being sent) before the
    outbox check flags it. `CANCEL_PIPELINE_DELIVERY_OVERDUE_HOURS`."""
    superseded_retention_days: int | None = None
    """Superseded raw pages older than this many days are pruned after each landing; None keeps them all.
    A rebuild from the page store then lacks the versions only they held.
    `CANCEL_PIPELINE_SUPERSEDED_RETENTION_DAYS`."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PipelineSettings:
        """Read the settings from `environ` (default: the process environment)."""
        env = os.environ if environ is None else environ
        settings = cls(
            first_window_start=_datetime(env, "CANCEL_PIPELINE_FIRST_WINDOW", "2026-01-01T00:00:00Z"),
            overlap=_minutes(env, "CANCEL_PIPELINE_OVERLAP_MINUTES", 10),
            settle_delay=_minutes(env, "CANCEL_PIPELINE_SETTLE_DELAY_MINUTES", 5),
            canceled_window_minutes=_window(env, "CANCEL_PIPELINE_CANCELED_WINDOW_MINUTES", 30),
            updated_window_minutes=_window(env, "CANCEL_PIPELINE_UPDATED_WINDOW_MINUTES", 60),
            reconciliation_hour=_int(env, "CANCEL_PIPELINE_RECONCILIATION_HOUR", 2, minimum=0, maximum=23),
            reconciliation_minute=_int(
                env, "CANCEL_PIPELINE_RECONCILIATION_MINUTE", 15, minimum=0, maximum=59
            ),
            sensor_interval_seconds=_int(env, "CANCEL_PIPELINE_SENSOR_INTERVAL_SECONDS", 30, minimum=1),
            duckdb_path=env.get("CANCEL_PIPELINE_DUCKDB") or default_duckdb_path(env.get("SHOPIFY_STORE")),
            duckdb_memory_limit=_memory_limit(env, "CANCEL_PIPELINE_DUCKDB_MEMORY_LIMIT"),
            stuck_thresholds=_thresholds(env, "CANCEL_PIPELINE_STUCK_THRESHOLDS_HOURS"),
            delivery_overdue=_hours(
                env, "CANCEL_PIPELINE_DELIVERY_OVERDUE_HOURS", DEFAULT_DELIVERY_OVERDUE_HOURS
            ),
            superseded_retention_days=_optional_int(
                env, "CANCEL_PIPELINE_SUPERSEDED_RETENTION_DAYS", minimum=1
            ),
        )
        if settings.first_window_start.second or settings.first_window_start.microsecond:
            raise SettingsError("CANCEL_PIPELINE_FIRST_WINDOW must fall on a whole minute")
        return settings


def store_file_stem(store: str | None) -> str:
    """A file-name-safe name for `SHOPIFY_STORE`: `demo` when unset, `my-shop` for `my-shop` or
    `my-shop.myshopify.com`, `127.0.0.1-8765` for `http://127.0.0.1:8765`."""
    raw = (store or "").strip().rstrip("/")
    if not raw:
        return DEMO_STORE
    if "://" in raw:
        parts = urlsplit(raw)
        raw = parts.hostname or raw
        if parts.port:
            raw = f"{raw}-{parts.port}"
    raw = raw.removesuffix(".myshopify.com")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-.") or DEMO_STORE


def default_duckdb_path(store: str | None) -> str:
    """The default DuckDB file of `SHOPIFY_STORE`: one file per store, so two stores never share one."""
    return f"data/{store_file_stem(store)}.duckdb"


def _optional_int(env: Mapping[str, str], name: str, *, minimum: int) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise SettingsError(f"{name} must be a whole number of at least {minimum} (or unset), got {raw!r}")
    return value


def _int(
    env: Mapping[str, str], name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        raise SettingsError(f"{name} must be between {minimum} and {maximum}, got {value}")
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _memory_limit(env: Mapping[str, str], name: str) -> str:
    raw = (env.get(name) or "").strip()
    if not raw:
        return DEFAULT_DUCKDB_MEMORY_LIMIT
    match = _MEMORY_LIMIT.fullmatch(raw)
    # DuckDB takes '0MB' and then fails every query that needs memory: refuse it here, by name.
    if not match or float(match.group(1)) <= 0:
        raise SettingsError(f"{name} must be a size such as '1GB' or '512MB' (above zero), got {raw!r}")
    return raw


def _hours(env: Mapping[str, str], name: str, default: float) -> timedelta:
    raw = (env.get(name) or "").strip()
    if not raw:
        return timedelta(hours=default)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or not 0 < value <= _MAX_HOURS:
        raise SettingsError(
            f"{name} must be a number of hours above zero (at most {_MAX_HOURS}), got {raw!r}"
        )
    return timedelta(hours=value)


def _minutes(env: Mapping[str, str], name: str, default: int) -> timedelta:
    # Bounded so that the timedelta (and the window arithmetic) cannot overflow.
    return timedelta(minutes=_int(env, name, default, minimum=0, maximum=_MAX_HOURS * 60))


def _thresholds(env: Mapping[str, str], name: str) -> dict[str, timedelta]:
    # Sources not listed keep their defaults, so one can tune `pos` alone.
    thresholds = dict(DEFAULT_STUCK_THRESHOLDS)
    for item in filter(None, (part.strip() for part in (env.get(name) or "").split(","))):
        source, equals, hours = item.partition("=")
        try:
            value = float(hours) if equals and source.strip() else -1.0
        except ValueError:
            value = -1.0
        # 'nan' and 'inf' parse as floats but make no timedelta.
        if not math.isfinite(value) or not 0 < value <= _MAX_HOURS:
            raise SettingsError(
                f"{name} must be a list like 'pos=1,web=24,other=24' (hours > 0 per source_name), got {item!r}"
            )
        thresholds[source.strip()] = timedelta(hours=value)
    return thresholds


def _window(env: Mapping[str, str], name: str, default: int) -> int:
    # Windows must tile the hour so every window starts at the same minutes of every hour, which is what
    # lets a plain cron expression describe both the windows and the schedule ticks.
    minutes = _int(env, name, default, minimum=1, maximum=60)
    if 60 % minutes:
        raise SettingsError(f"{name} must divide 60 (e.g. 15, 30, 60), got {minutes}")
    return minutes


def _datetime(env: Mapping[str, str], name: str, default: str) -> datetime:
    raw = env.get(name) or default
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise SettingsError(f"{name} must be an ISO 8601 date or time, got {raw!r}") from None
    # A naive value is read as UTC: the windows are UTC whatever the machine's zone.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


SETTINGS = PipelineSettings.from_env()
"""The settings of this process, as loaded with the definitions."""
