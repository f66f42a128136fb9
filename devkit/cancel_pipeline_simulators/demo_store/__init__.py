"""A faithful, deterministic simulator of Shopify's REST and GraphQL Admin APIs for orders.

The store is a pure function of (seed, now): hour buckets of seeded orders whose timelines unfold as the
clock moves, plus changes made at run time (cancel, fulfil, create). It is a WSGI application. Both APIs
serve the same orders; GraphQL adds query cost and bulk query operations (graphql_api.py says what is
simulated there and what is a guess).
"""

from cancel_pipeline_simulators.http_server import serve

from .clock import Clock, FrozenClock, system_clock
from .orders import OrderError
from .settings import DemoStoreSettings
from .store import DemoStore

__all__ = ["Clock", "DemoStore", "DemoStoreSettings", "FrozenClock", "OrderError", "serve", "system_clock"]
