"""HTTP client of a downstream target's Cancel Order API.

`POST {base}/orders/{id}/cancel` with `{"reason": "..."}` (reason omitted when unknown) and the token in a
header. Every answer is classified, never raised, so the outbox records it; only the caller decides what a
bad-credentials answer does to the run. Messages carry the target's own words or the transport error, and
never the token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import httpx

Kind = Literal["delivered", "not_found", "rejected", "retryable", "bad_credentials"]

MAX_MESSAGE_CHARS = 500
_ALREADY_CANCELLED = re.compile(r"already\s+(been\s+)?cancel+ed", re.IGNORECASE)


@dataclass(frozen=True)
class CallResult:
    """The classified answer to one cancel call."""

    kind: Kind
    status: int | None
    """HTTP status; None when no answer came (timeout, connection error)."""
    message: str | None
    may_have_reached_target: bool = False
    """The target may have acted without us knowing: a timeout after sending, a dropped answer or a 5xx."""

    @property
    def says_already_cancelled(self) -> bool:
        """A refusal because the order is already cancelled at the target."""
        return self.kind == "rejected" and bool(self.message and _ALREADY_CANCELLED.search(self.message))


class CancelOrderClient:
    """Calls one target. Use as a context manager; one connection pool per target per run."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        token_header: str = "X-Auth-Token",
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={token_header: token, "Accept": "application/json"},
            timeout=timeout_s,
            transport=transport,
        )

    def __enter__(self) -> CancelOrderClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def cancel(self, order_id: int, reason: str | None) -> CallResult:
        """Ask the target to cancel `order_id`; the answer, classified."""
        body = {"reason": reason} if reason else {}
        try:
            response = self._client.post(f"/orders/{order_id}/cancel", json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            # The request never left: the target cannot have acted on it.
            return CallResult("retryable", None, f"connection failed: {_describe(error)}")
        except httpx.TransportError as error:
            return CallResult(
                "retryable", None, f"no answer: {_describe(error)}", may_have_reached_target=True
            )
        return classify(response.status_code, _error_message(response))


def classify(status: int, message: str | None) -> CallResult:
    """The outbox's reading of an HTTP answer."""
    if 200 <= status < 300:
        # A 2xx that does not show the order cancelled (`message` says so) is no confirmation.
        return (
            CallResult("delivered", status, None)
            if message is None
            else CallResult("rejected", status, message)
        )
    if status == 401:
        return CallResult("bad_credentials", status, message)
    if status == 404:
        return CallResult("not_found", status, message)
    if status in (408, 429) or status >= 500:
        return CallResult("retryable", status, message, may_have_reached_target=status >= 500)
    return CallResult("rejected", status, message)


def confirms_cancellation(payload: Any) -> bool:
    """Whether a 2xx body is the order object with `status: "cancelled"` (bare, or under "order")."""
    order = payload.get("order", payload) if isinstance(payload, dict) else None
    return isinstance(order, dict) and order.get("status") == "cancelled"


def _error_message(response: httpx.Response) -> str | None:
    """The target's message: `{"errors": [...]}` or `{"error": "..."}`, else the start of the body; for a
    2xx, None when the body confirms the cancellation, else why it does not."""
    try:
        payload: Any = response.json()
    except ValueError:
        payload = None
    if response.is_success:
        # A 2xx that does not show the order cancelled is not a confirmation: classify it as a refusal.
        return None if confirms_cancellation(payload) else "answer did not confirm the cancellation"
    if isinstance(payload, dict):
        errors = payload.get("errors", payload.get("error"))
        if isinstance(errors, list):
            return _clip("; ".join(str(error) for error in errors))
        if isinstance(errors, dict):
            return _clip("; ".join(f"{key}: {value}" for key, value in errors.items()))
        if errors is not None:
            return _clip(str(errors))
    return _clip(response.text) or f"HTTP {response.status_code}"


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def _describe(error: httpx.TransportError) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
