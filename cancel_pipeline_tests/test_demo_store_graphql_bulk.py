"""The demo store's bulk query operations over real HTTP: lifecycle, JSONL result, limits, cancel, faults."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

from cancel_pipeline_tests.demo_fixtures import DEMO_NOW, ServedDemoStore

pytestmark = pytest.mark.timeout(120)
NOW = datetime.fromisoformat(DEMO_NOW)
START, END = NOW - timedelta(hours=6), NOW - timedelta(hours=2)
SEARCH = (
    f"updated_at:>='{START.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}' "
    f"AND updated_at:<='{END.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}'"
)
BULK_QUERY = (
    f'{{ orders(query: "{SEARCH}", sortKey: UPDATED_AT) {{ edges {{ node {{'
    " id name updatedAt displayFinancialStatus"
    " refunds { id refundLineItems { edges { node { quantity restockType lineItem { id } } } } }"
    " lineItems { edges { node { id quantity currentQuantity } } } } } } }"
)
PAGED = (
    "query($after: String, $q: String) { orders(first: 20, after: $after, query: $q, sortKey: UPDATED_AT) {"
    " nodes { id name updatedAt displayFinancialStatus"
    " refunds { id refundLineItems(first: 10) { edges { node { quantity restockType lineItem { id } } } } }"
    " lineItems(first: 20) { nodes { id quantity currentQuantity } } }"
    " pageInfo { hasNextPage endCursor } } }"
)
RUN = (
    "mutation($q: String!) { bulkOperationRunQuery(query: $q) {"
    " bulkOperation { id status objectCount url } userErrors { code field message } } }"
)
POLL = (
    "query($id: ID!) { bulkOperation(id: $id) { id status errorCode createdAt completedAt objectCount"
    " rootObjectCount fileSize url partialDataUrl query type } }"
)
CANCEL = "mutation($id: ID!) { bulkOperationCancel(id: $id) { bulkOperation { id status } userErrors { field message } } }"


class Bulk:
    def __init__(self, served: ServedDemoStore, version: str = "2025-01") -> None:
        self.served = served
        self.url = served.admin_url("graphql.json", version)
        self.http = httpx.Client(headers={"X-Shopify-Access-Token": served.token}, timeout=30)

    def __call__(self, document: str, /, **variables: Any) -> dict[str, Any]:
        response = self.http.post(self.url, json={"query": document, "variables": variables})
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def run(self, query: str = BULK_QUERY) -> dict[str, Any]:
        return self(RUN, q=query)["bulkOperationRunQuery"]

    def poll(self, op_id: str) -> dict[str, Any]:
        return self(POLL, id=op_id)["bulkOperation"]


def served_store(clock: FrozenClock, **settings: Any) -> Iterator[ServedDemoStore]:
    store = DemoStore(clock=clock, graphql_bucket_size=20000, graphql_restore_rate=1000, **settings)
    with serve(store) as url:
        yield ServedDemoStore(store=store, clock=clock, url=url)
    store.graphql.bulk.close()


@pytest.fixture
def slow(demo_clock: FrozenClock) -> Iterator[ServedDemoStore]:
    """Bulk timing far slower than a test takes in real time, so only the frozen clock moves it."""
    yield from served_store(demo_clock, bulk_start_delay=60, bulk_seconds_per_1000=600, bulk_cancel_delay=30)


@pytest.fixture
def quick(demo_clock: FrozenClock) -> Iterator[ServedDemoStore]:
    """Bulk operations that finish as soon as their file is written."""
    yield from served_store(demo_clock, bulk_start_delay=0, bulk_seconds_per_1000=0, bulk_cancel_delay=0)


def wait_finished(bulk: Bulk, op_id: str) -> dict[str, Any]:
    for _ in range(200):
        op = bulk.poll(op_id)
        if op["status"] in ("COMPLETED", "FAILED", "CANCELED"):
            return op
        bulk.served.clock.advance(600)
    raise AssertionError(f"bulk operation {op_id} did not finish: {op}")


def jsonl(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines()]


def paged_answer(bulk: Bulk) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        page = bulk(PAGED, after=after, q=SEARCH)["orders"]
        nodes += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]


def test_lifecycle_to_completed_and_jsonl_equals_the_paged_answer(slow: ServedDemoStore) -> None:
    bulk = Bulk(slow)
    created = bulk.run()
    assert created["userErrors"] == []
    op_id = created["bulkOperation"]["id"]
    assert op_id.startswith("gid://shopify/BulkOperation/")
    assert created["bulkOperation"] == {"id": op_id, "status": "CREATED", "objectCount": "0", "url": None}
    assert bulk.poll(op_id)["status"] == "CREATED"
    slow.clock.advance(61)
    running = bulk.poll(op_id)
    for _ in range(50):  # the worker writes in the background; give it a moment for its first lines
        if int(running["objectCount"]):
            break
        time.sleep(0.1)
        running = bulk.poll(op_id)
    assert running["status"] == "RUNNING" and running["url"] is None
    assert 0 < int(running["objectCount"]) < 100, "1,000 objects per 600 s: about 1.7 after one second"
    slow.clock.advance(3600)
    done = bulk.poll(op_id)
    assert done["status"] == "COMPLETED" and done["errorCode"] is None and done["type"] == "QUERY"
    assert done["query"] == BULK_QUERY and done["partialDataUrl"] is None
    current = bulk("{ currentBulkOperation { id status url } }")["currentBulkOperation"]
    assert current == {"id": op_id, "status": "COMPLETED", "url": done["url"]}
    as_node = bulk("query($id: ID!) { node(id: $id) { ... on BulkOperation { status url } } }", id=op_id)
    assert as_node["node"] == {"status": "COMPLETED", "url": done["url"]}
    download = httpx.get(done["url"])  # no token: a signed URL
    assert download.status_code == 200 and len(download.content) == int(done["fileSize"])
    lines = jsonl(download.text)
    assert len(lines) == int(done["objectCount"])
    roots = [line for line in lines if "__parentId" not in line]
    assert len(roots) == int(done["rootObjectCount"]) > 20
    # Children come after their parent; joined back by __parentId they rebuild the paged answer.
    seen: set[str] = set()
    children: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if "__parentId" in line:
            assert line["__parentId"] in seen
            children.setdefault(line.pop("__parentId"), []).append(line)
        else:
            seen.add(line["id"])
    rebuilt = [{**root, "lineItems": {"nodes": children.get(root["id"], [])}} for root in roots]
    slow.clock.set(NOW)  # the result is a snapshot taken when the operation was created
    assert rebuilt == paged_answer(bulk)
    assert any(root["refunds"] for root in roots), "refunds stay inline, with their refund line items"


def test_one_running_bulk_query_per_app(slow: ServedDemoStore) -> None:
    bulk = Bulk(slow)
    first = bulk.run()["bulkOperation"]["id"]
    second = bulk.run()
    assert second["bulkOperation"] is None
    assert second["userErrors"] == [
        {
            "code": "OPERATION_IN_PROGRESS",
            "field": None,
            "message": f"A bulk query operation for this app and shop is already in progress: {first}.",
        }
    ]
    assert wait_finished(bulk, first)["status"] == "COMPLETED"
    assert bulk.run()["userErrors"] == []


def test_from_2026_01_five_run_at_once(slow: ServedDemoStore) -> None:
    bulk = Bulk(slow, version="2026-01")
    assert all(bulk.run()["userErrors"] == [] for _ in range(5))
    sixth = bulk.run()["userErrors"]
    assert [error["code"] for error in sixth] == ["LIMIT_REACHED"]


def test_cancel(slow: ServedDemoStore) -> None:
    bulk = Bulk(slow)
    op_id = bulk.run()["bulkOperation"]["id"]
    slow.clock.advance(62)
    canceling = bulk(CANCEL, id=op_id)["bulkOperationCancel"]
    assert canceling == {"bulkOperation": {"id": op_id, "status": "CANCELING"}, "userErrors": []}
    assert bulk.poll(op_id)["status"] == "CANCELING"
    slow.clock.advance(31)
    canceled = bulk.poll(op_id)
    assert canceled["status"] == "CANCELED" and canceled["url"] is None
    again = bulk(CANCEL, id=op_id)["bulkOperationCancel"]
    assert again["userErrors"] and "canceled" in again["userErrors"][0]["message"]
    assert bulk.run()["userErrors"] == [], "a canceled operation no longer blocks a new one"


def test_failed_with_partial_data(quick: ServedDemoStore) -> None:
    quick.store.set_faults(bulk_fail_next=[{"error_code": "TIMEOUT", "after_objects": 7}])
    bulk = Bulk(quick)
    failed = wait_finished(bulk, bulk.run()["bulkOperation"]["id"])
    assert failed["status"] == "FAILED" and failed["errorCode"] == "TIMEOUT"
    assert failed["url"] is None and failed["objectCount"] == "7"
    partial = httpx.get(failed["partialDataUrl"])
    assert partial.status_code == 200 and len(jsonl(partial.text)) == 7
    assert wait_finished(bulk, bulk.run()["bulkOperation"]["id"])["status"] == "COMPLETED", "one-shot"


def test_cut_download_resumes_with_range(quick: ServedDemoStore) -> None:
    bulk = Bulk(quick)
    done = wait_finished(bulk, bulk.run()["bulkOperation"]["id"])
    whole = httpx.get(done["url"]).content
    quick.store.set_faults(download_fail_next=[{"cut_after": 1000}, {"status": 503}])
    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", done["url"]) as response:
        assert response.headers["content-length"] == str(len(whole))
        for chunk in response.iter_bytes():
            received += chunk
    assert 0 < len(received) <= 1000
    assert httpx.get(done["url"]).status_code == 503
    rest = httpx.get(done["url"], headers={"Range": f"bytes={len(received)}-"})
    assert rest.status_code == 206
    assert rest.headers["content-range"] == f"bytes {len(received)}-{len(whole) - 1}/{len(whole)}"
    assert bytes(received) + rest.content == whole
    assert httpx.get(done["url"], headers={"Range": f"bytes={len(whole)}-"}).status_code == 416


def test_expired_url(quick: ServedDemoStore) -> None:
    bulk = Bulk(quick)
    done = wait_finished(bulk, bulk.run()["bulkOperation"]["id"])
    quick.store.set_faults(download_fail_next=[{"expired": True}])
    refused = httpx.get(done["url"])
    assert refused.status_code == 400 and b"ExpiredToken" in refused.content
    assert httpx.get(done["url"]).status_code == 200, "one-shot"
    quick.clock.advance(timedelta(days=7, seconds=1))
    assert bulk.poll(done["id"])["status"] == "EXPIRED"
    assert httpx.get(done["url"]).status_code == 400


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('{ nodes(ids: ["gid://shopify/Order/1"]) { id } }', "top level `node` or `nodes`"),
        ('{ order(id: "gid://shopify/Order/1") { id } }', "at least one connection"),
        (
            "{ orders { edges { node { id "
            + " ".join(f"l{i}: lineItems {{ edges {{ node {{ id }} }} }}" for i in range(5))
            + " } } } }",
            "more than 5 connections",
        ),
        ("{ orders { edges { node { name lineItems { edges { node { id } } } } } } }", "'id' field"),
        ("{ orders { edges { node { bogus } } } }", "Invalid bulk query"),
        ("{ orders(", "Invalid bulk query"),
        ('{ orders(query: "vendor:acme") { edges { node { id } } } }', "vendor"),
    ],
)
def test_invalid_bulk_queries(quick: ServedDemoStore, query: str, message: str) -> None:
    result = Bulk(quick).run(query)
    assert result["bulkOperation"] is None
    assert [error["code"] for error in result["userErrors"]] == ["INVALID"]
    assert message in result["userErrors"][0]["message"]
