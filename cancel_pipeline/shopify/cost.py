"""Pacing GraphQL Admin API queries on Shopify's cost bucket, so THROTTLED does not happen in steady state.

Each query costs points: Shopify computes its requested cost before running it, takes it from the app's
bucket (refused with THROTTLED when the bucket holds less) and refunds the difference to the actual cost.
The bucket refills at the plan's restore rate (Standard 100 points/s, Advanced 200, Plus 1000). Every
answer carries `extensions.cost.throttleStatus` (`maximumAvailable`, `currentlyAvailable`, `restoreRate`),
the server's view of the bucket, which this model adopts whenever it arrives.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

#: Shopify refuses a single query whose requested cost is above this.
MAX_QUERY_COST = 1000

#: Standard plan: 100 points/s; a bucket of 2000 is often reported (the size follows the server anyway).
STANDARD_RESTORE_RATE = 100.0
STANDARD_BUCKET_POINTS = 2000.0

#: Points waited for beyond a query's cost, so rounding and clock drift do not make the server refuse it.
MARGIN_POINTS = 1.0


class CostBucket:
    """A local model of the app's cost bucket: `reserve(cost)` says how long to wait before sending.

    The model books the cost when a query is sent (so the next query waits for it) and adopts the server's
    `throttleStatus` from every answer, which also refunds the unused part of the requested cost.
    """

    def __init__(
        self,
        size: float = STANDARD_BUCKET_POINTS,
        restore_rate: float = STANDARD_RESTORE_RATE,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size <= 0 or restore_rate <= 0:
            raise ValueError(
                f"GraphQL cost bucket needs a positive size and restore rate, got {size} and {restore_rate}"
            )
        self.size = float(size)
        self.restore_rate = float(restore_rate)
        self._clock = clock
        self._available = self.size
        self._at = clock()
        self._lock = threading.Lock()

    def available(self) -> float:
        """Points the model expects in the bucket now (negative while booked queries are paid back)."""
        with self._lock:
            return self._available_at(self._clock())

    def reserve(self, cost: float) -> float:
        """Book `cost` points; seconds to wait until the bucket holds them (0 when it does now)."""
        cost = min(float(cost), self.size)  # a query never needs more than a full bucket
        with self._lock:
            now = self._clock()
            available = self._available_at(now)
            self._available, self._at = available - cost, now
            if available >= cost:
                return 0.0
            # A point more than needed: the server's refill is measured on its clock, not exactly ours.
            return (cost + MARGIN_POINTS - available) / self.restore_rate

    def observe(self, cost: Any) -> None:
        """Adopt the server's bucket from an answer's `extensions.cost` (ignored when absent or malformed)."""
        status = cost.get("throttleStatus") if isinstance(cost, dict) else None
        if not isinstance(status, dict):
            return
        maximum = _number(status.get("maximumAvailable"))
        current = _number(status.get("currentlyAvailable"))
        rate = _number(status.get("restoreRate"))
        with self._lock:
            if maximum and maximum > 0:
                self.size = maximum
            if rate and rate > 0:
                self.restore_rate = rate
            if current is not None:
                self._available, self._at = min(current, self.size), self._clock()

    def throttle_wait(self, cost: Any, requested: float) -> float:
        """After THROTTLED: `(requested - currentlyAvailable) / restoreRate` seconds, per Shopify's advice.

        Without a `throttleStatus` (a bare 429) the bucket is taken as empty: the server said it is."""
        if not isinstance(cost, dict) or not isinstance(cost.get("throttleStatus"), dict):
            with self._lock:
                self._available, self._at = 0.0, self._clock()
        self.observe(cost)
        reported = _number(cost.get("requestedQueryCost")) if isinstance(cost, dict) else None
        needed = min(reported or requested, self.size)
        with self._lock:
            available = self._available_at(self._clock())
            # The failed query took nothing: the bucket holds what the server said, and we wait for `needed`.
            return max(0.0, (needed + MARGIN_POINTS - available) / self.restore_rate)

    def _available_at(self, now: float) -> float:
        return min(self.size, self._available + (now - self._at) * self.restore_rate)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
