"""Simulators of the systems cancel_pipeline talks to, for the demo and the tests.

- `demo_store`: Shopify's Admin API for orders, seeded and deterministic, unfolding along a clock.
- `fake_target`: a downstream system's Cancel Order API, with fault knobs.
- `http_server`: the small threaded WSGI server both are served with.
"""
