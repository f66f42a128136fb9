"""When a failed Shopify request is sent again, and how long to wait first.

A client classifies each attempt's failure as a setback: `Throttled` (the server refused for rate and the
client knows how long to wait) or `Failed` (a 5xx, a timeout, a dropped connection, a truncated body). A
`RetryPolicy` turns the setbacks of one request into "wait this long and retry" or "give up". It knows
nothing of HTTP clients or rate limits, so any Shopify client, whatever it paces on, can use it as it is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = [
    "RETRYABLE_STATUSES",
    "Failed",
    "RequestRetries",
    "RetryPolicy",
    "Setback",
    "Throttled",
    "backoff_delay",
    "failure_for_status",
]

#: Transient server-side failures (530/540: origin DNS error / endpoint temporarily disabled).
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504, 530, 540})


@dataclass(frozen=True)
class Throttled:
    """The server refused the request for rate (REST 429, GraphQL THROTTLED); it fits again after `wait` s."""

    wait: float
    status: int | None = None
    problem: str = "throttled"


@dataclass(frozen=True)
class Failed:
    """A transient failure worth another try; `status` is None when no response came back."""

    problem: str
    status: int | None = None


Setback = Throttled | Failed


def failure_for_status(status: int) -> Failed | None:
    """The retryable failure an HTTP status stands for, or None when retrying it cannot help."""
    return Failed(f"HTTP {status}", status) if status in RETRYABLE_STATUSES else None


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Capped exponential backoff with jitter, for the `attempt`-th retry (1-based).

    The delay is drawn from the upper half of `min(cap, base * 2**(attempt-1))` so retries of many clients
    spread out while each still waits at least half the exponential step.
    """
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class RetryPolicy:
    """How many setbacks a request may meet, and how long to wait after each.

    A `Throttled` setback is retried after exactly the wait it carries (the server's `Retry-After`, or the
    client's estimate of when the request fits), at most `max_throttle_retries` times per request. A `Failed`
    one is retried after capped exponential backoff with jitter (`backoff_delay`), at most `max_retries`
    times per request. The two budgets are separate: waiting out a throttle is normal, failing is not.
    """

    max_retries: int = 5
    max_throttle_retries: int = 20
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, setback: Setback, count: int) -> float | None:
        """Seconds to wait before retrying after the `count`-th setback of its kind (1-based); None: give up."""
        if isinstance(setback, Throttled):
            return setback.wait if count <= self.max_throttle_retries else None
        if count > self.max_retries:
            return None
        return backoff_delay(count, self.backoff_base, self.backoff_cap, self.rng)

    def start(self) -> RequestRetries:
        """A fresh count of setbacks for one request."""
        return RequestRetries(self)


class RequestRetries:
    """The setbacks one request has met so far, and the policy's answer to the next one."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.throttles = 0
        self.failures = 0

    def after(self, setback: Setback) -> float | None:
        """Count `setback`; seconds to wait before the next try, or None when the request should give up."""
        if isinstance(setback, Throttled):
            self.throttles += 1
            return self.policy.delay(setback, self.throttles)
        self.failures += 1
        return self.policy.delay(setback, self.failures)
