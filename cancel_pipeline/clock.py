"""The current time, timezone-aware in UTC: the one clock the pipeline reads."""

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)
