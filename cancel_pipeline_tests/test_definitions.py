"""The Definitions load, and every definition carries what the UI shows a user."""

from __future__ import annotations

import dagster as dg
import pytest

from cancel_pipeline.definitions import defs
from cancel_pipeline.defs.ingestion.jobs import canceled_items_job, canceled_order_job
from cancel_pipeline.defs.ingestion.raw_assets import raw_canceled_order_pages, raw_updated_order_pages
from cancel_pipeline.defs.resources import WarehouseResource
from cancel_pipeline.shopify.resource import ShopifyResource

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


def test_jobs_pick_up_unpartitioned_tables_downstream_of_their_raw_asset() -> None:
    @dg.asset(deps=[raw_canceled_order_pages, raw_updated_order_pages])
    def derived_tables() -> None:
        """Stands for the derived tables, defined downstream of both raw assets."""

    with_derived = dg.Definitions(
        assets=[raw_canceled_order_pages, raw_updated_order_pages, derived_tables],
        jobs=[canceled_order_job, canceled_items_job],
        resources={"shopify": ShopifyResource(), "duckdb": WarehouseResource(database=":memory:")},
    )
    for job_name in ("canceled_order_job", "canceled_items_job"):
        keys = with_derived.resolve_job_def(job_name).asset_layer.selected_asset_keys
        assert dg.AssetKey("derived_tables") in keys


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
    assert sensor.job_name == "canceled_order_job"
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
