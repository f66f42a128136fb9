"""The `orders_stuck_in_created` check and `refresh_orders` (re-import by id), on demo-store data over HTTP.

The check measures age from its evaluation time (the wall clock), so these stores run on a frozen clock set a
little before now: the orders' ages are what the test chose, give or take the seconds the test takes, and
every threshold is met or missed by a margin of minutes or more.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from cancel_pipeline_simulators.demo_store import FrozenClock

from cancel_pipeline.defs.cancellations import checks
from cancel_pipeline.defs.cancellations.checks import orders_stuck_in_created
from cancel_pipeline.defs.cancellations.tables import cancellation_tables
from cancel_pipeline.defs.ingestion.partitions import PARTITION_KEY_FORMAT
from cancel_pipeline.defs.ingestion.raw_assets import raw_updated_order_pages
from cancel_pipeline.settings import PipelineSettings
from cancel_pipeline_tests.pipeline_fixtures import (
    Pipeline,
    demo_store,
    is_stuck,
    orders_read_by,
    parse_time,
    reject_reason,
    served_pipeline,
)


def store_now() -> datetime:
    """A moment a little before the wall clock, so the store's changes are never in the check's future."""
    return (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)


def stuck_evaluation(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [evaluation] = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == orders_stuck_in_created.check_key.name
    ]
    return evaluation


def listed_order_ids(evaluation: dg.AssetCheckEvaluation) -> list[int]:
    """The order ids in the check's table of stuck orders, in its order."""
    table = evaluation.metadata["stuck_orders"].value
    return [int(line.split("|")[1]) for line in table.splitlines()[2:]]


def evaluated_at(evaluation: dg.AssetCheckEvaluation) -> datetime:
    return datetime.fromisoformat(evaluation.metadata["evaluated_at"].value)


def versions(pipeline: Pipeline, order_id: int) -> list[dict[str, Any]]:
    return pipeline.query(
        "select updated_at, first_fetched_at, superseded_at, superseded_by_updated_at from order_versions"
        " where order_id = ? order by updated_at",
        order_id,
    )


# --- A store whose orders the test places itself -----------------------------------------------------


@pytest.fixture
def placed(tmp_path: Path) -> Iterator[Pipeline]:
    """A store with no seeded history (no bursts, no malformed records): only the orders a test places."""
    clock = FrozenClock(store_now())
    store = demo_store(clock, orders_per_hour=0, burst_size=0, malformed_every_hours=0)
    with served_pipeline(store, clock, tmp_path / "warehouse.duckdb") as pipeline:
        yield pipeline


def place(pipeline: Pipeline, age: timedelta, source: str, **options: Any) -> int:
    """Place an order `age` before the store's now and return its id."""
    now = pipeline.clock()
    pipeline.clock.set(now - age)
    try:
        return pipeline.store.create_order(source, **options)["id"]
    finally:
        pipeline.clock.set(now)


@pytest.mark.timeout(120)
def test_stuck_check_flags_orders_past_their_source_threshold_and_refresh_clears_them(
    placed: Pipeline,
) -> None:
    store, clock = placed.store, placed.clock
    pos_stuck = place(placed, timedelta(hours=2), "pos")
    web_stuck = place(placed, timedelta(hours=30), "web")
    other_stuck = place(placed, timedelta(hours=25), "iphone")  # any other source: 24 hours
    not_stuck = [
        place(placed, timedelta(minutes=20), "pos"),
        place(placed, timedelta(hours=23), "web"),
        place(placed, timedelta(hours=47), "shopify_draft_order"),
        place(placed, timedelta(days=5), "web", test=True),
    ]
    fulfilled = place(placed, timedelta(hours=40), "web")
    canceled = place(placed, timedelta(hours=40), "web")
    clock.set(clock() - timedelta(hours=39))
    store.fulfill_order(fulfilled)
    store.cancel_order(canceled, "customer")
    clock.set(clock() + timedelta(hours=39))
    every_order = [pos_stuck, web_stuck, other_stuck, *not_stuck, fulfilled, canceled]

    # Land every order by id, derive, check: a WARN failure that leaves the run green.
    first = placed.refresh(order_ids=every_order)
    assert first.success
    check = stuck_evaluation(first)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert listed_order_ids(check) == [web_stuck, other_stuck, pos_stuck]  # oldest first
    assert check.metadata["stuck_count"].value == 3
    oldest = evaluated_at(check) - parse_time(store.get_order(web_stuck)["created_at"])
    assert check.metadata["oldest_age_hours"].value == round(oldest.total_seconds() / 3600, 2)
    assert "refresh_orders_job" in (check.description or "")
    table = check.metadata["stuck_orders"].value.splitlines()
    assert [cell.strip() for cell in table[0].strip("|").split("|")] == [
        "order_id",
        "name",
        "source",
        "age (h)",
        "last fetched",
    ]
    pos_row = [cell.strip() for cell in table[-1].strip("|").split("|")]
    assert pos_row[:3] == [str(pos_stuck), store.get_order(pos_stuck)["name"], "pos"]

    # The store has since fulfilled the POS order: refreshing it by id takes it off the list.
    clock.set(clock() + timedelta(minutes=1))
    fulfilled_now = store.fulfill_order(pos_stuck)
    second = placed.refresh(order_ids=[pos_stuck])
    assert second.success
    assert listed_order_ids(stuck_evaluation(second)) == [web_stuck, other_stuck]
    [old, new] = versions(placed, pos_stuck)
    assert new["updated_at"] == parse_time(fulfilled_now["updated_at"]) > old["updated_at"]
    assert old["superseded_by_updated_at"] == new["updated_at"]
    assert old["superseded_at"] == new["first_fetched_at"] > old["first_fetched_at"]
    assert new["superseded_at"] is None and new["superseded_by_updated_at"] is None
    [row] = placed.query("select status from orders where order_id = ?", pos_stuck)
    assert row["status"] == "completed"

    # `stuck: true` re-fetches what the check flags; with both fulfilled, the check passes.
    clock.set(clock() + timedelta(minutes=1))
    store.fulfill_order(web_stuck)
    store.fulfill_order(other_stuck)
    third = placed.refresh(stuck=True)
    assert third.success
    [refreshed] = [
        e
        for e in third.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("raw_refreshed_order_pages")
    ]
    assert refreshed.materialization.metadata["requested_orders"].value == 2
    check = stuck_evaluation(third)
    assert check.passed
    assert check.metadata["stuck_count"].value == 0
    assert listed_order_ids(check) == []
    for order_id in (web_stuck, other_stuck):
        assert [v["superseded_by_updated_at"] is not None for v in versions(placed, order_id)] == [
            True,
            False,
        ]


# --- The seeded store ------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_stuck_check_lists_the_seeded_orders_the_contract_calls_stuck(tmp_path: Path) -> None:
    clock = FrozenClock(store_now())
    store = demo_store(clock)
    # Three days up to the store's now, as whole days: the store holds nothing after its now.
    end = clock()
    start = (end - timedelta(hours=72)).replace(hour=0, minute=0, second=0)
    keys = (start.strftime(PARTITION_KEY_FORMAT), end.strftime(PARTITION_KEY_FORMAT))
    with served_pipeline(store, clock, tmp_path / "warehouse.duckdb") as pipeline:
        result = pipeline.materialize(
            [raw_updated_order_pages, cancellation_tables, orders_stuck_in_created], partition_range=keys
        )
        assert result.success
        check = stuck_evaluation(result)
        served = [order for order in orders_read_by(store, start, end) if reject_reason(order) is None]
        stuck = sorted(
            (order for order in served if is_stuck(order, evaluated_at(check))),
            key=lambda order: (parse_time(order["created_at"]), order["id"]),
        )
        assert stuck, "three days of seeded history hold stuck orders"
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        assert check.metadata["stuck_count"].value == len(stuck)
        assert listed_order_ids(check) == [order["id"] for order in stuck][:50]
        assert {order["source_name"] for order in stuck} <= {"pos", "web", "shopify_draft_order"}

        # One of them is fulfilled at the store; `stuck: true` re-fetches them all and it leaves the list.
        clock.set(clock() + timedelta(minutes=1))
        fulfilled = store.fulfill_order(stuck[0]["id"])
        refreshed = pipeline.refresh(stuck=True)
        assert refreshed.success
        after = stuck_evaluation(refreshed)
        refetched = {
            row["order_id"]
            for row in pipeline.query(
                "select distinct unnest(from_json(body->'$.orders[*].id', '[\"BIGINT\"]')) as order_id"
                " from raw_order_page_bodies where asset = 'refresh'"
            )
        }
        assert {order["id"] for order in stuck} <= refetched
        latest = [store.get_order(order["id"]) if order["id"] in refetched else order for order in served]
        still_stuck = sorted(
            (order for order in latest if is_stuck(order, evaluated_at(after))),
            key=lambda order: (parse_time(order["created_at"]), order["id"]),
        )
        assert stuck[0]["id"] not in {order["id"] for order in still_stuck}
        assert after.metadata["stuck_count"].value == len(still_stuck)
        assert listed_order_ids(after) == [order["id"] for order in still_stuck][:50]
        [old, new] = versions(pipeline, stuck[0]["id"])
        assert old["superseded_by_updated_at"] == new["updated_at"] == parse_time(fulfilled["updated_at"])
        assert old["superseded_at"] is not None


@pytest.mark.timeout(120)
def test_stuck_check_takes_its_thresholds_from_the_settings(
    placed: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    pos_order = place(placed, timedelta(hours=2), "pos")
    app_order = place(placed, timedelta(hours=3), "iphone")
    tuned = PipelineSettings.from_env({"CANCEL_PIPELINE_STUCK_THRESHOLDS_HOURS": "pos=4,other=2.5"})
    monkeypatch.setattr(checks, "SETTINGS", tuned)
    check = stuck_evaluation(placed.refresh(order_ids=[pos_order, app_order]))
    # Past the default POS hour, but not the 4 hours configured; past the 2.5 hours set for other sources.
    assert listed_order_ids(check) == [app_order]
