"""The time windows, the bounds sent to Shopify, and the settings they are built from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cancel_pipeline.defs.ingestion.partitions import (
    CANCELED_ORDER_WINDOWS,
    UPDATED_ORDER_WINDOWS,
    day_partitions,
    incremental_bounds,
    range_partition_key,
    requested_bounds,
)
from cancel_pipeline.defs.resources import build_resources
from cancel_pipeline.settings import DEFAULT_DUCKDB_PATH, PipelineSettings, SettingsError


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_defaults() -> None:
    settings = PipelineSettings.from_env({})
    assert settings.overlap == timedelta(minutes=10)
    assert settings.settle_delay == timedelta(minutes=5)
    assert (settings.canceled_window_minutes, settings.updated_window_minutes) == (30, 60)
    assert (settings.reconciliation_hour, settings.reconciliation_minute) == (2, 15)
    assert settings.sensor_interval_seconds == 30
    assert settings.duckdb_path == DEFAULT_DUCKDB_PATH == "data/demo.duckdb"
    assert settings.superseded_retention_days is None
    assert settings.first_window_start.tzinfo is not None


def test_settings_from_environment() -> None:
    settings = PipelineSettings.from_env(
        {
            "CANCEL_PIPELINE_FIRST_WINDOW": "2026-03-01T05:00:00+02:00",
            "CANCEL_PIPELINE_OVERLAP_MINUTES": "3",
            "CANCEL_PIPELINE_CANCELED_WINDOW_MINUTES": "15",
            "CANCEL_PIPELINE_DUCKDB": "elsewhere/w.duckdb",
        }
    )
    assert settings.first_window_start == utc("2026-03-01T03:00:00")
    assert settings.overlap == timedelta(minutes=3)
    assert settings.canceled_window_minutes == 15
    assert settings.duckdb_path == "elsewhere/w.duckdb"


def test_duckdb_memory_limit_reaches_the_warehouse_connection(tmp_path) -> None:
    assert PipelineSettings.from_env({}).duckdb_memory_limit == "1GB"
    settings = PipelineSettings.from_env(
        {"CANCEL_PIPELINE_DUCKDB": str(tmp_path / "w.duckdb"), "CANCEL_PIPELINE_DUCKDB_MEMORY_LIMIT": "300MB"}
    )
    with build_resources(settings)["duckdb"].get_connection() as con:
        [(limit,)] = con.execute("select current_setting('memory_limit')").fetchall()
    assert limit in ("286.1 MiB", "300.0 MB")


def test_stuck_thresholds_override_only_the_sources_named() -> None:
    defaults = PipelineSettings.from_env({})
    assert defaults.stuck_thresholds == {
        "pos": timedelta(hours=1),
        "web": timedelta(hours=24),
        "shopify_draft_order": timedelta(hours=48),
        "other": timedelta(hours=24),
    }
    tuned = PipelineSettings.from_env(
        {"CANCEL_PIPELINE_STUCK_THRESHOLDS_HOURS": " pos=0.5, iphone=2,other=12 "}
    )
    assert tuned.stuck_thresholds == {
        "pos": timedelta(minutes=30),
        "web": timedelta(hours=24),
        "shopify_draft_order": timedelta(hours=48),
        "other": timedelta(hours=12),
        "iphone": timedelta(hours=2),
    }


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CANCEL_PIPELINE_OVERLAP_MINUTES", "ten", "must be an integer"),
        ("CANCEL_PIPELINE_CANCELED_WINDOW_MINUTES", "45", "must divide 60"),
        ("CANCEL_PIPELINE_RECONCILIATION_HOUR", "24", "between 0 and 23"),
        ("CANCEL_PIPELINE_FIRST_WINDOW", "yesterday", "ISO 8601"),
        ("CANCEL_PIPELINE_FIRST_WINDOW", "2026-03-01T00:00:30Z", "whole minute"),
        ("CANCEL_PIPELINE_STUCK_THRESHOLDS_HOURS", "pos=soon", "hours > 0"),
        ("CANCEL_PIPELINE_STUCK_THRESHOLDS_HOURS", "pos", "hours > 0"),
        ("CANCEL_PIPELINE_STUCK_THRESHOLDS_HOURS", "web=0", "hours > 0"),
        ("CANCEL_PIPELINE_DUCKDB_MEMORY_LIMIT", "lots", "size such as"),
    ],
)
def test_invalid_settings_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as error:
        PipelineSettings.from_env({name: value})
    assert name in str(error.value)


def test_both_feeds_are_partitioned_by_utc_day() -> None:
    for partitions in (CANCELED_ORDER_WINDOWS, UPDATED_ORDER_WINDOWS):
        window = partitions.time_window_for_partition_key("2026-03-02")
        assert (window.start, window.end) == (utc("2026-03-02T00:00"), utc("2026-03-03T00:00"))
    # A year is 365 partitions a feed, not 17,520 half hours.
    year = CANCELED_ORDER_WINDOWS.get_partition_keys(current_time=utc("2027-01-01T00:00"))
    assert len([key for key in year if key.startswith("2026-")]) == 365


def test_first_day_comes_from_the_settings() -> None:
    settings = PipelineSettings.from_env({"CANCEL_PIPELINE_FIRST_WINDOW": "2026-03-02T05:00:00Z"})
    keys = day_partitions(settings).get_partition_keys(current_time=utc("2026-03-03T01:10"))
    assert keys == ["2026-03-02", "2026-03-03"]


def test_the_day_in_progress_is_a_partition() -> None:
    days = day_partitions(PipelineSettings.from_env({"CANCEL_PIPELINE_FIRST_WINDOW": "2026-03-02"}))
    # At 01:10 the day is still open, and exists so the ticks and the sensor can materialize it.
    assert days.get_partition_keys(current_time=utc("2026-03-02T01:10")) == ["2026-03-02"]


def test_a_tick_reads_from_where_the_days_pages_stop_less_the_overlap() -> None:
    start, end, overlap = utc("2026-03-02"), utc("2026-03-03"), timedelta(minutes=10)
    now = utc("2026-03-02T10:35")
    assert incremental_bounds(start, end, None, now=now, overlap=overlap) == (utc("2026-03-01T23:50"), now)
    assert incremental_bounds(start, end, utc("2026-03-02T10:05"), now=now, overlap=overlap) == (
        utc("2026-03-02T09:55"),
        now,
    )
    # The tick just after midnight finishes the closed day, up to its end.
    late = utc("2026-03-03T00:05")
    assert incremental_bounds(start, end, utc("2026-03-02T23:35"), now=late, overlap=overlap) == (
        utc("2026-03-02T23:25"),
        end,
    )


def test_requested_bounds_reach_back_by_the_overlap() -> None:
    lo, hi = requested_bounds(
        utc("2026-03-02T01:30"),
        utc("2026-03-02T02:00"),
        now=utc("2026-03-05T00:00"),
        overlap=timedelta(minutes=10),
    )
    assert (lo, hi) == (utc("2026-03-02T01:20"), utc("2026-03-02T02:00"))


def test_requested_bounds_of_the_window_in_progress_stop_at_now() -> None:
    _, hi = requested_bounds(
        utc("2026-03-02T01:30"), utc("2026-03-02T02:00"), now=utc("2026-03-02T01:42"), overlap=timedelta(0)
    )
    assert hi == utc("2026-03-02T01:42")


def test_range_partition_key() -> None:
    assert range_partition_key(["2026-03-02"]) == "2026-03-02"
    assert range_partition_key(["2026-03-01", "2026-03-02", "2026-03-03"]) == "2026-03-01...2026-03-03"
