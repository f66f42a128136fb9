"""Backfill overhead: `--days` days of both raw assets and their tables, with an almost empty store.

A user's backfill: `dagster dev` on the project, pointed at the demo store over HTTP (frozen at the end of the
span, with `--orders-per-hour` orders and no bursts or malformed records, so the figures measure the
pipeline's and Dagster's overhead rather than data volume). Two ways a user launches it from the UI, each on a
fresh instance and warehouse (`--modes`):

- `daemon`: one partition backfill launched through the webserver's GraphQL API (what the UI's
  "Materialize" dialog sends as a backfill) over the span for `raw_canceled_order_pages`,
  `raw_updated_order_pages` (both partitioned by UTC day) and every asset downstream of them. The backfill daemon launches the
  runs: it wakes every 30 s (`DEFAULT_DAEMON_INTERVAL_SECONDS` in `dagster._daemon.daemon`, Dagster 1.13,
  no setting), and the tables' run can only be requested on a tick after both raw runs ended, so this mode
  has a floor of two to three ticks (~60-90 s) whatever each run costs.
- `single-run`: per raw feed one run of its job (`canceled_order_job`, `canceled_items_job`: the raw asset
  and every table downstream) over the whole span, launched at once through `launchPipelineExecution` with
  the tags `dagster/asset_partition_range_start` / `_end` — what the UI's "launch as a single run" sends —
  one after the other. No daemon tick is involved; the run queue starts both, and their steps that write DuckDB take turns on
  the `duckdb_writer` pool (that waiting counts). Measured from the launch to both runs finished with the
  tables present.

Printed: each mode's runs with their own durations, and the wall time split into run time (some run
executing), run start-up (created -> started, the run queue and the run worker's start) and daemon latency
(the rest). `--storage` picks the instance's event log: `project` (the project's dagster.yaml: the pooled
SQLite event log of `cancel_pipeline.instance_storage`), `stock` (the same file without it: Dagster's own
SQLite event log), or `both`. Unless `--no-cli`, the same span is then run from the command line with no
daemon: one `dagster asset materialize --partition-range` run per raw asset, then one run of the tables.
Target: at most 3 runs and under 60 s in all.

    python benchmarks/backfill_overhead.py [--days 30] [--modes daemon,single-run] [--storage project]
        [--orders-per-hour 0.5] [--no-cli] [--timeout 600]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve
from cancel_pipeline_testkit.selection import downstream_closure
from dagster_harness import (
    PROJECT_ROOT,
    DagsterGraphQLClient,
    RunTiming,
    backfill_times,
    dagster_dev_on_store,
    instance_yaml,
    launch_range_run,
    read_only_query,
    run_timings,
    server_environment,
    stop_on_sigterm,
    union_seconds,
)

from cancel_pipeline.defs.ingestion.partitions import PARTITION_KEY_FORMAT, RANGE_KEY_SEPARATOR

RAW_ASSETS = {"raw_canceled_order_pages": 24 * 60, "raw_updated_order_pages": 24 * 60}
"""Raw asset -> its partition length in minutes (both are partitioned by UTC day)."""

RAW_JOBS = {"raw_canceled_order_pages": "canceled_order_job", "raw_updated_order_pages": "canceled_items_job"}
"""Raw asset -> the job of it and everything downstream (cancel_pipeline/jobs.py)."""

MODES = ("daemon", "single-run")
STORAGES = ("project", "stock")
RUN_DONE = frozenset({"SUCCESS", "FAILURE", "CANCELED"})

TARGET_RUNS = 3
TARGET_SECONDS = 60.0
TABLES = ("raw_order_pages", "order_versions", "canceled_orders", "canceled_line_items", "orders")


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


@contextlib.contextmanager
def dagster_dev_on_span(
    workdir: Path, span: tuple[datetime, datetime], orders_per_hour: float, storage: str
) -> Iterator[tuple[Any, DagsterGraphQLClient, list[str]]]:
    """`dagster dev` on a demo store frozen at the end of `span` (no bursts, no malformed records), with its
    first window at the span's start; yields the server, its client and both raw assets with everything
    downstream of them."""
    start, end = span
    store = DemoStore(
        clock=FrozenClock(end), orders_per_hour=orders_per_hour, burst_size=0, malformed_every_hours=0
    )
    env = {"CANCEL_PIPELINE_FIRST_WINDOW": start.isoformat()}
    with dagster_dev_on_store(workdir, store, env, instance_yaml(storage)) as (server, client):
        nodes = client.asset_nodes()
        selection: list[str] = []
        for raw in RAW_ASSETS:
            selection += [key for key in downstream_closure(nodes, raw) if key not in selection]
        yield server, client, selection


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
        "counts": counts,
        "windows": {raw: len(window_keys(start, end, minutes)) for raw, minutes in RAW_ASSETS.items()},
        "materialized": materialized,
        "selection": selection,
    }


def single_runs(
    workdir: Path, span: tuple[datetime, datetime], orders_per_hour: float, timeout: float, storage: str
) -> dict[str, Any]:
    """Launch, through `dagster dev`'s GraphQL API, one range run of each raw feed's job over the span, one
    after the other, as the UI's single-run launch does; wait until both ended; return the figures."""
    start, end = span
    with dagster_dev_on_span(workdir, span, orders_per_hour, storage) as (server, client, selection):
        wait_until_idle(client)
        launched = time.time()
        # One after the other, as one user launches them: each mutation returns once its run and the run's
        # planned events (one per window) are written. Launched at the same moment, the two writers in the
        # webserver take turns on index.db's write lock, and SQLite's busy wait made both launches slower.
        launch_seconds: dict[str, float] = {}

        def launch(raw: str) -> str:
            keys = window_keys(start, end, RAW_ASSETS[raw])
            began = time.time()
            run_id = launch_range_run(client, RAW_JOBS[raw], keys[0], keys[-1])
            launch_seconds[RAW_JOBS[raw]] = round(time.time() - began, 2)
            return run_id

        run_ids = [launch(raw) for raw in RAW_JOBS]
        deadline = time.monotonic() + timeout
        while True:
            runs = run_timings(client, run_ids)
            if len(runs) == len(run_ids) and all(run.status in RUN_DONE for run in runs):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"runs {run_ids} not done within {timeout:.0f} s: {runs}")
            time.sleep(0.25)
        counts = table_counts(server.duckdb_path)
        observed_done = time.time()
        materialized = {raw: client.asset_state(raw).num_materialized for raw in RAW_ASSETS}
    statuses = {run.status for run in runs}
    return {
        "mode": "single-run",
        "storage": storage,
        "launch_call_s": launch_seconds,
        "span": (start, end),
        "status": "SUCCESS"
        if statuses == {"SUCCESS"} and len(counts) == len(TABLES)
        else str(sorted(statuses)),
        "launched": launched,
        "backfill_created": None,
        "backfill_ended": None,
        "observed_done": observed_done,
        "runs": runs,
        "counts": counts,
        "windows": {raw: len(window_keys(start, end, minutes)) for raw, minutes in RAW_ASSETS.items()},
        "materialized": materialized,
        "selection": selection,
    }


def cli_command(select: str, partition_range: str | None) -> list[str]:
    """`dagster asset materialize` of `select`, as one range run when `partition_range` is given."""
    command = [
        str(PROJECT_ROOT / ".venv" / "bin" / "dagster"),
        "asset",
        "materialize",
        "-m",
        "cancel_pipeline.definitions",
        "--select",
        select,
    ]
    return [*command, "--partition-range", partition_range] if partition_range else command


def cli_range_runs(
    workdir: Path, start: datetime, end: datetime, store: DemoStore, tables: list[str], storage: str
) -> list[dict[str, Any]]:
    """The same span from the command line on a fresh instance and warehouse, with no daemon: one
    `dagster asset materialize --partition-range` run per raw asset, then one run of the tables (the CLI
    takes a partition range only when every selected asset has a single-run backfill policy, which the
    unpartitioned tables do not). Each command is timed by the wall clock."""
    dagster_home = workdir / "dagster_home"
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text(instance_yaml(storage))
    database = workdir / "warehouse.duckdb"
    steps: list[tuple[str, str | None, int]] = []
    for raw, minutes in RAW_ASSETS.items():
        keys = window_keys(start, end, minutes)
        steps.append((raw, f"{keys[0]}{RANGE_KEY_SEPARATOR}{keys[-1]}", len(keys)))
    steps.append((",".join(tables), None, 0))
    results = []
    with serve(store) as store_url:
        env = server_environment(
            dagster_home,
            database,
            {
                "SHOPIFY_STORE": store_url,
                "SHOPIFY_ACCESS_TOKEN": store.settings.access_token,
                "CANCEL_PIPELINE_FIRST_WINDOW": start.isoformat(),
            },
        )
        for select, partition_range, windows in steps:
            command = cli_command(select, partition_range)
            began = time.perf_counter()
            completed = subprocess.run(
                command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False
            )
            seconds = time.perf_counter() - began
            if completed.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-3000:]}")
            results.append(
                {
                    "select": select,
                    "partition_range": partition_range,
                    "windows": windows,
                    "storage": storage,
                    "seconds": round(seconds, 2),
                }
            )
    return results


def summarize(figures: dict[str, Any]) -> dict[str, Any]:
    """Wall time split into run time, run start-up and daemon latency."""
    runs: list[RunTiming] = figures["runs"]
    launched = figures["launched"]
    done = figures["observed_done"]
    wall = done - launched
    executing = union_seconds((run.started, run.ended) for run in runs if run.started and run.ended)
    starting = union_seconds((run.created, run.started) for run in runs if run.started)
    # Time some run was queued or starting but none executing counts as start-up; the rest of the wall time,
    # with no run in existence, is the backfill daemon's.
    active = union_seconds((run.created, run.ended) for run in runs if run.ended)
    return {
        "runs": len(runs),
        "wall_s": round(wall, 2),
        "run_executing_s": round(executing, 2),
        "run_startup_s": round(active - executing, 2),
        "daemon_latency_s": round(wall - active, 2),
        "first_run_created_after_s": round(min(run.created for run in runs) - launched, 2) if runs else None,
        "last_run_end_to_done_s": round(done - max(run.ended or done for run in runs), 2) if runs else None,
        "sum_run_durations_s": round(sum(run.duration or 0.0 for run in runs), 2),
        "sum_created_to_started_s": round(starting, 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the benchmark, print the tables and the JSON line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=30, help="days of windows to backfill (default 30)")
    parser.add_argument("--orders-per-hour", type=float, default=0.5, help="demo store's order rate")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each mode")
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)} (default both)"
    )
    parser.add_argument(
        "--storage",
        choices=(*STORAGES, "both"),
        default="project",
        help="event log: the project's dagster.yaml, Dagster's stock SQLite one, or both (default project)",
    )
    parser.add_argument("--no-cli", dest="cli", action="store_false", help="skip the CLI range runs")
    args = parser.parse_args(argv)
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if not modes or any(mode not in MODES for mode in modes):
        parser.error(f"--modes takes a comma-separated list of {', '.join(MODES)}")
    storages = list(STORAGES) if args.storage == "both" else [args.storage]

    end = span_end(datetime.now(UTC))
    start = end - timedelta(days=args.days)
    results: list[dict[str, Any]] = []
    cli: list[dict[str, Any]] = []
    with stop_on_sigterm(), tempfile.TemporaryDirectory(prefix="backfill_overhead_") as tmp:
        workdir = Path(tmp)
        for storage in storages:
            for mode in modes:
                measure = ui_backfill if mode == "daemon" else single_runs
                figures = measure(
                    workdir / f"{mode}-{storage}", (start, end), args.orders_per_hour, args.timeout, storage
                )
                results.append(figures)
                print_mode(figures)
        if args.cli:
            tables = [key for key in results[0]["selection"] if key not in RAW_ASSETS]
            for storage in storages:
                store = DemoStore(
                    clock=FrozenClock(end),
                    orders_per_hour=args.orders_per_hour,
                    burst_size=0,
                    malformed_every_hours=0,
                )
                cli += cli_range_runs(workdir / f"cli-{storage}", start, end, store, tables, storage)

    print(
        f"Summary: {args.days} days ({start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC), windows "
        f"{results[0]['windows']}"
    )
    rows = []
    summaries = []
    for figures in results:
        summary = summarize(figures)
        met = summary["runs"] <= TARGET_RUNS and summary["wall_s"] < TARGET_SECONDS
        summaries.append(
            {
                "mode": figures["mode"],
                "storage": figures["storage"],
                "status": figures["status"],
                **summary,
                "run_durations_s": [round(run.duration or 0.0, 2) for run in figures["runs"]],
                "materialized": figures["materialized"],
                "table_rows": figures["counts"],
                "launch_call_s": figures.get("launch_call_s"),
                "target_met": met,
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
                "met" if met else "MISSED",
            ]
        )
    print(
        tabulate(
            rows,
            headers=[
                "mode",
                "event log",
                "runs",
                "wall s",
                "executing s",
                "start-up s",
                "daemon s",
                f"<= {TARGET_RUNS} runs, < {TARGET_SECONDS:.0f} s",
            ],
        )
    )
    if cli:
        print()
        print("Same span from the command line, one range run per raw asset, then the tables (no daemon):")
        print(
            tabulate(
                [
                    [c["storage"], c["select"], c["partition_range"] or "-", c["windows"], c["seconds"]]
                    for c in cli
                ],
                headers=[
                    "event log",
                    "dagster asset materialize --select",
                    "--partition-range",
                    "windows",
                    "wall s",
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
                "cli_runs": cli,
                "cli_total_s": {
                    storage: round(sum(c["seconds"] for c in cli if c["storage"] == storage), 2)
                    for storage in storages
                }
                if cli
                else None,
                "target_met": {f"{s['mode']}/{s['storage']}": s["target_met"] for s in summaries},
            }
        )
    )
    return 0


def print_mode(figures: dict[str, Any]) -> None:
    """One mode's runs, as they happen (a long benchmark shows progress)."""
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
        f"{figures['mode']} ({figures['storage']} event log): {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC,"
        f" status {figures['status']}; materialized after: {figures['materialized']}; tables: {figures['counts']}"
    )
    print(tabulate(rows, headers=["job", "run", "status", "created s", "started s", "ended s", "run s"]))
    print(flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
