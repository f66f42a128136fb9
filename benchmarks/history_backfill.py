"""A month of history through the raw asset: REST pages against GraphQL bulk operations, Standard plan.

The demo store is served in a subprocess (`client_throughput`'s way: its own interpreter, frozen clock) with
`--orders-per-hour` (default 70: a store of about 50,000 orders a month, plus the store's bursts) and the
Standard plan's buckets: REST 40 requests / 2 a second, GraphQL 2,000 points / 100 a second. One Dagster run
(`dg.materialize` with the range tags, as a single-run backfill launches it; in-memory instance) materializes
`raw_updated_order_pages` over the `--days` of windows ending at the store's NOW, once per read:

- `rest`: `ShopifyResource(api="rest")`, one page stream as the resource chooses for Standard; the store's
  REST bucket is filled first, so every page pays the leak (2 a second) and the run sits on REST's floor;
- `bulk`: `ShopifyResource(api="graphql")` with its default bulk threshold (72 h), so the range is read by
  bulk operations: `--bulk-concurrency` of them at once, one per slice of the range (default: the resource's,
  5 at the pinned API version); the store's bulk latency model, per operation, is `--bulk-start-delay`
  seconds queued, then `--bulk-seconds-per-1000` seconds per 1,000 JSONL objects (the store's defaults, 3 s
  and 0.5 s: guesses, Shopify publishes no figures);
- `bulk-1`: the same with one operation over the whole range (`SHOPIFY_BULK_CONCURRENCY=1`, as before
  slices);
- `bulk-no-latency`: `bulk` with the latency model off, which leaves the product's own share (mutations,
  polls, download, chunking, landing) and the store writing its files.

Each run is timed end to end (`materialize` call to return), and split at the step's start and the asset's
"Landed" log line. Target: the bulk run under a third of REST's request floor (pages / 2 s).

    python benchmarks/history_backfill.py [--days 30] [--orders-per-hour 70] [--reads rest,bulk]
        [--bulk-start-delay 3] [--bulk-seconds-per-1000 0.5] [--bulk-concurrency 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import dagster as dg
import httpx

# The raw assets' windows are built from the settings at import; the store's frozen history lies in 2024.
os.environ["CANCEL_PIPELINE_FIRST_WINDOW"] = "2024-01-01T00:00:00Z"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from client_throughput import NOW, serve_store_process, stop_store
from ingestion import fill_bucket

from cancel_pipeline.defs.ingestion.partitions import PARTITION_KEY_FORMAT
from cancel_pipeline.defs.ingestion.raw_assets import raw_updated_order_pages
from cancel_pipeline.defs.resources import WarehouseResource
from cancel_pipeline.settings import SETTINGS
from cancel_pipeline.shopify.resource import ShopifyResource

REST_BUCKET, REST_LEAK = 40, 2.0
_COMPLETED = re.compile(r"COMPLETED: (\d+) objects \((\d+) orders\) after (\d+) s")
_AT_ONCE = re.compile(r"at most (\d+) bulk operations ran at once")
GRAPHQL_POINTS, GRAPHQL_RATE = 2000.0, 100.0


@dataclass
class ReadResult:
    """Figures of one range run."""

    read: str
    windows: int
    orders: int
    pages: int
    requests: int
    throttled: int
    bulk_start_delay: float
    bulk_seconds_per_1000: float
    total_s: float
    run_start_s: float
    fetch_land_s: float
    finish_s: float
    rest_floor_s: float
    bulk_objects: int
    """The operation's objectCount (JSONL lines: orders, line items, refund lines)."""
    bulk_seen_completed_s: float
    """When the client saw the operation COMPLETED, from its start (the store's model plus polling)."""
    bulk_at_once: int
    """The most bulk operations of the read running at once (one per slice of the range)."""


def start_store(orders_per_hour: float, start_delay: float, per_1000: float) -> tuple[subprocess.Popen, str]:
    """Serve the demo store with Standard buckets and the given bulk latency model; process and URL."""
    return serve_store_process(
        *("--bucket-size", str(REST_BUCKET), "--leak-rate", f"{REST_LEAK:g}", "--graphql-plan", "standard"),
        *("--orders-per-hour", f"{orders_per_hour:g}"),
        *("--bulk-start-delay", f"{start_delay:g}", "--bulk-seconds-per-1000", f"{per_1000:g}"),
    )


def run_read(
    read: str,
    days: float,
    orders_per_hour: float,
    start_delay: float,
    per_1000: float,
    concurrency: int | None = None,
) -> ReadResult:
    """One range run of `raw_updated_order_pages` over `days` of windows ending at NOW."""
    if read == "bulk-no-latency":
        start_delay, per_1000 = 0.0, 0.0
    if read == "bulk-1":
        concurrency = 1
    step = timedelta(minutes=SETTINGS.updated_window_minutes)
    windows = int(timedelta(days=days) / step)
    first_key = (NOW - windows * step).strftime(PARTITION_KEY_FORMAT)
    last_key = (NOW - step).strftime(PARTITION_KEY_FORMAT)
    process, base_url = start_store(orders_per_hour, start_delay, per_1000)
    try:
        # Warm the store's history cache (hour buckets of the range) so the run does not pay for generating.
        httpx.get(
            f"{base_url}/admin/api/2025-01/orders/count.json",
            params={"status": "any", "updated_at_min": (NOW - timedelta(days=days + 1)).isoformat()},
            headers={"X-Shopify-Access-Token": "demo-token"},
        ).raise_for_status()
        if read == "rest":
            shopify = ShopifyResource(
                store=base_url,
                access_token="demo-token",
                api="rest",
                bucket_size=REST_BUCKET,
                leak_rate=REST_LEAK,
            )
            fill_bucket(base_url, REST_BUCKET)
        else:
            shopify = ShopifyResource(
                store=base_url,
                access_token="demo-token",
                api="graphql",
                graphql_bucket_points=GRAPHQL_POINTS,
                graphql_restore_rate=GRAPHQL_RATE,
                bulk_concurrency=concurrency,
            )
        with tempfile.TemporaryDirectory(prefix="history-bench-") as scratch:
            warehouse = WarehouseResource(database=str(Path(scratch) / "warehouse.duckdb"))
            instance = dg.DagsterInstance.ephemeral()
            started = time.time()
            result = dg.materialize(
                [raw_updated_order_pages],
                resources={"shopify": shopify, "duckdb": warehouse},
                instance=instance,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                tags={
                    "dagster/asset_partition_range_start": first_key,
                    "dagster/asset_partition_range_end": last_key,
                },
            )
            ended = time.time()
            if not result.success:
                raise RuntimeError(f"the {read} run failed")
            logs = instance.all_logs(result.run_id)
            landed_at = next(e.timestamp for e in logs if (e.user_message or "").startswith("Landed "))
            completed = [
                e.user_message
                for e in logs
                if "bulk operation" in (e.user_message or "") and "COMPLETED" in e.user_message
            ]
            step_started = next(
                e.timestamp
                for e in logs
                if e.dagster_event is not None and e.dagster_event.event_type_value == "STEP_START"
            )
        server = httpx.get(f"{base_url}/_demo/stats").json()
    finally:
        stop_store(process)
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    pages_rest = int(metadata["pages"].value)
    return ReadResult(
        read=read,
        windows=len(result.get_asset_materialization_events()),
        orders=int(metadata["orders"].value),
        pages=pages_rest,
        requests=int(metadata["requests"].value),
        throttled=int(metadata["throttled_429"].value) + server["throttled"],
        bulk_start_delay=start_delay if read != "rest" else float("nan"),
        bulk_seconds_per_1000=per_1000 if read != "rest" else float("nan"),
        total_s=round(ended - started, 1),
        run_start_s=round(step_started - started, 1),
        fetch_land_s=round(landed_at - step_started, 1),
        finish_s=round(ended - landed_at, 1),
        rest_floor_s=round(pages_rest / REST_LEAK, 1) if read == "rest" else float("nan"),
        bulk_objects=int(match.group(1))
        if (match := _COMPLETED.search(completed[-1] if completed else ""))
        else 0,
        bulk_seen_completed_s=float(match.group(3)) if match else float("nan"),
        bulk_at_once=int(at_once.group(1))
        if (at_once := _AT_ONCE.search(completed[-1] if completed else ""))
        else int(bool(completed)),
    )


def main() -> None:
    """Run the reads and print a Markdown table and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--orders-per-hour", type=float, default=70.0)
    parser.add_argument(
        "--reads", default="rest,bulk", help="comma-separated: rest, bulk, bulk-1, bulk-no-latency"
    )
    parser.add_argument("--bulk-start-delay", type=float, default=3.0)
    parser.add_argument("--bulk-seconds-per-1000", type=float, default=0.5)
    parser.add_argument(
        "--bulk-concurrency",
        type=int,
        default=None,
        help="bulk operations at once (SHOPIFY_BULK_CONCURRENCY; default: what the API version allows)",
    )
    args = parser.parse_args()
    results = []
    for read in args.reads.split(","):
        results.append(
            run_read(
                read.strip(),
                args.days,
                args.orders_per_hour,
                args.bulk_start_delay,
                args.bulk_seconds_per_1000,
                args.bulk_concurrency,
            )
        )
        print(json.dumps(asdict(results[-1])), flush=True)
    print(
        "| read | windows | orders | pages | requests | throttled | total s | run start s | fetch+land s |"
        " finish s | bulk objects | bulk seen COMPLETED at s | bulk operations at once |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.read} | {r.windows} | {r.orders} | {r.pages} | {r.requests} | {r.throttled} | {r.total_s} "
            f"| {r.run_start_s} | {r.fetch_land_s} | {r.finish_s} | {r.bulk_objects} | {r.bulk_seen_completed_s} "
            f"| {r.bulk_at_once} |"
        )
    print(json.dumps({"benchmark": "history_backfill", "results": [asdict(r) for r in results]}))


if __name__ == "__main__":
    main()
