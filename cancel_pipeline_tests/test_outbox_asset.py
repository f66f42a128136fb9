"""The `cancellation_notices` asset, its follow-up check and the retry job, run through Dagster: the demo store
and two fake targets served over HTTP, targets configured by a targets file, and what `make run` reports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from cancel_pipeline_simulators.demo_store import FrozenClock
from cancel_pipeline_simulators.fake_target import FakeTarget, serve

from cancel_pipeline.catch_up import FeedOutcome, render_report
from cancel_pipeline.defs.cancellations.tables import cancellation_tables
from cancel_pipeline.defs.conventions import RANGE_END_TAG, RANGE_START_TAG
from cancel_pipeline.defs.ingestion.raw_assets import raw_canceled_order_pages
from cancel_pipeline.defs.outbox.checks import deliveries_needing_follow_up
from cancel_pipeline.defs.outbox.notices import NO_TARGET_MESSAGE, cancellation_notices
from cancel_pipeline.defs.resources import WarehouseResource
from cancel_pipeline.outbox.deliveries import ensure_deliveries_schema
from cancel_pipeline.outbox.targets import DEMO_TARGET_VARIABLE, TARGETS_FILE_VARIABLE
from cancel_pipeline.run_summary import summarize
from cancel_pipeline.stuck_rule import DEFAULT_STUCK_THRESHOLDS
from cancel_pipeline.warehouse.connection import warehouse_connection
from cancel_pipeline.warehouse.schema import ensure_schema
from cancel_pipeline_tests.pipeline_fixtures import CASES_NOW, OVERLAP, Pipeline, demo_store, served_pipeline

WINDOWS = ("2026-03-02", "2026-03-02")
OMS_TOKEN = "oms-secret-token"
HUB_TOKEN = "hub-secret-token"
NOTICES_RUN = [
    raw_canceled_order_pages,
    cancellation_tables,
    cancellation_notices,
    deliveries_needing_follow_up,
]


@dataclass
class Setup:
    """The served pipeline, the two fake targets it tells, and the targets file."""

    pipeline: Pipeline
    oms: FakeTarget
    hub: FakeTarget
    targets_file: Path

    def backfill(self, **run_config: Any) -> dg.ExecuteInProcessResult:
        """The Canceled Order job's assets over WINDOWS, with the notices and the follow-up check."""
        config = {"ops": {"cancellation_notices": {"config": run_config}}} if run_config else None
        return self.pipeline.materialize(NOTICES_RUN, partition_range=WINDOWS, run_config=config)


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    oms, hub = FakeTarget(OMS_TOKEN), FakeTarget(HUB_TOKEN)
    clock = FrozenClock(CASES_NOW)
    with (
        served_pipeline(demo_store(clock), clock, tmp_path / "warehouse.duckdb") as pipeline,
        serve(oms) as oms_url,
        serve(hub) as hub_url,
    ):
        targets_file = tmp_path / "targets.json"
        targets_file.write_text(
            json.dumps(
                {
                    "targets": {
                        "oms": {"base_url": oms_url, "token_env": "TEST_OMS_TOKEN"},
                        "vip_hub": {"base_url": hub_url, "token_env": "TEST_HUB_TOKEN", "tags": ["VIP"]},
                        "retired": {"base_url": hub_url, "token_env": "TEST_HUB_TOKEN", "enabled": False},
                    }
                }
            )
        )
        monkeypatch.setenv(TARGETS_FILE_VARIABLE, str(targets_file))
        monkeypatch.delenv(DEMO_TARGET_VARIABLE, raising=False)
        monkeypatch.setenv("TEST_OMS_TOKEN", OMS_TOKEN)
        monkeypatch.setenv("TEST_HUB_TOKEN", HUB_TOKEN)
        yield Setup(pipeline, oms, hub, targets_file)


def _materialization(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    [event] = [
        event for event in result.get_asset_materialization_events() if event.asset_key == dg.AssetKey(asset)
    ]
    return {key: value.value for key, value in event.materialization.metadata.items()}


def _check(result: dg.ExecuteInProcessResult) -> Any:
    [evaluation] = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "deliveries_needing_follow_up"
    ]
    return evaluation


def _vip_orders(pipeline: Pipeline, canceled: set[int]) -> set[int]:
    start = datetime.fromisoformat("2026-03-02T00:00:00+00:00") - OVERLAP
    orders = pipeline.store.orders(
        status="any", updated_at_min=start, updated_at_max=datetime.fromisoformat("2026-03-03T00:00:00+00:00")
    )
    return {
        order["id"]
        for order in orders
        if order["id"] in canceled and "vip" in [tag.strip().lower() for tag in order["tags"].split(",")]
    }


@pytest.mark.timeout(120)
def test_new_cancellations_reach_every_enabled_target_once(setup: Setup) -> None:
    first = setup.backfill()
    assert first.success
    canceled = {
        row["order_id"] for row in setup.pipeline.query("select order_id from canceled_orders where not test")
    }
    assert len(canceled) >= 10
    assert setup.oms.accepted_cancels() == dict.fromkeys(canceled, 1)
    vip = _vip_orders(setup.pipeline, canceled)
    assert vip and setup.hub.accepted_cancels() == dict.fromkeys(vip, 1)

    metadata = _materialization(first, "cancellation_notices")
    assert metadata["targets"] == ["oms", "vip_hub"]
    assert metadata["delivered"] == len(canceled) + len(vip) == metadata["attempted"]
    assert metadata["rejected"] == 0 and metadata["dagster/row_count"] == len(canceled) + len(vip)
    assert "| order_id | target | outcome |" in metadata["this_run_preview"]
    assert _check(first).passed

    # The same windows again: every order is already delivered, nothing is sent.
    again = setup.backfill()
    assert _materialization(again, "cancellation_notices")["attempted"] == 0
    assert len(setup.oms.received) == len(canceled)


@pytest.mark.timeout(120)
def test_flagged_deliveries_are_listed_and_retried_on_demand(setup: Setup) -> None:
    setup.oms.fail_next(406)  # the first order the OMS is told of is refused
    first = setup.backfill()
    [refused] = [request.order_id for request in setup.oms.received if request.status == 406]
    check = _check(first)
    assert not check.passed and check.metadata["flagged_count"].value == 1
    assert str(refused) in check.metadata["flagged_deliveries"].value
    assert "cannot be cancelled" in check.metadata["flagged_deliveries"].value

    retried = setup.pipeline.materialize(
        [cancellation_tables, cancellation_notices, deliveries_needing_follow_up],
        selection=dg.AssetSelection.assets(cancellation_notices),
        run_config={"ops": {"cancellation_notices": {"config": {"retry_flagged": True}}}},
    )
    metadata = _materialization(retried, "cancellation_notices")
    assert (metadata["released_for_retry"], metadata["delivered"], metadata["attempted"]) == (1, 1, 1)
    assert _check(retried).passed
    assert setup.oms.accepted_cancels()[refused] == 1


@pytest.mark.timeout(120)
def test_bad_credentials_fail_the_run_naming_the_target_not_the_token(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_OMS_TOKEN", "revoked-token-value")
    result = dg.materialize(
        NOTICES_RUN,
        resources=setup.pipeline.resources,
        instance=setup.pipeline.instance,
        tags={RANGE_START_TAG: WINDOWS[0], RANGE_END_TAG: WINDOWS[1]},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "'oms'" in message and "TEST_OMS_TOKEN" in message and "401" in message
    assert "revoked-token-value" not in message and OMS_TOKEN not in message
    assert [request.status for request in setup.oms.received] == [401]  # stopped at the first answer
    assert setup.hub.received == []
    delivered = setup.pipeline.query(
        "select count(*) as n from cancellation_deliveries where outcome = 'delivered'"
    )
    assert delivered == [{"n": 0}]


def test_with_no_target_the_asset_sends_nothing_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TARGETS_FILE_VARIABLE, raising=False)
    monkeypatch.delenv(DEMO_TARGET_VARIABLE, raising=False)
    database = tmp_path / "warehouse.duckdb"
    with warehouse_connection(database) as con:
        ensure_schema(con)
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [cancellation_notices, deliveries_needing_follow_up],
            resources={"duckdb": WarehouseResource(database=str(database))},
            instance=instance,
        )
    assert result.success
    metadata = _materialization(result, "cancellation_notices")
    assert metadata == {"targets": [], "status": NO_TARGET_MESSAGE}
    assert _check(result).passed
    assert summarize_deliveries(database) == []


def summarize_deliveries(database: Path) -> list[tuple[str, str, int]]:
    """The outbox part of `make run`'s summary of `database`."""
    with warehouse_connection(database) as con:
        return summarize(con, datetime.now(UTC), DEFAULT_STUCK_THRESHOLDS).deliveries


def test_make_run_report_shows_deliveries_of_the_enabled_targets(tmp_path: Path) -> None:
    database = tmp_path / "warehouse.duckdb"
    with warehouse_connection(database) as con:
        ensure_schema(con)
        ensure_deliveries_schema(con)
        con.execute(
            """
            insert into cancellation_deliveries
                (order_id, target, outcome, attempts, needs_follow_up, outcome_unknown, queued_at)
            values (1, 'demo_target', 'delivered', 1, false, false, now()),
                   (2, 'demo_target', 'delivered', 1, false, false, now()),
                   (3, 'demo_target', 'rejected', 1, true, false, now())
            """
        )
        summary = summarize(con, datetime.now(UTC), DEFAULT_STUCK_THRESHOLDS)
    report = render_report(
        [FeedOutcome("canceled_order_job")],
        summary,
        store="the built-in demo store",
        duckdb_path=str(database),
        elapsed_s=1.0,
        delivery_targets=["demo_target"],
    )
    assert "Cancellation notices to demo_target:" in report
    lines = report.splitlines()
    assert any(line.split() == ["demo_target", "delivered", "2"] for line in lines)
    assert any(line.split() == ["demo_target", "rejected", "1"] for line in lines)
    assert "1 deliveries need follow-up" in report

    quiet = render_report(
        [], summary, store="the built-in demo store", duckdb_path=str(database), elapsed_s=1.0
    )
    assert "no downstream target configured" in quiet and "demo_target" not in quiet


def test_the_demo_target_is_served_by_the_run_and_told_of_every_cancellation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TARGETS_FILE_VARIABLE, raising=False)
    monkeypatch.setenv(DEMO_TARGET_VARIABLE, "1")
    database = tmp_path / "warehouse.duckdb"
    with warehouse_connection(database) as con:
        ensure_schema(con)
        con.execute(
            """
            insert into canceled_orders (order_id, cancelled_at, cancel_reason, created_at, updated_at, test)
            select i, now(), 'customer', now(), now(), false from range(1, 4) t(i)
            """
        )
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [cancellation_notices],
            resources={"duckdb": WarehouseResource(database=str(database))},
            instance=instance,
        )
    metadata = _materialization(result, "cancellation_notices")
    assert metadata["targets"] == ["demo_target"] and metadata["delivered"] == 3
    assert summarize_deliveries(database) == [("demo_target", "delivered", 3)]
