"""Shopify's REST rate limit: a leaky bucket per access token, pass or fail, no queueing."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BucketVerdict:
    """The outcome of one request: allowed or not, the header value, and the wait when refused."""

    allowed: bool
    used: int
    size: int
    retry_after: float = 0.0

    @property
    def header(self) -> str:
        """The X-Shopify-Shop-Api-Call-Limit value, e.g. "32/40"."""
        return f"{self.used}/{self.size}"


class LeakyBucket:
    """One bucket per key (token); it drains `leak_rate` requests a second in real time."""

    def __init__(self, size: int, leak_rate: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.leak_rate = leak_rate
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._levels: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> BucketVerdict:
        """Add one request to the key's bucket, or refuse it when the bucket is full."""
        with self._lock:
            now = self._monotonic()
            level, then = self._levels.get(key, (0.0, now))
            level = max(0.0, level - (now - then) * self.leak_rate)
            if level + 1 > self.size:
                self._levels[key] = (level, now)
                # Round the wait up to the next hundredth so a client that waits exactly this long gets in.
                wait = math.ceil((level + 1 - self.size) / self.leak_rate * 100) / 100
                return BucketVerdict(False, self.size, self.size, max(wait, 0.01))
            level += 1
            self._levels[key] = (level, now)
            return BucketVerdict(True, min(math.ceil(level - 1e-9), self.size), self.size)

    def reset(self) -> None:
        """Empty every bucket."""
        with self._lock:
            self._levels.clear()
