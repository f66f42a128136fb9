"""The Definitions load, and every definition carries what the UI shows a user."""

from __future__ import annotations

import dagster as dg
import pytest

from cancel_pipeline.definitions import defs
from cancel_pipeline.defs.cancellations.tables import DERIVED_SPECS
from cancel_pipeline.defs.conventions import RANGE_END_TAG, RANGE_START_TAG
from cancel_pipeline.defs.ingestion.jobs import canceled_items_job, canceled_order_job
from cancel_pipeline.defs.ingestion.raw_assets import raw_canceled_order_pages, raw_updated_order_pages
from cancel_pipeline.defs.outbox.notices import cancellation_notices
from cancel_pipeline.defs.resources import WarehouseResource
from cancel_pipeline.shopify.resource import ShopifyResource

DERIVED_KEYS = {spec.key for spec in DERIVED_SPECS}
RAW_KEYS = {dg.AssetKey("raw_canceled_order_pages"), dg.AssetKey("raw_updated_order_pages")}


def test_definitions_are_loadable() -> None:
    dg.Definitions.validate_loadable(defs)


@pytest.mark.parametrize(
    ("job_name", "raw_key"),
    [
        ("canceled_order_job", dg.AssetKey("raw_canceled_order_pages")),
        ("canceled_items_job", dg.AssetKey("raw_updated_order_pages")),
    ],
)
def test_each_job_holds_its_raw_asset_and_not_the_other(job_name: str, raw_key: dg.AssetKey) -> None:
    job = defs.resolve_job_def(job_name)
    keys = job.asset_layer.selected_asset_keys
    assert raw_key in keys
    assert not (RAW_KEYS - {raw_key}) & keys
    assert job.description


def test_feed_jobs_hold_their_raw_asset_alone() -> None:
    assert canceled_order_job.selection.resolve(defs.resolve_asset_graph()) == {  # type: ignore[union-attr]
        raw_canceled_order_pages.key
    }
    assert canceled_items_job.selection.resolve(defs.resolve_asset_graph()) == {  # type: ignore[union-attr]
        raw_updated_order_pages.key
    }


def test_fast_path_job_derives_every_table_in_the_same_run() -> None:
    keys = defs.resolve_job_def("canceled_order_fast_path_job").asset_layer.selected_asset_keys
    assert keys == {raw_canceled_order_pages.key, *DERIVED_KEYS, cancellation_notices.key}


def test_tables_job_derives_without_landing() -> None:
    job = defs.resolve_job_def("cancellation_tables_job")
    assert job.asset_layer.selected_asset_keys == {*DERIVED_KEYS, cancellation_notices.key}
    assert job.description


@pytest.mark.parametrize("job_name", ["canceled_order_job", "canceled_items_job"])
def test_a_feed_jobs_range_run_plans_one_event_a_day(job_name: str) -> None:
    """Dagster plans every asset of a range run once per day of the range, unpartitioned ones included: a
    feed job holding the tables would plan seven events a day instead of one."""
    job = defs.resolve_job_def(job_name)
    with dg.DagsterInstance.ephemeral() as instance:
        run = instance.create_run_for_job(
            job, tags={RANGE_START_TAG: "2026-03-01", RANGE_END_TAG: "2026-03-30"}
        )
        planned = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=1000
        ).records
    assert len(planned) == 30


def test_assets_carry_kinds_group_owners_and_a_description() -> None:
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    for key in RAW_KEYS:
        spec = specs[key]
        assert spec.kinds == {"shopify", "duckdb"}
        assert spec.group_name == "raw"
        assert spec.owners == ["team:data-engineering"]
        assert spec.description and "raw_order_pages" in spec.description
        assert spec.partitions_def is not None


def test_raw_assets_write_through_the_duckdb_writer_pool() -> None:
    for asset in (raw_canceled_order_pages, raw_updated_order_pages):
        assert asset.op.pool == "duckdb_writer"


def test_sensor_is_the_running_fast_path() -> None:
    sensor = defs.resolve_sensor_def("cancellation_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "canceled_order_fast_path_job"
    assert sensor.minimum_interval_seconds == 30
    assert sensor.description


def test_resources() -> None:
    assert isinstance(defs.resources["shopify"], ShopifyResource)
    assert isinstance(defs.resources["duckdb"], WarehouseResource)


def test_refresh_orders_job_reimports_and_rederives_without_raw_windows() -> None:
    job = defs.resolve_job_def("refresh_orders_job")
    keys = {key.to_user_string() for key in job.asset_layer.selected_asset_keys}
    assert "raw_refreshed_order_pages" in keys
    assert {"order_versions", "canceled_orders", "canceled_line_items", "orders"} <= keys
    assert not {key.to_user_string() for key in RAW_KEYS} & keys
    check_names = {check.name for check in job.asset_layer.asset_graph.asset_check_keys}
    assert "orders_stuck_in_created" in check_names
    assert job.description and "stuck" in job.description


def test_every_job_runs_its_steps_in_the_run_process() -> None:
    # The UI's asset runs and backfills use the implicit asset job; the named jobs are the schedules'.
    jobs = [defs.resolve_implicit_global_asset_job_def()]
    jobs += [defs.resolve_job_def(job.name) for job in defs.jobs or []]
    assert len(jobs) >= 5
    for job in jobs:
        assert job.executor_def.name == dg.in_process_executor.name, job.name
