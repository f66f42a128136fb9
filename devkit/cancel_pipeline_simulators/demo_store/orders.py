"""The order book: seeded history plus run-time changes, queried the way orders.json and count.json ask.

Reads are lock-free (the overlay maps are replaced, never mutated in place); writes take a lock.
"""

from __future__ import annotations

import random
import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import orjson

from .catalog import PRODUCTS
from .history import History, bucket_of, bucket_start, random_customer
from .plan import CANCEL_REASONS, CREATED_ORDER_ID_BASE, MAX_LIFETIME, Event, Line, OrderPlan, line_id_for
from .query import OrderFilter
from .render import OrderRenderer
from .settings import DemoStoreSettings
from .state import OrderState, state_at

Match = tuple[OrderPlan, OrderState]
RENDER_CACHE_SIZE = 8192


class OrderError(Exception):
    """A refused change or a missing order: `status` and the JSON `body` Shopify would send."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class OrderBook:
    """Answers order queries at a given `now` (UTC epoch seconds) and records changes made at run time."""

    def __init__(self, settings: DemoStoreSettings) -> None:
        self.settings = settings
        self.history = History(settings)
        self.renderer = OrderRenderer(settings.shop_timezone, settings.shop_domain, settings.currency)
        self._lock = threading.Lock()
        self._overlay: dict[int, tuple[Event, ...]] = {}
        self._created: dict[int, OrderPlan] = {}
        self._rendered: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()
        self._rendered_lock = threading.Lock()
        # Bumped by every run-time change, so derived caches (GraphQL's sorted listings) know to rebuild.
        self.revision = 0

    # -- lookups -------------------------------------------------------------------------------------

    def plan(self, order_id: int) -> OrderPlan | None:
        """The plan of a generated or run-time order, whether or not it exists yet."""
        return self._created.get(order_id) or self.history.plan_by_id(order_id)

    def state(self, plan: OrderPlan, now: int) -> OrderState | None:
        """The order at `now`, or None when it does not exist then (not created, or out of the history)."""
        if plan.created < self._history_start(now):
            return None
        return state_at(plan, now, self._overlay.get(plan.id, ()))

    def render(self, match: Match) -> dict[str, Any]:
        """The order's JSON object."""
        return self.renderer.render(*match)

    def render_bytes(self, match: Match, now: int) -> bytes:
        """The order's JSON as bytes, cached: pages are re-read often and the state only changes at events."""
        plan = match[0]
        overlay = self._overlay.get(plan.id, ())
        # Which events have happened fixes the state, so it identifies the rendering exactly.
        key = (plan.id, bisect_right(plan.event_times, now), sum(1 for e in overlay if e.time <= now))
        with self._rendered_lock:
            cached = self._rendered.get(key)
            if cached is not None:
                self._rendered.move_to_end(key)
                return cached
        rendered = orjson.dumps(self.render(match))
        with self._rendered_lock:
            self._rendered[key] = rendered
            if len(self._rendered) > RENDER_CACHE_SIZE:
                self._rendered.popitem(last=False)
        return rendered

    def get(self, order_id: int, now: int) -> Match | None:
        """One order by id at `now`."""
        plan = self.plan(order_id)
        st = self.state(plan, now) if plan else None
        return (plan, st) if plan and st else None

    # -- queries -------------------------------------------------------------------------------------

    def count(self, f: OrderFilter, now: int) -> int:
        """How many orders match at `now`."""
        return sum(1 for _ in self.matches(f, now))

    def page(
        self,
        f: OrderFilter,
        now: int,
        limit: int,
        *,
        after: tuple[int, int] | None = None,
        forward: bool = True,
    ) -> tuple[list[Match], bool]:
        """One page in Shopify's order (created_at desc, id desc) and whether more lie beyond it.

        forward: the `limit` orders sorting after the key `after` (created, id); otherwise the `limit` orders
        sorting just before it (a rel="previous" page). Either way the page comes back newest first.
        """
        if f.ids is not None:
            ranked = sorted(self.matches(f, now), key=_key, reverse=forward)
            ranked = [m for m in ranked if after is None or _beyond(m, after, forward)]
        else:
            ranked = self._walk(f, now, limit, after, forward)
        more = len(ranked) > limit
        page = ranked[:limit]
        if not forward:
            page.reverse()
        return page, more

    def _walk(
        self, f: OrderFilter, now: int, limit: int, after: tuple[int, int] | None, forward: bool
    ) -> list[Match]:
        """Visit hour buckets from the cursor outwards, stopping once a page is certainly complete."""
        lo, hi = self._bucket_range(f, now)
        found = [m for m in self._extra_matches(f, now, lo) if after is None or _beyond(m, after, forward)]
        if forward:
            if after is not None:
                hi = min(hi, bucket_of(after[0]))
            buckets: Iterable[int] = range(hi, lo - 1, -1)
        else:
            assert after is not None
            lo = max(lo, bucket_of(after[0]))
            buckets = range(lo, hi + 1)
        for b in buckets:
            for plan in self.history.bucket(b):
                # The cursor test first: it needs only the plan, while matching builds the order's state, and
                # the cursor's bucket is walked again by every page that starts in it.
                if after is not None and not _plan_beyond(plan, after, forward):
                    continue
                match = self._match(plan, f, now)
                if match:
                    found.append(match)
            # Buckets partition creation time, so once enough orders sort before every unvisited bucket
            # the page cannot change.
            if forward:
                edge = bucket_start(b)
                settled = sum(1 for m in found if m[0].created >= edge)
            else:
                edge = bucket_start(b + 1)
                settled = sum(1 for m in found if m[0].created < edge)
            if settled > limit:
                break
        found.sort(key=_key, reverse=forward)
        return found[: limit + 1]

    def matches(self, f: OrderFilter, now: int) -> Iterable[Match]:
        """Every order matching at `now`, in no particular order."""
        if f.ids is not None:
            seen: set[int] = set()
            for order_id in f.ids:
                plan = self.plan(order_id)
                if plan and order_id not in seen:
                    seen.add(order_id)
                    match = self._match(plan, f, now)
                    if match:
                        yield match
            return
        lo, hi = self._bucket_range(f, now)
        yield from self._extra_matches(f, now, lo)
        for plan in self.history.plans_between(lo, hi):
            match = self._match(plan, f, now)
            if match:
                yield match

    def _extra_matches(self, f: OrderFilter, now: int, lo: int) -> list[Match]:
        """Orders a bucket walk from `lo` would miss: those created at run time, and changed ones older than lo."""
        plans = list(self._created.values())
        for order_id in self._overlay:
            plan = self.history.plan_by_id(order_id)
            if plan is not None and bucket_of(plan.created) < lo:
                plans.append(plan)
        return [m for plan in plans if (m := self._match(plan, f, now))]

    def _history_start(self, now: int) -> int:
        return now - self.settings.history_days * 86400

    def _bucket_range(self, f: OrderFilter, now: int) -> tuple[int, int]:
        lo, hi = bucket_of(self._history_start(now)), bucket_of(now)
        if f.created_min is not None:
            lo = max(lo, bucket_of(f.created_min))
        if f.created_max is not None:
            hi = min(hi, bucket_of(f.created_max))
        if f.updated_max is not None:
            hi = min(hi, bucket_of(f.updated_max))
        if f.updated_min is not None:
            # A planned order changes at most MAX_LIFETIME after creation (run-time changes: _extra_matches).
            lo = max(lo, bucket_of(f.updated_min - MAX_LIFETIME))
        return lo, hi

    def _match(self, plan: OrderPlan, f: OrderFilter, now: int) -> Match | None:
        created = plan.created
        if created > now or created < self._history_start(now):
            return None
        if (f.created_min is not None and created < f.created_min) or (
            f.created_max is not None and created > f.created_max
        ):
            return None
        overlay = self._overlay.get(plan.id)
        if overlay is None and f.updated_min is not None:
            # Without run-time changes every planned event applies, so the latest one due bounds updated_at.
            due = bisect_right(plan.event_times, now)
            latest = plan.event_times[due - 1] if due else created
            if latest < f.updated_min:
                return None
        st = state_at(plan, now, overlay or ())
        if st is None:
            return None
        if (f.updated_min is not None and st.updated < f.updated_min) or (
            f.updated_max is not None and st.updated > f.updated_max
        ):
            return None
        status = f.status
        if status == "open" and (st.cancelled_at is not None or st.closed_at is not None):
            return None
        if status == "closed" and st.closed_at is None:
            return None
        if status == "cancelled" and st.cancelled_at is None:
            return None
        if f.ids is not None and plan.id not in f.ids:
            return None
        return plan, st

    # -- changes -------------------------------------------------------------------------------------

    def cancel(self, order_id: int, reason: str | None, now: int) -> Match:
        """Cancel as Shopify does: 404 when unknown, 422 when fulfilled, already canceled or a bad reason."""
        reason = reason or "other"
        if reason not in CANCEL_REASONS:
            raise OrderError(422, {"errors": {"reason": [f"{reason!r} is not included in the list"]}})
        with self._lock:
            _plan, st = self._existing(order_id, now)
            if st.cancelled_at is not None:
                raise OrderError(422, {"errors": {"base": ["Order has already been cancelled"]}})
            if st.has_fulfillments:
                raise OrderError(422, {"errors": {"base": ["Cannot cancel an order that has fulfillments"]}})
            self._add(order_id, Event(now, "cancel", text=reason))
        return self._existing(order_id, now)

    def fulfill(self, order_id: int, now: int) -> Match:
        """Fulfil every unit still open; 422 when canceled or nothing is left to fulfil."""
        with self._lock:
            _plan, st = self._existing(order_id, now)
            if st.cancelled_at is not None:
                raise OrderError(422, {"errors": {"base": ["Cannot fulfill a cancelled order"]}})
            if not any(c > f for c, f in zip(st.current, st.fulfilled, strict=True)):
                raise OrderError(422, {"errors": {"base": ["Order has no unfulfilled line items"]}})
            self._add(order_id, Event(now, "fulfill"))
        return self._existing(order_id, now)

    def create(
        self,
        now: int,
        *,
        source_name: str = "web",
        test: bool = False,
        financial_status: str = "paid",
        quantities: tuple[int, ...] = (1,),
        tags: str = "",
    ) -> Match:
        """Place a new order now (it has no planned future; change it with cancel/fulfill)."""
        with self._lock:
            order_id = CREATED_ORDER_ID_BASE + len(self._created) + 1
            rng = random.Random(order_id)
            products = rng.sample(range(len(PRODUCTS)), len(quantities))
            plan = OrderPlan(
                id=order_id,
                number=900_000_000 + len(self._created) + 1,
                created=now,
                source=source_name,
                test=test,
                financial=financial_status,
                customer=random_customer(rng),
                lines=tuple(
                    Line(line_id_for(order_id, i), p, q)
                    for i, (p, q) in enumerate(zip(products, quantities, strict=True))
                ),
                events=(),
                event_times=(),
                tags=tags,
                shipping_cents=0 if source_name == "pos" else 599,
                malformed=None,
                scenario="created",
            )
            self._created = {**self._created, order_id: plan}
            self.revision += 1
        return self._existing(order_id, now)

    def _existing(self, order_id: int, now: int) -> Match:
        match = self.get(order_id, now)
        if match is None:
            raise OrderError(404, {"errors": "Not Found"})
        return match

    def _add(self, order_id: int, event: Event) -> None:
        self._overlay = {**self._overlay, order_id: (*self._overlay.get(order_id, ()), event)}
        self.revision += 1


def _key(match: Match) -> tuple[int, int]:
    return match[0].created, match[0].id


def _beyond(match: Match, after: tuple[int, int], forward: bool) -> bool:
    return _plan_beyond(match[0], after, forward)


def _plan_beyond(plan: OrderPlan, after: tuple[int, int], forward: bool) -> bool:
    key = (plan.created, plan.id)
    return key < after if forward else key > after
