"""Schedule ticks request the right window at the right time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from cancel_pipeline.definitions import defs
from cancel_pipeline.defs.conventions import RANGE_END_TAG, RANGE_START_TAG
from cancel_pipeline.defs.ingestion.partitions import window_partitions
from cancel_pipeline.defs.ingestion.schedules import (
    last_closed_window_key,
    previous_day_range,
    window_cron,
)
from cancel_pipeline.settings import PipelineSettings

SCHEDULE_NAMES = [
    "canceled_order_schedule",
    "canceled_items_schedule",
    "canceled_order_reconciliation_schedule",
    "canceled_items_reconciliation_schedule",
]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def tick(name: str, at: str) -> list[dg.RunRequest]:
    schedule = defs.resolve_schedule_def(name)
    context = dg.build_schedule_context(
        scheduled_execution_time=utc(at), repository_def=defs.get_repository_def()
    )
    return list(schedule.evaluate_tick(context).run_requests or [])


@pytest.mark.parametrize(
    ("name", "cron"),
    [
        ("canceled_order_schedule", "5,35 * * * *"),
        ("canceled_items_schedule", "5 * * * *"),
        ("canceled_order_reconciliation_schedule", "15 2 * * *"),
        ("canceled_items_reconciliation_schedule", "15 2 * * *"),
    ],
)
def test_ticks_come_a_settle_delay_after_each_window(name: str, cron: str) -> None:
    schedule = defs.resolve_schedule_def(name)
    assert schedule.cron_schedule == cron
    assert schedule.execution_timezone == "UTC"


@pytest.mark.parametrize(
    ("name", "at", "window"),
    [
        ("canceled_order_schedule", "2026-03-02T02:05", "2026-03-02-01:30"),
        ("canceled_order_schedule", "2026-03-02T02:35", "2026-03-02-02:00"),
        ("canceled_order_schedule", "2026-03-03T00:05", "2026-03-02-23:30"),
        ("canceled_items_schedule", "2026-03-02T02:05", "2026-03-02-01:00"),
        ("canceled_items_schedule", "2026-03-03T00:05", "2026-03-02-23:00"),
    ],
)
def test_a_tick_requests_the_window_that_just_closed(name: str, at: str, window: str) -> None:
    [request] = tick(name, at)
    assert request.partition_key == window
    assert request.run_key == window


@pytest.mark.parametrize(
    ("name", "last"),
    [
        ("canceled_order_reconciliation_schedule", "2026-03-02-23:30"),
        ("canceled_items_reconciliation_schedule", "2026-03-02-23:00"),
    ],
)
def test_reconciliation_rereads_the_previous_day_as_one_range_run(name: str, last: str) -> None:
    [request] = tick(name, "2026-03-03T02:15")
    assert request.partition_key is None
    assert request.tags[RANGE_START_TAG] == "2026-03-02-00:00"
    assert request.tags[RANGE_END_TAG] == last


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_schedules_are_stopped_by_default_and_described(name: str) -> None:
    schedule = defs.resolve_schedule_def(name)
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.description and len(schedule.description) > 40


def test_schedule_targets_the_raw_asset_and_everything_downstream() -> None:
    assert defs.resolve_schedule_def("canceled_order_schedule").job_name == "canceled_order_job"
    assert defs.resolve_schedule_def("canceled_items_schedule").job_name == "canceled_items_job"


def test_longer_settle_delays_still_pick_the_last_settled_window() -> None:
    windows = window_partitions(30, PipelineSettings.from_env({"CANCEL_PIPELINE_FIRST_WINDOW": "2026-03-01"}))
    assert window_cron(30, timedelta(minutes=40)) == "10,40 * * * *"
    # A tick at 02:10 with a 40-minute delay: only windows closed by 01:30 have settled.
    assert (
        last_closed_window_key(windows, utc("2026-03-02T02:10") - timedelta(minutes=40)) == "2026-03-02-01:00"
    )
    assert window_cron(15, timedelta(0)) == "0,15,30,45 * * * *"


def test_nothing_is_requested_before_the_first_window_closes() -> None:
    windows = window_partitions(30, PipelineSettings.from_env({"CANCEL_PIPELINE_FIRST_WINDOW": "2026-03-02"}))
    assert last_closed_window_key(windows, utc("2026-03-02T00:29")) is None
    assert last_closed_window_key(windows, utc("2026-03-02T00:30")) == "2026-03-02-00:00"
    assert previous_day_range(windows, utc("2026-03-02T02:15")) is None
    # The first day is partial when the first window starts mid-day.
    late_start = window_partitions(
        30, PipelineSettings.from_env({"CANCEL_PIPELINE_FIRST_WINDOW": "2026-03-02T20:00Z"})
    )
    assert previous_day_range(late_start, utc("2026-03-03T02:15")) == ("2026-03-02-20:00", "2026-03-02-23:30")
