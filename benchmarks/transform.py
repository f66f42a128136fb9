"""Transform throughput and peak memory: raw landing and derivation, next to DuckDB's own JSON floor.

Over generated pages of the demo store's orders (`generate_pages.py`; 250 orders a page, 40 pages a window),
for each size this measures, in one run:

- e2e: pages in hand -> `land_pages` (the real function, one call a window, each window's pages spooled
  into the page store first as the raw assets do, into a real DuckDB file with DuckDB's default automatic
  checkpoints) -> `derive_new_pages` over the whole backfill on a new connection, as the derived assets
  would. Both connections run under the same `memory_limit` (CONNECTION_CONFIG);
- derive: `derive_new_pages` alone, on a copy of a file whose raw layer was already landed (sharing its
  page store);
- floor: a `read_json` scan of the same page files with the full schema given (inferred once beforehand
  from every order of the first file and passed as `columns`), which parses every page and nothing else.

Each phase of each repeat runs in a fresh interpreter, so its peak RSS (`VmHWM`) is its own; the figures
are the median over `--repeats` runs. The generated files are read window by window (memory is one window,
as when pages arrive over HTTP); reading them is not timed (the pages are "in hand"), spooling them is.
Targets: end to end >= 25,000 orders/s at 100k; derive >= floor; peak RSS < 500 MB at 1M for both.

    python benchmarks/transform.py [--sizes 10k,100k,1m] [--repeats N] [--phases e2e,derive,floor]
        [--out-dir benchmarks/out]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate_pages import FILE_ORDERS, PAGE_ORDERS, ensure_pages, parse_count

from cancel_pipeline.warehouse.raw_pages import page_store_for

DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "out"
PHASES = ("e2e", "derive", "floor")
ASSET = "raw_updated_order_pages"
WINDOW = timedelta(minutes=30)
FIRST_WINDOW = datetime(2024, 1, 1, tzinfo=UTC)
API_VERSION = "2025-01"
TARGET_E2E_AT_100K = 25_000
TARGET_RSS_MB_AT_1M = 500
# The warehouse connection's settings for landing and deriving (as `WarehouseResource.connection_config`
# passes them): a memory limit, so DuckDB's buffer pool stays bounded whatever the size of the backfill.
CONNECTION_CONFIG: dict[str, Any] = {"threads": 2, "memory_limit": "350MB"}
LAND_CONFIG: dict[str, Any] = CONNECTION_CONFIG
# Only for preparing the landed raw layer the derive phase starts from (not timed).
PREPARE_CONFIG: dict[str, Any] = {"threads": 2}


# --- Phases, each run in its own interpreter ---------------------------------------------------------


def _window_pages(path: Path, window: int) -> list[Any]:
    """One window's pages, read into memory: what a fetch has in hand as the pages arrive."""
    from cancel_pipeline.shopify.pages import OrderPage

    start = FIRST_WINDOW + window * WINDOW
    with path.open("rb") as lines:
        return [
            OrderPage(
                page_number=number,
                request_path=f"/admin/api/{API_VERSION}/orders.json?limit={PAGE_ORDERS}&window={window}",
                api_version=API_VERSION,
                fetched_at=start + WINDOW + timedelta(seconds=number),
                body=line.rstrip(b"\n"),
                order_count=PAGE_ORDERS,
            )
            for number, line in enumerate(lines, start=1)
        ]


def _land_all(con: Any, files: list[Path], database: Path) -> float:
    """Land every window as the raw assets do (spool into the page store, then `land_pages`), one landing a
    window; only the spooling and landing are timed, not reading the generated files."""
    from cancel_pipeline.warehouse.raw_pages import land_pages, spooled_pages

    elapsed = 0.0
    for window, path in enumerate(files):
        pages = _window_pages(path, window)
        start = FIRST_WINDOW + window * WINDOW
        started = time.perf_counter()
        with spooled_pages(pages, database=database) as spool:
            land_pages(
                con,
                asset=ASSET,
                partition_key=start.strftime("%Y-%m-%d-%H:%M"),
                store="demo",
                window_start=start,
                window_end=start + WINDOW,
                requested_min=start - timedelta(minutes=5),
                requested_max=start + WINDOW,
                pages=spool,
            )
        elapsed += time.perf_counter() - started
        del pages
    started = time.perf_counter()
    con.execute("checkpoint")
    return elapsed + time.perf_counter() - started


def _derive(con: Any) -> tuple[float, dict[str, int]]:
    from cancel_pipeline.warehouse.derive import derive_new_pages

    started = time.perf_counter()
    result = derive_new_pages(con)
    con.execute("checkpoint")
    return time.perf_counter() - started, result.row_counts


def _floor(files: list[Path], orders_type: str) -> tuple[float, int]:
    import duckdb

    file_list = "[" + ", ".join("'" + str(path).replace("'", "''") + "'" for path in files) + "]"
    started = time.perf_counter()
    con = duckdb.connect()
    [(parsed,)] = con.execute(
        f"""
        select sum(len(orders)) from read_json({file_list}, format = 'newline_delimited', records = true,
            columns = {{orders: '{orders_type}'}}, maximum_object_size = 67108864)
        """
    ).fetchall()
    con.close()
    return time.perf_counter() - started, int(parsed)


def _peak_rss_mb() -> float:
    """This process's peak RSS. `VmHWM`, not `ru_maxrss`: Linux carries `ru_maxrss` over from the parent
    across fork and exec, so a phase would report the driver's peak whenever that was higher."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_phase(phase: str, files: list[Path], database: Path, orders_type: str) -> dict[str, Any]:
    """Run one phase in this interpreter; returns its timings, row counts and this process's peak RSS."""
    from cancel_pipeline.warehouse.connection import warehouse_connection

    figures: dict[str, Any] = {"phase": phase}
    if phase == "floor":
        figures["seconds"], figures["orders_parsed"] = _floor(files, orders_type)
    elif phase == "derive":
        with warehouse_connection(database, config=CONNECTION_CONFIG) as con:
            figures["seconds"], figures["row_counts"] = _derive(con)
    elif phase in ("land", "e2e"):
        # Landing and deriving are separate runs in production (raw assets, then derived assets), each with
        # its own connection.
        land_config = LAND_CONFIG if phase == "e2e" else PREPARE_CONFIG
        with warehouse_connection(database, config=land_config) as con:
            land_seconds = _land_all(con, files, database)
        figures["seconds"] = land_seconds
        if phase != "land":
            with warehouse_connection(database, config=CONNECTION_CONFIG) as con:
                derive_seconds, figures["row_counts"] = _derive(con)
            figures.update(
                seconds=land_seconds + derive_seconds,
                land_seconds=land_seconds,
                derive_seconds=derive_seconds,
            )
    else:
        raise ValueError(f"unknown phase {phase}")
    figures["peak_rss_mb"] = _peak_rss_mb()
    return figures


# --- The driver --------------------------------------------------------------------------------------


def full_orders_type(first_file: Path) -> str:
    """The DuckDB type of a page's `orders`, inferred from every order of one file (not timed)."""
    import duckdb

    con = duckdb.connect()
    [(orders_type,)] = con.execute(
        f"""
        select typeof(orders) from read_json('{first_file}', format = 'newline_delimited', records = true,
            sample_size = -1, maximum_object_size = 67108864)
        limit 1
        """
    ).fetchall()
    con.close()
    return str(orders_type)


def _run_in_subprocess(
    phase: str, orders: int, database: Path, pages_dir: Path, orders_type: Path
) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--phase",
        phase,
        "--sizes",
        str(orders),
        "--database",
        str(database),
        "--pages-dir",
        str(pages_dir),
        "--orders-type-file",
        str(orders_type),
    ]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode:
        raise RuntimeError(f"{phase} at {orders:,} orders failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def benchmark_size(
    orders: int,
    repeats: int,
    phases: list[str],
    out_dir: Path,
    pages_dir: Path,
    orders_type: Path,
) -> dict:
    """Every phase of one size, `repeats` times each, each run in a fresh interpreter."""
    work = out_dir / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    landed = work / "landed.duckdb"
    if "derive" in phases:
        _run_in_subprocess("land", orders, landed, pages_dir, orders_type)
    runs: dict[str, list[dict[str, Any]]] = {phase: [] for phase in phases}
    for _ in range(repeats):
        for phase in phases:
            database = work / f"{phase}.duckdb"
            if phase == "derive":
                shutil.copyfile(landed, database)
                # Derivation reads page bodies only for rejects; the copy shares the landed page store.
                page_store_for(database).symlink_to(page_store_for(landed))
            runs[phase].append(_run_in_subprocess(phase, orders, database, pages_dir, orders_type))
            for path in work.glob(f"{phase}.duckdb*"):
                path.unlink()
            store = page_store_for(database)
            if store.is_symlink():
                store.unlink()
            else:
                shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    result: dict[str, Any] = {"orders": orders, "repeats": repeats}
    for phase, phase_runs in runs.items():
        seconds = _median(phase_runs, "seconds")
        result[phase] = {
            "seconds": round(seconds, 3),
            "orders_per_s": round(orders / seconds),
            "peak_rss_mb": round(_median(phase_runs, "peak_rss_mb"), 1),
            "max_peak_rss_mb": round(max(run["peak_rss_mb"] for run in phase_runs), 1),
        }
    for phase in ("e2e",):
        if phase in runs:
            result[phase]["land_seconds"] = round(_median(runs[phase], "land_seconds"), 3)
            result[phase]["derive_seconds"] = round(_median(runs[phase], "derive_seconds"), 3)
    with_counts = [run for phase_runs in runs.values() for run in phase_runs if "row_counts" in run]
    if with_counts:
        result["row_counts"] = with_counts[-1]["row_counts"]
    return result


def _table(results: list[dict[str, Any]]) -> str:
    rows = []
    for result in results:
        for phase in PHASES:
            if phase not in result:
                continue
            figures = result[phase]
            rows.append(
                [
                    f"{result['orders']:,}",
                    phase,
                    result["repeats"],
                    figures["seconds"],
                    f"{figures['orders_per_s']:,}",
                    figures["peak_rss_mb"],
                    figures["max_peak_rss_mb"],
                ]
            )
    headers = ["orders", "phase", "runs", "median s", "orders/s", "peak RSS MB", "max peak RSS MB"]
    return tabulate(rows, headers=headers, floatfmt=".1f")


def _verdicts(results: list[dict[str, Any]]) -> dict[str, Any]:
    by_size = {result["orders"]: result for result in results}
    verdicts: dict[str, Any] = {}
    at_100k = by_size.get(100_000, {})
    for phase in ("e2e",):
        if phase in at_100k:
            verdicts[f"{phase}_at_100k_ge_25k"] = at_100k[phase]["orders_per_s"] >= TARGET_E2E_AT_100K
    verdicts["derive_ge_floor"] = {
        str(r["orders"]): r["derive"]["orders_per_s"] >= r["floor"]["orders_per_s"]
        for r in results
        if "derive" in r and "floor" in r
    }
    at_1m = by_size.get(1_000_000, {})
    for phase in ("e2e", "derive"):
        if phase in at_1m:
            verdicts[f"{phase}_rss_at_1m_lt_500mb"] = at_1m[phase]["max_peak_rss_mb"] < TARGET_RSS_MB_AT_1M
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10k,100k,1m", help="comma-separated, multiples of 10k")
    parser.add_argument("--repeats", type=int, help="runs per phase (default: 3 below 1M orders, 1 at 1M)")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help="comma-separated subset of " + ", ".join(PHASES)
    )
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    # Internal: run one phase in this interpreter and print its figures as JSON.
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--database", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pages-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--orders-type-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [parse_count(size) for size in args.sizes.split(",")]
    phases = [phase for phase in args.phases.split(",") if phase]
    if not set(phases) <= set(PHASES):
        parser.error(f"phases must be among {', '.join(PHASES)}")
    if any(size % FILE_ORDERS for size in sizes):
        parser.error(f"sizes must be multiples of {FILE_ORDERS:,}")

    if args.phase:
        files = [args.pages_dir / f"pages-{i:05d}.jsonl" for i in range(sizes[0] // FILE_ORDERS)]
        orders_type = args.orders_type_file.read_text()
        print(json.dumps(run_phase(args.phase, files, args.database, orders_type)))
        return

    pages_dir = args.out_dir / "pages"
    files = ensure_pages(max(sizes), pages_dir)
    orders_type_file = args.out_dir / "orders_type.txt"
    orders_type_file.write_text(full_orders_type(files[0]))
    results = []
    for size in sizes:
        repeats = args.repeats or (1 if size >= 1_000_000 else 3)
        results.append(benchmark_size(size, repeats, phases, args.out_dir, pages_dir, orders_type_file))
        print(_table(results[-1:]), flush=True)
    print()
    print(_table(results))
    print(json.dumps({"benchmark": "transform", "results": results, "targets_met": _verdicts(results)}))


if __name__ == "__main__":
    main()
