"""An order's state at a moment: its plan with every event up to that moment applied."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .plan import Event, OrderPlan

REFUND_KINDS = ("cancel_refund", "return", "no_restock", "legacy_restock")
RESTOCK_TYPE = {
    "cancel_refund": "cancel",
    "return": "return",
    "no_restock": "no_restock",
    "legacy_restock": "legacy_restock",
}


@dataclass(slots=True)
class Refund:
    """A refund: `lines` holds (line index, quantity, restock_type)."""

    time: int
    lines: list[tuple[int, int, str]]
    note: str
    paid: bool


@dataclass(slots=True)
class OrderState:
    """What the order looks like at `now`; times are UTC epoch seconds."""

    updated: int
    current: list[int]
    fulfilled: list[int]
    refunds: list[Refund] = field(default_factory=list)
    fulfillments: list[tuple[int, list[tuple[int, int]]]] = field(default_factory=list)
    financial: str = "paid"
    cancelled_at: int | None = None
    cancel_reason: str | None = None
    closed_at: int | None = None
    extra_tags: list[str] = field(default_factory=list)

    @property
    def has_fulfillments(self) -> bool:
        """True once any unit was fulfilled (Shopify then refuses to cancel the order)."""
        return bool(self.fulfillments)

    def fulfillment_status(self) -> str | None:
        """null, partial or fulfilled, from the units still ordered and those fulfilled."""
        if not self.fulfillments:
            return None
        open_units = sum(max(c - f, 0) for c, f in zip(self.current, self.fulfilled, strict=True))
        return "partial" if open_units else "fulfilled"


def state_at(plan: OrderPlan, now: int, overlay: Iterable[Event] = ()) -> OrderState | None:
    """The order at `now`, or None when it is not created yet. Overlay events (mutations) follow the plan's."""
    if plan.created > now:
        return None
    events: Iterable[Event] = plan.events
    overlay = tuple(overlay)
    if overlay:
        events = sorted((*plan.events, *overlay), key=lambda e: e.time)
    st = OrderState(
        updated=plan.created,
        current=[line.quantity for line in plan.lines],
        fulfilled=[0] * len(plan.lines),
        financial=plan.financial,
    )
    for event in events:
        if event.time > now:
            break
        if _apply(plan, st, event):
            st.updated = max(st.updated, event.time)
    return st


def _apply(plan: OrderPlan, st: OrderState, e: Event) -> bool:
    """Apply one event; False when it no longer applies (e.g. a planned change after a cancellation)."""
    kind = e.kind
    if kind == "tag":
        st.extra_tags.append(e.text)
        return True
    if kind == "close":
        if st.closed_at is not None:
            return False
        st.closed_at = e.time
        return True
    if st.cancelled_at is not None:
        return False
    if kind == "fulfill":
        indexes = range(len(plan.lines)) if e.line < 0 else (e.line,)
        shipped = []
        for i in indexes:
            units = st.current[i] - st.fulfilled[i]
            if units > 0:
                st.fulfilled[i] += units
                shipped.append((i, units))
        if not shipped:
            return False
        st.fulfillments.append((e.time, shipped))
        return True
    if kind == "cancel":
        if st.fulfillments:
            return False
        paid = st.financial in ("paid", "partially_refunded")
        remaining = [(i, c, "cancel") for i, c in enumerate(st.current) if c > 0]
        if paid and remaining:
            st.refunds.append(Refund(e.time, remaining, "Order canceled", True))
        st.financial = "refunded" if paid else "voided"
        st.current = [0] * len(st.current)
        st.cancelled_at = e.time
        st.cancel_reason = e.text or "other"
        if e.qty:
            st.closed_at = e.time
        return True
    i = e.line
    if kind == "edit":
        units = min(e.qty, st.current[i] - st.fulfilled[i])
        if units <= 0:
            return False
        st.current[i] -= units
        return True
    if kind in REFUND_KINDS:
        restock_type = RESTOCK_TYPE[kind]
        # cancel refunds take unfulfilled units; returns take fulfilled ones; the others take any unit.
        available = st.current[i] - st.fulfilled[i] if kind == "cancel_refund" else st.current[i]
        units = min(e.qty, available)
        if units <= 0:
            return False
        st.current[i] -= units
        paid = st.financial in ("paid", "partially_refunded")
        note = {"cancel": "Item out of stock", "return": "Customer return"}.get(restock_type, "Refund")
        st.refunds.append(Refund(e.time, [(i, units, restock_type)], note, paid))
        if paid:
            st.financial = "partially_refunded"
        return True
    raise ValueError(f"unknown event kind {kind!r}")
