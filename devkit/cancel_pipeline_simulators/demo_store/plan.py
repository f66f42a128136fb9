"""The shapes of a generated order: its fixed facts and its timeline of events.

An order's state at any moment is its plan with the events up to that moment applied (see state.py), so
plans are immutable and cheap to cache.
"""

from __future__ import annotations

from typing import NamedTuple

HOUR = 3600
MAX_LIFETIME = 96 * HOUR
"""No generated event happens later than this after the order's creation (bounds every time-window query)."""

ORDER_ID_BASE = 5_801_234_000_000
ORDERS_PER_BUCKET_SLOT = 1000
"""Generated ids are ORDER_ID_BASE + bucket * ORDERS_PER_BUCKET_SLOT + position, so an id names its bucket."""
CREATED_ORDER_ID_BASE = 5_990_000_000_000
"""Orders created at run time (DemoStore.create_order) take ids from here up."""

CANCEL_REASONS = ("customer", "fraud", "inventory", "declined", "other", "staff")


class Event(NamedTuple):
    """One change in an order's life.

    kind is one of: fulfill (line -1 = every line with units left, else that line), close, cancel_refund,
    edit, return, no_restock, legacy_restock (refunds or removals of `qty` units of `line`), cancel (text is
    the reason, `qty` 1 when the order is closed at the same time), tag (text is added to the tags).
    """

    time: int
    kind: str
    line: int = -1
    qty: int = 0
    text: str = ""


class Line(NamedTuple):
    """An ordered line: `product` indexes catalog.PRODUCTS."""

    line_id: int
    product: int
    quantity: int


class Customer(NamedTuple):
    """Who placed the order."""

    customer_id: int
    first_name: str
    last_name: str
    city: int
    street_number: int
    street: int


class OrderPlan(NamedTuple):
    """An order's fixed facts plus its timeline; `created` and event times are UTC epoch seconds."""

    id: int
    number: int
    created: int
    source: str
    test: bool
    financial: str
    customer: Customer | None
    lines: tuple[Line, ...]
    events: tuple[Event, ...]
    event_times: tuple[int, ...]
    tags: str
    shipping_cents: int
    malformed: str | None
    scenario: str


def line_id_for(order_id: int, index: int) -> int:
    """Line item ids derive from the order id, so they are unique and stable."""
    return 13_000_000_000_000 + (order_id - ORDER_ID_BASE) * 16 + index


def child_id(order_id: int, base: int, index: int) -> int:
    """Ids of refunds, refund lines, transactions and fulfillments, derived from the order id."""
    return base + (order_id - ORDER_ID_BASE) * 16 + index
