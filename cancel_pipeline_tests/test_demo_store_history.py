"""The demo store's seeded history, read through its Python interface (no HTTP)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, OrderError
from cancel_pipeline_simulators.demo_store.malformed import MALFORMED_KINDS

from cancel_pipeline_tests.demo_fixtures import DEMO_NOW

NOW = datetime.fromisoformat(DEMO_NOW)


@pytest.fixture(scope="module")
def two_days() -> list[dict[str, Any]]:
    """Every order created in the 48 hours before DEMO_NOW, as the store shows them at DEMO_NOW."""
    store = DemoStore(clock=FrozenClock(NOW))
    return store.orders(status="any", created_at_min=NOW - timedelta(hours=48))


def refund_lines(order: dict[str, Any]) -> list[dict[str, Any]]:
    return [rli for refund in order["refunds"] for rli in refund["refund_line_items"]]


def well_formed(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The orders none of whose checked fields is broken."""
    good = []
    for o in orders:
        lines = o.get("line_items")
        if not isinstance(o.get("id"), int) or not isinstance(lines, list) or o.get("total_price") == "N/A":
            continue
        if all(isinstance(line.get("id"), int) and isinstance(line.get("quantity"), int) for line in lines):
            good.append(o)
    return good


def test_same_seed_and_now_give_the_same_bytes() -> None:
    window = {"status": "any", "updated_at_min": NOW - timedelta(hours=6)}
    first = DemoStore(clock=FrozenClock(NOW)).orders(**window)
    second = DemoStore(clock=FrozenClock(NOW)).orders(**window)
    other_seed = DemoStore(seed=8, clock=FrozenClock(NOW)).orders(**window)
    assert first
    assert orjson.dumps(first) == orjson.dumps(second)
    assert orjson.dumps(first) != orjson.dumps(other_seed)


def test_history_unfolds_with_the_clock() -> None:
    clock = FrozenClock(NOW)
    store = DemoStore(clock=clock)
    before = {o["id"]: o for o in store.orders(status="any", created_at_min=NOW - timedelta(hours=3))}
    clock.advance(hours=2)
    after = {o["id"]: o for o in store.orders(status="any", created_at_min=NOW - timedelta(hours=3))}
    assert set(before) < set(after), "new orders arrive as time passes"
    changed = [i for i in before if i in after and after[i]["updated_at"] != before[i]["updated_at"]]
    assert changed, "existing orders change as their timelines unfold"
    clock.set(NOW)
    assert {o["id"] for o in store.orders(status="any", created_at_min=NOW - timedelta(hours=3))} == set(
        before
    )


def test_orders_created_after_now_do_not_exist(demo_store: DemoStore) -> None:
    newest = demo_store.orders(status="any", created_at_min=NOW - timedelta(hours=1))
    assert newest
    assert all(datetime.fromisoformat(o["created_at"]) <= NOW for o in newest if "created_at" in o)
    assert all(datetime.fromisoformat(o["created_at"]).utcoffset() == timedelta(hours=-5) for o in newest)


def test_volume_is_a_small_store_plus_bursts(two_days: list[dict[str, Any]]) -> None:
    regular = [o for o in two_days if "wholesale-import" not in o.get("tags", "")]
    assert 500 <= len(regular) <= 1000
    assert len(two_days) - len(regular) >= 600


def test_sources_and_test_orders_are_mixed(two_days: list[dict[str, Any]]) -> None:
    sources = Counter(o["source_name"] for o in two_days)
    assert {"web", "pos", "shopify_draft_order"} <= set(sources)
    assert any(o["test"] for o in two_days)


def test_fulfilment_kinds_exist(two_days: list[dict[str, Any]]) -> None:
    statuses = Counter(o["fulfillment_status"] for o in two_days)
    assert statuses["fulfilled"] and statuses["partial"] and statuses[None]
    assert any(o["closed_at"] and not o["cancelled_at"] for o in two_days)


def test_partial_cancellations_by_refund_lower_current_quantity(two_days: list[dict[str, Any]]) -> None:
    partial = [
        o
        for o in well_formed(two_days)
        if not o["cancelled_at"] and any(r["restock_type"] == "cancel" for r in refund_lines(o))
    ]
    assert partial
    for order in partial:
        for line in order["line_items"]:
            refunded = sum(r["quantity"] for r in refund_lines(order) if r["line_item_id"] == line["id"])
            assert line["current_quantity"] <= line["quantity"] - refunded
    twice = [
        o
        for o in partial
        if any(
            n >= 2
            for n in Counter(
                r["line_item_id"] for r in refund_lines(o) if r["restock_type"] == "cancel"
            ).values()
        )
    ]
    assert twice, "some line is partially canceled by two refunds"


def test_order_edits_lower_current_quantity_without_a_refund(two_days: list[dict[str, Any]]) -> None:
    edited = []
    for order in well_formed(two_days):
        if order["cancelled_at"]:
            continue
        for line in order["line_items"]:
            refunded = sum(r["quantity"] for r in refund_lines(order) if r["line_item_id"] == line["id"])
            if line["quantity"] - line["current_quantity"] - refunded > 0:
                edited.append((order["id"], line["id"]))
    assert edited


def test_refund_kinds_exist(two_days: list[dict[str, Any]]) -> None:
    kinds = Counter(r["restock_type"] for o in well_formed(two_days) for r in refund_lines(o))
    assert kinds["return"] and kinds["no_restock"] and kinds["legacy_restock"] and kinds["cancel"]
    returned = [
        o for o in well_formed(two_days) if any(r["restock_type"] == "return" for r in refund_lines(o))
    ]
    assert all(o["fulfillments"] for o in returned), "returns follow a fulfilment"


def test_full_cancellations_have_every_reason(two_days: list[dict[str, Any]]) -> None:
    canceled = [o for o in well_formed(two_days) if o["cancelled_at"] and "T" in o["cancelled_at"]]
    assert {o["cancel_reason"] for o in canceled} == {
        "customer",
        "fraud",
        "inventory",
        "declined",
        "other",
        "staff",
    }
    assert {o["financial_status"] for o in canceled} == {"refunded", "voided"}
    assert all(o["updated_at"] >= o["cancelled_at"] for o in canceled if o["updated_at"][0].isdigit())
    partly_first = [
        o
        for o in canceled
        if any(
            r["restock_type"] == "cancel" and refund["created_at"] < o["cancelled_at"]
            for refund in o["refunds"]
            for r in refund["refund_line_items"]
        )
    ]
    assert partly_first, "some orders are partially canceled before being canceled fully"


def test_updated_at_on_half_hour_boundaries(two_days: list[dict[str, Any]]) -> None:
    on_boundary = [
        o
        for o in two_days
        if o["updated_at"][0].isdigit() and datetime.fromisoformat(o["updated_at"]).timestamp() % 1800 == 0
    ]
    assert on_boundary


@pytest.mark.parametrize("hours_back", [24, 30, 37, 43])
def test_any_day_holds_a_burst_sharing_one_updated_at_second(hours_back: int) -> None:
    end = NOW - timedelta(hours=hours_back - 24)
    store = DemoStore(clock=FrozenClock(end))
    orders = store.orders(status="any", updated_at_min=end - timedelta(hours=24), updated_at_max=end)
    second, size = Counter(o["updated_at"] for o in orders).most_common(1)[0]
    assert size >= 300, second


def test_stuck_orders_are_fulfilled_much_later() -> None:
    clock = FrozenClock(NOW)
    store = DemoStore(clock=clock)
    stuck = [
        o
        for o in well_formed(
            store.orders(
                status="open",
                created_at_min=NOW - timedelta(hours=36),
                created_at_max=NOW - timedelta(hours=12),
            )
        )
        if o["fulfillment_status"] is None and not o["refunds"]
    ]
    assert {o["source_name"] for o in stuck} >= {"web", "pos"}
    clock.advance(hours=72)
    later = [store.get_order(o["id"]) for o in stuck]
    fulfilled = [o for o in later if o and o["fulfillment_status"] == "fulfilled"]
    assert fulfilled, "some orders stuck at T are fulfilled at T + x"


def test_every_kind_of_malformed_record_exists() -> None:
    store = DemoStore(clock=FrozenClock(NOW))
    orders = store.orders(
        status="any", created_at_min=NOW - timedelta(hours=50), created_at_max=NOW - timedelta(hours=1)
    )
    found = set()
    for o in orders:
        if o["id"] == "abc":
            found.add("id_string")
        if o["id"] == 1.5:
            found.add("id_float")
        if "created_at" not in o:
            found.add("created_at_missing")
        if o["updated_at"] == "not-a-date":
            found.add("updated_at_unparseable")
        if o["cancelled_at"] and not o["cancelled_at"].startswith("2025-"):
            found.add("cancelled_at_unparseable")
        if o["closed_at"] and not o["closed_at"].startswith("2025-"):
            found.add("closed_at_unparseable")
        if any(not r["created_at"].startswith("2025-") for r in o["refunds"]):
            found.add("refund_created_at_unparseable")
        if o["total_price"] == "N/A":
            found.add("total_price_not_number")
        if not isinstance(o["line_items"], list):
            found.add("line_items_not_list")
        elif any("id" not in line for line in o["line_items"]):
            found.add("line_item_id_missing")
        elif any(not isinstance(line["quantity"], int) for line in o["line_items"]):
            found.add("line_item_quantity_not_int")
    assert found == set(MALFORMED_KINDS)
    assert len(orders) / len(found) > 100, "malformed records stay rare"


def test_cancel_order_as_shopify_does(demo_store: DemoStore, demo_clock: FrozenClock) -> None:
    open_unfulfilled = next(
        o
        for o in well_formed(demo_store.orders(created_at_min=NOW - timedelta(hours=6)))
        if o["fulfillment_status"] is None and not o["refunds"]
    )
    demo_clock.advance(seconds=5)
    canceled = demo_store.cancel_order(open_unfulfilled["id"], reason="inventory")
    assert canceled["cancel_reason"] == "inventory"
    assert (
        canceled["cancelled_at"]
        == canceled["updated_at"]
        == demo_clock().astimezone(demo_store.tz).isoformat()
    )
    assert all(line["current_quantity"] == 0 for line in canceled["line_items"])
    with pytest.raises(OrderError) as again:
        demo_store.cancel_order(open_unfulfilled["id"])
    assert again.value.status == 422
    recent = demo_store.orders(created_at_min=NOW - timedelta(hours=6))
    fulfilled = next(o for o in well_formed(recent) if o["fulfillment_status"] == "fulfilled")
    with pytest.raises(OrderError) as has_fulfilments:
        demo_store.cancel_order(fulfilled["id"])
    assert has_fulfilments.value.status == 422
    with pytest.raises(OrderError) as unknown:
        demo_store.cancel_order(42)
    assert unknown.value.status == 404


def test_changes_persist_while_history_moves_on(demo_store: DemoStore, demo_clock: FrozenClock) -> None:
    old = next(
        o
        for o in well_formed(
            demo_store.orders(
                created_at_min=NOW - timedelta(hours=84), created_at_max=NOW - timedelta(hours=80)
            )
        )
        if o["fulfillment_status"] is None and not o["refunds"]
    )
    demo_store.cancel_order(old["id"])
    demo_clock.advance(minutes=30)
    recent = demo_store.orders(status="cancelled", updated_at_min=NOW - timedelta(minutes=1))
    assert old["id"] in {o["id"] for o in recent}, "a change to an old order shows in a recent window"


def test_created_and_fulfilled_orders(demo_store: DemoStore, demo_clock: FrozenClock) -> None:
    created = demo_store.create_order(source_name="pos", quantities=(2, 1))
    assert created["source_name"] == "pos" and created["fulfillment_status"] is None
    assert created["created_at"] == demo_clock().astimezone(demo_store.tz).isoformat()
    assert demo_store.orders(updated_at_min=NOW)[0]["id"] == created["id"]
    demo_clock.advance(minutes=3)
    fulfilled = demo_store.fulfill_order(created["id"])
    assert fulfilled["fulfillment_status"] == "fulfilled"
    assert fulfilled["updated_at"] > created["updated_at"]
    with pytest.raises(OrderError) as refused:
        demo_store.cancel_order(created["id"])
    assert refused.value.status == 422
