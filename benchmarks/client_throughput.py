"""Throughput of the Shopify client against the demo store over HTTP, per rate-limit plan.

For each plan (Standard: bucket 40, leak 2/s; Plus: bucket 400, leak 20/s) the demo store is served in a
subprocess (its own interpreter, so the server does not share the client's GIL) with that bucket, and the
client, configured with the same bucket, pages through an `updated_at` window of 250-order pages for a
fixed time. When the window runs out the walk starts again, as the next scheduled window would.

How the initial burst is treated: an empty bucket lets requests through as fast as the store answers
until it has filled (with Plus at ~28 pages/s against a leak of 20/s that takes close to a minute), which
says nothing about the sustained rate. The steady state therefore starts at the first request the client
had to hold back for the bucket, and lasts `--seconds`; whole-run figures (burst included) are in the JSON.
The ceiling of a plan is its leak rate in requests/s, i.e. leak rate x 250 orders/s for full pages.
Target: steady ratio >= 0.95 and zero 429s.

CPU: the client's (this process, every thread) and the store's (its process) CPU per page over the steady
state, in ms. At Plus's 20 pages a second the two share the machine's two cores, so the client must stay far
below 50 ms of GIL-holding CPU a page. `--streams N` walks each window as N concurrent page streams.

    python benchmarks/client_throughput.py [--seconds 60] [--plans standard,plus] [--window-days 10]
        [--max-fill-seconds 180] [--streams 1]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from tabulate import tabulate

from cancel_pipeline.shopify.client import ShopifyClient

PLANS = {"standard": (40, 2.0), "plus": (400, 20.0)}
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
PAGE_SIZE = 250


@dataclass
class PlanResult:
    """Figures of one plan's run."""

    plan: str
    bucket_size: int
    leak_rate: float
    seconds: float
    steady_seconds: float
    requests: int
    orders: int
    walks: int
    steady_requests_per_s: float
    steady_orders_per_s: float
    overall_requests_per_s: float
    ceiling_requests_per_s: float
    ceiling_orders_per_s: float
    ratio_requests: float
    ratio_orders: float
    client_429: int
    server_429: int
    retries: int
    rate_limit_wait_s: float
    streams: int
    client_cpu_ms_per_page: float
    """This process's CPU (all threads) per page over the steady state."""
    store_cpu_ms_per_page: float
    """The store process's CPU per page over the steady state."""


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_store_process(*options: str) -> tuple[subprocess.Popen, str]:
    """Serve a demo store frozen at NOW in a subprocess with the given `serve` options; returns the process
    and its base URL once it answers."""
    port = free_port()
    command = [
        *(sys.executable, "-m", "cancel_pipeline_simulators.demo_store", "serve"),
        *("--port", str(port), "--now", NOW.isoformat(), *options),
    ]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base_url}/_demo/stats", timeout=1).raise_for_status()
            return process, base_url
        except httpx.HTTPError:
            time.sleep(0.1)
    stop_store(process)
    raise RuntimeError("the demo store did not start within 30 s")


def start_store(
    bucket_size: int, leak_rate: float, orders_per_hour: float = 200.0
) -> tuple[subprocess.Popen, str]:
    """Serve a demo store with a REST bucket in a subprocess; returns the process and its base URL."""
    return serve_store_process(
        *("--bucket-size", str(bucket_size), "--leak-rate", str(leak_rate)),
        *("--orders-per-hour", f"{orders_per_hour:g}"),
    )


def stop_store(process: subprocess.Popen) -> None:
    """End the store: SIGTERM, then SIGKILL if it is still there after 10 s.

    A store started from a shell that ignores SIGTERM (a background job under some job controls) inherits
    that, and would otherwise outlive the benchmark and fail it.
    """
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def run_plan(
    plan: str, seconds: float, window_days: float, max_fill_s: float, streams: int = 1
) -> PlanResult:
    """Page through the window under one plan's bucket: until the bucket fills, then `seconds` more."""
    bucket_size, leak_rate = PLANS[plan]
    process, base_url = start_store(bucket_size, leak_rate)
    try:
        window = {"updated_at_min": NOW - timedelta(days=window_days), "updated_at_max": NOW}
        # Warm-up: the store builds and caches its history on first read. Walk as much of the window as
        # the bucket allows at once (all of it under Plus), then empty the bucket and zero the counters.
        with ShopifyClient(base_url, access_token="demo-token", bucket_size=bucket_size) as warm:
            pages = warm.iter_order_pages(status="any", limit=PAGE_SIZE, **window)
            for _ in zip(range(bucket_size - 1), pages, strict=False):
                pass
        httpx.post(f"{base_url}/_demo/reset").raise_for_status()

        client = ShopifyClient(
            base_url, access_token="demo-token", bucket_size=bucket_size, leak_rate=leak_rate
        )
        with client:
            started = time.monotonic()
            steady_start: float | None = None
            steady_requests = steady_orders = orders = walks = 0
            client_cpu = store_cpu = 0.0

            def done() -> bool:
                now = time.monotonic()
                if steady_start is None:
                    return now - started >= max_fill_s  # never throttled: the store is the bottleneck
                return now - steady_start >= seconds

            while not done():
                walks += 1
                for page in client.iter_order_pages(status="any", limit=PAGE_SIZE, streams=streams, **window):
                    orders += page.order_count
                    if steady_start is not None:
                        steady_requests += 1
                        steady_orders += page.order_count
                    elif client.stats.rate_limit_wait_s > 0:
                        # This request had to wait: the bucket is full and the leak sets the pace from here.
                        steady_start = time.monotonic()
                        client_cpu, store_cpu = time.process_time(), process_cpu_s(process.pid)
                    if done():
                        break
            ended = time.monotonic()
            client_cpu, store_cpu = time.process_time() - client_cpu, process_cpu_s(process.pid) - store_cpu
        server = httpx.get(f"{base_url}/_demo/stats").json()
    finally:
        stop_store(process)

    steady_s = ended - steady_start if steady_start is not None else float("nan")
    stats = client.stats
    return PlanResult(
        plan=plan,
        bucket_size=bucket_size,
        leak_rate=leak_rate,
        seconds=round(ended - started, 2),
        steady_seconds=round(steady_s, 2),
        requests=stats.requests,
        orders=orders,
        walks=walks,
        steady_requests_per_s=round(steady_requests / steady_s, 3),
        steady_orders_per_s=round(steady_orders / steady_s, 1),
        overall_requests_per_s=round(stats.requests / (ended - started), 3),
        ceiling_requests_per_s=leak_rate,
        ceiling_orders_per_s=leak_rate * PAGE_SIZE,
        ratio_requests=round(steady_requests / steady_s / leak_rate, 3),
        ratio_orders=round(steady_orders / steady_s / (leak_rate * PAGE_SIZE), 3),
        client_429=stats.throttled_429,
        server_429=server["throttled"],
        retries=stats.retries,
        rate_limit_wait_s=round(stats.rate_limit_wait_s, 2),
        streams=streams,
        client_cpu_ms_per_page=round(client_cpu / max(1, steady_requests) * 1000, 1),
        store_cpu_ms_per_page=round(store_cpu / max(1, steady_requests) * 1000, 1),
    )


def main() -> None:
    """Run the selected plans and print a table and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="steady-state run length per plan (default 60)"
    )
    parser.add_argument(
        "--max-fill-seconds",
        type=float,
        default=180.0,
        help="give up on a plan whose bucket has not filled after this long (the store is too slow)",
    )
    parser.add_argument("--plans", default="standard,plus", help="comma-separated: standard, plus")
    parser.add_argument(
        "--window-days", type=float, default=10.0, help="updated_at window walked (repeatedly) per plan"
    )
    parser.add_argument("--streams", type=int, default=1, help="concurrent page streams (default 1)")
    args = parser.parse_args()
    results = [
        run_plan(plan.strip(), args.seconds, args.window_days, args.max_fill_seconds, args.streams)
        for plan in args.plans.split(",")
    ]
    rows = [
        (
            r.plan,
            f"{r.bucket_size}/{r.leak_rate:g}",
            r.seconds,
            r.steady_seconds,
            r.requests,
            r.orders,
            r.steady_requests_per_s,
            r.steady_orders_per_s,
            r.ceiling_orders_per_s,
            r.ratio_requests,
            r.ratio_orders,
            r.client_429,
            r.server_429,
            r.retries,
            r.streams,
            r.client_cpu_ms_per_page,
            r.store_cpu_ms_per_page,
        )
        for r in results
    ]
    headers = [
        "plan",
        "bucket",
        "s",
        "steady s",
        "requests",
        "orders",
        "steady req/s",
        "steady orders/s",
        "ceiling orders/s",
        "ratio req",
        "ratio orders",
        "429 client",
        "429 server",
        "retries",
        "streams",
        "client CPU ms/page",
        "store CPU ms/page",
    ]
    print(tabulate(rows, headers=headers))
    print("steady state = from the first request that waited for the bucket (the initial burst is excluded)")
    print(json.dumps({"benchmark": "client_throughput", "results": [asdict(r) for r in results]}))


if __name__ == "__main__":
    main()
