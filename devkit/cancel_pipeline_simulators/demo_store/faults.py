"""Fault injection for tests and benchmarks: random 5xx, scripted failures, latency, truncated bodies.

Knobs:
- error_rate: fraction of admin requests answered 500/502/503 at random (seeded, so runs repeat).
- truncate_rate: fraction of admin responses whose body is cut short under the full Content-Length.
- latency: seconds to wait before answering each admin request.
- fail_next: a list of one-shot faults for the next matching admin requests, each a dict with any of
  status (e.g. 503, or 429 with retry_after seconds), truncate (true), page_info_only (only a request
  carrying page_info matches), request_number (only the k-th admin request, 1-based, matches).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

FAULT_KEYS = ("status", "retry_after", "truncate", "page_info_only", "request_number")


@dataclass(frozen=True)
class Fault:
    """What to do to one request: answer `status` instead, or truncate the real answer."""

    status: int | None = None
    retry_after: float | None = None
    truncate: bool = False


class FaultInjector:
    """Holds the knobs and decides, request by request, which fault (if any) applies."""

    def __init__(self, seed: int = 0, **knobs: Any) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.error_rate = 0.0
        self.truncate_rate = 0.0
        self.latency = 0.0
        self._fail_next: list[dict[str, Any]] = []
        self.configure(**knobs)

    def configure(
        self,
        *,
        error_rate: float | None = None,
        truncate_rate: float | None = None,
        latency: float | None = None,
        fail_next: list[dict[str, Any]] | None = None,
    ) -> None:
        """Change the given knobs; fail_next replaces the queued one-shot faults."""
        with self._lock:
            if error_rate is not None:
                self.error_rate = _fraction("error_rate", error_rate)
            if truncate_rate is not None:
                self.truncate_rate = _fraction("truncate_rate", truncate_rate)
            if latency is not None:
                if latency < 0:
                    raise ValueError("latency must be >= 0")
                self.latency = float(latency)
            if fail_next is not None:
                self._fail_next = [_checked_spec(spec) for spec in fail_next]

    def fail_next(self, *specs: dict[str, Any]) -> None:
        """Queue one-shot faults after those already queued."""
        checked = [_checked_spec(spec) for spec in specs]
        with self._lock:
            self._fail_next.extend(checked)

    def snapshot(self) -> dict[str, Any]:
        """The knobs as JSON-ready data."""
        with self._lock:
            return {
                "error_rate": self.error_rate,
                "truncate_rate": self.truncate_rate,
                "latency": self.latency,
                "fail_next": [dict(spec) for spec in self._fail_next],
            }

    def pick(self, request_number: int, has_page_info: bool) -> Fault | None:
        """The fault for this admin request: a matching one-shot first, then the random rates."""
        with self._lock:
            for index, spec in enumerate(self._fail_next):
                if spec.get("page_info_only") and not has_page_info:
                    continue
                if spec.get("request_number") not in (None, request_number):
                    continue
                del self._fail_next[index]
                return Fault(spec.get("status"), spec.get("retry_after"), bool(spec.get("truncate")))
            if self.error_rate and self._rng.random() < self.error_rate:
                return Fault(status=self._rng.choice((500, 502, 503)))
            if self.truncate_rate and self._rng.random() < self.truncate_rate:
                return Fault(truncate=True)
        return None


def _fraction(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1")
    return float(value)


def _checked_spec(spec: dict[str, Any]) -> dict[str, Any]:
    unknown = set(spec) - set(FAULT_KEYS)
    if unknown:
        raise ValueError(f"unknown fault keys {sorted(unknown)}; known: {', '.join(FAULT_KEYS)}")
    if spec.get("status") is None and not spec.get("truncate"):
        raise ValueError("a fault needs a status or truncate: true")
    return dict(spec)
