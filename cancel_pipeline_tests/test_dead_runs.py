"""A `dagster job execute` killed with SIGKILL while its step holds the `duckdb_writer` pool: the dead-run sensor
fails the run and frees the slot, and the next run of the job completes instead of waiting for ever."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import dagster as dg
import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

from cancel_pipeline.definitions import defs
from cancel_pipeline.defs.conventions import DUCKDB_WRITER_POOL, RANGE_END_TAG, RANGE_START_TAG
from cancel_pipeline.defs.runs.dead_runs import dead_run_sensor, find_dead_runs, release_pool

PROJECT = Path(__file__).resolve().parents[1]
STORE_NOW = "2026-03-03T03:00:00Z"
JOB = "canceled_order_job"
DAGSTER_JOB_EXECUTE = [
    sys.executable,
    "-W",
    "ignore",
    "-m",
    "dagster",
    "job",
    "execute",
    "-m",
    "cancel_pipeline.definitions",
]

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """An instance with the project's dagster.yaml and the pool's one slot."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(PROJECT / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        instance.event_log_storage.set_concurrency_slots(DUCKDB_WRITER_POOL, 1)
        yield instance


def _job_execute(env: dict[str, str], keys: tuple[str, str]) -> subprocess.Popen[str]:
    tags = json.dumps({RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[1]})
    return subprocess.Popen(
        [*DAGSTER_JOB_EXECUTE, "-j", JOB, "--tags", tags],
        cwd=env["DAGSTER_HOME"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _slot_holders(instance: dg.DagsterInstance) -> list[str]:
    return [
        slot.run_id
        for slot in instance.event_log_storage.get_concurrency_info(DUCKDB_WRITER_POOL).claimed_slots
    ]


@pytest.mark.parametrize("terminated_by_hand", [False, True], ids=["found-dead", "terminated-in-ui"])
def test_a_killed_job_execute_is_failed_its_slot_freed_and_the_next_run_completes(
    instance: dg.DagsterInstance, tmp_path: Path, terminated_by_hand: bool
) -> None:
    windows = defs.resolve_job_def(JOB).partitions_def
    assert windows is not None
    keys = windows.get_partition_keys(current_time=datetime.fromisoformat(STORE_NOW))[-2:]
    store = DemoStore(clock=FrozenClock(STORE_NOW), bucket_size=400, leak_rate=20.0)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOPIFY_", "CANCEL_PIPELINE_"))}
    env.update(
        DAGSTER_HOME=os.environ["DAGSTER_HOME"],
        SHOPIFY_ACCESS_TOKEN="demo-token",
        CANCEL_PIPELINE_DUCKDB=str(tmp_path / "warehouse.duckdb"),
    )
    with serve(store) as base_url:
        env["SHOPIFY_STORE"] = base_url
        # Slow answers hold the run in its fetch, its step holding the pool's only slot.
        store.set_faults(latency=30.0)
        killed = _job_execute(env, (keys[0], keys[1]))
        deadline = time.monotonic() + 90
        while not store.stats()["admin_requests"]:
            assert killed.poll() is None, killed.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the run never asked the store for a page"
            time.sleep(0.2)
        [run] = instance.get_runs()
        assert _slot_holders(instance) == [run.run_id]
        # Alive: not touched.
        assert find_dead_runs(instance) == []

        # `kill -9` of the `dagster job execute` process and of its step worker.
        pids = {entry.dagster_event.pid for entry in instance.all_logs(run.run_id) if entry.dagster_event}
        for pid in pids - {None}:
            os.kill(pid, signal.SIGKILL)
        killed.communicate()
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
        assert _slot_holders(instance) == [run.run_id]

        if terminated_by_hand:
            # As the UI's forced termination does: the run ends, but its slot stays taken.
            instance.report_run_canceled(instance.get_run_by_id(run.run_id))
            assert _slot_holders(instance) == [run.run_id]
        result = dead_run_sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(result, dg.SkipReason)
        if terminated_by_hand:
            expected = f"run {run.run_id} of {JOB} had ended (CANCELED) but still held 1 {DUCKDB_WRITER_POOL}"
            assert expected in result.skip_message
        else:
            assert f"run {run.run_id} of {JOB} was still marked running" in result.skip_message
            assert f"freed its 1 {DUCKDB_WRITER_POOL} slot(s)" in result.skip_message
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert _slot_holders(instance) == []
        assert release_pool(instance) == []  # nothing left to do

        store.set_faults(latency=0.0)
        again = _job_execute(env, (keys[0], keys[1]))
        _, stderr = again.communicate(timeout=180)
    assert again.returncode == 0, stderr[-3000:]
    latest = instance.get_runs(limit=1)[0]
    assert latest.run_id != run.run_id and latest.status == dg.DagsterRunStatus.SUCCESS


def test_the_sensor_runs_by_default_and_the_daemon_frees_the_slots_of_ended_runs(
    instance: dg.DagsterInstance,
) -> None:
    sensor = defs.resolve_sensor_def("dead_run_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING and sensor.description
    # A run failed from outside keeps its slots until the daemon's run monitoring frees them.
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
    assert instance.run_monitoring_settings["max_resume_run_attempts"] == 0
