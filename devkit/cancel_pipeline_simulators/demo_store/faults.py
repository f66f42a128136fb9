"""Fault injection for tests and benchmarks: random 5xx, scripted failures, latency, truncated bodies.

Knobs:
- error_rate: fraction of admin requests answered 500/502/503 at random (seeded, so runs repeat).
- truncate_rate: fraction of admin responses whose body is cut short under the full Content-Length.
- latency: seconds to wait before answering each admin request.
- fail_next: a list of one-shot faults for the next matching admin requests, each a dict with any of
  status (e.g. 503, or 429 with retry_after seconds), truncate (true), corrupt (true: the whole body is
  sent, but one number in it is damaged, so it is complete and still not JSON), page_info_only (only a
  request carrying page_info matches), request_number (only the k-th admin request, 1-based, matches).
  GraphQL requests take the same faults (a request with an `after`/`before` cursor counts as carrying
  page_info); a 429 there is a THROTTLED answer with HTTP 429.
- bulk_fail_next: one-shot failures for the next bulk queries, each a dict with error_code (a
  BulkOperationErrorCode, default INTERNAL_SERVER_ERROR) and after_objects (JSONL lines written before it
  fails, default 0; they become the partialDataUrl file).
- download_fail_next: one-shot faults for the next bulk result downloads, each a dict with one of status
  (e.g. 503), cut_after (bytes sent before the connection drops, under the full Content-Length) or
  expired (true: answered as an expired signed URL). error_rate, truncate_rate and latency apply to
  downloads too.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

FAULT_KEYS = ("status", "retry_after", "truncate", "corrupt", "page_info_only", "request_number")
BULK_FAULT_KEYS = ("error_code", "after_objects")
BULK_ERROR_CODES = ("ACCESS_DENIED", "INTERNAL_SERVER_ERROR", "TIMEOUT")
DOWNLOAD_FAULT_KEYS = ("status", "cut_after", "expired")


@dataclass(frozen=True)
class Fault:
    """What to do to one request: answer `status` instead, or truncate or corrupt the real answer."""

    status: int | None = None
    retry_after: float | None = None
    truncate: bool = False
    corrupt: bool = False


@dataclass(frozen=True)
class DownloadFault:
    """What to do to one result download: answer `status`, stop after `cut_after` bytes, or refuse as expired."""

    status: int | None = None
    cut_after: int | None = None
    expired: bool = False


class FaultInjector:
    """Holds the knobs and decides, request by request, which fault (if any) applies."""

    def __init__(self, seed: int = 0, **knobs: Any) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.error_rate = 0.0
        self.truncate_rate = 0.0
        self.latency = 0.0
        self._fail_next: list[dict[str, Any]] = []
        self._bulk_fail_next: list[dict[str, Any]] = []
        self._download_fail_next: list[dict[str, Any]] = []
        self.configure(**knobs)

    def configure(
        self,
        *,
        error_rate: float | None = None,
        truncate_rate: float | None = None,
        latency: float | None = None,
        fail_next: list[dict[str, Any]] | None = None,
        bulk_fail_next: list[dict[str, Any]] | None = None,
        download_fail_next: list[dict[str, Any]] | None = None,
    ) -> None:
        """Change the given knobs; each *fail_next list replaces its queued one-shot faults."""
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
            if bulk_fail_next is not None:
                self._bulk_fail_next = [_checked_bulk_spec(spec) for spec in bulk_fail_next]
            if download_fail_next is not None:
                self._download_fail_next = [_checked_download_spec(spec) for spec in download_fail_next]

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
                "bulk_fail_next": [dict(spec) for spec in self._bulk_fail_next],
                "download_fail_next": [dict(spec) for spec in self._download_fail_next],
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
                return Fault(
                    spec.get("status"),
                    spec.get("retry_after"),
                    bool(spec.get("truncate")),
                    bool(spec.get("corrupt")),
                )
            if self.error_rate and self._rng.random() < self.error_rate:
                return Fault(status=self._rng.choice((500, 502, 503)))
            if self.truncate_rate and self._rng.random() < self.truncate_rate:
                return Fault(truncate=True)
        return None

    def take_bulk_fault(self) -> dict[str, Any] | None:
        """The next queued bulk failure, if any (consumed)."""
        with self._lock:
            return self._bulk_fail_next.pop(0) if self._bulk_fail_next else None

    def pick_download(self) -> DownloadFault | None:
        """The fault for this download: a queued one-shot first, then error_rate (503) and truncate_rate."""
        with self._lock:
            if self._download_fail_next:
                spec = self._download_fail_next.pop(0)
                return DownloadFault(spec.get("status"), spec.get("cut_after"), bool(spec.get("expired")))
            if self.error_rate and self._rng.random() < self.error_rate:
                return DownloadFault(status=503)
            if self.truncate_rate and self._rng.random() < self.truncate_rate:
                return DownloadFault(cut_after=-1)
        return None


def _fraction(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1")
    return float(value)


def _checked_spec(spec: dict[str, Any]) -> dict[str, Any]:
    unknown = set(spec) - set(FAULT_KEYS)
    if unknown:
        raise ValueError(f"unknown fault keys {sorted(unknown)}; known: {', '.join(FAULT_KEYS)}")
    if spec.get("status") is None and not spec.get("truncate") and not spec.get("corrupt"):
        raise ValueError("a fault needs a status, truncate: true or corrupt: true")
    return dict(spec)


def _checked_bulk_spec(spec: dict[str, Any]) -> dict[str, Any]:
    unknown = set(spec) - set(BULK_FAULT_KEYS)
    if unknown:
        raise ValueError(f"unknown bulk fault keys {sorted(unknown)}; known: {', '.join(BULK_FAULT_KEYS)}")
    code = spec.get("error_code", "INTERNAL_SERVER_ERROR")
    if code not in BULK_ERROR_CODES:
        raise ValueError(f"bulk fault error_code {code!r} is not one of {', '.join(BULK_ERROR_CODES)}")
    after = spec.get("after_objects", 0)
    if not isinstance(after, int) or after < 0:
        raise ValueError("bulk fault after_objects must be an integer >= 0")
    return {"error_code": code, "after_objects": after}


def _checked_download_spec(spec: dict[str, Any]) -> dict[str, Any]:
    unknown = set(spec) - set(DOWNLOAD_FAULT_KEYS)
    if unknown:
        raise ValueError(
            f"unknown download fault keys {sorted(unknown)}; known: {', '.join(DOWNLOAD_FAULT_KEYS)}"
        )
    chosen = [key for key in DOWNLOAD_FAULT_KEYS if spec.get(key) not in (None, False)]
    if len(chosen) != 1:
        raise ValueError("a download fault needs exactly one of status, cut_after or expired: true")
    cut = spec.get("cut_after")
    if cut is not None and (not isinstance(cut, int) or cut < 0):
        raise ValueError("download fault cut_after must be an integer >= 0")
    return dict(spec)
