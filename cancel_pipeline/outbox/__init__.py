"""Propagating cancellations to downstream systems (an OMS, a hub, fulfillment services) through an outbox.

- `targets`: which systems, read from the `CANCEL_PIPELINE_TARGETS` file (and the demo switch).
- `client`: the HTTP client of a target's Cancel Order API, classifying every answer.
- `deliver`: the outbox protocol (queue, claim, call, record) and why it errs towards re-sending.
- `deliveries`: the outbox table's SQL.
- `demo_target`: serves the built-in demo target inside a run.
"""
