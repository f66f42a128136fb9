"""`ShopifyGraphQLClient` against a fact-sheet GraphQL endpoint (MockTransport): paging, nested completion,
cost pacing, splitting, retries and errors."""

from __future__ import annotations

import itertools
import json
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest

from cancel_pipeline.shopify.bulk import BulkOperationFailed, BulkSettings
from cancel_pipeline.shopify.bulk_slices import MIN_SLICE, slice_bounds
from cancel_pipeline.shopify.errors import ShopifyRequestFailed
from cancel_pipeline.shopify.graphql import ShopifyGraphQLClient, ShopifyGraphQLError
from cancel_pipeline.shopify.retry import RetryPolicy
from cancel_pipeline.warehouse.raw_pages import land_pages
from cancel_pipeline_tests.graphql_builders import graphql_node
from cancel_pipeline_tests.graphql_responder import TOKEN, FakeClock, GraphQLShop, graphql_error
from cancel_pipeline_tests.order_builders import (
    line_item,
    open_test_warehouse,
    order,
    refund,
    table_rows,
    utc,
)

T0 = utc(2026, 3, 3)


def _orders(count: int, *, cancelled_every: int = 3) -> list[dict[str, Any]]:
    return [
        order(
            1000 + n,
            T0 + timedelta(seconds=30 * n),
            cancelled_at=T0 if n % cancelled_every == 0 else None,
        )
        for n in range(count)
    ]


def _client(shop: GraphQLShop, **kwargs: Any) -> ShopifyGraphQLClient:
    return ShopifyGraphQLClient(
        "unit-shop",
        access_token=TOKEN,
        transport=shop.transport(),
        sleep=shop.clock.sleep,
        clock=shop.clock,
        retry_policy=kwargs.pop("retry_policy", RetryPolicy(max_retries=3)),
        **kwargs,
    )


def _ids(pages: list) -> list[int]:
    return [int(node["id"].rsplit("/", 1)[1]) for page in pages for node in _nodes(page)]


def _nodes(page: Any) -> list[dict]:
    data = json.loads(page.body)["response"]["data"]
    return [n for n in (data["orders"]["nodes"] if "orders" in data else data["nodes"]) if n]


def test_pages_cover_the_window_in_updated_at_order_and_grow_once_the_cost_is_known() -> None:
    shop = GraphQLShop(_orders(300))
    with _client(shop) as client:
        pages = list(
            client.iter_order_pages(
                status="any", updated_at_min=T0, updated_at_max=T0 + timedelta(seconds=30 * 199)
            )
        )
    assert _ids(pages) == [1000 + n for n in range(200)]
    assert [p.page_number for p in pages] == list(range(1, len(pages) + 1))
    assert all((p.api, p.operation) == ("graphql", "orders") for p in pages)
    assert sum(p.order_count for p in pages) == 200
    # The first page is sized by the client's estimate; later ones by the server's requestedQueryCost.
    assert shop.firsts[0] < shop.firsts[1] == 49
    assert "updated_at:>='2026-03-03T00:00:00Z'" in pages[0].request_path


def test_the_cancellation_feed_asks_for_cancelled_orders_only() -> None:
    shop = GraphQLShop(_orders(30))
    with _client(shop) as client:
        pages = list(
            client.iter_order_pages(
                status="cancelled", updated_at_min=T0, updated_at_max=T0 + timedelta(hours=1)
            )
        )
        count = client.count_orders(status="cancelled", updated_at_min=T0)
    assert _ids(pages) == [1000 + n for n in range(0, 30, 3)]
    assert count == 10


def test_a_query_over_the_cost_limit_is_split_not_failed() -> None:
    shop = GraphQLShop(_orders(40), order_cost=300)
    with _client(shop) as client:
        pages = list(client.iter_order_pages())
    assert _ids(pages) == [1000 + n for n in range(40)]
    assert max(shop.firsts) * 300 + 2 <= 1000
    assert client.stats.requests == len(pages) + 1  # the one refused size


def test_steady_state_paging_is_paced_below_throttling() -> None:
    # A small bucket: 400 points refilling 50/s, 20 points an order, 49 orders a page (~990 points).
    shop = GraphQLShop(_orders(600), bucket_size=1000, restore_rate=50, actual_share=1.0)
    with _client(shop, bucket_points=1000, restore_rate=50) as client:
        pages = list(client.iter_order_pages())
    assert sum(p.order_count for p in pages) == 600
    assert shop.throttled == 0
    assert client.stats.rate_limit_wait_s > 0
    assert shop.clock.slept >= (600 * 20 - 1000) / 50 * 0.9  # about what the bucket needs, not more retries


def test_throttled_5xx_truncated_and_dropped_answers_are_retried() -> None:
    shop = GraphQLShop(_orders(5))

    def dropped() -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed connection")

    shop.faults = [
        graphql_error("Throttled", "THROTTLED"),
        lambda: httpx.Response(503, text="unavailable"),
        lambda: httpx.Response(200, content=b'{"data": {"orders": {"nodes": [{"id"'),
        dropped,
        lambda: httpx.Response(429, headers={"Retry-After": "2.0"}, json={"errors": "Throttled"}),
    ]
    with _client(shop) as client:
        pages = list(client.iter_order_pages())
    assert _ids(pages) == [1000 + n for n in range(5)]
    assert client.stats.retries == 5
    assert client.stats.throttled_429 == 2


def test_failures_beyond_the_policy_fail_naming_the_store_and_operation() -> None:
    shop = GraphQLShop(_orders(1))
    shop.faults = [lambda: httpx.Response(502, text="bad gateway")] * 10
    with _client(shop) as client, pytest.raises(ShopifyRequestFailed) as raised:
        list(client.iter_order_pages())
    assert "GraphQL orders on store unit-shop.myshopify.com" in str(raised.value)
    assert "4 attempts" in str(raised.value)


@pytest.mark.parametrize(
    ("message", "code", "fix"),
    [
        (
            "Field 'displayFulfillmentStatus' doesn't exist on type 'Order'",
            "undefinedField",
            "SHOPIFY_API_VERSION",
        ),
        (
            "Access denied for orders field. Required access: `read_orders` access scope.",
            "ACCESS_DENIED",
            "read_all_orders",
        ),
    ],
)
def test_graphql_errors_fail_with_the_fix(message: str, code: str, fix: str) -> None:
    shop = GraphQLShop(_orders(1))
    shop.faults = [graphql_error(f"{message} token {TOKEN}", code)]
    with _client(shop) as client, pytest.raises(ShopifyGraphQLError) as raised:
        list(client.iter_order_pages())
    text = str(raised.value)
    assert "store unit-shop.myshopify.com" in text and "GraphQL orders" in text and fix in text
    assert TOKEN not in text
    assert raised.value.code == code


def test_an_order_with_300_line_items_and_long_refunds_lands_whole(con) -> None:
    lines = [line_item(7_000_000 + n, 2) for n in range(300)]
    refunds = [
        refund(90 + r, T0, [(lines[r * 20 + k]["id"], 1, "cancel") for k in range(15)]) for r in range(6)
    ]
    shop = GraphQLShop([order(77, T0, line_items=lines, refunds=refunds), *_orders(3)])
    with _client(shop) as client:
        pages = list(client.iter_order_pages())
        landed = land_pages(
            con,
            asset="raw_updated_order_pages",
            partition_key="k",
            window_start=None,
            window_end=None,
            requested_min=None,
            requested_max=None,
            pages=pages,
            store="demo",
        )
    assert landed.orders == 4
    assert shop.operations.count("OrderLineItems") == 2  # 290 further lines: 250 + 40
    assert shop.operations.count("OrderRefunds") == 1
    assert shop.operations.count("RefundLineItems") == 6
    [row] = table_rows(con, "select line_items, refunds from raw_order_objects where order_id = 77")
    assert [li["id"] for li in row["line_items"]] == [li["id"] for li in lines]
    assert [len(r["refund_line_items"]) for r in row["refunds"]] == [15] * 6


def test_get_orders_reads_by_global_ids_and_skips_unknown_ones(con) -> None:
    shop = GraphQLShop(_orders(120), order_cost=15)
    with _client(shop) as client:
        pages = list(client.get_orders([1005, 99, 1100, *range(1000, 1100)]))
    assert all(p.operation == "nodes" for p in pages)
    assert len(pages) > 1  # batched under the cost limit
    assert sorted(set(_ids(pages))) == list(range(1000, 1101))


def test_a_refused_token_fails_with_the_setting_to_check() -> None:
    shop = GraphQLShop(_orders(1))
    client = ShopifyGraphQLClient(
        "unit-shop", access_token="wrong", transport=shop.transport(), sleep=FakeClock().sleep
    )
    with client, pytest.raises(Exception, match="SHOPIFY_ACCESS_TOKEN"):
        client.count_orders()


# -- bulk operations --------------------------------------------------------------------------------------

DAYS = timedelta(days=5)


def _bulk_orders() -> list[dict[str, Any]]:
    lines = [line_item(7_000_000 + n, 2) for n in range(30)]
    many = order(
        77, T0 + timedelta(hours=1), line_items=lines, refunds=[refund(9, T0, [(7_000_003, 2, "cancel")])]
    )
    return [
        many,
        *(
            order(1000 + n, T0 + timedelta(hours=n), cancelled_at=T0 if n % 4 == 0 else None)
            for n in range(100)
        ),
    ]


def _bulk_client(shop: GraphQLShop, **settings: Any) -> ShopifyGraphQLClient:
    """One bulk operation per range unless `bulk_concurrency` is given (the slice tests below)."""
    return _client(
        shop,
        bulk_threshold=timedelta(days=2),
        bulk_concurrency=settings.pop("bulk_concurrency", 1),
        bulk_settings=BulkSettings(chunk_bytes=settings.pop("chunk_bytes", 4096), **settings),
    )


def _typed(con, pages: list) -> list[dict]:
    land_pages(
        con,
        asset="raw_updated_order_pages",
        partition_key="k",
        window_start=None,
        window_end=None,
        requested_min=None,
        requested_max=None,
        pages=pages,
        store="demo",
    )
    return table_rows(
        con, "select order_id, reason, line_items, refunds from raw_order_objects order by order_id"
    )


def test_a_long_range_is_read_by_one_bulk_operation_in_chunks_of_whole_orders(con, caplog) -> None:
    shop = GraphQLShop(_bulk_orders())
    caplog.set_level("INFO", logger="cancel_pipeline.shopify")
    with _bulk_client(shop) as client:
        pages = list(client.iter_order_pages(updated_at_min=T0, updated_at_max=T0 + DAYS))
    assert shop.operations[0] == "BulkOrders" and "Orders" not in shop.operations
    assert len(pages) > 3 and all((p.api, p.operation) == ("graphql", "bulk") for p in pages)
    assert sum(p.order_count for p in pages) == 101
    for page in pages:  # every chunk starts with an order's line
        assert b"__parentId" not in page.body.split(b"\n", 1)[0]
    rows = _typed(con, pages)
    assert [r["order_id"] for r in rows] == [77, *range(1000, 1100)]
    assert all(r["reason"] is None for r in rows)
    assert len(rows[0]["line_items"]) == 30
    assert rows[0]["refunds"][0]["refund_line_items"] == [
        {"line_item_id": 7_000_003, "quantity": 2, "restock_type": "cancel"}
    ]
    progress = [r.getMessage() for r in caplog.records if "objects" in r.getMessage()]
    assert progress and "COMPLETED" in progress[-1]


def test_bulk_and_paged_reads_of_the_same_range_type_identically(tmp_path) -> None:
    results = []
    for name, threshold in (("paged", None), ("bulk", timedelta(days=1))):
        shop = GraphQLShop(_bulk_orders(), bulk_inline_refund_lines=name == "bulk")
        with _client(shop, bulk_threshold=threshold, bulk_settings=BulkSettings(chunk_bytes=2048)) as client:
            pages = list(client.iter_order_pages(status="any", updated_at_min=T0, updated_at_max=T0 + DAYS))
        con = open_test_warehouse(str(tmp_path / f"{name}.duckdb"))
        results.append(_typed(con, pages))
        con.close()
    assert results[0] == results[1]


@pytest.mark.parametrize("chunk_bytes", [1, 700, 4096, 50_000])
def test_bulk_chunks_are_cut_before_the_first_order_line_past_the_chunk_size(chunk_bytes: int) -> None:
    with _bulk_client(GraphQLShop(_bulk_orders()), chunk_bytes=10**9) as client:
        [whole] = list(client.iter_order_pages(updated_at_min=T0, updated_at_max=T0 + DAYS))
    expected: list[tuple[bytes, int]] = []
    body, orders = b"", 0
    for line in whole.body.splitlines(keepends=True):  # the rule, line by line
        is_order = b'"__parentId"' not in line
        if is_order and len(body) >= chunk_bytes:
            expected.append((body, orders))
            body, orders = b"", 0
        body, orders = body + line, orders + is_order
    expected.append((body, orders))
    with _bulk_client(GraphQLShop(_bulk_orders()), chunk_bytes=chunk_bytes) as client:
        pages = list(client.iter_order_pages(updated_at_min=T0, updated_at_max=T0 + DAYS))
    assert [(p.body, p.order_count) for p in pages] == expected
    assert whole.order_count == 101 and len(pages) == len(expected) > (1 if chunk_bytes < 50_000 else 0)


def test_a_running_bulk_operation_is_polled_a_tenth_of_its_age_apart() -> None:
    # Doubling the wait would see an operation that ends just after a poll up to its whole age late.
    shop = GraphQLShop(_bulk_orders(), bulk_polls=40)
    pauses: list[float] = []
    sleep = shop.clock.sleep
    shop.clock.sleep = lambda seconds: (pauses.append(seconds), sleep(seconds))[1]  # type: ignore[method-assign]
    with _bulk_client(shop, poll_initial_s=1, poll_max_s=30) as client:
        pages = list(client.iter_order_pages(updated_at_min=T0, updated_at_max=T0 + DAYS))
    assert sum(p.order_count for p in pages) == 101
    assert len(pauses) == 40 and pauses[:10] == [1.0] * 10
    for number, pause in enumerate(pauses):
        assert pause == pytest.approx(min(30.0, max(1.0, sum(pauses[:number]) / 10)))
    assert 1.0 < pauses[-1] < 30.0


@pytest.mark.parametrize("concurrency", [1, 5])
def test_a_busy_bulk_slot_is_waited_for_then_paged_instead(caplog, concurrency: int) -> None:
    shop = GraphQLShop(_bulk_orders(), bulk_busy=100)
    with _bulk_client(shop, wait_for_slot_s=20, poll_initial_s=4, bulk_concurrency=concurrency) as client:
        pages = list(client.iter_order_pages(updated_at_min=T0, updated_at_max=T0 + DAYS))
    assert {p.operation for p in pages} == {"orders"}
    assert sum(p.order_count for p in pages) == 101
    assert shop.operations.count("BulkOrders") == 4  # waited 4 + 8 + 16 s, then gave up
    assert any("paging instead" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("concurrency", [1, 5])
def test_a_slot_freed_in_time_is_used(concurrency: int) -> None:
    shop = GraphQLShop(_bulk_orders(), bulk_busy=2)
    with _bulk_client(shop, bulk_concurrency=concurrency) as client:
        pages = list(client.iter_order_pages(updated_at_min=T0, updated_at_max=T0 + DAYS))
    assert {p.operation for p in pages} == {"bulk"} and len(shop.bulk) == concurrency
    assert sum(p.order_count for p in pages) == 101


@pytest.mark.parametrize("end", ["FAILED", "CANCELED", "EXPIRED"])
def test_an_operation_that_does_not_complete_lands_nothing_and_says_why(end: str) -> None:
    shop = GraphQLShop(_bulk_orders(), bulk_end=end)
    with _bulk_client(shop) as client, pytest.raises(BulkOperationFailed) as raised:
        list(client.iter_order_pages(updated_at_min=T0, updated_at_max=T0 + DAYS))
    text = str(raised.value)
    assert f"ended {end}" in text and "nothing was landed" in text and "unit-shop" in text
    if end == "FAILED":
        assert "INTERNAL_SERVER_ERROR" in text and "partial data" in text
    assert shop.downloads == []
    assert "CancelBulkOperation" not in shop.operations  # it already ended: nothing to cancel


@pytest.mark.parametrize(
    ("faults", "downloads"),
    [
        (["cut"], 2),  # resumed with Range from the last whole line
        (["cut", "cut"], 3),
        (["cut", "no-range"], 2),  # the server ignores Range: restarted, the bytes already read skipped
        (["expired"], 2),  # a fresh URL from the operation
    ],
)
def test_a_cut_download_or_an_expired_url_still_gives_every_order(
    con, faults: list[str], downloads: int
) -> None:
    shop = GraphQLShop(_bulk_orders())
    shop.download_faults = list(faults)
    with _bulk_client(shop) as client:
        pages = list(client.iter_order_pages(updated_at_min=T0, updated_at_max=T0 + DAYS))
    assert len(shop.downloads) == downloads
    rows = _typed(con, pages)
    assert [r["order_id"] for r in rows] == [77, *range(1000, 1100)]
    assert len(rows[0]["line_items"]) == 30


def test_a_download_that_keeps_failing_names_the_operation() -> None:
    shop = GraphQLShop(_bulk_orders())
    shop.download_faults = ["cut"] * 10
    with (
        _bulk_client(shop, download_attempts=3) as client,
        pytest.raises(BulkOperationFailed, match="BulkOperation/100"),
    ):
        list(client.iter_order_pages(updated_at_min=T0, updated_at_max=T0 + DAYS))


@pytest.mark.parametrize("concurrency", [1, 5])
def test_a_run_stopped_while_the_operation_runs_cancels_it(concurrency: int) -> None:
    shop = GraphQLShop(_bulk_orders(), bulk_polls=50)

    class Terminated(BaseException):
        """What Dagster raises in a step when its run is terminated."""

    polls = 0

    def sleep(seconds: float) -> None:
        nonlocal polls
        polls += 1
        if polls == 3:
            raise Terminated()
        shop.clock.sleep(seconds)

    client = ShopifyGraphQLClient(
        "unit-shop",
        access_token=TOKEN,
        transport=shop.transport(),
        sleep=sleep,
        clock=shop.clock,
        bulk_threshold=timedelta(days=1),
        bulk_concurrency=concurrency,
    )
    with client, pytest.raises(Terminated):
        list(client.iter_order_pages(updated_at_min=T0, updated_at_max=T0 + DAYS))
    assert shop.operations[-concurrency:] == ["CancelBulkOperation"] * concurrency
    assert [op["status"] for op in shop.bulk.values()] == ["CANCELED"] * concurrency


def _bulk_roots(pages: list) -> list[dict]:
    """The order lines of bulk pages (JSONL), and the orders of paged ones, in read order."""
    roots = []
    for page in pages:
        if page.operation == "bulk":
            lines = [json.loads(line) for line in page.body.splitlines()]
            roots += [line for line in lines if "__parentId" not in line]
        else:
            roots += _nodes(page)
    return roots


def test_a_range_is_cut_into_contiguous_slices_started_at_once_and_yielded_in_order(caplog) -> None:
    shop = GraphQLShop(_bulk_orders())
    caplog.set_level("INFO", logger="cancel_pipeline.shopify")
    with _bulk_client(shop, bulk_concurrency=5, chunk_bytes=2048) as client:
        pages = list(client.iter_order_pages(updated_at_min=T0, updated_at_max=T0 + DAYS))
    # Five operations, all started before the first poll, over day-long slices that meet to the second.
    assert shop.operations[:5] == ["BulkOrders"] * 5 and "Orders" not in shop.operations
    searches = [re.search(r'orders\(query: "([^"]*)"', op["query"]).group(1) for op in shop.bulk.values()]
    assert searches == [
        f"updated_at:>='2026-03-0{3 + n}T00:00:00Z' AND updated_at:<='2026-03-0{3 + n}T23:59:59Z'"
        for n in range(4)
    ] + ["updated_at:>='2026-03-07T00:00:00Z' AND updated_at:<='2026-03-08T00:00:00Z'"]
    # Pages in slice order, numbered on across slices, each naming its operation.
    assert [p.page_number for p in pages] == list(range(1, len(pages) + 1))
    named = [re.search(r"BulkOperation/(\d+)$", p.request_path).group(1) for p in pages]
    assert named == sorted(named) and len(set(named)) == 5
    roots = _bulk_roots(pages)
    assert sorted(r["id"] for r in roots) == sorted(graphql_node(o)["id"] for o in _bulk_orders())
    assert [r["updatedAt"] for r in roots] == sorted(r["updatedAt"] for r in roots)
    messages = [r.getMessage() for r in caplog.records]
    assert any("by 5 bulk operations" in m for m in messages)
    assert any("all 5 slices: " in m for m in messages)
    assert "at most 5 bulk operations ran at once" in messages[-1]


def test_slices_refused_for_want_of_a_slot_are_queued_not_paged(caplog) -> None:
    shop = GraphQLShop(_bulk_orders(), bulk_slots=2)
    caplog.set_level("INFO", logger="cancel_pipeline.shopify")
    with _bulk_client(shop, bulk_concurrency=5) as client:
        pages = list(client.iter_order_pages(updated_at_min=T0, updated_at_max=T0 + DAYS))
    assert {p.operation for p in pages} == {"bulk"} and len(shop.bulk) == 5
    assert sorted(r["id"] for r in _bulk_roots(pages)) == sorted(
        graphql_node(o)["id"] for o in _bulk_orders()
    )
    messages = [r.getMessage() for r in caplog.records]
    assert any("slices 3 to 5 of 5 queued" in m for m in messages)
    assert not any("paging" in m for m in messages)
    assert "at most 2 bulk operations ran at once" in messages[-1]


def test_slices_that_never_get_a_slot_are_paged_once_ours_have_finished(caplog) -> None:
    # Another run of the app takes the slots ours free: after `wait_for_slot_s`, the slices left are paged.
    shop = GraphQLShop(_bulk_orders(), bulk_starts=2)
    with _bulk_client(shop, bulk_concurrency=5, wait_for_slot_s=20) as client:
        pages = list(client.iter_order_pages(updated_at_min=T0, updated_at_max=T0 + DAYS))
    operations = [p.operation for p in pages]
    assert operations == sorted(operations) and set(operations) == {"bulk", "orders"}  # bulk slices first
    assert [p.page_number for p in pages] == list(range(1, len(pages) + 1))
    roots = _bulk_roots(pages)
    assert sorted(r["id"] for r in roots) == sorted(graphql_node(o)["id"] for o in _bulk_orders())
    assert [r["updatedAt"] for r in roots] == sorted(r["updatedAt"] for r in roots)
    assert any("no bulk slot for slices 3 to 5 of 5" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("version", "concurrency"), [("2025-10", 2), ("2026-07", 6), ("2026-07", 0)])
def test_more_bulk_operations_than_the_api_version_allows_are_refused(version: str, concurrency: int) -> None:
    with pytest.raises(
        ValueError, match=f"bulk_concurrency must be from 1 to .* at Admin API version {version}"
    ):
        ShopifyGraphQLClient(
            "unit-shop", access_token=TOKEN, api_version=version, bulk_concurrency=concurrency
        )


def test_closing_the_client_cancels_the_slices_of_a_read_left_unfinished() -> None:
    # What a run stopped inside the consumer leaves: the iterator suspended at a page, slices 3 and 4 running.
    shop = GraphQLShop(_bulk_orders(), bulk_slots=2)
    client = _bulk_client(shop, bulk_concurrency=5)
    with client:
        pages = client.iter_order_pages(updated_at_min=T0, updated_at_max=T0 + DAYS)
        first = next(pages)
    assert first.page_number == 1 and first.request_path.endswith("BulkOperation/100")
    assert [op["status"] for op in shop.bulk.values()] == ["COMPLETED"] * 2 + ["CANCELED"] * 2
    assert shop.operations[-2:] == ["CancelBulkOperation"] * 2
    pages.close()  # the iterator's own cleanup finds nothing left to cancel
    assert shop.operations.count("CancelBulkOperation") == 2


@pytest.mark.parametrize(
    ("hours", "count", "slices"), [(0.5, 5, 1), (3, 5, 3), (120, 5, 5), (120, 1, 1), (10.5, 4, 4)]
)
def test_slices_are_contiguous_to_the_second_and_never_shorter_than_an_hour(
    hours: float, count: int, slices: int
) -> None:
    start = T0 + timedelta(microseconds=250_000)
    end = start + timedelta(hours=hours)
    bounds = slice_bounds(start, end, count)
    assert len(bounds) == slices
    assert bounds[0][0] == start and bounds[-1][1] == end
    for (_, high), (low, _) in itertools.pairwise(bounds):
        assert low == high + timedelta(seconds=1) and low.microsecond == 0
    if slices > 1:  # a slice spans its last second too; the first starts within a second
        assert all(high - low >= MIN_SLICE - timedelta(seconds=2) for low, high in bounds)


def test_short_windows_page_even_with_bulk_enabled() -> None:
    shop = GraphQLShop(_bulk_orders())
    with _bulk_client(shop) as client:
        pages = list(client.iter_order_pages(updated_at_min=T0, updated_at_max=T0 + timedelta(hours=25)))
    assert {p.operation for p in pages} == {"orders"} and "BulkOrders" not in shop.operations


def test_a_bare_429_waits_for_the_bucket_to_refill() -> None:
    shop = GraphQLShop(_orders(3))
    shop.faults = [lambda: httpx.Response(429, text="Too Many Requests")]
    with _client(shop, restore_rate=100) as client:
        pages = list(client.iter_order_pages())
    assert _ids(pages) == [1000, 1001, 1002]
    # Taken as an empty bucket: the retry waited for the page's cost to be restored.
    assert shop.clock.slept >= 1.0
