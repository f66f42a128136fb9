"""The project's event log storage (cancel_pipeline.instance_storage) behind the project's dagster.yaml.

What could break: the yaml not loading the class or putting files somewhere else than Dagster's default
layout (an existing `.dagster_home` would lose its history); a range run's per-window materializations or
partition status not recorded; another process not seeing what was written (pooled connections keep the WAL
open); the UI's live event stream not woken (commits go to the WAL, not the .db file); engines made per event
again; a forked child using its parent's connections.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.events import DagsterEventType
from dagster._core.storage.event_log.base import EventLogCursor
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from cancel_pipeline import instance_storage
from cancel_pipeline.instance_storage import MAX_RUN_SHARD_ENGINES, PooledSqliteEventLogStorage

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

WINDOWS = dg.TimeWindowPartitionsDefinition(
    start="2026-01-01-00:00", cron_schedule="*/30 * * * *", fmt="%Y-%m-%d-%H:%M"
)


@dg.asset(partitions_def=WINDOWS, backfill_policy=dg.BackfillPolicy.single_run())
def windowed(context) -> dg.MaterializeResult:  # unannotated: Dagster refuses a string annotation
    return dg.MaterializeResult(metadata={"windows": len(context.partition_keys)})


@dg.asset(deps=[windowed])
def table() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 1})


JOB = dg.Definitions(
    assets=[windowed, table], jobs=[dg.define_asset_job("job", [windowed, table])]
).resolve_job_def("job")
KEYS = WINDOWS.get_partition_keys(current_time=datetime(2026, 1, 2, tzinfo=UTC))  # 48 windows


def write_home(home: Path, *, stock: bool = False) -> Path:
    """A DAGSTER_HOME holding the project's dagster.yaml (or it without the event log storage: stock)."""
    home.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    if stock:
        config.pop("event_log_storage")
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = write_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(path))
    return path


@pytest.fixture
def instance(home: Path):
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def range_run(instance: dg.DagsterInstance, keys: list[str] = KEYS) -> dg.ExecuteInProcessResult:
    result = JOB.execute_in_process(
        instance=instance,
        tags={RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[-1]},
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
    )
    assert result.success
    return result


def test_project_yaml_loads_the_pooled_storage_in_dagsters_default_layout(instance, home):
    storage = instance.event_log_storage
    assert isinstance(storage, PooledSqliteEventLogStorage)
    assert Path(storage._base_dir) == home / "history" / "runs"
    assert (home / "history" / "runs" / "index.db").exists()
    # Run and schedule storage stay Dagster's SQLite ones, where the default layout has them.
    assert type(instance.run_storage).__name__ == "SqliteRunStorage"
    assert type(instance.schedule_storage).__name__ == "SqliteScheduleStorage"
    assert (home / "history" / "runs.db").exists()
    assert (home / "schedules" / "schedules.db").exists()
    # The config keeps DAGSTER_HOME symbolic: the same file works in any home.
    assert "DAGSTER_HOME" in (home / "dagster.yaml").read_text()


def test_range_run_records_every_window_the_run_and_the_partition_status(instance):
    result = range_run(instance)
    assert instance.get_materialized_partitions(dg.AssetKey("windowed")) == set(KEYS)
    records = instance.fetch_materializations(dg.AssetKey("windowed"), limit=1000).records
    assert sorted(record.partition_key for record in records) == sorted(KEYS)
    planned = instance.get_records_for_run(
        result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=1000
    ).records
    assert len(planned) >= len(KEYS)
    run_events = [entry.dagster_event_type for entry in instance.all_logs(result.run_id)]
    assert DagsterEventType.RUN_SUCCESS in run_events
    assert instance.get_latest_materialization_event(dg.AssetKey("table")) is not None
    assert instance.get_run_by_id(result.run_id).is_success


def test_another_process_reads_what_this_one_wrote(instance, home):
    result = range_run(instance)
    # The writer keeps its pooled connections (and the WAL) open while another process reads.
    script = (
        "import json, dagster as dg\n"
        "from dagster._core.events import DagsterEventType\n"
        "instance = dg.DagsterInstance.get()\n"
        "parts = instance.get_materialized_partitions(dg.AssetKey('windowed'))\n"
        f"logs = instance.all_logs({result.run_id!r})\n"
        "print(json.dumps({'storage': type(instance.event_log_storage).__name__, 'partitions': len(parts),"
        " 'success': any(e.dagster_event_type == DagsterEventType.RUN_SUCCESS for e in logs)}))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(completed.stdout.strip().splitlines()[-1])
    assert seen == {"storage": "PooledSqliteEventLogStorage", "partitions": len(KEYS), "success": True}


def test_engines_are_made_once_per_shard_not_per_event(instance, monkeypatch):
    made: list[str] = []
    real_create_engine = instance_storage.create_engine

    def counting_create_engine(url, **kwargs):
        made.append(str(url))
        return real_create_engine(url, **kwargs)

    monkeypatch.setattr(instance_storage, "create_engine", counting_create_engine)
    result = range_run(instance)
    # Hundreds of events (48 planned, 48 materializations, step and run events), each written to the run's
    # shard and most also to the index: one engine for the run's shard, the index's made earlier or once.
    assert len(made) <= 2
    assert sum(result.run_id in url for url in made) == 1
    with instance.event_log_storage.index_connection() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000


def test_run_shard_engines_are_bounded(instance):
    storage = instance.event_log_storage
    for number in range(MAX_RUN_SHARD_ENGINES + 5):
        with storage.run_connection(f"run-{number}") as conn:
            conn.exec_driver_sql("select 1")
    run_engines = [shard for shard in storage._engines if shard != "index"]
    assert len(run_engines) == MAX_RUN_SHARD_ENGINES
    assert run_engines[-1] == f"run-{MAX_RUN_SHARD_ENGINES + 4}"


def test_a_forked_child_does_not_reuse_its_parents_engines(instance, monkeypatch):
    storage = instance.event_log_storage
    with storage.index_connection() as conn:
        conn.exec_driver_sql("select 1")
    parent_engine = storage._engines["index"]
    monkeypatch.setattr(instance_storage.os, "getpid", lambda: -1)  # as seen from a child process
    with storage.index_connection() as conn:
        assert conn.exec_driver_sql("select count(*) from event_logs").scalar() >= 0
    assert storage._engines["index"] is not parent_engine


def test_watchers_see_events_committed_through_pooled_connections(instance, home):
    """The UI streams a running run's events through `watch`: it must fire although commits now go to the
    shard's WAL and no connection close checkpoints them into the .db file."""
    result = range_run(instance, KEYS[:2])
    seen = threading.Event()
    cursors: list[str] = []

    def callback(_entry, cursor):
        cursors.append(cursor)
        seen.set()

    watcher_instance = dg.DagsterInstance.from_config(str(home))
    try:
        records = watcher_instance.get_records_for_run(result.run_id).records
        cursor = EventLogCursor.from_storage_id(records[-1].storage_id).to_string()
        watcher_instance.watch_event_logs(result.run_id, cursor, callback)
        # Another writer (as a run worker would be) adds an event to the same run.
        instance.report_engine_event("after the watch started", instance.get_run_by_id(result.run_id))
        assert seen.wait(timeout=20), "the watcher was not woken by a commit to the run's WAL"
    finally:
        watcher_instance.dispose()


def test_a_home_written_by_dagsters_stock_storage_keeps_working(tmp_path, monkeypatch):
    home = write_home(tmp_path / "home", stock=True)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.from_config(str(home)) as stock:
        assert type(stock.event_log_storage) is SqliteEventLogStorage
        range_run(stock, KEYS[:10])
    write_home(home)  # the project's dagster.yaml replaces the stock one
    with dg.DagsterInstance.from_config(str(home)) as pooled:
        assert isinstance(pooled.event_log_storage, PooledSqliteEventLogStorage)
        assert pooled.get_materialized_partitions(dg.AssetKey("windowed")) == set(KEYS[:10])
        range_run(pooled, KEYS[10:20])
        assert pooled.get_materialized_partitions(dg.AssetKey("windowed")) == set(KEYS[:20])
