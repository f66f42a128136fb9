"""Pacing for Shopify's REST leaky bucket.

Shopify answers every REST call with `X-Shopify-Shop-Api-Call-Limit: used/size`: the bucket holds `size`
requests and leaks `leak_rate` per second; a request that finds it full gets 429. The client keeps a local
model of that bucket, re-synchronised from the header on every response, and waits before a request only as
long as the model says the request would overflow, so it runs at the leak rate without being throttled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Re-exported: the backoff lived here before the retry policy had a module of its own.
from cancel_pipeline.shopify.retry import backoff_delay

__all__ = ["LeakyBucket", "backoff_delay", "parse_call_limit", "parse_retry_after"]


def parse_call_limit(header: str | None) -> tuple[int, int] | None:
    """`"32/40"` -> `(32, 40)`; None when the header is missing or malformed."""
    if not header:
        return None
    used, sep, size = header.partition("/")
    if not sep:
        return None
    try:
        parsed = int(used.strip()), int(size.strip())
    except ValueError:
        return None
    return parsed if parsed[1] > 0 else None


def parse_retry_after(header: str | None) -> float | None:
    """Shopify sends `Retry-After` as float seconds (`"2.0"`); None when absent or unusable."""
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class LeakyBucket:
    """Local model of the store's request bucket, shared by every thread of one client.

    The server's count is authoritative: `sync` adopts it, attributing it to the moment the request was
    sent (the server counts the request when it arrives, before building the response, so the send time
    is the closest instant we know). That attribution runs slightly ahead of the server by the one-way
    latency times the leak rate, and the server may round its count down; `headroom` (in requests) keeps
    that difference from ever overflowing the real bucket. Headroom costs nothing in steady state, where
    the rate is set by the leak, only a request or two of the initial burst.

    Concurrent page streams share one model: every method takes a lock, `reserve` books a slot atomically
    (so two threads never both see room for the same last request), and the model counts the requests in
    flight. A response's `used` may not include requests other threads sent about the same time, so `settle`
    adds every request still in flight to it and ignores a response older than the last one adopted. That
    over-estimates by the requests in flight, which costs nothing in steady state and a few requests of the
    initial burst.
    """

    def __init__(
        self,
        size: int,
        leak_rate: float,
        *,
        headroom: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 1 or leak_rate <= 0:
            raise ValueError(f"bucket size must be >= 1 and leak rate > 0, got {size} and {leak_rate}")
        self.size = size
        self.leak_rate = leak_rate
        self.headroom = min(headroom, size - 1)
        self._clock = clock
        self._level = 0.0
        self._level_at = clock()
        self._lock = threading.RLock()
        self._in_flight = 0
        self._synced_at = float("-inf")

    def level(self, now: float | None = None) -> float:
        """Requests the model believes are in the bucket at `now` (default: the clock's now)."""
        with self._lock:
            now = self._clock() if now is None else now
            return max(0.0, self._level - (now - self._level_at) * self.leak_rate)

    @property
    def in_flight(self) -> int:
        """Requests reserved or recorded whose response has not been settled yet."""
        return self._in_flight

    def delay(self) -> float:
        """Seconds to wait until one more request fits under `size - headroom`; 0 when it fits now."""
        with self._lock:
            excess = self.level() + 1 - (self.size - self.headroom)
            return max(0.0, excess / self.leak_rate)

    def record_request(self) -> None:
        """Count a request about to be sent, so the model is right even if no header comes back."""
        with self._lock:
            now = self._clock()
            self._level = self.level(now) + 1
            self._level_at = now
            self._in_flight += 1

    def reserve(self) -> float:
        """Book the next request: count it now and return how long to wait before sending it.

        Atomic, so concurrent callers get successive slots. For one caller it is `delay()` followed by
        `record_request()` after the wait: counting the request before the wait rather than after gives the
        same level once the wait is over.
        """
        with self._lock:
            wait = self.delay()
            self.record_request()
            return wait

    def settle(self, sent_at: float, call_limit: tuple[int, int] | None) -> None:
        """A request sent at `sent_at` is over: adopt its `used/size` (if any) and stop counting it in flight.

        The server's count is adopted only if it is at least as recent as the last adopted one, and the
        requests still in flight are added to it (the server may not have counted them yet).
        """
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            if call_limit is None or sent_at < self._synced_at:
                return
            used, size = call_limit
            self.sync(used + self._in_flight, size, observed_at=sent_at)

    def sync(self, used: int, size: int, observed_at: float) -> None:
        """Adopt the server's `used/size`, valid at `observed_at` (the send time of the request)."""
        with self._lock:
            self.size = size
            self.headroom = min(self.headroom, size - 1)
            self._level = float(used)
            self._level_at = observed_at
            self._synced_at = observed_at

    def mark_full(self) -> None:
        """A 429 proves the bucket is full right now, whatever the model thought."""
        with self._lock:
            self._level = float(self.size)
            self._level_at = self._clock()

    @contextmanager
    def keep_headroom(self, requests: float) -> Iterator[None]:
        """Keep at least `requests` of headroom (at most `size - 1`) while the block runs, then restore it.

        For callers with requests in flight that the server may not have counted yet, e.g. one per worker.
        """
        with self._lock:
            before = self.headroom
            self.headroom = min(max(before, requests), self.size - 1)
        try:
            yield
        finally:
            with self._lock:
                self.headroom = before

    def wait_for_throttle(self) -> float:
        """Wait after a 429 that came without `Retry-After`: time for one request plus headroom to leak."""
        return (1 + self.headroom) / self.leak_rate
