"""Fixtures for the demo store: a frozen clock, a store on it, and the store served over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

DEMO_NOW = "2025-03-05T18:00:00Z"
"""A fixed moment (the shop is on EST, -05:00) with well over two days of seeded history before it."""
DEMO_TOKEN = "demo-token"


@dataclass
class ServedDemoStore:
    """A demo store and the base URL it answers on."""

    store: DemoStore
    clock: FrozenClock
    url: str
    token: str = DEMO_TOKEN

    def admin_url(self, path: str, version: str = "2025-01") -> str:
        """The full URL of an Admin API path such as "orders.json"."""
        return f"{self.url}/admin/api/{version}/{path}"


@pytest.fixture
def demo_clock() -> FrozenClock:
    """A clock frozen at DEMO_NOW; tests move it with .set() / .advance()."""
    return FrozenClock(DEMO_NOW)


@pytest.fixture
def demo_store(demo_clock: FrozenClock) -> DemoStore:
    """The default demo store (seed 7, Standard 40/2 bucket) on the frozen clock."""
    return DemoStore(clock=demo_clock)


@pytest.fixture
def demo_store_server(demo_store: DemoStore, demo_clock: FrozenClock) -> Iterator[ServedDemoStore]:
    """`demo_store` served over HTTP on 127.0.0.1 (a free port), shut down after the test."""
    with serve(demo_store) as url:
        yield ServedDemoStore(store=demo_store, clock=demo_clock, url=url)
