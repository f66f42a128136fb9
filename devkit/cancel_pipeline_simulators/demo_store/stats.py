"""Counters of what the demo store served, for tests and benchmarks."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class RequestStats:
    """Thread-safe counts of requests, admin API requests, 429s and responses by status."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Start counting from zero (admin request numbers restart at 1)."""
        with self._lock:
            self._requests = 0
            self._admin_requests = 0
            self._by_status: Counter[int] = Counter()

    def next_admin_request(self) -> int:
        """Count an admin API request and return its 1-based number."""
        with self._lock:
            self._admin_requests += 1
            return self._admin_requests

    def record(self, status: int) -> None:
        """Count one answered request."""
        with self._lock:
            self._requests += 1
            self._by_status[status] += 1

    def snapshot(self) -> dict[str, Any]:
        """requests, admin_requests, throttled (429s sent) and by_status ({"200": n, ...})."""
        with self._lock:
            return {
                "requests": self._requests,
                "admin_requests": self._admin_requests,
                "throttled": self._by_status[429],
                "by_status": {str(k): v for k, v in sorted(self._by_status.items())},
            }
