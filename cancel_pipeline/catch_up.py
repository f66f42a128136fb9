"""The main job behind `make run`: catch up the last days of both raw assets and every table, through Dagster.

Runs are executed in this process but recorded in the project's Dagster instance (`DAGSTER_HOME`), so they
show in the UI afterwards like any other run. What is missing is read from the warehouse's own record of the
pages it landed (`raw_order_pages`, for the store it holds), not from Dagster's run history, which another
store's runs may share: each raw asset's days with no current page are grouped into contiguous ranges, each
range one run read whole (one query to Shopify, one transaction), and the days landed only in part (today,
or a day a tick left unfinished) are topped up by a run reading what is new since their last page. So a
first catch-up of two days is a run or two per feed, and a second one only tops up today. The feed jobs land
pages only: one run of the tables' job then derives everything they landed, once.
"""

import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from tabulate import tabulate

from cancel_pipeline.clock import utc_now
from cancel_pipeline.defs.conventions import RANGE_END_TAG, RANGE_START_TAG, READ_NEW, READ_TAG
from cancel_pipeline.defs.ingestion.partitions import CANCELED_ORDER_WINDOWS, UPDATED_ORDER_WINDOWS
from cancel_pipeline.defs.runs.dead_runs import release_pool
from cancel_pipeline.run_summary import WarehouseSummary
from cancel_pipeline.warehouse.connection import warehouse_connection
from cancel_pipeline.warehouse.raw_pages import check_store, ensure_raw_order_pages, landed_coverage

FEEDS = (
    ("canceled_order_job", "raw_canceled_order_pages", CANCELED_ORDER_WINDOWS),
    ("canceled_items_job", "raw_updated_order_pages", UPDATED_ORDER_WINDOWS),
)
"""(job, raw asset, partitions) of each feed the catch-up runs."""
TABLES_JOB = "cancellation_tables_job"
"""The job deriving the tables (then the notices) from what the feeds landed, run once after them."""


class RunFailed(RuntimeError):
    """A run of the main job failed; the message names the run, the step and the root cause in one line,
    `details` holds the full traceback."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class FeedPlan:
    """The days one raw asset's job must run: contiguous ranges read whole, and days to top up."""

    job_name: str
    asset_name: str
    ranges: list[tuple[str, str]]
    """Days with no current page in the warehouse, as (first, last) ranges, each read whole in one run."""
    top_ups: list[str] = field(default_factory=list)
    """Days landed in part (their pages stop before the day's end, or now), each read from where they stop."""

    @property
    def windows(self) -> int:
        """How many days the plan reads."""
        return len(self.top_ups) + sum(len(_days_between(first, last)) for first, last in self.ranges)

    @property
    def runs(self) -> int:
        """How many runs the plan takes."""
        return len(self.ranges) + len(self.top_ups)


@dataclass
class FeedOutcome:
    """What the runs of one feed did, from their materialization metadata."""

    job_name: str
    windows: int = 0
    runs: int = 0
    pages: int = 0
    orders: int = 0
    requests: int = 0
    retries: int = 0
    run_ids: list[str] = field(default_factory=list)


def contiguous_ranges(keys: Sequence[str], all_keys: Sequence[str]) -> list[tuple[str, str]]:
    """Group `keys` into (first, last) runs of consecutive keys of `all_keys`, in order."""
    position = {key: index for index, key in enumerate(all_keys)}
    ranges: list[tuple[str, str]] = []
    previous = None
    for key in sorted(keys, key=position.__getitem__):
        if ranges and previous is not None and position[key] == position[previous] + 1:
            ranges[-1] = (ranges[-1][0], key)
        else:
            ranges.append((key, key))
        previous = key
    return ranges


def _days_between(first: str, last: str) -> list[str]:
    start, end = datetime.fromisoformat(first), datetime.fromisoformat(last)
    return [(start + timedelta(days=n)).strftime("%Y-%m-%d") for n in range((end - start).days + 1)]


def recent_days(
    partitions_def: dg.TimeWindowPartitionsDefinition, *, now: datetime, lookback: timedelta
) -> dict[str, tuple[datetime, datetime]]:
    """Every day (key -> [start, end)) that ends after `now - lookback`, today included."""
    cutoff = now - lookback
    windows = {
        key: partitions_def.time_window_for_partition_key(key)
        for key in partitions_def.get_partition_keys(current_time=now)[-(lookback.days + 2) :]
    }
    return {key: (window.start, window.end) for key, window in windows.items() if window.end > cutoff}


def plan_feed(
    job_name: str,
    asset_name: str,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    coverage: Mapping[str, datetime | None],
    *,
    now: datetime,
    lookback: timedelta,
) -> FeedPlan:
    """The days of the last `lookback` the warehouse lacks, from `coverage` (day -> how far its current
    pages reach, as `raw_pages.landed_coverage` tells; a day not in it has none)."""
    days = recent_days(partitions_def, now=now, lookback=lookback)
    missing = [key for key in days if coverage.get(key) is None]
    top_ups = [
        key
        for key, (_, end) in days.items()
        if (covered := coverage.get(key)) is not None and covered < min(end, now)
    ]
    keys = partitions_def.get_partition_keys(current_time=now)
    return FeedPlan(job_name, asset_name, contiguous_ranges(missing, keys), top_ups)


def plan_catch_up(database: str | Path, *, store: str, now: datetime, lookback: timedelta) -> list[FeedPlan]:
    """One plan per raw feed, from what the warehouse `database` holds; it must hold `store`'s pages (or
    none yet): another store's warehouse raises `WrongStoreError` before any run starts."""
    plans = []
    with warehouse_connection(database) as con:
        ensure_raw_order_pages(con)
        check_store(con, store)
        for job, asset, partitions_def in FEEDS:
            coverage = landed_coverage(con, asset, recent_days(partitions_def, now=now, lookback=lookback))
            plans.append(plan_feed(job, asset, partitions_def, coverage, now=now, lookback=lookback))
    return plans


def run_feed(
    defs: dg.Definitions, plan: FeedPlan, instance: dg.DagsterInstance, *, log_level: str = "INFO"
) -> FeedOutcome:
    """Execute each range of `plan` as one run of its job, then each top-up, recorded in `instance`."""
    job = defs.resolve_job_def(plan.job_name)
    outcome = FeedOutcome(plan.job_name, windows=plan.windows)
    runs: list[tuple[str, str, dict[str, Any]]] = [
        (first, last, {"tags": {RANGE_START_TAG: first, RANGE_END_TAG: last}}) for first, last in plan.ranges
    ]
    runs += [(key, key, {"partition_key": key, "tags": {READ_TAG: READ_NEW}}) for key in plan.top_ups]
    for first, last, selection in runs:
        result = _execute(job, instance, log_level, **selection)
        if not result.success:
            raise RunFailed(*_failure_message(result, plan.job_name, f"({first}...{last})"))
        outcome.runs += 1
        outcome.run_ids.append(result.run_id)
        metadata = _raw_metadata(result, plan.asset_name)
        outcome.pages += metadata.get("pages", 0)
        outcome.orders += metadata.get("orders", 0)
        outcome.requests += metadata.get("requests", 0)
        outcome.retries += metadata.get("retries", 0)
    return outcome


def derive_tables(defs: dg.Definitions, instance: dg.DagsterInstance, *, log_level: str = "INFO") -> None:
    """Run the tables' job once, recorded in `instance`: every page the feeds landed is derived and the
    notices sent."""
    result = _execute(defs.resolve_job_def(TABLES_JOB), instance, log_level)
    if not result.success:
        raise RunFailed(*_failure_message(result, TABLES_JOB))


def _execute(
    job: dg.JobDefinition, instance: dg.DagsterInstance, log_level: str, **selection: Any
) -> dg.ExecuteInProcessResult:
    """One run of `job` in this process, recorded in `instance`, logging at `log_level`; a failure is
    returned, not raised, so the caller can name it."""
    return job.execute_in_process(
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        raise_on_error=False,
        **selection,
    )


def _failure_message(result: dg.ExecuteInProcessResult, job_name: str, what: str = "") -> tuple[str, str]:
    """One line naming the run, its failed step and the root cause; and the full tracebacks."""
    failures = [
        (event.step_key, event.step_failure_data.error)  # type: ignore[union-attr]
        for event in result.all_events
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error
    ]
    if not failures:
        failures = [
            (None, event.event_specific_data.error)  # type: ignore[union-attr]
            for event in result.all_events
            if event.is_pipeline_failure and getattr(event.event_specific_data, "error", None)
        ]
    detail = "; ".join(
        f"{step}: {root_cause(error)}" if step else root_cause(error) for step, error in failures
    )
    detail = detail or "see the run's logs"
    message = f"run {result.run_id} of {job_name} {what}".rstrip() + f" failed: {detail}"
    return message, "\n".join(error.to_string() for _, error in failures)


def root_cause(error: Any) -> str:
    """The error a person can act on, in one line, from Dagster's record of a failure.

    Dagster wraps what a step raised ("Error occurred while executing op ...", a `Dagster...` class); the
    first error below the wrappers is the pipeline's own (a Shopify error with its fix, the DuckDB lock
    holder, a failed COMMIT), so it is the headline.
    """
    chain = []
    while error is not None:
        chain.append(error)
        error = error.cause or error.context
    ours = [link for link in chain if not (link.cls_name or "").startswith("Dagster")]
    headline = (ours or chain)[0]
    # Python formats the message as "module.Class: text"; the class name alone reads better.
    message = re.sub(rf"^[\w.]*\b{re.escape(headline.cls_name)}: ", "", " ".join(headline.message.split()))
    return f"{headline.cls_name}: {message}"


def _raw_metadata(result: dg.ExecuteInProcessResult, asset_name: str) -> dict[str, Any]:
    # A range run records one materialization per window, each with the run's metadata: read it once.
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization  # type: ignore[union-attr]
        if materialization.asset_key == dg.AssetKey(asset_name):
            return {key: value.value for key, value in materialization.metadata.items()}
    return {}


def render_report(
    outcomes: Sequence[FeedOutcome],
    summary: WarehouseSummary,
    *,
    store: str,
    duckdb_path: str,
    elapsed_s: float,
    delivery_targets: Sequence[str] = (),
) -> str:
    """The summary a person reads at a glance when `make run` finishes; `delivery_targets` are the enabled
    downstream targets, whose deliveries it reports."""
    feed_rows = [(o.job_name, o.windows, o.runs, o.pages, o.requests, o.orders, o.retries) for o in outcomes]
    lines = [
        "",
        f"Done in {elapsed_s:.1f} s against {store}.",
        "",
        tabulate(
            feed_rows,
            headers=["job", "days", "runs", "pages", "requests", "orders fetched", "retries"],
            tablefmt="simple",
        ),
        "",
        tabulate(
            [
                ("orders", summary.orders),
                ("order versions", summary.order_versions),
                ("canceled orders", summary.canceled_orders),
                ("canceled line items", summary.canceled_line_items),
                ("line items partially canceled", summary.partially_canceled_line_items),
                ("units partially canceled", summary.partially_canceled_units),
                ("rejected order objects (distinct)", summary.rejects),
                ("order_rejects rows (one per object per page)", summary.reject_rows),
                ("orders stuck in 'created'", summary.stuck_orders),
                ("raw pages kept", summary.raw_pages),
            ],
            headers=["warehouse", "rows"],
            tablefmt="simple",
            colalign=("left", "right"),
        ),
    ]
    if summary.canceled_by_reason:
        lines += ["", tabulate(summary.canceled_by_reason, headers=["cancel reason", "orders"])]
    if summary.rejects_by_reason:
        lines += ["", tabulate(summary.rejects_by_reason, headers=["reject reason", "objects"])]
    lines += ["", *_deliveries_report(summary, delivery_targets)]
    lines += [
        "",
        f"DuckDB file: {duckdb_path}",
        "Runs are recorded in the Dagster instance: `make dev` shows them at http://127.0.0.1:3000",
    ]
    return "\n".join(lines)


def _deliveries_report(summary: WarehouseSummary, targets: Sequence[str]) -> list[str]:
    if not targets:
        return [
            "Cancellation notices: no downstream target configured, none sent "
            "(set CANCEL_PIPELINE_TARGETS to a targets file, or CANCEL_PIPELINE_DEMO_TARGET=1 for the demo target)."
        ]
    lines = [f"Cancellation notices to {', '.join(targets)}:"]
    rows = [row for row in summary.deliveries if row[0] in targets]
    lines.append(tabulate(rows, headers=["target", "outcome", "orders"]) if rows else "no deliveries yet")
    flagged = sum(count for _, outcome, count in rows if outcome in ("rejected", "gave_up"))
    if flagged:
        lines.append(
            f"{flagged} deliveries need follow-up: see the deliveries_needing_follow_up check, then run "
            "the retry_flagged_deliveries_job job"
        )
    return lines


def catch_up(lookback: timedelta, *, log_level: str = "INFO") -> str:
    """Run the main job (both feeds, every table, every check) for the last `lookback`, and report."""
    # `backfill_policy` is a beta parameter of Dagster: its warning says nothing to a user of `make run`.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    # Imported here so that planning and rendering stay importable without loading every definition.
    from cancel_pipeline.definitions import defs
    from cancel_pipeline.outbox.targets import enabled_targets
    from cancel_pipeline.run_summary import summarize
    from cancel_pipeline.settings import SETTINGS
    from cancel_pipeline.shopify.resource import ShopifyResource

    started = time.monotonic()
    resource = ShopifyResource.from_env()
    store = "the built-in demo store" if resource.uses_embedded_store else "the configured Shopify store"
    plans = plan_catch_up(
        SETTINGS.duckdb_path, store=resource.store_identity, now=utc_now(), lookback=lookback
    )
    with dg.DagsterInstance.get() as instance:
        # A run killed earlier would hold the writers' pool for ever: this run would wait on it.
        for line in release_pool(instance):
            print(line, flush=True)
        outcomes = []
        steps = len(plans) + 1
        for number, plan in enumerate(plans, start=1):
            whole = [first if first == last else f"{first}...{last}" for first, last in plan.ranges]
            print(
                f"[{number}/{steps}] {plan.job_name}: {plan.windows} days of {plan.asset_name} "
                f"in {plan.runs} run(s): "
                + ", ".join(
                    [*(f"{days} (whole)" for days in whole), *(f"{key} (new)" for key in plan.top_ups)]
                ),
                flush=True,
            )
            outcomes.append(run_feed(defs, plan, instance, log_level=log_level))
        print(
            f"[{steps}/{steps}] {TABLES_JOB}: derive the tables from the landed pages, then the notices",
            flush=True,
        )
        derive_tables(defs, instance, log_level=log_level)
    with warehouse_connection(SETTINGS.duckdb_path) as con:
        summary = summarize(con, utc_now(), SETTINGS.stuck_thresholds)
    return render_report(
        outcomes,
        summary,
        store=store,
        duckdb_path=str(Path(SETTINGS.duckdb_path).resolve()),
        elapsed_s=time.monotonic() - started,
        delivery_targets=[target.name for target in enabled_targets()],
    )
