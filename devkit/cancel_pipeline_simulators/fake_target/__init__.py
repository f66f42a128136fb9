"""The built-in fake target: a downstream system's Cancel Order API as a WSGI app, with fault knobs.

It answers `POST .../orders/{id}/cancel` as the API contract says: 200 with the order object (`status:
"cancelled"`, `cancel_reason`), 401 for a wrong token, 404 for an order it does not hold, 406 when the order
is already cancelled, 400 for a malformed body, and whatever status a knob forces. Every request is logged
(`received`), so tests can count what a target was really sent. Serve it with `serve` (tests, the demo) or
`python -m cancel_pipeline_simulators.fake_target serve`.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cancel_pipeline_simulators.http_server import serve

__all__ = ["FakeTarget", "ReceivedRequest", "serve"]

_CANCEL_PATH = re.compile(r"/orders/(\d+)/cancel/?$")
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    500: "Internal Server Error",
}
_ERROR_BODIES: dict[int, dict[str, Any]] = {
    400: {"errors": ["reason: is invalid"]},
    401: {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"},
    404: {"errors": "Not Found"},
    406: {"error": "Order cannot be cancelled in its current state"},
    500: {"errors": "Internal Server Error"},
}


@dataclass(frozen=True)
class ReceivedRequest:
    """One request the target received, and its answer."""

    order_id: int | None
    reason: str | None
    status: int
    received_at: datetime


class FakeTarget:
    """A target holding orders it can cancel, with knobs for every failure the outbox must handle.

    Knobs (safe to change while serving):
    - `unknown_orders`: order ids answered 404.
    - `order_statuses`: order id -> status forced on every call for that order (before it is applied).
    - `fail_next(*statuses)`: the next requests, whatever their order, get these statuses (not applied).
    - `delay_s`: a pause after the cancellation is applied and before the answer, to provoke client
      timeouts and kills with the target having acted.
    - `error_rate`: the share of requests answered 500 at random (not applied), seeded.
    """

    def __init__(self, token: str, *, error_rate: float = 0.0, seed: int = 7) -> None:
        self.token = token
        self.unknown_orders: set[int] = set()
        self.order_statuses: dict[int, int] = {}
        self.delay_s = 0.0
        self.error_rate = error_rate
        self.cancelled: dict[int, str | None] = {}
        self.received: list[ReceivedRequest] = []
        self._forced: deque[int] = deque()
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def fail_next(self, *statuses: int) -> None:
        """Answer the next requests with these statuses, in order, without acting on them."""
        with self._lock:
            self._forced.extend(statuses)

    def requests_for(self, order_id: int) -> list[ReceivedRequest]:
        """The requests received for one order, in arrival order."""
        with self._lock:
            return [request for request in self.received if request.order_id == order_id]

    def accepted_cancels(self) -> dict[int, int]:
        """Order id -> number of calls answered 200 (a correct outbox never makes one twice)."""
        with self._lock:
            counts: dict[int, int] = {}
            for request in self.received:
                if request.order_id is not None and request.status == 200:
                    counts[request.order_id] = counts.get(request.order_id, 0) + 1
            return counts

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        match = _CANCEL_PATH.search(environ.get("PATH_INFO", ""))
        if match is None:
            return _respond(start_response, 404, {"errors": "Not Found"})
        if environ.get("REQUEST_METHOD") != "POST":
            return _respond(start_response, 405, {"errors": "Method Not Allowed"})
        order_id = int(match.group(1))
        body = _read_body(environ)
        reason = body.get("reason") if isinstance(body, dict) else None
        status, payload = self._answer(environ, order_id, body)
        with self._lock:
            self.received.append(ReceivedRequest(order_id, reason, status, datetime.now(UTC)))
        if status == 200 and self.delay_s:
            time.sleep(self.delay_s)
        return _respond(start_response, status, payload)

    def _answer(self, environ: dict[str, Any], order_id: int, body: Any) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if environ.get("HTTP_X_AUTH_TOKEN") != self.token:
                return 401, _ERROR_BODIES[401]
            if self._forced:
                status = self._forced.popleft()
                return status, _ERROR_BODIES.get(status, {"error": f"forced {status}"})
            if order_id in self.order_statuses:
                status = self.order_statuses[order_id]
                return status, _ERROR_BODIES.get(status, {"error": f"forced {status}"})
            if self.error_rate and self._random.random() < self.error_rate:
                return 500, _ERROR_BODIES[500]
            if order_id in self.unknown_orders:
                return 404, _ERROR_BODIES[404]
            if not isinstance(body, dict) or not isinstance(body.get("reason", ""), str):
                return 400, _ERROR_BODIES[400]
            if order_id in self.cancelled:
                return 406, {"error": "Order is already cancelled"}
            reason = body.get("reason")
            self.cancelled[order_id] = reason
            return 200, {
                "order": {
                    "id": order_id,
                    "status": "cancelled",
                    "cancel_reason": reason,
                    "cancelled_at": datetime.now(UTC).isoformat(),
                }
            }


def _read_body(environ: dict[str, Any]) -> Any:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b"{}"
        return json.loads(raw)
    except (ValueError, KeyError):
        return None


def _respond(start_response: Callable[..., Any], status: int, payload: dict[str, Any]) -> list[bytes]:
    data = json.dumps(payload).encode()
    start_response(
        f"{status} {_REASONS.get(status, 'Error')}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]
