"""Declarative automation: the derived tables (then the notices) follow any raw landing, and only once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from cancel_pipeline_simulators.demo_store import FrozenClock

from cancel_pipeline.definitions import defs
from cancel_pipeline.defs.cancellations.tables import DERIVED_SPECS, cancellation_tables
from cancel_pipeline.defs.ingestion.raw_assets import raw_canceled_order_pages, raw_updated_order_pages
from cancel_pipeline.defs.outbox.notices import cancellation_notices
from cancel_pipeline_tests.pipeline_fixtures import CASES_NOW, Pipeline, demo_store, served_pipeline

pytestmark = pytest.mark.timeout(120)

FOLLOWERS = {*(spec.key for spec in DERIVED_SPECS), cancellation_notices.key}


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    clock = FrozenClock(CASES_NOW)
    with served_pipeline(demo_store(clock), clock, tmp_path / "warehouse.duckdb") as served:
        yield served


class Ticks:
    """Successive ticks of the automation sensor's evaluation, over the project's real definitions."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.cursor: Any = None

    def requested(self) -> set[dg.AssetKey]:
        result = dg.evaluate_automation_conditions(
            defs=defs,
            instance=self.pipeline.instance,
            cursor=self.cursor,
            evaluation_time=self.pipeline.clock(),
        )
        self.cursor = result.cursor
        return {key for key in FOLLOWERS if result.get_requested_partitions(key)}


def _last_closed_window(asset: dg.AssetsDefinition, pipeline: Pipeline) -> str:
    return asset.partitions_def.get_partition_keys(current_time=pipeline.clock())[-2]


@pytest.mark.parametrize(
    "raw", [raw_canceled_order_pages, raw_updated_order_pages], ids=lambda a: a.key.path[-1]
)
def test_a_raw_landing_alone_is_followed_by_the_tables_and_the_notices(
    pipeline: Pipeline, raw: dg.AssetsDefinition
) -> None:
    ticks = Ticks(pipeline)
    assert ticks.requested() == set()  # nothing landed: nothing to derive
    assert pipeline.materialize([raw], partition_key=_last_closed_window(raw, pipeline)).success
    assert ticks.requested() == FOLLOWERS
    assert ticks.requested() == set()  # requested once, not on every tick
    # The requested run derives; afterwards nothing is pending.
    derived = pipeline.materialize(
        [raw, cancellation_tables, cancellation_notices],
        selection=dg.AssetSelection.assets(cancellation_tables, cancellation_notices),
    )
    assert derived.success
    assert ticks.requested() == set()
    # Every landed page is derived: the watermark reached the last page.
    [state] = pipeline.query(
        "select last_page_seq, (select max(page_seq) from raw_order_pages) as landed from derivation_state"
    )
    assert state["last_page_seq"] == state["landed"] > 0


def test_a_run_that_includes_the_tables_triggers_no_second_derivation(pipeline: Pipeline) -> None:
    ticks = Ticks(pipeline)
    ticks.requested()
    window = _last_closed_window(raw_canceled_order_pages, pipeline)
    # What the cancellation sensor's fast-path job runs: the raw window and everything downstream.
    assert pipeline.materialize(
        [raw_canceled_order_pages, cancellation_tables, cancellation_notices], partition_key=window
    ).success
    assert ticks.requested() == set()


def test_the_automation_sensor_ships_running_over_every_automated_asset() -> None:
    sensor = defs.resolve_sensor_def("automation_sensor")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 15
    assert sensor.description
    graph = defs.resolve_asset_graph()
    automated = {key for key in graph.get_all_asset_keys() if graph.get(key).automation_condition is not None}
    assert automated == FOLLOWERS
    assert sensor.asset_selection.resolve(graph) == FOLLOWERS
