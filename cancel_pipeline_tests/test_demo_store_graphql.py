"""The demo store's GraphQL Admin API over real HTTP on 127.0.0.1: same orders as REST, paging, search, cost."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

from cancel_pipeline_tests.demo_fixtures import DEMO_NOW, ServedDemoStore

pytestmark = pytest.mark.timeout(120)
NOW = datetime.fromisoformat(DEMO_NOW)
VERSION = "2025-01"

ORDER_FIELDS = """
  id legacyResourceId name createdAt updatedAt cancelledAt closedAt closed cancelReason
  displayFinancialStatus displayFulfillmentStatus sourceName test currencyCode tags
  totalPriceSet { shopMoney { amount currencyCode } }
  lineItems(first: 10) { nodes { id sku title quantity currentQuantity variant { id } product { id } } }
  refunds(first: 3) {
    id createdAt
    refundLineItems(first: 5) { nodes { lineItem { id } quantity restockType } }
  }
"""
PAGE = (
    "query Page($first: Int!, $after: String, $query: String, $sortKey: OrderSortKeys, $reverse: Boolean) {"
    " orders(first: $first, after: $after, query: $query, sortKey: $sortKey, reverse: $reverse) {"
    f" edges {{ cursor node {{ {ORDER_FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"
)
IDS_PAGE = (
    "query Ids($first: Int, $after: String, $last: Int, $before: String, $query: String,"
    " $sortKey: OrderSortKeys, $reverse: Boolean) {"
    " orders(first: $first, after: $after, last: $last, before: $before, query: $query, sortKey: $sortKey,"
    " reverse: $reverse) { nodes { legacyResourceId updatedAt }"
    " pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"
)


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parses(value: str | None) -> bool:
    if value is None:
        return True
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def rest_z(value: str | None) -> str | None:
    return None if value is None else z(datetime.fromisoformat(value))


class GraphQL:
    """A bare GraphQL caller over HTTP (the product's client is not under test here)."""

    def __init__(self, served: ServedDemoStore, version: str = VERSION) -> None:
        self.served = served
        self.url = served.admin_url("graphql.json", version)
        self.http = httpx.Client(headers={"X-Shopify-Access-Token": served.token}, timeout=30)

    def post(self, document: str, /, **variables: Any) -> httpx.Response:
        return self.http.post(self.url, json={"query": document, "variables": variables})

    def __call__(self, document: str, /, **variables: Any) -> dict[str, Any]:
        response = self.post(document, **variables)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body

    def all_pages(self, document: str, page_size: int, /, **variables: Any) -> list[dict[str, Any]]:
        """Every node of the `orders` connection, following endCursor."""
        nodes: list[dict[str, Any]] = []
        after = None
        while True:
            page = self(document, first=page_size, after=after, **variables)["data"]["orders"]
            nodes += [edge["node"] for edge in page["edges"]] if "edges" in page else page["nodes"]
            if not page["pageInfo"]["hasNextPage"]:
                return nodes
            after = page["pageInfo"]["endCursor"]


def window_query(start: datetime, end: datetime, extra: str = "") -> str:
    return f"updated_at:>='{z(start)}' AND updated_at:<='{z(end)}' {extra}".strip()


@pytest.fixture
def plus_store_server(demo_clock: FrozenClock) -> Iterator[ServedDemoStore]:
    """Plus-sized REST and GraphQL buckets, for tests that read a lot."""
    store = DemoStore(
        clock=demo_clock,
        bucket_size=400,
        leak_rate=20.0,
        graphql_bucket_size=20000,
        graphql_restore_rate=1000,
    )
    with serve(store) as url:
        yield ServedDemoStore(store=store, clock=demo_clock, url=url)


@pytest.fixture
def gql(plus_store_server: ServedDemoStore) -> Iterator[GraphQL]:
    client = GraphQL(plus_store_server)
    yield client
    client.http.close()


def rest_orders(served: ServedDemoStore, params: dict[str, str]) -> list[dict[str, Any]]:
    with httpx.Client(headers={"X-Shopify-Access-Token": served.token}, timeout=30) as http:
        url: str | None = served.admin_url("orders.json")
        query: dict[str, Any] | None = {**params, "limit": 250}
        orders: list[dict[str, Any]] = []
        while url:
            response = http.get(url, params=query)
            assert response.status_code == 200, response.text
            orders += response.json()["orders"]
            url = response.links.get("next", {}).get("url")
            query = None
        return orders


def test_rest_and_graphql_describe_the_same_orders(plus_store_server: ServedDemoStore, gql: GraphQL) -> None:
    start, end = NOW - timedelta(hours=20), NOW - timedelta(hours=8)
    rest = rest_orders(
        plus_store_server, {"status": "any", "updated_at_min": z(start), "updated_at_max": z(end)}
    )
    graphql = gql.all_pages(PAGE, 10, query=window_query(start, end), sortKey="UPDATED_AT")
    assert len(graphql) == len(rest) > 100
    by_name = {order["name"]: order for order in rest}
    assert set(by_name) == {order["name"] for order in graphql}
    kinds = Counter()
    for node in graphql:
        order = by_name[node["name"]]
        if not isinstance(order["id"], int) or order["updated_at"] == "not-a-date":
            kinds["malformed"] += 1  # REST broke this record on purpose; GraphQL's types cannot.
            continue
        assert node["id"] == f"gid://shopify/Order/{order['id']}"
        assert node["legacyResourceId"] == str(order["id"])
        assert node["updatedAt"] == rest_z(order["updated_at"])
        assert node["displayFinancialStatus"] == order["financial_status"].upper()
        assert node["closed"] == (order["closed_at"] is not None)
        if parses(order["cancelled_at"]):
            assert node["cancelledAt"] == rest_z(order["cancelled_at"])
            assert node["cancelReason"] == (
                order["cancel_reason"].upper() if order["cancel_reason"] else None
            )
        else:
            assert node["cancelledAt"] is None and order["cancelled_at"] == "2024-13-45T99:99:99"
        assert node["totalPriceSet"]["shopMoney"] == {"amount": order["total_price"], "currencyCode": "USD"}
        if isinstance(order["line_items"], list) and all(
            "id" in li and isinstance(li["quantity"], int) for li in order["line_items"]
        ):
            assert [
                (li["id"], li["quantity"], li["currentQuantity"], li["sku"])
                for li in node["lineItems"]["nodes"]
            ] == [
                (f"gid://shopify/LineItem/{li['id']}", li["quantity"], li["current_quantity"], li["sku"])
                for li in order["line_items"]
            ]
        rest_restocks = [
            (f"gid://shopify/LineItem/{rli['line_item_id']}", rli["quantity"], rli["restock_type"].upper())
            for refund in order["refunds"][:3]
            for rli in refund["refund_line_items"][:5]
        ]
        graphql_restocks = [
            (rli["lineItem"]["id"], rli["quantity"], rli["restockType"])
            for refund in node["refunds"]
            for rli in refund["refundLineItems"]["nodes"]
        ]
        assert graphql_restocks == rest_restocks
        kinds[node["displayFinancialStatus"]] += 1
        kinds.update(restock for _, _, restock in graphql_restocks)
    assert kinds["REFUNDED"] and kinds["PARTIALLY_REFUNDED"] and kinds["PAID"], kinds
    assert kinds["CANCEL"] and kinds["RETURN"], kinds


def test_malformed_timestamps_become_null(demo_store: DemoStore, demo_store_server: ServedDemoStore) -> None:
    broken = [o for o in demo_store.orders(status="cancelled") if o["cancelled_at"] == "2024-13-45T99:99:99"]
    assert broken, "the seeded history holds a cancelled order with an unparseable cancelled_at"
    gql = GraphQL(demo_store_server)
    node = gql(
        "query($id: ID!) { order(id: $id) { id cancelledAt cancelReason displayFinancialStatus } }",
        id=f"gid://shopify/Order/{broken[0]['id']}",
    )["data"]["order"]
    assert node["id"] == f"gid://shopify/Order/{broken[0]['id']}" and node["cancelledAt"] is None
    assert node["cancelReason"] == broken[0]["cancel_reason"].upper(), "the rest of the order is served as is"


def test_cursor_paging_covers_every_order_once(plus_store_server: ServedDemoStore, gql: GraphQL) -> None:
    query = window_query(NOW - timedelta(hours=30), NOW)
    count = gql("query($q: String) { ordersCount(query: $q) { count precision } }", q=query)["data"]
    expected = count["ordersCount"]["count"]
    assert count["ordersCount"]["precision"] == "EXACT" and expected > 500
    for sort_key, reverse in (
        ("ID", False),
        ("UPDATED_AT", False),
        ("UPDATED_AT", True),
        ("CREATED_AT", True),
    ):
        nodes = gql.all_pages(IDS_PAGE, 250, query=query, sortKey=sort_key, reverse=reverse)
        ids = [int(node["legacyResourceId"]) for node in nodes]
        assert len(ids) == len(set(ids)) == expected, sort_key
        if sort_key == "ID":
            assert ids == sorted(ids)
        if sort_key == "UPDATED_AT":
            keys = [(node["updatedAt"], int(node["legacyResourceId"])) for node in nodes]
            assert keys == sorted(keys, reverse=reverse)
    # Backwards with last/before gives the same orders, page by page.
    forward = [n["legacyResourceId"] for n in gql.all_pages(IDS_PAGE, 100, query=query, sortKey="UPDATED_AT")]
    backward: list[str] = []
    before = None
    while True:
        page = gql(IDS_PAGE, last=100, before=before, query=query, sortKey="UPDATED_AT")["data"]["orders"]
        backward = [n["legacyResourceId"] for n in page["nodes"]] + backward
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]
    assert backward == forward


def test_a_burst_in_one_second_pages_across_250_by_id(
    plus_store_server: ServedDemoStore, gql: GraphQL
) -> None:
    day = plus_store_server.store.orders(status="any", updated_at_min=NOW - timedelta(hours=24))
    second, size = Counter(o["updated_at"] for o in day).most_common(1)[0]
    assert size > 250
    exact = f"updated_at:>='{rest_z(second)}' AND updated_at:<='{rest_z(second)}'"
    first = gql(IDS_PAGE, first=250, query=exact, sortKey="UPDATED_AT")["data"]["orders"]
    rest = gql(IDS_PAGE, first=250, after=first["pageInfo"]["endCursor"], query=exact, sortKey="UPDATED_AT")
    ids = [n["legacyResourceId"] for n in first["nodes"] + rest["data"]["orders"]["nodes"]]
    assert len(ids) == len(set(ids)) == size
    assert first["pageInfo"]["hasNextPage"] and not rest["data"]["orders"]["pageInfo"]["hasNextPage"]


def test_search_syntax(plus_store_server: ServedDemoStore, gql: GraphQL) -> None:
    store = plus_store_server.store
    start, end = NOW - timedelta(hours=24), NOW

    def count(query: str) -> int:
        return gql("query($q: String) { ordersCount(query: $q, limit: null) { count } }", q=query)["data"][
            "ordersCount"
        ]["count"]

    window = window_query(start, end)
    rest_window = {"updated_at_min": start, "updated_at_max": end}
    assert count(window) == store.count_orders(status="any", **rest_window), "no status term: every status"
    for status in ("open", "closed", "cancelled", "any"):
        assert count(f"{window} AND status:{status}") == store.count_orders(status=status, **rest_window)
    assert count(f"{window} status:cancelled") == count(f"{window} AND status:cancelled"), "AND is implied"
    double = f'updated_at:>="{z(start)}" AND updated_at:<="{z(end)}"'
    assert count(double) == count(window)
    bare = f"updated_at:>={z(NOW - timedelta(hours=3))}"
    day = f"updated_at:>='{NOW.astimezone(store.tz).date().isoformat()}'"
    assert count(bare) == count(day) > count(f"updated_at:>='{z(NOW - timedelta(hours=3))}'"), (
        "an unquoted date-time loses its time"
    )
    cancelled = gql.all_pages(IDS_PAGE, 250, query=f"{window} status:cancelled")
    assert cancelled and all(store.get_order(int(n["legacyResourceId"]))["cancelled_at"] for n in cancelled)
    ids = sorted(int(n["legacyResourceId"]) for n in gql.all_pages(IDS_PAGE, 250, query=window))
    middle = ids[len(ids) // 2]
    assert count(f"{window} AND id:>={middle}") == len([i for i in ids if i >= middle])
    assert count(f"id:{middle}") == 1
    assert count(f"{window} AND created_at:>='{z(NOW - timedelta(hours=2))}'") == store.count_orders(
        status="any", created_at_min=NOW - timedelta(hours=2), **rest_window
    )
    capped = gql('{ ordersCount(query: "status:any", limit: 10) { count precision } }')["data"]["ordersCount"]
    assert capped == {"count": 10, "precision": "AT_LEAST"}
    for bad, named in (
        ("financial_status:paid", "financial_status"),
        ("status:cancelled OR status:open", "OR"),
        ("status:bogus", "status"),
        ("updated_at:>='yesterday'", "yesterday"),
    ):
        body = gql.post("query($q: String) { ordersCount(query: $q) { count } }", q=bad).json()
        assert body["errors"] and named in body["errors"][0]["message"], bad


def test_strictly_before_from_2027_01(demo_store_server: ServedDemoStore) -> None:
    sample = demo_store_server.store.orders(status="any", updated_at_min=NOW - timedelta(hours=1))[0]
    at = rest_z(sample["updated_at"])
    query = f"id:{sample['id']} AND updated_at:<'{at}'"
    counts = {}
    for version in ("2026-10", "2027-01"):
        gql = GraphQL(demo_store_server, version)
        counts[version] = gql("query($q: String) { ordersCount(query: $q) { count } }", q=query)["data"]
    assert counts["2026-10"]["ordersCount"]["count"] == 1, "before 2027-01 `<` also matches within second T"
    assert counts["2027-01"]["ordersCount"]["count"] == 0


def test_cost_extension_and_refund_of_unused_points(demo_clock: FrozenClock) -> None:
    # A bucket that hardly restores, so what is left shows exactly what was charged.
    store = DemoStore(clock=demo_clock, graphql_restore_rate=0.001)
    with serve(store) as url:
        gql = GraphQL(ServedDemoStore(store=store, clock=demo_clock, url=url))
        check_costs(gql)


def check_costs(gql: GraphQL) -> None:
    body = gql(
        '{ orders(first: 10, query: "status:any") { nodes { id lineItems(first: 5) { nodes { id } } } } }'
    )
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 2 + 10 * (1 + 2 + 5 * 1)
    lines = sum(len(node["lineItems"]["nodes"]) for node in body["data"]["orders"]["nodes"])
    assert cost["actualQueryCost"] == 2 + 10 * (1 + 2) + lines < cost["requestedQueryCost"]
    status = cost["throttleStatus"]
    assert status["maximumAvailable"] == 2000.0 and status["restoreRate"] == 0.001
    assert status["currentlyAvailable"] == 2000 - cost["actualQueryCost"]
    none = gql('{ orders(first: 50, query: "id:1") { edges { node { id } } } }')["extensions"]["cost"]
    assert none["requestedQueryCost"] == 52 and none["actualQueryCost"] == 2
    assert none["throttleStatus"]["currentlyAvailable"] == 2000 - cost["actualQueryCost"] - 2
    by_default = gql("query($n: Int = 40) { orders(first: $n) { nodes { id } } }")["extensions"]["cost"]
    assert by_default["requestedQueryCost"] == 42, "a variable's default value is costed"


def test_throttled_when_the_bucket_is_empty(demo_clock: FrozenClock) -> None:
    store = DemoStore(clock=demo_clock, graphql_bucket_size=100, graphql_restore_rate=1.0)
    query = '{ orders(first: 30, query: "status:any") { nodes { id } } }'  # 32 points, all used
    with serve(store) as url:
        gql = GraphQL(ServedDemoStore(store=store, clock=demo_clock, url=url))
        costs = [gql.post(query).json() for _ in range(4)]
    assert all("data" in body for body in costs[:3])
    throttled = costs[3]
    assert "data" not in throttled
    assert throttled["errors"][0]["message"] == "Throttled"
    assert throttled["errors"][0]["extensions"]["code"] == "THROTTLED"
    cost = throttled["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 32 and cost["actualQueryCost"] is None
    assert cost["throttleStatus"]["currentlyAvailable"] < 32 and cost["throttleStatus"]["restoreRate"] == 1.0


def test_throttled_status_may_be_429(demo_clock: FrozenClock) -> None:
    store = DemoStore(clock=demo_clock, graphql_bucket_size=10, graphql_throttled_status=429)
    with serve(store) as url:
        response = GraphQL(ServedDemoStore(store=store, clock=demo_clock, url=url)).post(
            "{ orders(first: 20) { nodes { id } } }"
        )
    assert response.status_code == 429 and response.json()["errors"][0]["extensions"]["code"] == "THROTTLED"


def test_max_cost_exceeded(demo_store_server: ServedDemoStore) -> None:
    gql = GraphQL(demo_store_server)
    body = gql.post("{ orders(first: 250) { nodes { id lineItems(first: 250) { nodes { id } } } } }").json()
    assert "data" not in body
    error = body["errors"][0]
    assert error["extensions"]["code"] == "MAX_COST_EXCEEDED"
    requested = 2 + 250 * (1 + 2 + 250)
    assert error["message"].startswith(
        f"Query cost is {requested}, which exceeds the single query max cost limit (1000)"
    )
    assert body["extensions"]["cost"]["actualQueryCost"] is None
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 2000, "nothing was charged"


def test_errors_auth_and_content_types(demo_store_server: ServedDemoStore) -> None:
    gql = GraphQL(demo_store_server)
    unknown = gql.post("{ orders(first: 1) { nodes { foo } } }").json()
    assert unknown["errors"][0]["message"] == "Field 'foo' doesn't exist on type 'Order'"
    no_size = gql.post("{ orders { nodes { id } } }").json()
    assert "you must provide one of first or last" in no_size["errors"][0]["message"]
    too_many = gql.post("{ orders(first: 251) { nodes { id } } }").json()
    assert "first" in too_many["errors"][0]["message"]
    bad_cursor = gql.post('{ orders(first: 1, after: "nope") { nodes { id } } }').json()
    assert "Invalid cursor" in bad_cursor["errors"][0]["message"]
    by_id = gql("{ orders(first: 1, sortKey: ID) { pageInfo { endCursor } } }")["data"]["orders"]["pageInfo"]
    mixed = gql.post(
        "query($c: String) { orders(first: 1, after: $c, sortKey: UPDATED_AT) { nodes { id } } }",
        c=by_id["endCursor"],
    ).json()
    assert "Invalid cursor" in mixed["errors"][0]["message"], "a cursor of another sortKey is refused"
    bad_gid = gql.post('{ order(id: "123") { id } }').json()
    assert "Invalid global id '123'" in bad_gid["errors"][0]["message"]
    raw = httpx.post(
        gql.url,
        content=b"{ orders(first: 2, sortKey: UPDATED_AT, reverse: true) { nodes { id } } }",
        headers={"X-Shopify-Access-Token": demo_store_server.token, "Content-Type": "application/graphql"},
    )
    assert raw.status_code == 200 and len(raw.json()["data"]["orders"]["nodes"]) == 2
    assert httpx.post(gql.url, json={"query": "{ ordersCount { count } }"}).status_code == 401
    assert gql.http.post(gql.url, content=b"not json").status_code == 400
    one = gql("{ orders(first: 1) { nodes { id } } }")["data"]["orders"]["nodes"][0]["id"]
    nodes = gql(
        "query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Order { name } } }",
        ids=[one, "gid://shopify/Order/1"],
    )["data"]["nodes"]
    assert nodes[0]["id"] == one and nodes[0]["name"].startswith("#") and nodes[1] is None


def test_rest_fault_knobs_apply_to_graphql(demo_store_server: ServedDemoStore) -> None:
    store = demo_store_server.store
    gql = GraphQL(demo_store_server)
    query = '{ orders(first: 5, query: "status:any") { nodes { id name } } }'
    store.fail_next({"status": 503}, {"truncate": True}, {"status": 429, "retry_after": 1.5})
    assert gql.post(query).status_code == 503
    with pytest.raises(httpx.RemoteProtocolError):
        gql.post(query)
    throttled = gql.post(query)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "1.50"
    assert throttled.json()["errors"][0]["extensions"]["code"] == "THROTTLED"
    store.fail_next({"status": 502, "page_info_only": True})
    first = gql(query.replace("first: 5", "first: 2").replace("nodes { id name }", "pageInfo { endCursor }"))
    cursor = first["data"]["orders"]["pageInfo"]["endCursor"]
    assert gql.post(query).status_code == 200, "the 502 waits for a request with a cursor"
    paged = gql.post("query($c: String) { orders(first: 2, after: $c) { nodes { id } } }", c=cursor)
    assert paged.status_code == 502 and paged.headers["content-type"].startswith("text/html")
