"""Landing a bulk operation's JSONL end to end: chunks as the client cuts them, `land_pages`, derive.

The file is the demo store's own bulk result for the product's bulk query (`bulk_orders_query`, the fields
the client asks for), over its whole served history (60 days) at `--orders-per-hour` (default 680, plus the
store's bursts), cut after the first `--orders` orders (default 1,000,000) on an order boundary. It is made
once (the store in process, its latency model off) and kept in `--out-dir`.

The measured phase runs in a fresh interpreter, so its peak RSS (`VmHWM`) is its own:

- chunk + spool: the file is streamed through `BulkExport.pages` (the client's own download, line split and
  cut into pages of whole orders, over an HTTP transport that reads the file) into `spooled_pages`;
- land: `land_pages` of the whole range in one call, as the raw asset lands a range run;
- derive: `derive_new_pages` on a new connection, as the derived assets do.

Connections run with `threads=2, memory_limit='350MB'` as `transform.py`'s. Targets: >= 25,000 orders/s
end to end, peak RSS < 500 MB.

    python benchmarks/bulk_landing.py [--orders 1000000] [--orders-per-hour 680] [--repeats 1]
        [--out-dir benchmarks/out]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "out"
NOW = "2025-03-05T18:00:00Z"
API_VERSION = "2025-01"
CONNECTION_CONFIG: dict[str, Any] = {"threads": 2, "memory_limit": "350MB"}
TARGET_ORDERS_PER_S = 25_000
TARGET_RSS_MB = 500


def generate(path: Path, orders: int, orders_per_hour: float) -> int:
    """Write the store's bulk result, cut after `orders` orders; the orders written."""
    import httpx
    from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

    from cancel_pipeline.shopify.bulk import POLL_QUERY, RUN_MUTATION, bulk_orders_query

    store = DemoStore(
        clock=FrozenClock(NOW),
        orders_per_hour=orders_per_hour,
        graphql_bucket_size=10**9,
        graphql_restore_rate=10**6,
        bulk_start_delay=0,
        bulk_seconds_per_1000=0,
    )
    endpoint = f"/admin/api/{API_VERSION}/graphql.json"
    started = time.perf_counter()
    with (
        serve(store) as url,
        httpx.Client(base_url=url, headers={"X-Shopify-Access-Token": "demo-token"}, timeout=600) as http,
    ):
        body = http.post(
            endpoint, json={"query": RUN_MUTATION, "variables": {"query": bulk_orders_query(None)}}
        )
        operation = body.json()["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"]
        while True:
            state = http.post(endpoint, json={"query": POLL_QUERY, "variables": {"id": operation}}).json()
            state = state["data"]["node"]
            if state["status"] == "COMPLETED":
                break
            if state["status"] in ("FAILED", "CANCELED", "EXPIRED"):
                raise RuntimeError(f"the store's bulk query ended {state['status']}")
            time.sleep(1)
        written = 0
        partial = path.with_suffix(".partial")
        with httpx.stream("GET", state["url"], timeout=600) as response, partial.open("wb") as out:
            pending = b""
            for data in response.iter_bytes():
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if b'"__parentId"' not in line:
                        if written == orders:
                            break
                        written += 1
                    out.write(line + b"\n")
                else:
                    continue
                break
    store.graphql.bulk.close()
    partial.rename(path)
    print(f"generated {written} orders in {time.perf_counter() - started:.0f} s: {path}", file=sys.stderr)
    return written


class FileSender:
    """What `BulkExport.pages` needs of the client, downloading the result from a local file."""

    store = "bench"
    api_version = API_VERSION
    endpoint = f"/admin/api/{API_VERSION}/graphql.json"

    def __init__(self, path: Path) -> None:
        import httpx

        def serve_file(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=_read(path))

        self.http = httpx.Client(transport=httpx.MockTransport(serve_file))

    @property
    def log(self) -> Any:
        """Unused logger."""
        import logging

        return logging.getLogger("bench")

    def pause(self, seconds: float) -> None:
        """Not called on a good download."""
        time.sleep(seconds)

    def now(self) -> float:
        """Not called on a download."""
        return time.monotonic()

    def execute(self, operation: str, query: str, variables: dict[str, Any], cost: float = 10) -> dict:
        """Not called on a good download."""
        raise AssertionError(operation)


def _read(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(1 << 16):
            yield chunk


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_phase(path: Path, database: Path) -> dict[str, Any]:
    """Chunk + spool, land, derive in this interpreter; timings, counts and this process's peak RSS."""
    from cancel_pipeline.shopify.bulk import BulkExport
    from cancel_pipeline.warehouse.connection import warehouse_connection
    from cancel_pipeline.warehouse.derive import derive_new_pages
    from cancel_pipeline.warehouse.raw_pages import land_pages, spooled_pages

    export = BulkExport(FileSender(path))
    figures: dict[str, Any] = {}
    started = time.perf_counter()
    pages = export.pages({"url": "http://bulk.invalid/result.jsonl"}, "bulk bench")
    with spooled_pages(pages, database=database) as spool:
        spooled = time.perf_counter()
        peak_spooled = _peak_rss_mb()
        with warehouse_connection(database, config=CONNECTION_CONFIG) as con:
            landed = land_pages(
                con,
                store="demo",
                asset="raw_updated_order_pages",
                partition_key="bench",
                window_start=None,
                window_end=None,
                requested_min=None,
                requested_max=None,
                pages=spool,
            )
            con.execute("checkpoint")
    landed_at = time.perf_counter()
    peak_landed = _peak_rss_mb()
    with warehouse_connection(database, config=CONNECTION_CONFIG) as con:
        derived = derive_new_pages(con)
        con.execute("checkpoint")
    ended = time.perf_counter()
    figures.update(
        orders=landed.orders,
        pages=landed.pages,
        chunk_spool_s=round(spooled - started, 2),
        land_s=round(landed_at - spooled, 2),
        derive_s=round(ended - landed_at, 2),
        seconds=round(ended - started, 2),
        row_counts=derived.row_counts,
        peak_rss_mb=round(_peak_rss_mb()),
        peak_rss_mb_after=[round(peak_spooled), round(peak_landed)],
    )
    return figures


def main() -> None:
    """Generate the file if needed, then run the phase `--repeats` times in fresh interpreters."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--orders-per-hour", type=float, default=680.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--phase-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--phase-database", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase_file:
        print(json.dumps(run_phase(args.phase_file, args.phase_database)))
        return
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"bulk-{args.orders}-{args.orders_per_hour:g}.jsonl"
    if not path.exists():
        generate(path, args.orders, args.orders_per_hour)
    print(f"{path.name}: {path.stat().st_size / 1e6:.0f} MB", file=sys.stderr)
    runs = []
    for _ in range(args.repeats):
        scratch = Path(tempfile.mkdtemp(prefix="bulk-landing-", dir=args.out_dir))
        try:
            command = [
                sys.executable,
                __file__,
                "--phase-file",
                str(path),
                "--phase-database",
                str(scratch / "warehouse.duckdb"),
            ]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(output.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]), file=sys.stderr)
        finally:
            shutil.rmtree(scratch)
    seconds = statistics.median(r["seconds"] for r in runs)
    orders = runs[0]["orders"]
    rss = max(r["peak_rss_mb"] for r in runs)
    print(
        "| orders | MB | runs | median s | orders/s | chunk+spool s | land s | derive s | peak RSS MB (max) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    median = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    print(
        f"| {orders:,} | {path.stat().st_size / 1e6:.0f} | {len(runs)} | {seconds} | {orders / seconds:,.0f} "
        f"| {median['chunk_spool_s']} | {median['land_s']} | {median['derive_s']} | {rss} |"
    )
    print(f"row counts: {json.dumps(runs[0]['row_counts'])}")
    met = orders / seconds >= TARGET_ORDERS_PER_S and rss < TARGET_RSS_MB
    print(
        f"targets (>= {TARGET_ORDERS_PER_S:,} orders/s, < {TARGET_RSS_MB} MB): {'met' if met else 'not met'}"
    )
    print(json.dumps({"benchmark": "bulk_landing", "file": path.name, "runs": runs}))


if __name__ == "__main__":
    main()
