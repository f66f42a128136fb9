"""How fast the demo store answers GraphQL: cursor pages over its whole history, and one bulk query of it.

The store is served in process over HTTP on a frozen clock with a points bucket too large to throttle, so the
figures are the simulator's own cost, not Shopify's pacing. Pages select ids, updatedAt and one line item
(200 orders a page, cost 802). The bulk query selects the same fields with every line item; its latency model
is switched off (start delay 0, 0 s per 1,000 objects), so the time is the worker writing the file.

    python benchmarks/demo_store_graphql.py [--pages 40]
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

PAGE = (
    "query($after: String) { orders(first: 200, after: $after, sortKey: UPDATED_AT) {"
    " nodes { id updatedAt lineItems(first: 1) { nodes { id quantity } } } pageInfo { hasNextPage endCursor } } }"
)
BULK = (
    "{ orders(sortKey: UPDATED_AT) { edges { node { id updatedAt"
    " lineItems { edges { node { id quantity } } } } } } }"
)
RUN = "mutation($q: String!) { bulkOperationRunQuery(query: $q) { bulkOperation { id } userErrors { message } } }"
POLL = "{ currentBulkOperation { status objectCount rootObjectCount fileSize url } }"


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=40, help="cursor pages to time after the first")
    args = parser.parse_args()
    store = DemoStore(
        clock=FrozenClock("2025-03-05T18:00:00Z"),
        graphql_bucket_size=10**9,
        graphql_restore_rate=10**6,
        bulk_start_delay=0,
        bulk_seconds_per_1000=0,
    )
    with (
        serve(store) as url,
        httpx.Client(base_url=url, headers={"X-Shopify-Access-Token": "demo-token"}, timeout=300) as http,
    ):
        endpoint = "/admin/api/2025-01/graphql.json"
        times = []
        after = None
        for _ in range(args.pages + 1):
            started = time.perf_counter()
            body = http.post(endpoint, json={"query": PAGE, "variables": {"after": after}}).json()
            times.append(time.perf_counter() - started)
            after = body["data"]["orders"]["pageInfo"]["endCursor"]
        print(f"first page (sorts the whole history): {times[0]:.2f} s")
        print(f"later pages of 200 orders: median {statistics.median(times[1:]) * 1000:.0f} ms")
        started = time.perf_counter()
        http.post(endpoint, json={"query": RUN, "variables": {"q": BULK}}).raise_for_status()
        while (op := http.post(endpoint, json={"query": POLL}).json()["data"]["currentBulkOperation"])[
            "status"
        ] != "COMPLETED":
            time.sleep(0.2)
        written = time.perf_counter() - started
        print(
            f"bulk query: {op['rootObjectCount']} orders, {op['objectCount']} objects, "
            f"{int(op['fileSize']) / 1e6:.1f} MB written in {written:.1f} s"
        )
        started = time.perf_counter()
        with httpx.stream("GET", op["url"]) as response:
            size = sum(len(chunk) for chunk in response.iter_bytes())
        print(f"download: {size / 1e6:.1f} MB in {time.perf_counter() - started:.2f} s")
    store.graphql.bulk.close()


if __name__ == "__main__":
    main()
