"""Two materializations in separate processes, at the same time, against one DuckDB file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

from cancel_pipeline.warehouse.connection import warehouse_connection

PROJECT_ROOT = Path(__file__).resolve().parents[1]

RUNS = [
    ("raw_canceled_order_pages", "2026-03-02"),
    ("raw_updated_order_pages", "2026-03-02"),
]


def blocked_by_pool(instance: dg.DagsterInstance) -> bool:
    """Whether a step waits for the `duckdb_writer` pool: the pool's one slot is claimed while another step
    is pending on it, or a run has logged the wait (the in-process executor may log it only much later)."""
    pool = instance.event_log_storage.get_concurrency_info("duckdb_writer")
    if pool.active_slot_count == 1 and pool.pending_step_count >= 1:
        return True
    return any(
        "blocked by limit for pool duckdb_writer" in (event.message or "")
        for run in instance.get_runs()
        for event in instance.all_logs(run.run_id)
    )


@pytest.mark.timeout(240)
def test_two_processes_materializing_at_once_both_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    # The project's instance settings, pool limit included.
    shutil.copy(PROJECT_ROOT / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    # Create the instance's storage and the pool's slots once up front: two processes doing either for the
    # first time at the same moment race on SQLite (the schema, or the pool's slot count).
    with dg.DagsterInstance.get() as instance:
        instance.event_log_storage.initialize_concurrency_limit_to_default("duckdb_writer")
        assert instance.event_log_storage.get_concurrency_info("duckdb_writer").slot_count == 1
    database = tmp_path / "warehouse.duckdb"
    store = DemoStore(clock=FrozenClock("2026-03-03T03:00:00Z"), bucket_size=400, leak_rate=20.0)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOPIFY_", "CANCEL_PIPELINE_"))}
    env.update(
        DAGSTER_HOME=str(home),
        SHOPIFY_ACCESS_TOKEN="demo-token",
        SHOPIFY_BUCKET_SIZE="400",
        SHOPIFY_LEAK_RATE="20",
        CANCEL_PIPELINE_DUCKDB=str(database),
    )
    command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "cancel_pipeline.definitions"]

    # This process holds DuckDB's file lock until both runs are at the door: the first run's step fetches its
    # pages and then waits for the lock while holding the pool's only slot, so the second run's step must
    # wait for the pool. Releasing the lock then lets both finish, one after the other.
    holder = duckdb.connect(str(database))
    processes: list[subprocess.Popen[str]] = []
    try:
        with serve(store) as base_url:
            env["SHOPIFY_STORE"] = base_url
            processes = [
                subprocess.Popen(
                    [*command, "--select", asset, "--partition", partition],
                    cwd=tmp_path,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                for asset, partition in RUNS
            ]
            deadline = time.monotonic() + 180
            with dg.DagsterInstance.get() as instance:
                while not blocked_by_pool(instance):
                    ended = [process.communicate()[0] for process in processes if process.poll() is not None]
                    assert not ended, "a run ended early:\n" + "\n".join(output[-3000:] for output in ended)
                    assert time.monotonic() < deadline, "no step ever waited for the duckdb_writer pool"
                    time.sleep(0.2)
            holder.close()
            outputs = [process.communicate(timeout=180)[0] for process in processes]
    finally:
        holder.close()
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()

    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-4000:]
        assert "RUN_SUCCESS" in output, output[-4000:]

    with warehouse_connection(database) as con:
        landed = con.execute(
            "select distinct asset, partition_key from raw_order_pages order by asset"
        ).fetchall()
    assert landed == sorted(RUNS)

    # The pool serialized the two writing steps: their executions never overlapped.
    with dg.DagsterInstance.get() as instance:
        spans = []
        for run in instance.get_runs():
            events = instance.all_logs(run.run_id)
            started = [
                e.timestamp
                for e in events
                if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"
            ]
            finished = [
                e.timestamp
                for e in events
                if e.dagster_event and e.dagster_event.event_type_value == "STEP_SUCCESS"
            ]
            spans.append((min(started), max(finished)))
    assert len(spans) == 2
    first, second = sorted(spans)
    assert first[1] <= second[0]
