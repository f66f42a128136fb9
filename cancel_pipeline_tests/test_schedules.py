"""Schedule ticks request the right day, read the right way, at the right time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from cancel_pipeline.definitions import defs
from cancel_pipeline.defs.conventions import READ_NEW, READ_TAG, READ_WHOLE
from cancel_pipeline.defs.ingestion.partitions import day_partitions
from cancel_pipeline.defs.ingestion.schedules import day_key_before, tick_cron
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
def test_ticks_come_a_settle_delay_after_each_boundary(name: str, cron: str) -> None:
    schedule = defs.resolve_schedule_def(name)
    assert schedule.cron_schedule == cron
    assert schedule.execution_timezone == "UTC"


@pytest.mark.parametrize(
    ("name", "at", "day"),
    [
        ("canceled_order_schedule", "2026-03-02T02:05", "2026-03-02"),
        ("canceled_order_schedule", "2026-03-02T02:35", "2026-03-02"),
        ("canceled_items_schedule", "2026-03-02T02:05", "2026-03-02"),
        # Just after midnight, the tick finishes the day that just closed.
        ("canceled_order_schedule", "2026-03-03T00:05", "2026-03-02"),
        ("canceled_items_schedule", "2026-03-03T00:05", "2026-03-02"),
        ("canceled_order_schedule", "2026-03-03T00:35", "2026-03-03"),
    ],
)
def test_a_tick_reads_what_is_new_in_the_day_of_the_last_boundary(name: str, at: str, day: str) -> None:
    [request] = tick(name, at)
    assert request.partition_key == day
    assert request.tags[READ_TAG] == READ_NEW
    # Every tick of a day is its own run: the run key names the tick.
    assert request.run_key != tick(name, (utc(at) + timedelta(hours=1)).isoformat()[:16])[0].run_key


@pytest.mark.parametrize(
    "name", ["canceled_order_reconciliation_schedule", "canceled_items_reconciliation_schedule"]
)
def test_reconciliation_rereads_the_previous_day_whole(name: str) -> None:
    [request] = tick(name, "2026-03-03T02:15")
    assert request.partition_key == "2026-03-02"
    assert request.tags[READ_TAG] == READ_WHOLE


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_schedules_are_stopped_by_default_and_described(name: str) -> None:
    schedule = defs.resolve_schedule_def(name)
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.description and len(schedule.description) > 40


def test_schedule_targets_the_raw_asset_and_everything_downstream() -> None:
    assert defs.resolve_schedule_def("canceled_order_schedule").job_name == "canceled_order_job"
    assert defs.resolve_schedule_def("canceled_items_schedule").job_name == "canceled_items_job"


def test_tick_crons_follow_the_period_and_settle_delay() -> None:
    assert tick_cron(30, timedelta(minutes=40)) == "10,40 * * * *"
    assert tick_cron(15, timedelta(0)) == "0,15,30,45 * * * *"


def test_nothing_is_requested_before_the_first_day() -> None:
    days = day_partitions(PipelineSettings.from_env({"CANCEL_PIPELINE_FIRST_WINDOW": "2026-03-02"}))
    assert day_key_before(days, utc("2026-03-02T00:00")) is None
    assert day_key_before(days, utc("2026-03-02T00:30")) == "2026-03-02"
    assert day_key_before(days, utc("2026-03-03T00:00")) == "2026-03-02"
