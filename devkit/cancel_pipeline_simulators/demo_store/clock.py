"""Clocks for the demo store: real time by default, a settable one for tests and the `--now` flag."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]
"""A callable returning the current time as an aware UTC datetime."""


def system_clock() -> datetime:
    """The real current time, in UTC, truncated to whole seconds (Shopify's timestamps have no fraction)."""
    return datetime.now(UTC).replace(microsecond=0)


class FrozenClock:
    """A clock that only moves when told to, so a test decides exactly which part of history exists."""

    def __init__(self, now: datetime | str) -> None:
        self._lock = threading.Lock()
        self._now = _as_utc(now)

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, now: datetime | str) -> None:
        """Jump to `now` (forwards or backwards)."""
        with self._lock:
            self._now = _as_utc(now)

    def advance(self, delta: timedelta | float = 0.0, **kwargs: float) -> datetime:
        """Move forwards by `delta` (a timedelta or seconds) plus any timedelta keyword arguments."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        step += timedelta(**kwargs)
        with self._lock:
            self._now += step
            return self._now


def _as_utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        raise ValueError("FrozenClock needs an aware datetime (with an offset or Z)")
    return value.astimezone(UTC)
