"""Steady-state points/s of the product's paged GraphQL feed against the demo store, per plan's cost bucket.

For each plan (Standard: 100 points restored a second, Plus: 1,000) the demo store is served in a subprocess
(its own interpreter, as in `client_throughput.py`) with that plan's GraphQL bucket, and
`ShopifyGraphQLClient`, configured with the same bucket, walks a long `updated_at` range with
`iter_order_pages` (orders pages and the follow-up queries that complete nested lists). When the range runs
out the walk starts again.

Every query's `extensions.cost` is read from its answer (a wrapper around the HTTP transport, so the client's
own code path is unchanged). The steady state starts at the first query the client held back for its bucket
(the initial burst of a full bucket is excluded) and covers the queries sent in the next `--seconds`: points/s
is the sum of their costs divided by the time from the first of them to the one after the last, against the
plan's restore rate. The server takes the requested cost and refunds the difference to the actual cost, so
the actual cost is what the restore rate bounds; the requested sum is reported beside it. Target: actual
ratio >= 0.95 and zero THROTTLED.

CPU per query (this process, and the store's process) over the steady state shows where time goes when the
ratio falls short.

    python benchmarks/graphql_throughput.py [--seconds 60] [--plans standard,plus] [--days 20]
        [--orders-per-hour 200]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import orjson
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent))

from client_throughput import NOW, process_cpu_s, serve_store_process, stop_store

from cancel_pipeline.shopify.graphql import ShopifyGraphQLClient

# (bucket points, restore points/s): the demo store's `GRAPHQL_PLANS` (Shopify's published restore rates).
PLANS = {"standard": (2000, 100.0), "plus": (20000, 1000.0)}


@dataclass
class Query:
    """One query as sent and answered."""

    sent: float
    requested: float = 0.0
    actual: float = 0.0
    throttled: bool = False
    seconds: float = 0.0
    waited_before: bool = False


@dataclass
class Recorder(httpx.BaseTransport):
    """An HTTP transport that records each GraphQL answer's cost; the client sees the answers unchanged."""

    inner: httpx.BaseTransport
    queries: list[Query] = field(default_factory=list)
    waited: float = 0.0
    stats_of: ShopifyGraphQLClient | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send, read the whole answer, note its cost."""
        query = Query(sent=time.monotonic())
        if self.stats_of is not None:
            query.waited_before = self.stats_of.stats.rate_limit_wait_s > 0
        response = self.inner.handle_request(request)
        content = response.read()
        query.seconds = time.monotonic() - query.sent
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            body = None
        cost = body.get("extensions", {}).get("cost", {}) if isinstance(body, dict) else {}
        query.requested = float(cost.get("requestedQueryCost") or 0)
        query.actual = float(cost.get("actualQueryCost") or 0)
        errors = body.get("errors") if isinstance(body, dict) else None
        query.throttled = response.status_code == 429 or any(
            (e.get("extensions") or {}).get("code") == "THROTTLED"
            for e in errors or []
            if isinstance(e, dict)
        )
        with self.lock:
            self.queries.append(query)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            content=content,
            request=request,
            extensions=response.extensions,
        )

    def close(self) -> None:
        """Close the wrapped transport."""
        self.inner.close()


@dataclass
class PlanResult:
    """Figures of one plan's run."""

    plan: str
    bucket_points: int
    restore_rate: float
    seconds: float
    steady_seconds: float
    queries: int
    steady_queries: int
    orders: int
    pages: int
    steady_orders_per_s: float
    """Orders of the pages that arrived in the steady state, per second of it."""
    steady_actual_points_per_s: float
    steady_requested_points_per_s: float
    ratio_actual: float
    ratio_requested: float
    mean_requested_per_query: float
    mean_actual_per_query: float
    median_latency_ms: float
    throttled_answers: int
    client_throttled: int
    retries: int
    client_cpu_ms_per_query: float
    store_cpu_ms_per_query: float


def start_store(plan: str, orders_per_hour: float) -> tuple[subprocess.Popen, str]:
    """Serve a demo store with the plan's GraphQL bucket in a subprocess; the process and its base URL."""

    return serve_store_process("--graphql-plan", plan, "--orders-per-hour", f"{orders_per_hour:g}")


def run_plan(plan: str, seconds: float, days: float, orders_per_hour: float, max_fill_s: float) -> PlanResult:
    """Walk the range under one plan's bucket until the bucket has run dry, then `seconds` more."""
    bucket_points, restore_rate = PLANS[plan]
    process, base_url = start_store(plan, orders_per_hour)
    recorder = Recorder(httpx.HTTPTransport())
    try:
        client = ShopifyGraphQLClient(
            base_url,
            access_token="demo-token",
            bucket_points=bucket_points,
            restore_rate=restore_rate,
            transport=recorder,
        )
        recorder.stats_of = client
        window = {"updated_at_min": NOW - timedelta(days=days), "updated_at_max": NOW}
        started = time.monotonic()
        steady_start: float | None = None
        orders = pages = steady_orders = 0
        client_cpu = store_cpu = 0.0

        def done() -> bool:
            now = time.monotonic()
            if steady_start is None:
                return now - started >= max_fill_s
            return now - steady_start >= seconds

        with client:
            while not done():
                for page in client.iter_order_pages(**window):
                    orders += page.order_count
                    pages += 1
                    if steady_start is not None:
                        steady_orders += page.order_count
                    if steady_start is None and client.stats.rate_limit_wait_s > 0:
                        steady_start = next(q.sent for q in recorder.queries if q.waited_before)
                        client_cpu, store_cpu = time.process_time(), process_cpu_s(process.pid)
                    if done():
                        break
            ended = time.monotonic()
            client_cpu = time.process_time() - client_cpu
            store_cpu = process_cpu_s(process.pid) - store_cpu
    finally:
        stop_store(process)

    queries = recorder.queries
    if steady_start is None:
        raise RuntimeError(f"{plan}: the client never waited for its bucket in {max_fill_s:g} s")
    steady = [q for q in queries if q.sent >= steady_start]
    # Points of every steady query but the last, over the time from the first to the last one's sending:
    # each query was sent once the bucket held its cost, so the last one closes the interval.
    counted, closing = steady[:-1], steady[-1]
    span = closing.sent - counted[0].sent
    actual = sum(q.actual for q in counted)
    requested = sum(q.requested for q in counted)
    latencies = sorted(q.seconds for q in steady)
    stats = client.stats
    return PlanResult(
        plan=plan,
        bucket_points=bucket_points,
        restore_rate=restore_rate,
        seconds=round(ended - started, 1),
        steady_seconds=round(span, 1),
        queries=len(queries),
        steady_queries=len(counted),
        orders=orders,
        pages=pages,
        steady_orders_per_s=round(steady_orders / (ended - steady_start), 1),
        steady_actual_points_per_s=round(actual / span, 1),
        steady_requested_points_per_s=round(requested / span, 1),
        ratio_actual=round(actual / span / restore_rate, 3),
        ratio_requested=round(requested / span / restore_rate, 3),
        mean_requested_per_query=round(requested / len(counted), 1),
        mean_actual_per_query=round(actual / len(counted), 1),
        median_latency_ms=round(latencies[len(latencies) // 2] * 1000, 1),
        throttled_answers=sum(q.throttled for q in queries),
        client_throttled=stats.throttled_429,
        retries=stats.retries,
        client_cpu_ms_per_query=round(client_cpu / len(steady) * 1000, 1),
        store_cpu_ms_per_query=round(store_cpu / len(steady) * 1000, 1),
    )


def main() -> None:
    """Run the selected plans and print a table and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="steady state per plan (default 60)")
    parser.add_argument("--plans", default="standard,plus", help="comma-separated: standard, plus")
    parser.add_argument("--days", type=float, default=20.0, help="updated_at range walked (default 20)")
    parser.add_argument("--orders-per-hour", type=float, default=200.0, help="the store's order rate")
    parser.add_argument("--max-fill-seconds", type=float, default=120.0, help="give up if never throttled")
    args = parser.parse_args()
    results = [
        run_plan(plan.strip(), args.seconds, args.days, args.orders_per_hour, args.max_fill_seconds)
        for plan in args.plans.split(",")
    ]
    rows = [
        (
            r.plan,
            f"{r.bucket_points}/{r.restore_rate:g}",
            r.steady_seconds,
            r.steady_queries,
            r.orders,
            r.steady_orders_per_s,
            r.steady_actual_points_per_s,
            r.ratio_actual,
            r.steady_requested_points_per_s,
            r.ratio_requested,
            r.mean_requested_per_query,
            r.mean_actual_per_query,
            r.median_latency_ms,
            r.throttled_answers,
            r.retries,
            r.client_cpu_ms_per_query,
            r.store_cpu_ms_per_query,
        )
        for r in results
    ]
    headers = [
        "plan",
        "bucket",
        "steady s",
        "queries",
        "orders",
        "steady orders/s",
        "actual pts/s",
        "ratio actual",
        "requested pts/s",
        "ratio requested",
        "requested/query",
        "actual/query",
        "latency ms",
        "THROTTLED",
        "retries",
        "client CPU ms/q",
        "store CPU ms/q",
    ]
    print(tabulate(rows, headers=headers))
    print("steady state = from the first query held back for the bucket (the initial burst is excluded)")
    print(json.dumps({"benchmark": "graphql_throughput", "results": [asdict(r) for r in results]}))


if __name__ == "__main__":
    main()
