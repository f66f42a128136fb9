"""The product's clients over the same days of the demo store: REST pages, GraphQL pages, GraphQL bulk.

GraphQL bulk runs the client's default number of bulk operations at once (5 at its API version), one per
slice of the range.

The demo store is served in process over HTTP on a frozen clock (seed 7) with Plus buckets (REST 400 / 20 a
second, GraphQL 20,000 points / 1,000 a second) and its bulk latency model at its defaults (3 s queued, 2,000
objects a second). Each read is landed into its own DuckDB file (parse included), so the figures are a raw
asset's fetch and landing, without Dagster.

    python benchmarks/graphql_client.py [--days 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

from cancel_pipeline.shopify.client import ShopifyClient
from cancel_pipeline.shopify.graphql import ShopifyGraphQLClient
from cancel_pipeline.warehouse.raw_pages import land_pages, spooled_pages
from cancel_pipeline.warehouse.schema import ensure_schema

NOW = "2025-03-05T18:00:00Z"


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=float, default=3.0)
    args = parser.parse_args()
    end = datetime.fromisoformat(NOW)
    start = end - timedelta(days=args.days)
    store = DemoStore(
        clock=FrozenClock(NOW),
        bucket_size=400,
        leak_rate=20.0,
        graphql_bucket_size=20000,
        graphql_restore_rate=1000,
    )
    print(f"{args.days:g} days of the demo store, {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC")
    print("| read | orders | pages | requests | fetch s | land s | throttled |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with serve(store) as url, tempfile.TemporaryDirectory() as folder:
        clients = {
            "REST, 1 stream": ShopifyClient(url, access_token="demo-token", bucket_size=400, leak_rate=20.0),
            "GraphQL pages": ShopifyGraphQLClient(
                url, access_token="demo-token", restore_rate=1000, bucket_points=20000
            ),
            "GraphQL bulk": ShopifyGraphQLClient(
                url,
                access_token="demo-token",
                restore_rate=1000,
                bucket_points=20000,
                bulk_threshold=timedelta(hours=1),
            ),
        }
        for number, (name, client) in enumerate(clients.items()):
            database = Path(folder) / f"read-{number}.duckdb"
            with client:
                began = time.perf_counter()
                pages = client.iter_order_pages(updated_at_min=start, updated_at_max=end)
                with spooled_pages(pages, database=database) as spool:
                    fetched = time.perf_counter()
                    con = duckdb.connect(str(database))
                    ensure_schema(con)
                    landed = land_pages(
                        con,
                        asset="raw_updated_order_pages",
                        partition_key="bench",
                        window_start=None,
                        window_end=None,
                        requested_min=start,
                        requested_max=end,
                        pages=spool,
                        store="demo",
                    )
                    con.close()
                done = time.perf_counter()
                stats = client.stats
            print(
                f"| {name} | {landed.orders} | {landed.pages} | {stats.requests} | {fetched - began:.1f} "
                f"| {done - fetched:.1f} | {stats.throttled_429} |"
            )
    store.graphql.bulk.close()


if __name__ == "__main__":
    main()
