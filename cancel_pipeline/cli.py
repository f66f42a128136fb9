"""Command line of cancel_pipeline: `python -m cancel_pipeline.cli <command>` (`make run` runs `run`).

- `run`: the main job. Catches up the last days of both raw feeds and every table and check through Dagster,
  recorded in the project's instance, then prints a summary of the warehouse.
- `fetch`: a read-only look at the store: fetches the last hours of orders through the client and prints
  what it saw, without touching the warehouse (a quick check of credentials and connectivity).
- `dead-runs`: marks failed the runs whose process is gone (killed) and frees their `duckdb_writer` slots;
  `run` does the same before it starts.

Each command is one function registered in `COMMANDS`. A failure ends with one `error:` line naming its root
cause; `--verbose` prints the traceback above it.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
from tabulate import tabulate

from cancel_pipeline.shopify.errors import ShopifyError
from cancel_pipeline.shopify.resource import ShopifyResource
from cancel_pipeline.shopify.source import OrderSource
from cancel_pipeline.warehouse.connection import warehouse_connection
from cancel_pipeline.warehouse.derive import derive_new_pages
from cancel_pipeline.warehouse.raw_pages import land_pages, spooled_pages


@dataclass
class OrdersSeen:
    """What one walk over a window's order pages contained, as the pipeline's own tables count it."""

    pages: int = 0
    orders: int = 0
    """Order objects on the pages (an order on two pages counts twice)."""
    canceled_by_reason: Counter[str] = field(default_factory=Counter)
    partially_canceled: int = 0
    test_orders: int = 0
    rejected: int = 0
    """Order objects the contract rejects (`order_rejects`)."""

    @property
    def canceled(self) -> int:
        """Fully canceled orders, whatever the reason."""
        return sum(self.canceled_by_reason.values())


def fetch_window(client: OrderSource, start: datetime, end: datetime) -> OrdersSeen:
    """Walk every order updated in `[start, end]` (any status) and count what the pipeline makes of it.

    The pages go through the pipeline's own landing and derivation, in a throwaway warehouse that is
    deleted afterwards, so the counts follow the same rules as the tables (there is no second copy of what
    a partial cancellation is) and nothing is written to the real warehouse.
    """
    pages = client.iter_order_pages(status="any", updated_at_min=start, updated_at_max=end)
    with tempfile.TemporaryDirectory(prefix="cancel-pipeline-fetch-") as folder:
        database = Path(folder) / "fetch.duckdb"
        with spooled_pages(pages, database=database) as spool:
            spool.refetch_unparseable(client.refetch_page)
            with warehouse_connection(database) as con:
                land_pages(
                    con,
                    asset="fetch",
                    partition_key="fetch",
                    window_start=start,
                    window_end=end,
                    requested_min=start,
                    requested_max=end,
                    pages=spool,
                    store=client.store,
                )
                derive_new_pages(con)
                return _count_tables(con, pages=spool.pages, orders=spool.orders)


def _count_tables(con: duckdb.DuckDBPyConnection, *, pages: int, orders: int) -> OrdersSeen:
    def scalar(sql: str) -> int:
        return int(con.execute(sql).fetchone()[0] or 0)

    reasons = con.execute(
        "select coalesce(cancel_reason, 'unknown'), count(*) from canceled_orders group by 1"
    ).fetchall()
    return OrdersSeen(
        pages=pages,
        orders=orders,
        canceled_by_reason=Counter({str(reason): int(count) for reason, count in reasons}),
        partially_canceled=scalar(
            "select count(distinct order_id) from canceled_line_items where not order_canceled"
        ),
        test_orders=scalar("select count(*) from orders where test"),
        rejected=scalar("select count(*) from order_rejects"),
    )


def render_summary(client: OrderSource, seen: OrdersSeen, start: datetime, end: datetime, demo: bool) -> str:
    """The human-readable report of one fetch."""
    source = f"{client.store} (built-in demo store)" if demo else client.store
    stats = client.stats
    rows = [
        ("orders", seen.orders),
        ("pages", seen.pages),
        ("requests", stats.requests),
        ("canceled orders", seen.canceled),
        ("partially canceled orders", seen.partially_canceled),
        ("test orders", seen.test_orders),
        ("rejected order objects", seen.rejected),
        ("retries", stats.retries),
        ("429 responses", stats.throttled_429),
        ("rate-limit wait", f"{stats.rate_limit_wait_s:.1f} s"),
        ("received", f"{stats.bytes_received / 1e6:.1f} MB"),
    ]
    lines = [
        f"Orders updated {start:%Y-%m-%d %H:%M:%S} .. {end:%Y-%m-%d %H:%M:%S} UTC (status=any)",
        f"store {source}, API {client.api_version}",
        "",
        tabulate(rows, tablefmt="plain", colalign=("left", "right")),
    ]
    if seen.canceled_by_reason:
        reasons = sorted(seen.canceled_by_reason.items(), key=lambda item: (-item[1], item[0]))
        lines += ["", tabulate(reasons, headers=["cancel reason", "orders"], tablefmt="simple")]
    return "\n".join(lines)


def fetch_command(args: argparse.Namespace) -> int:
    """Fetch the last `--hours` of orders and print the summary."""
    resource = ShopifyResource.from_env()
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(hours=args.hours)
    with resource.get_client() as client:
        seen = fetch_window(client, start, end)
        print(render_summary(client, seen, start, end, demo=resource.uses_embedded_store))
    return 0


def _add_fetch(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fetch", help="fetch the last day of orders and print a summary", parents=[_common_options()]
    )
    parser.add_argument("--hours", type=float, default=24.0, help="length of the window, ending now")


def run_command(args: argparse.Namespace) -> int:
    """Run the main job over the last `--days` and print the warehouse summary."""
    # Imported here: loading the definitions reads the settings, whose errors `main` reports in one line.
    from cancel_pipeline.catch_up import catch_up

    ensure_dagster_home()
    print(catch_up(timedelta(days=args.days), log_level=args.log_level))
    return 0


def dead_runs_command(args: argparse.Namespace) -> int:
    """Mark failed the runs whose process is gone and free the pool slots of ended runs, saying which."""
    import dagster as dg

    from cancel_pipeline.defs.runs.dead_runs import release_pool

    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        done = release_pool(instance)
    print("\n".join(done) or "No run marked running has lost its process, and no ended run holds a slot.")
    return 0


def _add_dead_runs(subparsers: argparse._SubParsersAction) -> None:
    subparsers.add_parser(
        "dead-runs",
        help="mark failed the runs whose process is gone and free their duckdb_writer slots",
        parents=[_common_options()],
    )


LOCAL_INSTANCE_YAML = Path("deploy/local/dagster.yaml")
"""The project's instance configuration for one machine (see `make`), relative to the project folder."""


def ensure_dagster_home(default: Path = Path(".dagster_home")) -> Path:
    """The instance folder runs are recorded in: `DAGSTER_HOME`, else `.dagster_home/` (as `make` sets it),
    given the project's local `dagster.yaml` when it has none."""
    home = Path(os.environ.get("DAGSTER_HOME") or default).resolve()
    home.mkdir(parents=True, exist_ok=True)
    instance_yaml = home / "dagster.yaml"
    if not instance_yaml.exists() and LOCAL_INSTANCE_YAML.exists():
        shutil.copyfile(LOCAL_INSTANCE_YAML, instance_yaml)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _add_run(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="catch up the last days of both feeds and every table through Dagster",
        parents=[_common_options()],
    )
    parser.add_argument("--days", type=float, default=2.0, help="how far back to catch up (default 2)")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Dagster's log level",
    )


def _common_options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--verbose", action="store_true", help="print the traceback of an error above its one-line summary"
    )
    return parser


COMMANDS: dict[
    str, tuple[Callable[[argparse._SubParsersAction], None], Callable[[argparse.Namespace], int]]
] = {
    "run": (_add_run, run_command),
    "fetch": (_add_fetch, fetch_command),
    "dead-runs": (_add_dead_runs, dead_runs_command),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subcommand per entry of `COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="python -m cancel_pipeline.cli", description=__doc__.splitlines()[0]
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add_arguments, _ in COMMANDS.values():
        add_arguments(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command][1](args)
    except Exception as exc:
        if args.verbose:
            traceback.print_exception(exc)
            # A failed run's own tracebacks, as Dagster recorded them in the run.
            if getattr(exc, "details", ""):
                print(exc.details, file=sys.stderr)  # type: ignore[attr-defined]
        # Always the last line: what a person reads first.
        print(f"error: {headline(exc)}", file=sys.stderr)
        return 2


def headline(error: BaseException) -> str:
    """One line that names what went wrong and, where the pipeline knows it, what to do about it.

    Failed runs (the root cause below Dagster's wrapper) and typed Shopify errors carry an actionable,
    secret-free message of their own; anything else is named by its class, e.g. a `SettingsError` naming
    the environment variable at fault.
    """
    message = " ".join(str(error).split())
    # RunFailed is named, not imported: importing the catch-up loads the settings, which may be the error.
    if isinstance(error, ShopifyError) or type(error).__name__ == "RunFailed":
        return message
    return f"{type(error).__name__}: {message}"


if __name__ == "__main__":
    sys.exit(main())
