"""Backfill overhead: `--days` days of both raw assets and their tables, with an almost empty store.

A user's backfill: `dagster dev` on the project, pointed at the demo store over HTTP (frozen at the end of the
span, with `--orders-per-hour` orders, no bursts or malformed records, and a Plus plan's rate limits, so the
figures measure the pipeline's and Dagster's overhead rather than data volume or the API). Each mode runs on
a fresh instance and warehouse (`--modes`):

- `single-run`: per raw feed one run of its job (`canceled_order_job`, `canceled_items_job`: the raw asset
  alone) over the whole span, launched through `launchPipelineExecution` with the tags
  `dagster/asset_partition_range_start` / `_end` (what the UI's "launch as a single run" sends), one after
  the other without waiting; the tables then follow through the `automation_sensor` (declarative
  automation, a tick every 15 s). Both raw runs start at once and take turns on the `duckdb_writer` pool
  (that waiting counts). Measured from the first launch to the tables' run finished; the tables run once
  for both feeds when both landed before a tick.
- `sequential`: the same with the second run launched once the first has ended, so each feed's figures are
  its own (no wait for the other's pool slot).
- `raw-only`: `single-run` launched from the asset page's Materialize dialog instead (Dagster's implicit
  asset job, the raw asset alone).
- `raw-sequential`: `raw-only` with the second raw run launched once the first has ended.
- `daemon`: one partition backfill of both raw assets and everything downstream through the webserver's
  GraphQL API (the UI's backfill choice); the backfill daemon launches the runs on its 30 s ticks.
- `cli-jobs`: the issue's own method, with no webserver and no daemon: per raw feed one `dagster job execute`
  of its job with the range tags, one after the other, then one of `cancellation_tables_job` (the daemon's
  automation sensor would run it); the shares are read from the instance afterwards.
- `cli-raw`: the same through the raw assets (docs/operating.md's alternative to the job commands): per raw
  feed one `dagster asset materialize --partition-range` of the raw asset alone, then one run of the tables.

`--storage` picks the instance's storage, each measured in the same sitting: `sqlite` (deploy/local/dagster.yaml,
Dagster's own SQLite storage), `postgres` (deploy/postgres/dagster.yaml on a throwaway local PostgreSQL cluster
behind PgBouncer, as deployed, fresh for each mode), `postgres-direct` (the same with no PgBouncer), `both`
(sqlite and postgres) or a comma-separated list.

Dagster's share of a feed's run is read from the run's own log: from the run's creation to the raw step's
"Fetching ..." message (logged just before its first request to the store), plus from its "Landed ..."
message (logged once the pages are committed) to the run's end. The time between the two messages is the
pipeline's fetch and landing. The share after the landing holds the raw asset's per-day materialization events
and, in a run that holds them, the table steps (the derivation in DuckDB, a few seconds); both are shown
apart.
Targets (issue 13): both feeds over 30 days end to end in under 40 s (`single-run`); over 365 days at most 60 s
of Dagster's share for both feeds together, on either storage.

    python benchmarks/backfill_overhead.py [--days 30] [--modes single-run,sequential,daemon]
        [--storage both|sqlite,postgres,postgres-direct] [--orders-per-hour 0.5] [--timeout 900]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve
from cancel_pipeline_simulators.demo_store.settings import GRAPHQL_PLANS
from cancel_pipeline_testkit.selection import downstream_closure
from dagster_harness import (
    DEPLOYED_STORAGES,
    PROJECT_ROOT,
    STORAGES,
    DagsterGraphQLClient,
    RunEvent,
    RunTiming,
    backfill_times,
    dagster_dev_on_store,
    instance_on,
    launch_range_run,
    read_only_query,
    run_log_messages,
    run_timings,
    runs_of_job,
    server_environment,
    stop_on_sigterm,
    union_seconds,
)

from cancel_pipeline.defs.conventions import RANGE_END_TAG, RANGE_START_TAG
from cancel_pipeline.defs.ingestion.partitions import PARTITION_KEY_FORMAT, RANGE_KEY_SEPARATOR

RAW_ASSETS = {"raw_canceled_order_pages": 24 * 60, "raw_updated_order_pages": 24 * 60}
"""Raw asset -> its partition length in minutes (both are partitioned by UTC day)."""

RAW_JOBS = {"raw_canceled_order_pages": "canceled_order_job", "raw_updated_order_pages": "canceled_items_job"}
"""Raw asset -> its feed job, which holds it alone (cancel_pipeline/defs/ingestion/jobs.py)."""

MODES = ("single-run", "sequential", "raw-only", "raw-sequential", "daemon", "cli-jobs", "cli-raw")
DEFINITIONS = "cancel_pipeline.definitions"
TABLES_SELECTION = "group:cancellations or group:outbox"
"""The tables and the notices, as `dagster asset materialize --select` takes them (docs/operating.md)."""
TABLES_JOB = "cancellation_tables_job"
"""The tables' and notices' job (cancel_pipeline/defs/cancellations/jobs.py)."""
ASSET_JOB = "__ASSET_JOB"
"""Dagster's implicit job of any asset selection: what a launch from an asset page runs."""
RUN_DONE = frozenset({"SUCCESS", "FAILURE", "CANCELED"})

TARGET_E2E_30_DAYS_S = 40.0
"""Both feeds over 30 days, launch to done, as single runs."""
TARGET_SHARE_S = 60.0
"""Dagster's share of both feeds' runs together over 365 days, on either storage."""
TABLES = ("raw_order_pages", "order_versions", "canceled_orders", "canceled_line_items", "orders")

PLUS_REST = (400, 20.0)
"""A Plus plan's REST bucket and leak rate: the API is not what bounds the backfill."""
FETCHING_PREFIX = "Fetching status="
LANDED_PREFIX = "Landed "


def demo_store(end: datetime, days: int, orders_per_hour: float) -> DemoStore:
    """The demo store frozen at `end`, serving `days` of history (and a week more) at `orders_per_hour`,
    with a Plus plan's rate limits, no bursts and no malformed records."""
    points, restore = GRAPHQL_PLANS["plus"]
    return DemoStore(
        clock=FrozenClock(end),
        orders_per_hour=orders_per_hour,
        burst_size=0,
        malformed_every_hours=0,
        history_days=days + 7,
        bucket_size=PLUS_REST[0],
        leak_rate=PLUS_REST[1],
        graphql_bucket_size=points,
        graphql_restore_rate=restore,
    )


def plus_plan_env() -> dict[str, str]:
    """The client's pacing for a Plus plan, as a user of one would set it."""
    points, restore = GRAPHQL_PLANS["plus"]
    return {
        "SHOPIFY_BUCKET_SIZE": str(PLUS_REST[0]),
        "SHOPIFY_LEAK_RATE": str(PLUS_REST[1]),
        "SHOPIFY_GRAPHQL_BUCKET_POINTS": str(points),
        "SHOPIFY_GRAPHQL_RESTORE_RATE": str(restore),
    }


def span_end(now: datetime) -> datetime:
    """The end of the backfilled span: the last midnight (UTC), so whole days tile the span."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def window_keys(start: datetime, end: datetime, minutes: int) -> list[str]:
    """Partition keys of the `minutes`-long windows covering `[start, end)`."""
    keys, moment = [], start
    while moment < end:
        keys.append(moment.strftime(PARTITION_KEY_FORMAT))
        moment += timedelta(minutes=minutes)
    return keys


def table_counts(database: Path) -> dict[str, int]:
    """Row counts of the warehouse tables (read-only; call only when no run writes)."""
    sql = " union all ".join(f"select '{table}', count(*) from {table}" for table in TABLES)
    rows = read_only_query(database, sql) or []
    return {name: count for name, count in rows}


def wait_until_idle(client: DagsterGraphQLClient, timeout: float = 120.0) -> None:
    """Wait until no run is queued or going (a sensor run may still be finishing)."""
    deadline = time.monotonic() + timeout
    while client.unfinished_run_ids() and time.monotonic() < deadline:
        time.sleep(0.5)


def wait_for_runs(client: DagsterGraphQLClient, run_ids: list[str], timeout: float) -> list[RunTiming]:
    """Poll until every run of `run_ids` has ended; their timings."""
    deadline = time.monotonic() + timeout
    while True:
        runs = run_timings(client, run_ids)
        if len(runs) == len(run_ids) and all(run.status in RUN_DONE for run in runs):
            return runs
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs {run_ids} not done within {timeout:.0f} s: {runs}")
        time.sleep(0.25)


@contextlib.contextmanager
def dagster_dev_on_span(
    workdir: Path, span: tuple[datetime, datetime], orders_per_hour: float, storage: str
) -> Iterator[tuple[Any, DagsterGraphQLClient, list[str]]]:
    """`dagster dev` on a fresh instance of `storage` and on the demo store frozen at the end of `span`, with
    its first window at the span's start; yields the server, its client and both raw assets with
    everything downstream of them."""
    start, end = span
    days = round((end - start) / timedelta(days=1))
    store = demo_store(end, days, orders_per_hour)
    with instance_on(storage) as (config, storage_env):
        env = {"CANCEL_PIPELINE_FIRST_WINDOW": start.isoformat(), **plus_plan_env(), **storage_env}
        with dagster_dev_on_store(workdir, store, env, config) as (server, client):
            nodes = client.asset_nodes()
            selection: list[str] = []
            for raw in RAW_ASSETS:
                selection += [key for key in downstream_closure(nodes, raw) if key not in selection]
            yield server, client, selection


def feed_share(client: DagsterGraphQLClient, run: RunTiming, raw: str) -> dict[str, Any]:
    """A feed's run split along its own log, read through the webserver (see `share_from_log`)."""
    return share_from_log(run_log_messages(client, run.run_id), run, raw)


def share_from_log(events: list[RunEvent], run: RunTiming, raw: str) -> dict[str, Any]:
    """A feed's run split along its log `events`: Dagster before the first request, the fetch and landing,
    Dagster after the landing (the raw asset's per-day events, then the table steps)."""
    fetching = min(e.timestamp for e in events if e.message.startswith(FETCHING_PREFIX))
    landed = max(e.timestamp for e in events if e.message.startswith(LANDED_PREFIX))
    raw_end = max(
        e.timestamp for e in events if e.step_key == raw and e.event_type in ("STEP_SUCCESS", "STEP_FAILURE")
    )
    ended = run.ended or time.time()
    # The table steps' own time (step start to success: the derivation in DuckDB and the step's events);
    # the rest of the time after the raw step is each step's process start and its wait for the pool slot.
    step_spans: dict[str, list[float]] = {}
    for event in events:
        if event.step_key and event.step_key != raw and event.event_type in ("STEP_START", "STEP_SUCCESS"):
            step_spans.setdefault(event.step_key, []).append(event.timestamp)
    table_steps_s = union_seconds((min(t), max(t)) for t in step_spans.values() if len(t) == 2)
    events_by_type: dict[str, int] = {}
    for event in events:
        events_by_type[event.event_type or "LOG"] = events_by_type.get(event.event_type or "LOG", 0) + 1
    return {
        "job": run.job,
        "run_id": run.run_id,
        "created_to_started_s": round((run.started or ended) - run.created, 2),
        "started_to_first_request_s": round(fetching - (run.started or fetching), 2),
        "fetch_and_land_s": round(landed - fetching, 2),
        "landed_to_raw_step_end_s": round(raw_end - landed, 2),
        "table_steps_and_run_end_s": round(ended - raw_end, 2),
        "table_steps_own_s": round(table_steps_s, 2),
        "table_steps": len(step_spans),
        "before_first_request_s": round(fetching - run.created, 2),
        "after_last_landing_s": round(ended - landed, 2),
        "dagster_share_s": round((fetching - run.created) + (ended - landed), 2),
        "run_wall_s": round(ended - run.created, 2),
        "events": len(events),
        "materializations": events_by_type.get("ASSET_MATERIALIZATION", 0),
        "planned": events_by_type.get("ASSET_MATERIALIZATION_PLANNED", 0),
        "events_by_type": dict(sorted(events_by_type.items(), key=lambda item: -item[1])),
    }


def ui_backfill(
    workdir: Path, span: tuple[datetime, datetime], orders_per_hour: float, timeout: float, storage: str
) -> dict[str, Any]:
    """Run the backfill through `dagster dev` (the daemon launches its runs) and return its figures."""
    start, end = span
    days = round((end - start) / timedelta(days=1))
    with dagster_dev_on_span(workdir, span, orders_per_hour, storage) as (server, client, selection):
        ranges: dict[str, tuple[str, str] | None] = {}
        for key in selection:
            if key in RAW_ASSETS:
                keys = window_keys(start, end, RAW_ASSETS[key])
                ranges[key] = (keys[0], keys[-1])
            else:
                ranges[key] = None
        wait_until_idle(client)
        launched = time.time()
        backfill_id = client.launch_backfill(ranges, title=f"{days}-day backfill overhead")
        backfill = client.wait_for_backfill(backfill_id, timeout=timeout, poll_interval=0.25)
        observed_done = time.time()
        created_at, ended_at = backfill_times(client, backfill_id)
        runs = run_timings(client, backfill.runs)
        counts = table_counts(server.duckdb_path)
        materialized = {raw: client.asset_state(raw).num_materialized for raw in RAW_ASSETS}
    return {
        "mode": "daemon",
        "storage": storage,
        "span": (start, end),
        "status": backfill.status,
        "launched": launched,
        "backfill_created": created_at,
        "backfill_ended": ended_at,
        "observed_done": observed_done,
        "runs": runs,
        "shares": [],
        "counts": counts,
        "windows": {raw: len(window_keys(start, end, minutes)) for raw, minutes in RAW_ASSETS.items()},
        "materialized": materialized,
        "selection": selection,
    }


def run_figures(
    mode: str,
    storage: str,
    span: tuple[datetime, datetime],
    runs: list[RunTiming],
    **figures: Any,
) -> dict[str, Any]:
    """A mode's figures for `summarize` and `print_mode`: its runs, a status (SUCCESS when every run
    succeeded), the days per feed, and the mode's own `figures` (launched, observed_done, shares, counts,
    materialized, selection, ...)."""
    start, end = span
    statuses = {run.status for run in runs}
    return {
        "mode": mode,
        "storage": storage,
        "span": span,
        "status": "SUCCESS" if statuses == {"SUCCESS"} else str(sorted(statuses)),
        "backfill_created": None,
        "backfill_ended": None,
        "runs": runs,
        "windows": {raw: len(window_keys(start, end, minutes)) for raw, minutes in RAW_ASSETS.items()},
        **figures,
    }


def range_runs(
    workdir: Path,
    span: tuple[datetime, datetime],
    orders_per_hour: float,
    timeout: float,
    storage: str,
    *,
    mode: str,
) -> dict[str, Any]:
    """Launch one range run per raw feed, of its job (`single-run`, `sequential`) or of the raw asset alone
    (`raw-only`, `raw-sequential`), one after the other (the second once the first ended, in the sequential
    modes); wait for both, then for the automation sensor's run(s) of the tables; return the figures with
    each feed's share."""
    sequential = mode in ("sequential", "raw-sequential")
    through_jobs = mode in ("single-run", "sequential")
    start, end = span
    with dagster_dev_on_span(workdir, span, orders_per_hour, storage) as (server, client, selection):
        wait_until_idle(client)
        launched = time.time()
        launch_seconds: dict[str, float] = {}
        raw_ids: list[str] = []
        for raw in RAW_ASSETS:
            keys = window_keys(start, end, RAW_ASSETS[raw])
            began = time.time()
            if through_jobs:
                raw_ids.append(launch_range_run(client, RAW_JOBS[raw], keys[0], keys[-1]))
            else:
                raw_ids.append(launch_range_run(client, ASSET_JOB, keys[0], keys[-1], assets=[raw]))
            launch_seconds[raw] = round(time.time() - began, 2)
            if sequential:
                wait_for_runs(client, raw_ids[-1:], timeout)
        raw_runs = wait_for_runs(client, raw_ids, timeout)
        raw_done = max(run.ended or 0.0 for run in raw_runs)
        # The tables' run(s) come from the automation sensor's next tick(s) after the raw runs ended.
        deadline = time.monotonic() + timeout
        while True:
            later = [
                run
                for run in runs_of_job(client, ASSET_JOB, limit=50)
                if run.run_id not in raw_ids and run.created > launched
            ]
            counts = table_counts(server.duckdb_path) if not client.unfinished_run_ids() else {}
            # Nothing is requested while a raw run is in progress: a run created after both ended saw both.
            if (
                any(run.created > raw_done for run in later)
                and all(run.status in RUN_DONE for run in later)
                and len(counts) == len(TABLES)
            ):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the tables were not derived within {timeout:.0f} s of the raw runs")
            time.sleep(0.5)
        runs = sorted([*raw_runs, *later], key=lambda run: run.created)
        observed_done = max(run.ended or 0.0 for run in runs)
        materialized = {raw: client.asset_state(raw).num_materialized for raw in RAW_ASSETS}
        shares = [
            feed_share(client, run, raw)
            for run, raw in zip(raw_runs_by_order(raw_runs, raw_ids), RAW_ASSETS, strict=True)
        ]
    return run_figures(
        mode,
        storage,
        span,
        runs,
        launch_call_s=launch_seconds,
        launched=launched,
        observed_done=observed_done,
        shares=shares,
        table_runs=[
            {
                "run_id": run.run_id,
                "after_last_raw_end_s": round(run.created - raw_done, 2),
                "run_wall_s": round((run.ended or 0.0) - run.created, 2),
            }
            for run in later
        ],
        counts=counts,
        materialized=materialized,
        selection=selection,
    )


def raw_runs_by_order(runs: list[RunTiming], run_ids: list[str]) -> list[RunTiming]:
    """`runs` in the order of `run_ids`."""
    by_id = {run.run_id: run for run in runs}
    return [by_id[run_id] for run_id in run_ids]


def cli_job_commands(span: tuple[datetime, datetime]) -> list[tuple[list[str], str | None]]:
    """`cli-jobs`, the issue's own method: per raw feed one `dagster job execute` of its job (the raw asset
    alone) with the range tags, then one of the tables' job (what the automation sensor would run)."""
    steps: list[tuple[list[str], str | None]] = []
    for raw, job in RAW_JOBS.items():
        keys = window_keys(*span, RAW_ASSETS[raw])
        tags = json.dumps({RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[-1]})
        steps.append((["job", "execute", "-m", DEFINITIONS, "-j", job, "--tags", tags], raw))
    steps.append((["job", "execute", "-m", DEFINITIONS, "-j", TABLES_JOB], None))
    return steps


def cli_raw_commands(span: tuple[datetime, datetime]) -> list[tuple[list[str], str | None]]:
    """`cli-raw`, the raw assets' route of docs/operating.md: per raw feed one `dagster asset materialize
    --partition-range` of the raw asset alone, then one run of the tables."""
    steps: list[tuple[list[str], str | None]] = []
    for raw, minutes in RAW_ASSETS.items():
        keys = window_keys(*span, minutes)
        partition_range = f"{keys[0]}{RANGE_KEY_SEPARATOR}{keys[-1]}"
        steps.append(
            (
                [
                    "asset",
                    "materialize",
                    "-m",
                    DEFINITIONS,
                    "--select",
                    raw,
                    "--partition-range",
                    partition_range,
                ],
                raw,
            )
        )
    steps.append((["asset", "materialize", "-m", DEFINITIONS, "--select", TABLES_SELECTION], None))
    return steps


def cli_mode_runs(
    mode: str, workdir: Path, span: tuple[datetime, datetime], orders_per_hour: float, storage: str
) -> dict[str, Any]:
    """A `cli-*` mode's commands, one after the other, on a fresh instance and warehouse with no webserver and
    no daemon; each raw feed's share is read from the instance's event log afterwards."""
    steps = CLI_MODES[mode](span)
    start, end = span
    days = round((end - start) / timedelta(days=1))
    dagster_home = workdir / "dagster_home"
    dagster_home.mkdir(parents=True)
    database = workdir / "warehouse.duckdb"
    store = demo_store(end, days, orders_per_hour)
    with instance_on(storage) as (config, storage_env), serve(store) as store_url:
        (dagster_home / "dagster.yaml").write_text(config)
        env = server_environment(
            dagster_home,
            database,
            {
                "SHOPIFY_STORE": store_url,
                "SHOPIFY_ACCESS_TOKEN": store.settings.access_token,
                "CANCEL_PIPELINE_FIRST_WINDOW": start.isoformat(),
                **plus_plan_env(),
                **storage_env,
            },
        )
        launched = time.time()
        for arguments, _ in steps:
            command = [str(PROJECT_ROOT / ".venv" / "bin" / "dagster"), *arguments]
            completed = subprocess.run(
                command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False
            )
            if completed.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-3000:]}")
        observed_done = time.time()
        runs, logs, materialized = instance_records(dagster_home, storage_env, list(RAW_ASSETS))
        counts = table_counts(database)
    if len(runs) != len(steps):
        raise RuntimeError(f"{mode}: {len(steps)} commands made {len(runs)} runs")
    # One run a command, one command after the other: the runs in creation order are the commands'.
    shares = [
        share_from_log(logs[run.run_id], run, raw) for run, (_, raw) in zip(runs, steps, strict=True) if raw
    ]
    return run_figures(
        mode,
        storage,
        span,
        runs,
        launched=launched,
        observed_done=observed_done,
        shares=shares,
        counts=counts,
        materialized=materialized,
        selection=[],
    )


CLI_MODES = {"cli-jobs": cli_job_commands, "cli-raw": cli_raw_commands}
"""Modes run from the command line with no daemon, and the commands of each."""


def instance_records(
    dagster_home: Path, storage_env: dict[str, str], assets: list[str]
) -> tuple[list[RunTiming], dict[str, list[RunEvent]], dict[str, int]]:
    """Every run of the instance in `dagster_home` (oldest first), each run's log, and how many partitions
    of each of `assets` are materialized, read with Dagster's own API."""
    previous = {name: os.environ.get(name) for name in storage_env}
    os.environ.update(storage_env)  # deploy/postgres/dagster.yaml reads its URL from the environment
    try:
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            runs = [
                RunTiming(
                    run_id=record.dagster_run.run_id,
                    job=record.dagster_run.job_name,
                    status=record.dagster_run.status.value,
                    created=record.create_timestamp.timestamp(),
                    started=record.start_time,
                    ended=record.end_time,
                    tags=record.dagster_run.tags,
                )
                for record in instance.get_run_records()
            ]
            runs.sort(key=lambda run: run.created)
            logs = {
                run.run_id: [
                    RunEvent(
                        event_type=entry.dagster_event.event_type_value if entry.dagster_event else None,
                        step_key=entry.step_key,
                        message=entry.user_message,
                        timestamp=entry.timestamp,
                    )
                    for entry in instance.all_logs(run.run_id)
                ]
                for run in runs
            }
            materialized = {
                asset: len(instance.get_materialized_partitions(dg.AssetKey(asset))) for asset in assets
            }
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return runs, logs, materialized


def summarize(figures: dict[str, Any]) -> dict[str, Any]:
    """Wall time split into run time, run start-up and daemon latency; Dagster's share of both feeds."""
    runs: list[RunTiming] = figures["runs"]
    launched = figures["launched"]
    done = figures["observed_done"]
    wall = done - launched
    executing = union_seconds((run.started, run.ended) for run in runs if run.started and run.ended)
    # Time some run was queued or starting but none executing counts as start-up; the rest of the wall time,
    # with no run in existence, is the backfill daemon's (or, in sequential mode, the benchmark's polling).
    active = union_seconds((run.created, run.ended) for run in runs if run.ended)
    shares = figures["shares"]
    return {
        "runs": len(runs),
        "wall_s": round(wall, 2),
        "run_executing_s": round(executing, 2),
        "run_startup_s": round(active - executing, 2),
        "daemon_latency_s": round(wall - active, 2),
        "sum_run_durations_s": round(sum(run.duration or 0.0 for run in runs), 2),
        "dagster_share_s": round(sum(s["dagster_share_s"] for s in shares), 2) if shares else None,
        "fetch_and_land_s": round(sum(s["fetch_and_land_s"] for s in shares), 2) if shares else None,
    }


def targets(days: int, mode: str, summary: dict[str, Any]) -> str:
    """Which of issue 13's targets this result speaks to, and whether it is met."""
    verdicts = []
    if days == 30 and mode == "single-run":
        met = summary["wall_s"] < TARGET_E2E_30_DAYS_S
        verdicts.append(f"e2e < {TARGET_E2E_30_DAYS_S:.0f} s: {'met' if met else 'MISSED'}")
    if days == 365 and summary["dagster_share_s"] is not None:
        met = summary["dagster_share_s"] <= TARGET_SHARE_S
        verdicts.append(f"share <= {TARGET_SHARE_S:.0f} s: {'met' if met else 'MISSED'}")
    return "; ".join(verdicts) or "-"


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the benchmark, print the tables and the JSON line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--days", type=int, default=30, help="days to backfill (default 30; the issue: 30, 365)"
    )
    parser.add_argument("--orders-per-hour", type=float, default=0.5, help="demo store's order rate")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for each mode")
    parser.add_argument(
        "--modes", default="single-run", help=f"comma-separated, of {', '.join(MODES)} (default single-run)"
    )
    parser.add_argument(
        "--storage",
        default="both",
        help=(
            f"comma-separated, of {', '.join(STORAGES)}: Dagster's SQLite (deploy/local/), PostgreSQL behind "
            "PgBouncer (deploy/postgres/), the same with no PgBouncer; or both (sqlite,postgres; the default)"
        ),
    )
    args = parser.parse_args(argv)
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if not modes or any(mode not in MODES for mode in modes):
        parser.error(f"--modes takes a comma-separated list of {', '.join(MODES)}")
    if args.days < 1:
        parser.error("--days must be at least 1")
    storages = (
        list(DEPLOYED_STORAGES)
        if args.storage == "both"
        else [storage.strip() for storage in args.storage.split(",") if storage.strip()]
    )
    if not storages or any(storage not in STORAGES for storage in storages):
        parser.error(f"--storage takes both or a comma-separated list of {', '.join(STORAGES)}")

    end = span_end(datetime.now(UTC))
    start = end - timedelta(days=args.days)
    results: list[dict[str, Any]] = []
    with stop_on_sigterm(), tempfile.TemporaryDirectory(prefix="backfill_overhead_") as tmp:
        workdir = Path(tmp)
        for storage in storages:
            for mode in modes:
                folder = workdir / f"{mode}-{storage}"
                if mode == "daemon":
                    figures = ui_backfill(folder, (start, end), args.orders_per_hour, args.timeout, storage)
                elif mode in CLI_MODES:
                    figures = cli_mode_runs(mode, folder, (start, end), args.orders_per_hour, storage)
                else:
                    figures = range_runs(
                        folder, (start, end), args.orders_per_hour, args.timeout, storage, mode=mode
                    )
                results.append(figures)
                print_mode(figures)

    print(
        f"Summary: {args.days} days ({start:%Y-%m-%d} .. {end:%Y-%m-%d} UTC), days per feed "
        f"{results[0]['windows']}"
    )
    rows = []
    summaries = []
    for figures in results:
        summary = summarize(figures)
        verdict = targets(args.days, figures["mode"], summary)
        summaries.append(
            {
                "mode": figures["mode"],
                "storage": figures["storage"],
                "status": figures["status"],
                **summary,
                "run_durations_s": [round(run.duration or 0.0, 2) for run in figures["runs"]],
                "feeds": figures["shares"],
                "materialized": figures["materialized"],
                "table_rows": figures["counts"],
                "launch_call_s": figures.get("launch_call_s"),
                "table_runs": figures.get("table_runs"),
                "targets": verdict,
            }
        )
        rows.append(
            [
                figures["mode"],
                figures["storage"],
                summary["runs"],
                summary["wall_s"],
                summary["run_executing_s"],
                summary["run_startup_s"],
                summary["daemon_latency_s"],
                summary["dagster_share_s"],
                summary["fetch_and_land_s"],
                verdict,
            ]
        )
    print(
        tabulate(
            rows,
            headers=[
                "mode",
                "storage",
                "runs",
                "wall s",
                "executing s",
                "start-up s",
                "daemon s",
                "Dagster share s",
                "fetch+land s",
                "targets",
            ],
        )
    )
    print()
    print(
        json.dumps(
            {
                "benchmark": "backfill_overhead",
                "days": args.days,
                "orders_per_hour": args.orders_per_hour,
                "span": [start.isoformat(), end.isoformat()],
                "windows": results[0]["windows"],
                "results": summaries,
            }
        )
    )
    return 0


def print_mode(figures: dict[str, Any]) -> None:
    """One mode's runs and each feed's share, as they happen (a long benchmark shows progress)."""
    launched = figures["launched"]
    start, end = figures["span"]
    rows = [
        [
            run.job,
            run.run_id[:8],
            run.status,
            f"{run.created - launched:.1f}",
            f"{(run.started or launched) - launched:.1f}",
            f"{(run.ended or launched) - launched:.1f}",
            f"{run.duration or 0.0:.1f}",
        ]
        for run in figures["runs"]
    ]
    print(
        f"{figures['mode']} ({figures['storage']}): {start:%Y-%m-%d} .. {end:%Y-%m-%d} UTC, status"
        f" {figures['status']}; materialized after: {figures['materialized']}; tables: {figures['counts']}"
    )
    print(tabulate(rows, headers=["job", "run", "status", "created s", "started s", "ended s", "run s"]))
    if figures["shares"]:
        keys = [
            "created_to_started_s",
            "started_to_first_request_s",
            "fetch_and_land_s",
            "landed_to_raw_step_end_s",
            "table_steps_and_run_end_s",
            "table_steps_own_s",
            "dagster_share_s",
            "events",
        ]
        print(
            tabulate(
                [[share["job"], *(share[key] for key in keys)] for share in figures["shares"]],
                headers=[
                    "job",
                    "created->started",
                    "started->1st request",
                    "fetch+land",
                    "landed->raw end",
                    "tables+end",
                    "of which steps",
                    "Dagster share",
                    "events",
                ],
            )
        )
    print(flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
