"""Ingestion throughput through the raw assets, against the demo store over HTTP, per rate-limit plan.

For each plan (Standard: bucket 40, leak 2/s; Plus: bucket 400, leak 20/s) the demo store is served in a
subprocess with that bucket (`client_throughput.start_store`: its own interpreter, frozen clock), and one
Dagster run materializes a raw asset over a range of windows (`dg.materialize` with the range tags, as a
single-run backfill launches it), with `ShopifyResource(store=url, bucket_size=..., leak_rate=...,
fetch_streams=--streams)` and the warehouse resource on a fresh DuckDB file. The run therefore includes Dagster's
start and finish, the HTTP fetch into the spool and the landing transaction. The Dagster instance is the
project's `dagster.yaml` in a temporary DAGSTER_HOME (Dagster's own SQLite storage with the project's
settings), a temporary instance with Dagster's defaults alone with `--instance stock`, or in memory with
`--instance ephemeral`, to tell Dagster's own cost per window from its storage's.

The store's density (`--orders-per-hour`) defaults per plan to a plausible store of that plan: 200 orders
an hour (about 5,000 a day, a busy Standard/Shopify-plan store) under Standard and 600 an hour (about
15,000 a day, a large merchant; Plus is the plan of the big ones) under Plus, about the most the demo
store's id scheme holds (1,000 ids an hour, 300 of them kept for a burst). The range is sized so that the
fetch alone lasts about `--seconds` (default 100) at the plan's ceiling (leak rate x 250 orders a request),
using `orders/count.json` over the store's history: about 220 hourly windows under Standard and 700 under
Plus, so Dagster's fixed start-up is small against the fetch while its per-window bookkeeping (an event or
two per window) still counts in full.

`--streams` sets `SHOPIFY_FETCH_STREAMS` (concurrent page streams of the client; default the resource's
default) and `--latency` the store's time to answer each Admin API request (the store counts the call first,
as Shopify does): real Shopify takes 200-500 ms for a page of 250 orders, which a single cursor cannot hide
at Plus's 20 requests/s; with the default 0 the only cost is the store's own CPU.

How the initial burst is treated: before timing, the store's bucket is filled (its counters reset, then
cheap requests until it answers `size/size`), so the run starts with no burst to spend. From a full
bucket the store admits at most `leak rate x elapsed` requests, so `requests / (leak x elapsed)` is the
share of the ceiling actually reached (<= 1), and any time the run spends not fetching (Dagster's start,
landing, finishing) counts against it. Three ratios are printed: end to end (timer start to `materialize`
returning), fetch (timer start to the last page's arrival) and fetch+land (the step's start to the
"Landed" log line: the pipeline's own work without Dagster's run start-up and per-window bookkeeping, which
come before the step starts and after it lands). 429s are counted by the store. The CPU seconds the store
process and this process spent are printed too: the two share the machine's two cores.

    python benchmarks/ingestion.py [--plans standard,plus] [--seconds 100] [--asset updated|canceled]
        [--streams N] [--latency S] [--orders-per-hour N] [--instance sqlite|ephemeral]
        [--profile-dir DIR] [--profile-top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import math
import os
import pstats
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import dagster as dg
import httpx
from tabulate import tabulate

# The raw assets' windows are built from the settings when their module is imported; the store's frozen
# history (client_throughput.NOW) lies in 2024, so the first window must precede it.
os.environ["CANCEL_PIPELINE_FIRST_WINDOW"] = "2024-01-01T00:00:00Z"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from client_throughput import NOW, PAGE_SIZE, PLANS, start_store, stop_store

from cancel_pipeline.defs.ingestion.partitions import PARTITION_KEY_FORMAT
from cancel_pipeline.defs.ingestion.raw_assets import raw_canceled_order_pages, raw_updated_order_pages
from cancel_pipeline.defs.resources import WarehouseResource
from cancel_pipeline.settings import SETTINGS
from cancel_pipeline.shopify.client import DEFAULT_API_VERSION, LOGGER_NAME, ShopifyClient
from cancel_pipeline.shopify.resource import ShopifyResource

DAY_MINUTES = 24 * 60
"""Both raw assets are partitioned by UTC day."""

PROJECT_DAGSTER_YAML = Path(__file__).resolve().parent.parent / "deploy" / "local" / "dagster.yaml"
ASSETS = {
    "updated": (raw_updated_order_pages, "any", DAY_MINUTES),
    "canceled": (raw_canceled_order_pages, "cancelled", DAY_MINUTES),
}
HISTORY_DAYS = 60  # what the demo store serves (DemoStoreSettings.history_days), counted back from NOW
TARGET_RATIO = 0.95
#: Store density per plan, orders created an hour (see the module docstring).
ORDERS_PER_HOUR = {"standard": 200.0, "plus": 600.0}


@dataclass
class IngestionResult:
    """Figures of one plan's run."""

    plan: str
    instance: str
    streams: int
    latency_s: float
    orders_per_hour: float
    bucket_size: int
    leak_rate: float
    asset: str
    first_window: str
    last_window: str
    windows: int
    pages: int
    orders: int
    body_mb: float
    requests: int
    server_429: int
    client_429: int
    retries: int
    rate_limit_wait_s: float
    startup_s: float
    """Timer start to the first page's arrival (Dagster's run and step start, resources, the first request)."""
    run_start_s: float
    """Timer start to the step's start: Dagster's run start-up, one planned event per window included."""
    fetch_s: float
    """First to last page: HTTP paced by the bucket, each page written to the spool."""
    land_s: float
    """Last page to the asset's "Landed" log line: the landing transaction (and its commit)."""
    finish_s: float
    """"Landed" to `materialize` returning: metadata, one materialization per window, run end."""
    total_s: float
    requests_per_s: float
    orders_per_s: float
    ceiling_requests_per_s: float
    ceiling_orders_per_s: float
    ratio_requests: float
    ratio_orders: float
    fetch_ratio_requests: float
    """Requests against the ceiling over timer start to last page: the share lost to everything but landing."""
    fetch_land_ratio_requests: float
    """Requests against the ceiling over the step's start to "Landed": fetching and landing alone."""
    store_cpu_s: float
    """CPU seconds of the demo store's process during the timed run (it shares the two cores)."""
    client_cpu_s: float
    """CPU seconds of this process (Dagster, client, landing) during the timed run."""
    fetch_cpu_ms_per_page: float
    """This process's CPU per page between the first and the last page's arrival: the client's streams, the
    spool writes and whatever Dagster does meanwhile (landing comes after the last page)."""
    store_cpu_ms_per_page: float
    """The store's CPU per request over the timed run (its rendering shares the machine with the client)."""


class PageArrivals(logging.Handler):
    """Wall-clock arrival times of pages, from the client's per-page debug record."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.times: list[float] = []
        self.cpu: list[float] = []
        """This process's CPU seconds at each arrival: the fetch phase's CPU is last - first."""

    def emit(self, record: logging.LogRecord) -> None:
        if " page " in record.getMessage():
            self.times.append(record.created)
            self.cpu.append(time.process_time())


def window_range(
    status: str, window_minutes: int, client: ShopifyClient, seconds: float, leak_rate: float
) -> tuple[str, str, int]:
    """(first key, last key, windows): the most recent windows, ending at NOW, whose orders fill `seconds` at
    the ceiling, as far back as the served history allows with the overlap.

    Orders are counted a day at a time back from NOW; the counts also make the store generate (and cache)
    the history the run will read, so the run does not pay for it.
    """
    step = timedelta(minutes=window_minutes)
    # Partitions are whole days: the span ends at the end of NOW's day (the store serves nothing later).
    span_end = NOW.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    earliest = NOW - timedelta(days=HISTORY_DAYS) + SETTINGS.overlap
    max_windows = math.floor((span_end - earliest) / step)
    per_day = max(1, int(timedelta(days=1) / step))
    wanted_orders = seconds * leak_rate * PAGE_SIZE
    windows = orders = 0
    while windows < max_windows and orders < wanted_orders:
        end = min(NOW, span_end - windows * step)
        windows = min(max_windows, windows + per_day)
        orders += client.count_orders(
            status=status, updated_at_min=span_end - windows * step, updated_at_max=end
        )
    first = span_end - windows * step
    last = span_end - step
    return first.strftime(PARTITION_KEY_FORMAT), last.strftime(PARTITION_KEY_FORMAT), windows


def fill_bucket(base_url: str, bucket_size: int) -> None:
    """Reset the store's counters and bucket, then send requests until the bucket reports full.

    The requests ask for an order id that does not exist: the store draws from the bucket before routing,
    and a 404 costs it a couple of milliseconds, so the bucket fills far faster than it leaks.
    """
    httpx.post(f"{base_url}/_demo/reset").raise_for_status()
    url = f"{base_url}/admin/api/{DEFAULT_API_VERSION}/orders/1.json"
    with httpx.Client(headers={"X-Shopify-Access-Token": "demo-token"}) as http:
        for _ in range(bucket_size * 2):
            response = http.get(url)
            if response.status_code != 404:
                response.raise_for_status()
            used, _, size = response.headers["X-Shopify-Shop-Api-Call-Limit"].partition("/")
            if int(used) >= int(size):
                return
    raise RuntimeError("the store's bucket did not fill")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_plan(
    plan: str,
    asset_name: str,
    seconds: float,
    instance_kind: str,
    profile_dir: Path | None,
    *,
    streams: int | None,
    latency: float,
    orders_per_hour: float,
) -> IngestionResult:
    """One range run of the raw asset under one plan's bucket, timed from a full bucket."""
    bucket_size, leak_rate = PLANS[plan]
    asset, status, window_minutes = ASSETS[asset_name]
    process, base_url = start_store(bucket_size, leak_rate, orders_per_hour)
    arrivals = PageArrivals()
    client_logger = logging.getLogger(LOGGER_NAME)
    try:
        with ShopifyClient(
            base_url, access_token="demo-token", bucket_size=bucket_size, leak_rate=leak_rate
        ) as probe:
            first_key, last_key, _ = window_range(status, window_minutes, probe, seconds, leak_rate)
        with tempfile.TemporaryDirectory(prefix="ingestion-bench-") as scratch:
            shopify = ShopifyResource(
                store=base_url,
                # The plans' buckets here are REST's (requests a second); the GraphQL read is measured by
                # graphql_client.py.
                api="rest",
                access_token="demo-token",
                bucket_size=bucket_size,
                leak_rate=leak_rate,
                fetch_streams=streams,
            )
            warehouse = WarehouseResource(database=str(Path(scratch) / "warehouse.duckdb"))
            if instance_kind in ("sqlite", "stock"):
                dagster_home = Path(scratch) / "dagster"
                dagster_home.mkdir()
                if instance_kind == "sqlite":
                    # The project's instance settings, as deployed on one machine.
                    shutil.copyfile(PROJECT_DAGSTER_YAML, dagster_home / "dagster.yaml")
                    os.environ["DAGSTER_HOME"] = str(dagster_home)
                    instance = dg.DagsterInstance.from_config(str(dagster_home))
                else:
                    instance = dg.DagsterInstance.local_temp(str(dagster_home))
            else:
                instance = dg.DagsterInstance.ephemeral()
            fill_bucket(base_url, bucket_size)
            # After the fill (whose requests would each wait it); a control request, not counted.
            httpx.post(f"{base_url}/_demo/faults", json={"latency": latency}).raise_for_status()
            baseline = httpx.get(f"{base_url}/_demo/stats").json()
            store_cpu_before, client_cpu_before = process_cpu_s(process.pid), time.process_time()
            client_logger.addHandler(arrivals)
            client_logger.setLevel(logging.DEBUG)
            profiler = cProfile.Profile() if profile_dir else None
            started = time.time()
            if profiler:
                profiler.enable()
            result = dg.materialize(
                [asset],
                resources={"shopify": shopify, "duckdb": warehouse},
                instance=instance,
                # The console logger would print a line per window's materialization; the timings come
                # from the instance's event log, which keeps every record whatever the console shows.
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                tags={
                    "dagster/asset_partition_range_start": first_key,
                    "dagster/asset_partition_range_end": last_key,
                },
            )
            if profiler:
                profiler.disable()
            ended = time.time()
            store_cpu = process_cpu_s(process.pid) - store_cpu_before
            client_cpu = time.process_time() - client_cpu_before
            server = httpx.get(f"{base_url}/_demo/stats").json()
            logs = instance.all_logs(result.run_id)
            landed_at = next(
                entry.timestamp for entry in logs if (entry.user_message or "").startswith("Landed ")
            )
            step_started = next(
                entry.timestamp
                for entry in logs
                if entry.dagster_event is not None and entry.dagster_event.event_type_value == "STEP_START"
            )
            instance.dispose()
            with warehouse.get_connection() as con:
                # Bodies live in the page store; the table keeps each file's size.
                [(body_bytes,)] = con.execute(
                    "select coalesce(sum(body_bytes), 0) from raw_order_pages"
                ).fetchall()
    finally:
        client_logger.removeHandler(arrivals)
        stop_store(process)

    if not result.success:
        raise RuntimeError(f"the {plan} run failed")
    if profiler and profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(profile_dir / f"ingestion-{plan}.prof")
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    value = lambda key: metadata[key].value  # noqa: E731
    requests = server["by_status"].get("200", 0) - baseline["by_status"].get("200", 0)
    orders = int(value("orders"))
    total = ended - started
    fetch_end = arrivals.times[-1]
    return IngestionResult(
        plan=plan,
        instance=instance_kind,
        streams=shopify.page_streams,
        latency_s=latency,
        orders_per_hour=orders_per_hour,
        bucket_size=bucket_size,
        leak_rate=leak_rate,
        asset=asset.key.to_user_string(),
        first_window=first_key,
        last_window=last_key,
        windows=len(result.get_asset_materialization_events()),
        pages=int(value("pages")),
        orders=orders,
        body_mb=round(body_bytes / 1e6, 1),
        requests=requests,
        server_429=server["throttled"] - baseline["throttled"],
        client_429=int(value("throttled_429")),
        retries=int(value("retries")),
        rate_limit_wait_s=float(value("rate_limit_wait_s")),
        startup_s=round(arrivals.times[0] - started, 2),
        run_start_s=round(step_started - started, 2),
        fetch_s=round(fetch_end - arrivals.times[0], 2),
        land_s=round(landed_at - fetch_end, 2),
        finish_s=round(ended - landed_at, 2),
        total_s=round(total, 2),
        requests_per_s=round(requests / total, 3),
        orders_per_s=round(orders / total, 1),
        ceiling_requests_per_s=leak_rate,
        ceiling_orders_per_s=leak_rate * PAGE_SIZE,
        ratio_requests=round(requests / total / leak_rate, 3),
        ratio_orders=round(orders / total / (leak_rate * PAGE_SIZE), 3),
        fetch_ratio_requests=round(requests / (fetch_end - started) / leak_rate, 3),
        fetch_land_ratio_requests=round(requests / (landed_at - step_started) / leak_rate, 3),
        store_cpu_s=round(store_cpu, 1),
        client_cpu_s=round(client_cpu, 1),
        fetch_cpu_ms_per_page=round(
            (arrivals.cpu[-1] - arrivals.cpu[0]) / max(1, len(arrivals.cpu) - 1) * 1000, 1
        ),
        store_cpu_ms_per_page=round(store_cpu / max(1, requests) * 1000, 1),
    )


def print_profile(path: Path, top: int) -> None:
    """The run's heaviest functions by cumulative time, then by own time."""
    stats = pstats.Stats(str(path))
    for order in ("cumulative", "tottime"):
        print(f"--- {path.name}: top {top} by {order}")
        stats.sort_stats(order).print_stats(top)


def main() -> None:
    """Run the selected plans and print a table and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=100.0, help="fetch length per plan at the ceiling (default 100)"
    )
    parser.add_argument(
        "--streams",
        type=int,
        default=None,
        help="concurrent page streams (SHOPIFY_FETCH_STREAMS; default: what the resource picks for the plan)",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds the store takes to answer each Admin API request (real Shopify: 0.2-0.5 for a page)",
    )
    parser.add_argument(
        "--orders-per-hour",
        type=float,
        help="store density; default per plan: "
        + ", ".join(f"{k} {v:g}" for k, v in ORDERS_PER_HOUR.items()),
    )
    parser.add_argument("--plans", default="standard,plus", help="comma-separated: standard, plus")
    parser.add_argument(
        "--asset", choices=sorted(ASSETS), default="updated", help="raw asset (default updated)"
    )
    parser.add_argument(
        "--instance",
        choices=("sqlite", "stock", "ephemeral"),
        default="sqlite",
        help="Dagster instance: sqlite (the project's dagster.yaml in a temporary DAGSTER_HOME, as deployed), "
        "stock (Dagster's own SQLite storage) or ephemeral (in memory)",
    )
    parser.add_argument(
        "--profile-dir", type=Path, help="profile each run with cProfile, write the stats here and print them"
    )
    parser.add_argument("--profile-top", type=int, default=25, help="functions printed per profile")
    args = parser.parse_args()
    results = []
    for plan in args.plans.split(","):
        plan = plan.strip()
        results.append(
            run_plan(
                plan,
                args.asset,
                args.seconds,
                args.instance,
                args.profile_dir,
                streams=args.streams,
                latency=args.latency,
                orders_per_hour=args.orders_per_hour or ORDERS_PER_HOUR[plan],
            )
        )
        if args.profile_dir:
            print_profile(args.profile_dir / f"ingestion-{plan}.prof", args.profile_top)
    rows = [
        (
            r.plan,
            r.instance,
            f"{r.bucket_size}/{r.leak_rate:g}",
            r.streams,
            r.latency_s,
            f"{r.orders_per_hour:g}",
            r.windows,
            r.pages,
            r.orders,
            r.body_mb,
            r.run_start_s,
            r.startup_s,
            r.fetch_s,
            r.land_s,
            r.finish_s,
            r.total_s,
            r.requests_per_s,
            r.orders_per_s,
            r.ceiling_orders_per_s,
            r.ratio_requests,
            r.ratio_orders,
            r.fetch_ratio_requests,
            r.fetch_land_ratio_requests,
            r.server_429,
            r.retries,
            r.store_cpu_s,
            r.client_cpu_s,
            r.fetch_cpu_ms_per_page,
            r.store_cpu_ms_per_page,
        )
        for r in results
    ]
    headers = [
        "plan",
        "instance",
        "bucket",
        "streams",
        "latency s",
        "orders/h",
        "windows",
        "pages",
        "orders",
        "body MB",
        "run start s",
        "start s",
        "fetch s",
        "land s",
        "finish s",
        "total s",
        "req/s",
        "orders/s",
        "ceiling orders/s",
        "ratio req",
        "ratio orders",
        "fetch ratio req",
        "fetch+land ratio",
        "429 server",
        "retries",
        "store CPU s",
        "client CPU s",
        "fetch CPU ms/page",
        "store CPU ms/page",
    ]
    print(tabulate(rows, headers=headers))
    print(
        f"timed from a full bucket (no initial burst); ratio = rate over total s / ceiling; target >= "
        f"{TARGET_RATIO}, no 429. fetch ratio = requests over (start + fetch) s / leak rate; fetch+land ratio "
        "= requests over step start to landed / leak rate (no Dagster run start-up or per-window bookkeeping)."
    )
    print(json.dumps({"benchmark": "ingestion", "results": [asdict(r) for r in results]}))


if __name__ == "__main__":
    main()
