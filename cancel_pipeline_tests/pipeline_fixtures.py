"""Shared parts of the pipeline acceptance tests: the demo store served over HTTP with the real Dagster assets
pointed at it, and the table contract's rules written again in plain Python.

The Python rules read the order JSON the store serves and say what the warehouse must hold; they share no
code with the warehouse SQL, so a test that compares the two checks the SQL against the contract.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import dagster as dg
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

from cancel_pipeline.defs.cancellations.checks import orders_stuck_in_created
from cancel_pipeline.defs.cancellations.tables import cancellation_tables
from cancel_pipeline.defs.conventions import RANGE_END_TAG, RANGE_START_TAG
from cancel_pipeline.defs.ingestion.raw_assets import raw_canceled_order_pages, raw_updated_order_pages
from cancel_pipeline.defs.refresh.assets import raw_refreshed_order_pages
from cancel_pipeline.defs.resources import WarehouseResource
from cancel_pipeline.shopify.resource import ShopifyResource
from cancel_pipeline.warehouse.connection import warehouse_connection

DEMO_TOKEN = "demo-token"
# Plus-sized pacing, so a two-day backfill pages through in a second or two.
BUCKET_SIZE = 400
LEAK_RATE = 20.0
OVERLAP = timedelta(minutes=10)
"""The default overlap: every window is read from this long before its start."""

# --- Running the assets against a served store ------------------------------------------------------------


@dataclass
class Pipeline:
    """A demo store on a frozen clock, served on 127.0.0.1, and a DuckDB warehouse the real assets write."""

    store: DemoStore
    clock: FrozenClock
    url: str
    database: Path
    instance: dg.DagsterInstance

    @property
    def resources(self) -> dict[str, Any]:
        """The run's resources: `shopify` talking HTTP to the served store, `duckdb` on the warehouse file."""
        return {
            "shopify": ShopifyResource(
                store=self.url,
                access_token=DEMO_TOKEN,
                bucket_size=BUCKET_SIZE,
                leak_rate=LEAK_RATE,
                api="rest",  # written for the REST path; GraphQL has its own tests (test_graphql_*)
            ),
            "duckdb": WarehouseResource(database=str(self.database)),
        }

    def materialize(
        self,
        assets: Sequence[Any],
        *,
        partition_key: str | None = None,
        partition_range: tuple[str, str] | None = None,
        run_config: Mapping[str, Any] | None = None,
        selection: Any = None,
    ) -> dg.ExecuteInProcessResult:
        """Run `assets` in process as one run; a range runs as a single-run backfill does (the range tags)."""
        tags = (
            {RANGE_START_TAG: partition_range[0], RANGE_END_TAG: partition_range[1]}
            if partition_range
            else None
        )
        return dg.materialize(
            list(assets),
            resources=self.resources,
            instance=self.instance,
            partition_key=partition_key,
            tags=tags,
            run_config=dict(run_config) if run_config else None,
            selection=selection,
        )

    def backfill_window_range(
        self, raw_asset: Any, first_key: str, last_key: str
    ) -> dg.ExecuteInProcessResult:
        """Backfill `raw_asset` over [first_key, last_key] with the derived tables, as one run."""
        result = self.materialize([raw_asset, cancellation_tables], partition_range=(first_key, last_key))
        assert result.success
        return result

    def refresh(self, *, order_ids: Sequence[int] = (), stuck: bool = False) -> dg.ExecuteInProcessResult:
        """`refresh_orders`: re-fetch by id (and/or the stuck orders), derive, then run the stuck check."""
        config = {"order_ids": list(order_ids), "stuck": stuck}
        return self.materialize(
            [raw_refreshed_order_pages, cancellation_tables, orders_stuck_in_created],
            run_config={"ops": {"raw_refreshed_order_pages": {"config": config}}},
        )

    def run_stuck_check(self) -> dg.ExecuteInProcessResult:
        """Evaluate `orders_stuck_in_created` alone, as the UI's "Execute check" does."""
        return self.materialize(
            [cancellation_tables, orders_stuck_in_created],
            selection=dg.AssetSelection.checks(orders_stuck_in_created),
        )

    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """Rows of a query on the warehouse, as dicts (the file is opened and closed for each query)."""
        with warehouse_connection(self.database) as con:
            cursor = con.execute(sql, list(params))
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@contextmanager
def served_pipeline(store: DemoStore, clock: FrozenClock, database: Path) -> Iterator[Pipeline]:
    """Serve `store` over HTTP for the block and yield a `Pipeline` writing `database`."""
    # Disposing the instance removes the temporary folder its runs may have written.
    with serve(store) as url, dg.DagsterInstance.ephemeral() as instance:
        yield Pipeline(store, clock, url, database, instance)


def demo_store(clock: FrozenClock, **settings: Any) -> DemoStore:
    """A demo store on `clock` (seeded defaults unless `settings` override them), Plus-sized."""
    return DemoStore(clock=clock, bucket_size=BUCKET_SIZE, leak_rate=LEAK_RATE, **settings)


CASES_NOW = "2026-03-03T03:00:00Z"
"""When the case warehouse is backfilled: three hours after its last window closed."""
CANCELED_RANGE = ("2026-03-01", "2026-03-02")
UPDATED_RANGE = ("2026-03-01", "2026-03-02")
RANGE_START = datetime.fromisoformat("2026-03-01T00:00:00+00:00")
RANGE_END = datetime.fromisoformat("2026-03-03T00:00:00+00:00")


def backfill_two_days(pipeline: Pipeline) -> list[dg.ExecuteInProcessResult]:
    """Backfill both raw assets over 2026-03-01..02 with the derived tables (one run per raw asset)."""
    return [
        pipeline.backfill_window_range(raw_canceled_order_pages, *CANCELED_RANGE),
        pipeline.backfill_window_range(raw_updated_order_pages, *UPDATED_RANGE),
    ]


def orders_read_by(store: DemoStore, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """What a status=any read of the windows [start, end) returns now: each order's JSON as served."""
    return store.orders(status="any", updated_at_min=start - OVERLAP, updated_at_max=end)


# --- The table contract, in Python ----------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """A Shopify timestamp as an aware datetime; None when absent or unparseable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def reject_reason(order: Any) -> str | None:
    """Why the contract rejects this order object (the warehouse's reason code), or None when it is typed."""
    if not isinstance(order, dict) or not _is_integer(order.get("id")):
        return "id_not_integer"
    for field in ("created_at", "updated_at"):
        if order.get(field) is None:
            return f"{field}_missing"
        if parse_time(order[field]) is None:
            return f"{field}_unparseable"
    for field in ("cancelled_at", "closed_at"):
        if order.get(field) is not None and parse_time(order[field]) is None:
            return f"{field}_unparseable"
    if order.get("total_price") is not None:
        try:
            Decimal(str(order["total_price"]))
        except InvalidOperation:
            return "total_price_unparseable"
    lines = order.get("line_items")
    if not isinstance(lines, list) or not all(
        isinstance(line, dict) and _is_integer(line.get("id")) and _is_integer(line.get("quantity"))
        for line in lines
    ):
        return "line_items_invalid"
    for refund in order.get("refunds") or []:
        if refund.get("created_at") is not None and parse_time(refund["created_at"]) is None:
            return "refund_created_at_unparseable"
    return None


def order_status(order: Mapping[str, Any]) -> str:
    """The derived lifecycle status of the `orders` table."""
    if order.get("cancelled_at") is not None:
        return "canceled"
    if order.get("fulfillment_status") == "fulfilled" or order.get("closed_at") is not None:
        return "completed"
    if order.get("fulfillment_status") == "partial":
        return "partially_fulfilled"
    return "created"


def refund_lines(order: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(refund, refund line item) pairs of the order."""
    for refund in order.get("refunds") or []:
        for line in refund.get("refund_line_items") or []:
            yield refund, line


def expected_canceled_lines(order: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """The `canceled_line_items` rows of one order version, by line item id, per the contract's rules."""
    updated_at = parse_time(order["updated_at"])
    cancelled_at = parse_time(order.get("cancelled_at"))
    rows: dict[int, dict[str, Any]] = {}
    for line in order["line_items"]:
        line_id, quantity = line["id"], line["quantity"]
        if cancelled_at is not None:
            canceled, canceled_at = quantity, cancelled_at
        else:
            cancel_refunds = [
                (refund, refund_line)
                for refund, refund_line in refund_lines(order)
                if refund_line["line_item_id"] == line_id and refund_line["restock_type"] == "cancel"
            ]
            refunded = sum(
                refund_line["quantity"]
                for _, refund_line in refund_lines(order)
                if refund_line["line_item_id"] == line_id
            )
            canceled = sum(refund_line["quantity"] for _, refund_line in cancel_refunds)
            if line.get("current_quantity") is not None:
                canceled += max(0, quantity - line["current_quantity"] - refunded)
            refund_times = [parse_time(refund["created_at"]) for refund, _ in cancel_refunds]
            canceled_at = max((t for t in refund_times if t is not None), default=updated_at)
        if cancelled_at is not None or canceled > 0:
            rows[line_id] = {
                "order_id": order["id"],
                "line_item_id": line_id,
                "sku": line.get("sku"),
                "title": line.get("title"),
                "variant_id": line.get("variant_id"),
                "product_id": line.get("product_id"),
                "quantity": quantity,
                "canceled_quantity": canceled,
                "canceled_at": canceled_at,
                "order_canceled": cancelled_at is not None,
                "updated_at": updated_at,
            }
    return rows


def expected_canceled_order(order: Mapping[str, Any]) -> dict[str, Any]:
    """The `canceled_orders` row of a canceled order version."""
    return {
        "order_id": order["id"],
        "order_name": order.get("name"),
        "cancelled_at": parse_time(order["cancelled_at"]),
        "cancel_reason": order.get("cancel_reason"),
        "financial_status": order.get("financial_status"),
        "fulfillment_status": order.get("fulfillment_status"),
        "source_name": order.get("source_name"),
        "currency": order.get("currency"),
        "total_price": Decimal(order["total_price"]),
        "created_at": parse_time(order["created_at"]),
        "updated_at": parse_time(order["updated_at"]),
        "test": bool(order.get("test")),
    }


def expected_order_row(order: Mapping[str, Any]) -> dict[str, Any]:
    """The `orders` row of an order version, without `last_fetched_at` (a fetch time, not order data)."""
    return {
        "order_id": order["id"],
        "order_name": order.get("name"),
        "created_at": parse_time(order["created_at"]),
        "updated_at": parse_time(order["updated_at"]),
        "source_name": order.get("source_name"),
        "financial_status": order.get("financial_status"),
        "fulfillment_status": order.get("fulfillment_status"),
        "cancelled_at": parse_time(order.get("cancelled_at")),
        "closed_at": parse_time(order.get("closed_at")),
        "status": order_status(order),
        "test": bool(order.get("test")),
    }


STUCK_THRESHOLDS = {
    "pos": timedelta(hours=1),
    "web": timedelta(hours=24),
    "shopify_draft_order": timedelta(hours=48),
}
OTHER_SOURCE_THRESHOLD = timedelta(hours=24)


def is_stuck(order: Mapping[str, Any], now: datetime) -> bool:
    """The contract's "stuck in created": status created, not a test order, older than its source's threshold."""
    threshold = STUCK_THRESHOLDS.get(order.get("source_name") or "", OTHER_SOURCE_THRESHOLD)
    created_at = parse_time(order["created_at"])
    assert created_at is not None
    return order_status(order) == "created" and not order.get("test") and now - created_at > threshold
