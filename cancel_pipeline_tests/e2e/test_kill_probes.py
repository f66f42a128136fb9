"""Kill probes: `make run` killed with SIGKILL at the fetch, inside the landing and inside the derivation.

Each probe starts `python -m cancel_pipeline.cli run` (the catch-up behind `make run`) against the demo store
served on 127.0.0.1, kills it at one point, checks that the killed run is left holding the `duckdb_writer`
pool (what used to block every later run), then runs the catch-up again: it must notice the dead run, fail it,
free its slot, complete, and leave the same tables as a catch-up that was never interrupted.

The landing and derivation probes pause the process just before the transaction's COMMIT through the
product's test-only `CANCEL_PIPELINE_TEST_KILL_PROBE` hook, so the kill lands inside the transaction.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve
from cancel_pipeline_simulators.demo_store.settings import GRAPHQL_PLANS

from cancel_pipeline.warehouse.connection import KILL_PROBE_VARIABLE

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PROJECT = Path(__file__).resolve().parents[2]
DAYS = "1.1"
"""The catch-up's lookback: more than the store's one day of history, so every run reads every order."""
FETCH_STEP = "raw_canceled_order_pages"
"""The first step of the catch-up's first run."""
WAIT_S = 90.0
PLUS_POINTS, PLUS_RESTORE = GRAPHQL_PLANS["plus"]
"""A Plus plan's GraphQL limits, on the store and in the client's pacing: the probes are about killing a run,
not about the rate limit, and a Standard plan's pacing makes the updates feed's day take over a minute."""

# The tables a person queries, without the columns that record when a fetch happened.
TABLES = {
    "canceled_orders": "select * from canceled_orders order by all",
    "canceled_line_items": "select * from canceled_line_items order by all",
    "orders": "select * exclude (last_fetched_at) from orders order by all",
    "order_rejects": "select reason, detail, order_id, raw_order::varchar from order_rejects order by all",
}


@dataclass
class Store:
    """The demo store the probes read, and its URL."""

    store: DemoStore
    url: str


@pytest.fixture(scope="module")
def probed_store() -> Iterator[Store]:
    """One day of history, its clock frozen a little before now, so every catch-up sees the same orders."""
    store = DemoStore(
        clock=FrozenClock(datetime.now(UTC) - timedelta(minutes=5)),
        history_days=1,
        bucket_size=400,
        leak_rate=20.0,
        graphql_bucket_size=PLUS_POINTS,
        graphql_restore_rate=PLUS_RESTORE,
    )
    with serve(store) as url:
        yield Store(store, url)


def environment(folder: Path, store: Store) -> dict[str, str]:
    """A fresh instance (the project's dagster.yaml) and warehouse under `folder`, reading `store`."""
    home = folder / "dagster_home"
    home.mkdir(parents=True)
    shutil.copyfile(PROJECT / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOPIFY_", "CANCEL_PIPELINE_"))}
    env.update(
        DAGSTER_HOME=str(home),
        CANCEL_PIPELINE_DUCKDB=str(folder / "warehouse.duckdb"),
        SHOPIFY_STORE=store.url,
        SHOPIFY_ACCESS_TOKEN="demo-token",
        SHOPIFY_GRAPHQL_BUCKET_POINTS=str(PLUS_POINTS),
        SHOPIFY_GRAPHQL_RESTORE_RATE=str(PLUS_RESTORE),
    )
    return env


def catch_up(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`make run`'s command, to its end."""
    return subprocess.run(
        [sys.executable, "-m", "cancel_pipeline.cli", "run", "--days", DAYS],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def tables(database: str) -> dict[str, list[tuple]]:
    with duckdb.connect(database, read_only=True) as con:
        return {table: con.execute(sql).fetchall() for table, sql in TABLES.items()}


@pytest.fixture(scope="module")
def clean_tables(probed_store: Store, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple]]:
    """The tables of a catch-up that nothing interrupted."""
    env = environment(tmp_path_factory.mktemp("clean"), probed_store)
    done = catch_up(env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = tables(env["CANCEL_PIPELINE_DUCKDB"])
    assert result["canceled_orders"] and result["canceled_line_items"] and result["orders"]
    return result


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert process.poll() is None, f"the run ended before {what}"
        if time.monotonic() > deadline:
            process.kill()  # a catch-up left running would outlive the store it reads
            process.wait()
            raise AssertionError(f"never saw {what} within {WAIT_S:.0f} s")
        time.sleep(0.1)


@contextlib.contextmanager
def instance(env: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    """The probe's own instance (each probe has its own folder)."""
    before = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    try:
        with dg.DagsterInstance.get() as probed:
            yield probed
    finally:
        if before is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = before


def step_started(env: dict[str, str], step_key: str) -> Callable[[], bool]:
    def started() -> bool:
        with instance(env) as probed:
            return any(
                entry.step_key == step_key
                for run in probed.get_runs()
                for entry in probed.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
            )

    return started


def runs_and_slot_holders(env: dict[str, str]) -> tuple[list[dg.DagsterRunStatus], list[str]]:
    """The statuses of the instance's runs, and the runs holding a `duckdb_writer` slot."""
    with instance(env) as probed:
        statuses = [run.status for run in probed.get_runs()]
        held = probed.event_log_storage.get_concurrency_info("duckdb_writer").claimed_slots
        return statuses, [slot.run_id for slot in held]


def kill(env: dict[str, str], process: subprocess.Popen[str]) -> str:
    """SIGKILL the run's process; returns the id of the run it leaves holding the pool."""
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    statuses, holders = runs_and_slot_holders(env)
    # What used to block every later run for ever: a run marked running that holds the pool's only slot.
    # (The runs before it, a feed's, ended.)
    assert statuses.count(dg.DagsterRunStatus.STARTED) == 1 and len(holders) == 1
    assert set(statuses) <= {dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.SUCCESS}
    return holders[0]


def recover(env: dict[str, str], dead_run_id: str, job: str) -> None:
    """Catch up again: the dead run (of `job`) is failed, its slot freed, and this run completes."""
    recovered = catch_up({k: v for k, v in env.items() if k != KILL_PROBE_VARIABLE})
    assert recovered.returncode == 0, recovered.stderr[-3000:]
    assert f"run {dead_run_id} of {job} was still marked running" in recovered.stdout
    assert "marked it failed and freed its 1 duckdb_writer slot(s)" in recovered.stdout
    statuses, holders = runs_and_slot_holders(env)
    assert statuses.count(dg.DagsterRunStatus.FAILURE) == 1 and not holders
    assert statuses.count(dg.DagsterRunStatus.SUCCESS) == len(statuses) - 1


def start_catch_up(env: dict[str, str], stderr: Path) -> subprocess.Popen[str]:
    with stderr.open("w") as sink:  # the child keeps its own copy of the file
        return subprocess.Popen(
            [sys.executable, "-m", "cancel_pipeline.cli", "run", "--days", DAYS],
            cwd=PROJECT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            text=True,
        )


def test_a_run_killed_while_fetching_leaves_the_next_run_complete_and_correct(
    probed_store: Store, clean_tables: dict[str, list[tuple]], tmp_path: Path
) -> None:
    env = environment(tmp_path, probed_store)
    # Slow answers keep the run in its fetch, holding the pool slot, long enough to be killed there.
    probed_store.store.set_faults(latency=3.0)
    try:
        process = start_catch_up(env, tmp_path / "stderr.txt")
        before = probed_store.store.stats()["admin_requests"]
        wait_for(step_started(env, FETCH_STEP), process, "the fetch start")
        # A request counts when it arrives and is answered 3 s later: the run is waiting for its first page.
        wait_for(lambda: probed_store.store.stats()["admin_requests"] > before, process, "a request")
    finally:
        probed_store.store.set_faults(latency=0.0)
    recover(env, kill(env, process), "canceled_order_job")
    assert tables(env["CANCEL_PIPELINE_DUCKDB"]) == clean_tables


@pytest.mark.parametrize(
    ("phase", "empty_table", "job"),
    # The feeds land first; the tables' job derives what both landed.
    [
        ("landing", "raw_order_pages", "canceled_order_job"),
        ("derivation", "orders", "cancellation_tables_job"),
    ],
)
def test_a_run_killed_inside_a_transaction_leaves_the_next_run_complete_and_correct(
    probed_store: Store,
    clean_tables: dict[str, list[tuple]],
    tmp_path: Path,
    phase: str,
    empty_table: str,
    job: str,
) -> None:
    env = environment(tmp_path, probed_store) | {KILL_PROBE_VARIABLE: phase}
    stderr = tmp_path / "stderr.txt"
    process = start_catch_up(env, stderr)
    wait_for(lambda: f"paused before the {phase} commit" in stderr.read_text(), process, f"the {phase} pause")
    dead_run_id = kill(env, process)
    # The first transaction of its kind never committed: DuckDB's recovery left nothing of it.
    with duckdb.connect(env["CANCEL_PIPELINE_DUCKDB"], read_only=True) as con:
        assert con.execute(f"select count(*) from {empty_table}").fetchone() == (0,)
    recover(env, dead_run_id, job)
    assert tables(env["CANCEL_PIPELINE_DUCKDB"]) == clean_tables
