"""The seeded order history: a pure function of (seed, hour bucket), generated on demand and cached.

Bucket b covers creation times [HISTORY_EPOCH + b hours, + 1 hour). Its random generator is seeded by
(seed, b) alone, so any range of time can be produced without generating what came before it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from functools import lru_cache

from .catalog import CITIES, FIRST_NAMES, LAST_NAMES, PRODUCTS, STREETS
from .malformed import MALFORMED_KINDS, SCENARIO_FOR_KIND
from .plan import (
    CANCEL_REASONS,
    HOUR,
    MAX_LIFETIME,
    ORDER_ID_BASE,
    ORDERS_PER_BUCKET_SLOT,
    Customer,
    Event,
    Line,
    OrderPlan,
    line_id_for,
)
from .settings import HISTORY_EPOCH, DemoStoreSettings

EPOCH_TS = int(HISTORY_EPOCH.timestamp())
MAX_REGULAR_PER_BUCKET = 200
"""Regular orders an hour at most, unless the density asked for is higher: then up to what the hour's id slot
holds besides its burst (`regular_cap`), so `--orders-per-hour 600` is served as asked, not cut to 200."""


def regular_cap(settings: DemoStoreSettings) -> int:
    """The most regular orders one hour bucket gets: 200, or for a denser store what its id slot can hold.

    Densities up to 100 an hour keep exactly the histories they always had (a draw over 200 is ten standard
    deviations away); above that the old cap silently thinned the store (at 200 an hour, every hour that drew
    more), and a benchmark of a big store got a smaller one than it asked for.
    """
    if settings.orders_per_hour <= 100:
        return MAX_REGULAR_PER_BUCKET
    return max(MAX_REGULAR_PER_BUCKET, ORDERS_PER_BUCKET_SLOT - max(settings.burst_size, 0) - 1)


# Weights of what happens to an ordinary order after it is placed.
SCENARIOS = {
    "fulfilled": 44,
    "partial_fulfilled": 5,
    "partial_cancel": 7,
    "double_partial_cancel": 3,
    "edit": 5,
    "return": 6,
    "no_restock": 4,
    "legacy_restock": 1.5,
    "cancel": 9,
    "partial_then_cancel": 2.5,
    "stuck": 8,
}
_SCENARIO_NAMES = tuple(SCENARIOS)
_SCENARIO_WEIGHTS = tuple(SCENARIOS.values())
BOUNDARY_TAG_PROBABILITY = 0.06
TEST_ORDER_PROBABILITY = 0.03


def bucket_of(ts: float) -> int:
    """The hour bucket holding UTC epoch second `ts`."""
    return math.floor((ts - EPOCH_TS) / HOUR)


def bucket_start(bucket: int) -> int:
    """The first UTC epoch second of `bucket`."""
    return EPOCH_TS + bucket * HOUR


class History:
    """Generates and caches the plans of each hour bucket for one settings object."""

    def __init__(self, settings: DemoStoreSettings) -> None:
        self.settings = settings
        self._burst_offset = settings.seed % max(settings.burst_every_hours, 1)
        self._malformed_offset = (settings.seed * 7 + 1) % max(settings.malformed_every_hours, 1)
        self.bucket = lru_cache(maxsize=settings.bucket_cache_size)(self._generate)
        self._regular_cap = regular_cap(settings)

    def plans_between(self, first_bucket: int, last_bucket: int) -> Iterator[OrderPlan]:
        """Every plan created in buckets first..last inclusive, oldest first."""
        for b in range(max(first_bucket, 0), last_bucket + 1):
            yield from self.bucket(b)

    def plan_by_id(self, order_id: int) -> OrderPlan | None:
        """The generated plan with this id, or None when no generated order has it."""
        offset = order_id - ORDER_ID_BASE
        if offset < 0:
            return None
        b, position = divmod(offset, ORDERS_PER_BUCKET_SLOT)
        plans = self.bucket(b)
        if position < len(plans) and plans[position].id == order_id:
            return plans[position]
        return None

    def _generate(self, b: int) -> tuple[OrderPlan, ...]:
        if b < 0:
            return ()
        s = self.settings
        rng = random.Random(s.seed * 1_000_003 + b)
        start = bucket_start(b)
        count = min(_poisson(rng, s.orders_per_hour), self._regular_cap)
        malformed_kind = None
        if s.malformed_every_hours > 0 and b % s.malformed_every_hours == self._malformed_offset:
            malformed_kind = MALFORMED_KINDS[(b // s.malformed_every_hours) % len(MALFORMED_KINDS)]
            count = max(count, 1)
        drafts: list[tuple[int, int, str | None]] = []  # (created, kind: 0 regular / 1 burst, malformation)
        for i, created in enumerate(sorted(start + rng.randrange(HOUR) for _ in range(count))):
            drafts.append((created, 0, malformed_kind if i == 0 else None))
        burst_time = burst_gap = 0
        if s.burst_every_hours > 0 and s.burst_size > 0 and b % s.burst_every_hours == self._burst_offset:
            burst_time = start + rng.randrange(5 * 60, 40 * 60)
            burst_gap = rng.randrange(10 * 60, 25 * 60)
            drafts.extend((burst_time, 1, None) for _ in range(s.burst_size))
        drafts.sort(key=lambda d: d[0])  # stable: equal times keep their order, so ids follow time
        plans = []
        for position, (created, kind, malformation) in enumerate(drafts):
            order_id = ORDER_ID_BASE + b * ORDERS_PER_BUCKET_SLOT + position
            if kind == 1:
                plans.append(_burst_plan(rng, order_id, created, created + burst_gap))
            else:
                plans.append(_regular_plan(rng, order_id, created, malformation))
        return tuple(plans)


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def random_customer(rng: random.Random) -> Customer:
    """A customer with a random name and address from the catalog's pools."""
    return Customer(
        customer_id=7_001_000_000_000 + rng.randrange(5_000_000),
        first_name=rng.choice(FIRST_NAMES),
        last_name=rng.choice(LAST_NAMES),
        city=rng.randrange(len(CITIES)),
        street_number=rng.randrange(1, 999),
        street=rng.randrange(len(STREETS)),
    )


def _lines(rng: random.Random, order_id: int, min_lines: int, min_first_quantity: int) -> tuple[Line, ...]:
    count = max(min_lines, rng.choices((1, 2, 3, 4), weights=(45, 30, 17, 8))[0])
    products = rng.sample(range(len(PRODUCTS)), count)
    lines = []
    for index, product in enumerate(products):
        quantity = rng.choices((1, 2, 3), weights=(70, 22, 8))[0]
        if index == 0:
            quantity = max(quantity, min_first_quantity)
        lines.append(Line(line_id_for(order_id, index), product, quantity))
    return tuple(lines)


def _hours(rng: random.Random, low: float, high: float) -> int:
    return int(rng.uniform(low, high) * HOUR)


def _regular_plan(rng: random.Random, order_id: int, created: int, malformation: str | None) -> OrderPlan:
    source = rng.choices(("web", "pos", "shopify_draft_order"), weights=(60, 25, 15))[0]
    scenario = rng.choices(_SCENARIO_NAMES, weights=_SCENARIO_WEIGHTS)[0]
    scenario = SCENARIO_FOR_KIND.get(malformation or "", scenario)
    min_lines, min_quantity = {
        "partial_fulfilled": (2, 1),
        "partial_cancel": (1, 2),
        "double_partial_cancel": (1, 3),
        "edit": (1, 2),
        "no_restock": (1, 2),
        "partial_then_cancel": (2, 1),
    }.get(scenario, (1, 1))
    lines = _lines(rng, order_id, min_lines, min_quantity)
    if source == "pos":
        financial = "paid"
        customer = random_customer(rng) if rng.random() < 0.5 else None
    elif source == "web":
        financial = "paid" if rng.random() < 0.85 else "authorized"
        customer = random_customer(rng)
    else:
        financial = "paid" if rng.random() < 0.6 else "pending"
        customer = random_customer(rng)
    events = _timeline(rng, scenario, source, created, lines, fast=malformation is not None)
    if malformation is None and rng.random() < BOUNDARY_TAG_PROBABILITY:
        # A scheduled automation tags the order on the half hour, so its updated_at lands on a boundary.
        last = events[-1].time if events else created
        boundary = (last // 1800 + 1) * 1800
        if boundary - created <= MAX_LIFETIME:
            events.append(Event(boundary, "tag", text="reviewed"))
    tags = rng.choice(("", "", "", "vip", "wholesale", "gift", "first-order", "newsletter"))
    return OrderPlan(
        id=order_id,
        number=1000 + order_id - ORDER_ID_BASE,
        created=created,
        source=source,
        test=rng.random() < TEST_ORDER_PROBABILITY,
        financial=financial,
        customer=customer,
        lines=lines,
        events=tuple(events),
        event_times=tuple(e.time for e in events),
        tags=tags,
        shipping_cents=0 if source == "pos" else rng.choice((0, 599, 899)),
        malformed=malformation,
        scenario=scenario,
    )


def _timeline(
    rng: random.Random, scenario: str, source: str, t0: int, lines: tuple[Line, ...], *, fast: bool
) -> list[Event]:
    """The events of one order; every time is within MAX_LIFETIME of creation and the list is sorted."""
    events: list[Event] = []
    pos = source == "pos"

    def fulfil_at(t: int, line: int = -1) -> None:
        events.append(Event(t, "fulfill", line))

    def first_fulfilment(low: float = 0.5, high: float = 20.0) -> int:
        return t0 + (rng.randrange(5, 120) if pos else _hours(rng, low, high))

    if scenario == "fulfilled":
        t = first_fulfilment()
        fulfil_at(t)
        if pos:
            events.append(Event(t, "close"))
        elif rng.random() < 0.35:
            events.append(Event(t + _hours(rng, 12, 70), "close"))
    elif scenario == "fulfilled_closed":
        fulfil_at(t0 + _hours(rng, 0.1, 0.3))
        events.append(Event(t0 + _hours(rng, 0.4, 0.9), "close"))
    elif scenario == "partial_fulfilled":
        t = first_fulfilment(1, 12)
        fulfil_at(t, 0)
        if rng.random() < 0.4:
            fulfil_at(t + _hours(rng, 10, 48))
    elif scenario in ("partial_cancel", "double_partial_cancel"):
        t = t0 + (_hours(rng, 0.05, 0.5) if fast else _hours(rng, 0.3, 10))
        events.append(Event(t, "cancel_refund", 0, 1))
        if scenario == "double_partial_cancel":
            t += _hours(rng, 0.5, 12)
            events.append(Event(t, "cancel_refund", 0, 1))
        if rng.random() < 0.6:
            fulfil_at(t + _hours(rng, 1, 24))
    elif scenario == "edit":
        t = t0 + _hours(rng, 0.2, 8)
        if len(lines) > 1 and rng.random() < 0.3:
            events.append(Event(t, "edit", 1, lines[1].quantity))  # a whole line removed
        else:
            events.append(Event(t, "edit", 0, rng.randrange(1, lines[0].quantity)))
        if rng.random() < 0.6:
            fulfil_at(t + _hours(rng, 1, 24))
    elif scenario in ("return", "legacy_restock"):
        t = first_fulfilment(0.5, 12)
        fulfil_at(t)
        low, high = (10, 60) if scenario == "return" else (5, 40)
        events.append(Event(t + _hours(rng, low, high), scenario, 0, 1))
    elif scenario == "no_restock":
        if rng.random() < 0.5:
            t = first_fulfilment(0.5, 12)
            fulfil_at(t)
            events.append(Event(t + _hours(rng, 5, 40), "no_restock", 0, 1))
        else:
            t = t0 + _hours(rng, 1, 10)
            events.append(Event(t, "no_restock", 0, 1))
            fulfil_at(t + _hours(rng, 1, 24))
    elif scenario in ("cancel", "partial_then_cancel"):
        t = t0 + (_hours(rng, 0.1, 0.9) if fast else _hours(rng, 0.1, 24))
        if scenario == "partial_then_cancel":
            events.append(Event(t, "cancel_refund", 0, 1))
            t += _hours(rng, 0.5, 12)
        closed = 1 if rng.random() < 0.5 else 0
        events.append(Event(t, "cancel", qty=closed, text=rng.choice(CANCEL_REASONS)))
    elif scenario == "stuck":
        # Left unfulfilled for many hours; half of them are fulfilled much later, the rest never.
        if rng.random() < 0.5:
            fulfil_at(t0 + (_hours(rng, 4, 40) if pos else _hours(rng, 20, 80)))
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    events.sort(key=lambda e: e.time)
    return [e for e in events if e.time - t0 <= MAX_LIFETIME]


def _burst_plan(rng: random.Random, order_id: int, created: int, fulfilled: int) -> OrderPlan:
    """One order of a wholesale import: created in the import's second, bulk-fulfilled and tagged together."""
    lines = (Line(line_id_for(order_id, 0), rng.randrange(len(PRODUCTS)), rng.choice((6, 12, 24))),)
    events = (Event(fulfilled, "fulfill"), Event(fulfilled, "tag", text="bulk-fulfilled"))
    return OrderPlan(
        id=order_id,
        number=1000 + order_id - ORDER_ID_BASE,
        created=created,
        source="shopify_draft_order",
        test=False,
        financial="paid",
        customer=random_customer(rng),
        lines=lines,
        events=events,
        event_times=tuple(e.time for e in events),
        tags="wholesale-import",
        shipping_cents=0,
        malformed=None,
        scenario="burst",
    )
