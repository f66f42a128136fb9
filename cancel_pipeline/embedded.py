"""The embedded defaults: what a fresh checkout talks to when no real store or target is configured.

This is the one place the product imports the simulators (`cancel_pipeline_simulators`, installed by `make`
beside the product, not part of it): the demo Shopify store when `SHOPIFY_STORE` is unset, and the fake
downstream target when `CANCEL_PIPELINE_DEMO_TARGET` is on. Both load only when used.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

WSGIApp = Callable[..., Any]

DEMO_STORE = "demo"
"""The name the built-in demo store goes by: the store a warehouse records, and its file `data/demo.duckdb`."""

_shops: dict[tuple[int, float, float, float], Any] = {}
_shops_lock = threading.Lock()


def embedded_shop(
    bucket_size: int,
    leak_rate: float,
    graphql_bucket_points: float = 20000.0,
    graphql_restore_rate: float = 1000.0,
) -> tuple[WSGIApp, str]:
    """The process's in-process demo store for a bucket shape and its access token.

    One store per shape (REST bucket and leak, GraphQL bucket and restore rate; Plus-sized by default, so a
    local run is quick), kept for the life of the process, so what a run changes (cancels) persists.
    """
    from cancel_pipeline_simulators.demo_store import DemoStore

    with _shops_lock:
        key = (bucket_size, leak_rate, graphql_bucket_points, graphql_restore_rate)
        if key not in _shops:
            _shops[key] = DemoStore(
                bucket_size=bucket_size,
                leak_rate=leak_rate,
                graphql_bucket_size=int(graphql_bucket_points),
                graphql_restore_rate=graphql_restore_rate,
            )
        shop = _shops[key]
    return shop, shop.settings.access_token


@contextlib.contextmanager
def served_embedded_target(token: str) -> Iterator[str]:
    """Serve the fake Cancel Order API on 127.0.0.1 for the block; yields its base URL."""
    from cancel_pipeline_simulators.fake_target import FakeTarget, serve

    with serve(FakeTarget(token)) as url:
        yield url
