"""Warehouse failures say what really happened: a failed COMMIT, and a wait for another process's file lock."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from cancel_pipeline.warehouse.connection import WarehouseLockedError, connect, lock_holder

PROJECT_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(120)

# Lands a few hundred orders, then derives with the process's file size capped, as on a full disk: the
# derivation's COMMIT cannot write DuckDB's write-ahead log. The cap is set in a child process, so the test
# runner's own files are not limited.
COMMIT_FAILS = textwrap.dedent(
    """
    import resource, signal, sys
    from datetime import timedelta
    from cancel_pipeline.warehouse.derive import derive_new_pages, read_watermark
    from cancel_pipeline_tests.order_builders import land_page, line_item, open_test_warehouse, order, utc

    t0 = utc(2025, 3, 3, 15)
    con = open_test_warehouse(sys.argv[1])
    orders = [
        order(i, t0 + timedelta(minutes=i), line_items=[line_item(i * 10 + k, quantity=2) for k in range(5)])
        for i in range(1, 400)
    ]
    land_page(con, orders, page_number=1)
    con.execute("checkpoint")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    try:
        derive_new_pages(con)
    except Exception as error:
        print(f"{type(error).__name__}: {error}")
    """
)


def test_a_failed_commit_reports_its_cause_not_the_refused_rollback(tmp_path: Path) -> None:
    database = tmp_path / "warehouse.duckdb"
    script = tmp_path / "commit_fails.py"
    script.write_text(COMMIT_FAILS)
    done = subprocess.run(
        [sys.executable, str(script), str(database)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    reported = done.stdout.strip().splitlines()[-1]
    assert "Failed to commit" in reported and "File too large" in reported, reported
    assert "no transaction is active" not in reported


@pytest.fixture
def locked_file(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A DuckDB file whose lock another process holds; yields the path and that process's PID."""
    database = tmp_path / "locked.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
            "time.sleep(60)",
            str(database),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield database, holder.pid
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_a_wait_for_the_file_lock_names_the_holder_and_the_time_left(
    locked_file: tuple[Path, int], caplog: pytest.LogCaptureFixture
) -> None:
    database, pid = locked_file
    caplog.set_level(logging.WARNING, logger="cancel_pipeline.warehouse.connection")
    with pytest.raises(WarehouseLockedError) as raised:
        connect(database, lock_retry_seconds=3.0, log_interval_seconds=1.0)

    waits = [
        record.getMessage() for record in caplog.records if "Waiting for DuckDB's lock" in record.getMessage()
    ]
    # Logged at once, then every interval, until the wait gives up.
    assert 2 <= len(waits) <= 4, waits
    assert all(f"PID {pid}" in message and str(database) in message for message in waits)
    assert waits[0].endswith("waited 0 s, will wait 3 s more"), waits[0]
    message = str(raised.value)
    assert f"PID {pid}" in message and "for 3 s" in message and "close that process" in message
    # Still a DuckDB IO error, so callers that tell lock errors apart keep working.
    assert isinstance(raised.value, duckdb.IOException)


def test_the_lock_holder_is_read_from_duckdbs_message() -> None:
    error = duckdb.IOException(
        'IO Error: Could not set lock on file "/data/w.duckdb": Conflicting lock is held in '
        "/usr/bin/python3.11 (PID 4242). See also https://duckdb.org/docs/current/connect/concurrency"
    )
    assert lock_holder(error) == "PID 4242 (/usr/bin/python3.11)"
    assert lock_holder(duckdb.IOException("IO Error: Could not set lock on file")) == "another process"


def test_the_wait_is_logged_among_a_runs_logs_with_the_projects_instance(
    locked_file: tuple[Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database, pid = locked_file
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(PROJECT_ROOT / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    @dg.op
    def open_the_locked_warehouse() -> None:
        with pytest.raises(WarehouseLockedError):
            connect(database, lock_retry_seconds=1.0, log_interval_seconds=10.0)

    @dg.job
    def waits_for_the_lock() -> None:
        open_the_locked_warehouse()

    with dg.DagsterInstance.get() as instance:
        result = waits_for_the_lock.execute_in_process(instance=instance)
        messages = [entry.message for entry in instance.all_logs(result.run_id)]
    assert any("Waiting for DuckDB's lock" in message and f"PID {pid}" in message for message in messages)
