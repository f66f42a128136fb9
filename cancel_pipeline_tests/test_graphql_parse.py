"""The typed parse reads GraphQL pages into exactly the rows it reads from the same orders over REST."""

from __future__ import annotations

import json
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cancel_pipeline.shopify.client import ShopifyClient
from cancel_pipeline.shopify.pages import OrderPage
from cancel_pipeline.warehouse.derive import derive_new_pages
from cancel_pipeline.warehouse.graphql_orders import BULK_OBJECTS_SELECT
from cancel_pipeline.warehouse.raw_pages import land_page, reparse_landed_pages
from cancel_pipeline.warehouse.schema import ensure_schema
from cancel_pipeline_tests.graphql_builders import bulk_lines, graphql_node, graphql_page
from cancel_pipeline_tests.order_builders import line_item, order, refund, table_rows, utc

T0 = utc(2026, 3, 3, 10)
# Where a row came from differs by design; the verbatim object of a reject is in its API's spelling.
_SOURCE_COLUMNS = {"page_seq", "raw_order", "detail"}
_DERIVED = ("order_versions", "order_rejects", "canceled_orders", "canceled_line_items", "orders")


def _page(body: bytes, count: int, api: str, operation: str = "orders", number: int = 1) -> OrderPage:
    return OrderPage(
        page_number=number,
        request_path="/admin/api/2026-07/orders",
        api_version="2026-07",
        fetched_at=utc(2026, 3, 4),
        body=body,
        order_count=count,
        api=api,
        operation=operation,
    )


def _land(
    con: duckdb.DuckDBPyConnection,
    orders: list[dict[str, Any]],
    api: str,
    operation: str = "orders",
    *,
    number: int = 1,
) -> None:
    ensure_schema(con)
    if api == "rest":
        body = json.dumps({"orders": orders}).encode()
    elif operation == "bulk":
        body = b"".join(bulk_lines(orders, inline_refund_lines=len(orders) % 2 == 1))
    else:
        body = graphql_page(orders, operation=operation)
    land_page(
        con,
        _page(body, len(orders), api, operation, number),
        asset="raw_updated_order_pages",
        partition_key="k",
        store="demo",
    )


def _objects(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = table_rows(con, "select * from raw_order_objects order by position")
    return sorted(repr({k: v for k, v in row.items() if k not in _SOURCE_COLUMNS}) for row in rows)


def _derived(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    derive_new_pages(con)
    tables = {}
    for table in _DERIVED:
        rows = table_rows(con, f"select * from {table}")
        tables[table] = sorted(
            repr({k: v for k, v in row.items() if k not in _SOURCE_COLUMNS}) for row in rows
        )
    return tables


RESTOCK = st.sampled_from(["cancel", "return", "no_restock", "legacy_restock"])


@st.composite
def rest_orders(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A page of REST orders: cancellations, refunds, edits, many line items, and a few malformed ones. Ids
    come from a small pool, so across pages an order shows up in several versions (a history)."""
    orders = []
    # Unique within a page, as in any answer (a bulk result lists each order once).
    for index in draw(st.lists(st.integers(0, 5), unique=True, max_size=5)):
        order_id = 5_000_000_000 + index
        line_count = draw(st.integers(0, 24))
        lines = []
        for n in range(line_count):
            quantity = draw(st.integers(1, 4))
            lines.append(
                line_item(order_id * 100 + n, quantity, current_quantity=draw(st.integers(0, quantity)))
            )
        refunds = []
        if lines:
            for r in range(draw(st.integers(0, 7))):
                refund_lines = [
                    (lines[i % len(lines)]["id"], 1, draw(RESTOCK)) for i in range(draw(st.integers(0, 13)))
                ]
                refunds.append(refund(order_id * 10 + r, T0 + timedelta(minutes=r), refund_lines))
        cancelled = draw(st.booleans())
        payload = order(
            order_id,
            T0 + timedelta(minutes=draw(st.integers(0, 90))),
            line_items=lines,
            refunds=refunds,
            cancelled_at=T0 if cancelled else None,
            cancel_reason=draw(
                st.sampled_from(["customer", "fraud", "inventory", "declined", "other", "staff"])
            )
            if cancelled
            else None,
            financial_status=draw(
                st.sampled_from(["paid", "refunded", "partially_refunded", "voided", "pending"])
            ),
            fulfillment_status=draw(st.sampled_from([None, "partial", "fulfilled"])),
            source_name=draw(st.sampled_from(["web", "pos", "shopify_draft_order"])),
            test=draw(st.booleans()),
            total_price=draw(st.sampled_from(["50.00", "0.00", "1234.56", "oops"])),
        )
        payload["tags"] = draw(st.sampled_from(["", "vip", "vip, wholesale"]))
        if draw(st.integers(0, 9)) == 0:
            payload["created_at"] = "yesterday"  # a reject in both spellings
        orders.append(payload)
    return orders


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(rest_orders(), min_size=1, max_size=3))
def test_a_history_read_through_rest_graphql_and_bulk_gives_the_same_tables(
    history: list[list[dict[str, Any]]],
) -> None:
    """Pages landed one after another (each order possibly in several versions) type and derive alike."""
    with tempfile.TemporaryDirectory(prefix="gql-parse-") as folder:
        connections = {
            name: duckdb.connect(str(Path(folder) / f"{name}.duckdb")) for name in ("rest", "gql", "bulk")
        }
        for number, orders in enumerate(history, 1):
            _land(connections["rest"], orders, "rest", number=number)
            _land(connections["gql"], orders, "graphql", number=number)
            _land(connections["bulk"], orders, "graphql", "bulk", number=number)
        expected_objects, expected_tables = _objects(connections["rest"]), _derived(connections["rest"])
        for name in ("gql", "bulk"):
            assert _objects(connections[name]) == expected_objects, name
            assert _derived(connections[name]) == expected_tables, name
        for connection in connections.values():
            connection.close()


def test_nested_lists_are_completed_for_an_order_with_300_line_items(con: duckdb.DuckDBPyConnection) -> None:
    lines = [line_item(7_000_000 + n, 2) for n in range(300)]
    refunds = [
        refund(90 + r, T0, [(lines[r * 20 + k]["id"], 1, "cancel") for k in range(15)]) for r in range(6)
    ]
    _land(con, [order(77, T0, line_items=lines, refunds=refunds)], "graphql")
    [row] = table_rows(con, "select reason, line_items, refunds from raw_order_objects")
    assert row["reason"] is None
    assert [li["id"] for li in row["line_items"]] == [li["id"] for li in lines]
    assert [len(r["refund_line_items"]) for r in row["refunds"]] == [15] * 6
    assert row["refunds"][5]["refund_line_items"][14] == {
        "line_item_id": lines[114]["id"],
        "quantity": 1,
        "restock_type": "cancel",
    }


def test_enums_gids_money_and_times_are_typed_as_rest_spells_them(con: duckdb.DuckDBPyConnection) -> None:
    cancelled = order(
        42,
        T0,
        cancelled_at=T0,
        cancel_reason="fraud",
        financial_status="partially_refunded",
        fulfillment_status="partial",
        total_price="19.90",
        refunds=[refund(5, T0, [(421, 1, "no_restock")])],
    )
    _land(con, [cancelled], "graphql")
    [row] = table_rows(con, "select * from raw_order_objects")
    assert (row["order_id"], row["cancel_reason"], row["financial_status"], row["fulfillment_status"]) == (
        42,
        "fraud",
        "partially_refunded",
        "partial",
    )
    assert str(row["total_price"]) == "19.90"
    assert row["cancelled_at"] == T0
    assert row["refunds"][0]["refund_line_items"][0]["restock_type"] == "no_restock"
    assert row["line_items"][0]["variant_id"] == 421 + 100_000


def test_a_node_the_contract_cannot_type_is_a_reject_kept_verbatim(con: duckdb.DuckDBPyConnection) -> None:
    good = order(1, T0)
    bad = order(2, T0)
    ensure_schema(con)
    page = json.loads(graphql_page([good, bad]))
    page["response"]["data"]["orders"]["nodes"][1]["id"] = "gid://shopify/DraftOrder/2"
    land_page(
        con,
        _page(json.dumps(page).encode(), 2, "graphql"),
        asset="raw_updated_order_pages",
        partition_key="k",
        store="demo",
    )
    rows = table_rows(
        con, "select position, reason, detail, raw_order from raw_order_objects order by position"
    )
    assert [(r["position"], r["reason"]) for r in rows] == [(1, None), (2, "id_not_integer")]
    assert rows[1]["detail"] == 'id="gid://shopify/DraftOrder/2"'
    assert json.loads(rows[1]["raw_order"])["id"] == "gid://shopify/DraftOrder/2"


def test_nodes_answers_skip_ids_not_found_and_reparse_keeps_the_shape(con: duckdb.DuckDBPyConnection) -> None:
    ensure_schema(con)
    page = json.loads(graphql_page([order(1, T0), order(3, T0)], operation="nodes"))
    page["response"]["data"]["nodes"].insert(1, None)
    land_page(
        con,
        _page(json.dumps(page).encode(), 2, "graphql", "nodes"),
        asset="refresh",
        partition_key="r",
        store="demo",
    )
    before = table_rows(con, "select position, order_id from raw_order_objects order by position")
    assert before == [{"position": 1, "order_id": 1}, {"position": 3, "order_id": 3}]
    assert table_rows(con, "select api, operation from raw_order_pages") == [
        {"api": "graphql", "operation": "nodes"}
    ]
    reparse_landed_pages(con)
    assert table_rows(con, "select position, order_id from raw_order_objects order by position") == before


def test_graphql_node_builder_matches_the_fact_sheet_shape() -> None:
    node = graphql_node(order(9, T0, cancelled_at=T0))
    assert node["id"] == "gid://shopify/Order/9"
    assert node["cancelReason"] == "CUSTOMER"
    assert node["updatedAt"].endswith("Z")


def test_a_bulk_order_the_contract_cannot_type_is_a_reject_with_its_line(
    con: duckdb.DuckDBPyConnection,
) -> None:
    ensure_schema(con)
    lines = bulk_lines([order(1, T0), order(2, T0, line_items=[line_item(21, 1), line_item(22, 1)])])
    bad = json.loads(lines[2])
    bad["totalPriceSet"]["shopMoney"]["amount"] = "a lot"
    lines[2] = json.dumps(bad).encode() + b"\n"
    body = b"".join(lines)
    land_page(
        con,
        _page(body, 2, "graphql", "bulk"),
        asset="raw_updated_order_pages",
        partition_key="k",
        store="demo",
    )
    rows = table_rows(
        con, "select position, order_id, reason, raw_order, line_items from raw_order_objects order by 1"
    )
    assert [(r["position"], r["order_id"], r["reason"]) for r in rows] == [
        (1, 1, None),
        (2, 2, "total_price_unparseable"),
    ]
    assert json.loads(rows[1]["raw_order"])["totalPriceSet"]["shopMoney"]["amount"] == "a lot"
    assert [li["id"] for li in rows[1]["line_items"]] == [21, 22]


def test_the_demo_stores_history_types_the_same_through_rest_graphql_and_bulk(
    demo_store_server, tmp_path
) -> None:
    """Two days of the demo store's history, malformed orders included, read over REST (real HTTP), then
    spelled as GraphQL pages and as bulk JSONL per the fact sheet: identical typed rows and tables."""
    end = demo_store_server.clock()
    with ShopifyClient(demo_store_server.url, access_token=demo_store_server.token, leak_rate=40) as client:
        pages = list(client.iter_order_pages(updated_at_min=end - timedelta(days=2), updated_at_max=end))
    orders = [o for page in pages for o in page.orders()]
    assert len(orders) > 200
    results = {}
    for name in ("rest", "graphql", "bulk"):
        con = duckdb.connect(str(tmp_path / f"{name}.duckdb"))
        ensure_schema(con)
        for number, page in enumerate(pages, 1):
            chunk = page.orders()
            if name == "rest":
                body = page.body
            elif name == "graphql":
                body = graphql_page(chunk)
            else:
                body = b"".join(bulk_lines(chunk, inline_refund_lines=number % 2 == 0))
            api, operation = (
                ("rest", "orders") if name == "rest" else ("graphql", "bulk" if name == "bulk" else "orders")
            )
            land_page(
                con,
                _page(body, len(chunk), api, operation, number),
                asset="raw_updated_order_pages",
                partition_key="k",
                store="demo",
            )
        results[name] = (_objects(con), _derived(con))
        con.close()
    rejects = sum("'reason': None" not in row for row in results["rest"][0])
    assert rejects > 0  # the history has malformed orders, and they are rejected the same way
    assert results["graphql"] == results["rest"]
    assert results["bulk"] == results["rest"]


def test_bulk_refund_lines_under_the_order_instead_of_a_refund_are_a_reject(
    con: duckdb.DuckDBPyConnection,
) -> None:
    ensure_schema(con)
    lines = bulk_lines([order(3, T0, refunds=[refund(8, T0, [(31, 1, "cancel")])])])
    stray = json.loads(lines[-1])  # the refund line, under its refund
    stray["__parentId"] = "gid://shopify/Order/3"
    lines[-1] = json.dumps(stray).encode() + b"\n"
    land_page(
        con,
        _page(b"".join(lines), 1, "graphql", "bulk"),
        asset="raw_updated_order_pages",
        partition_key="k",
        store="demo",
    )
    [row] = table_rows(con, "select order_id, reason, detail from raw_order_objects")
    assert (row["order_id"], row["reason"]) == (3, "refunds_invalid")
    assert "not a refund" in row["detail"]


def test_each_bulk_line_is_parsed_once_however_many_parts_of_the_query_read_it(tmp_path: Path) -> None:
    # Inlined, the parse was repeated in every filter and join that reads a line (14 times in the plan),
    # which halved the landing rate of a bulk result.
    chunk = tmp_path / "chunk.jsonl"
    chunk.write_bytes(b"".join(bulk_lines([order(1, utc(2024, 3, 1, 10), line_items=[line_item(11, 2)])])))
    con = duckdb.connect()
    plan = "".join(
        row[1]
        for row in con.execute(
            "explain " + BULK_OBJECTS_SELECT, {"files": [str(chunk)], "seqs": [1]}
        ).fetchall()
    )
    assert plan.count("json_transform(line") <= 1
    rows = con.execute(
        f"select order_id, reason from ({BULK_OBJECTS_SELECT})", {"files": [str(chunk)], "seqs": [1]}
    ).fetchall()
    assert rows == [(1, None)]
