"""A GraphQL Admin API endpoint as the fact sheet describes it, for `httpx.MockTransport` unit tests.

It answers the client's operations (`Orders`, `OrdersByIds`, `OrdersCount`, `OrderLineItems`, `OrderRefunds`,
`RefundLineItems`) over a list of REST-built orders, with `extensions.cost`, a cost bucket that answers
THROTTLED when it runs dry, MAX_COST_EXCEEDED over the single-query limit, and queued faults. Time is a
`FakeClock` shared with the client, so pacing is measured without sleeping.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from cancel_pipeline.shopify.graphql_queries import (
    NESTED_LINE_ITEMS,
    NESTED_REFUND_LINE_ITEMS,
    NESTED_REFUNDS,
)
from cancel_pipeline_tests.graphql_builders import bulk_lines, graphql_node

TOKEN = "shpat_graphql_unit_secret"


@dataclass
class FakeClock:
    """Seconds that pass only when someone sleeps."""

    now: float = 1000.0
    slept: float = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        self.slept += max(0.0, seconds)


def _connection(nodes: list, after: str | None, first: int) -> dict[str, Any]:
    start = int(after) if after else 0
    page = nodes[start : start + first]
    end = start + len(page)
    return {"pageInfo": {"hasNextPage": end < len(nodes), "endCursor": str(end)}, "nodes": page}


@dataclass
class GraphQLShop:
    """The endpoint's state: orders, bucket, counters and faults (served before any normal answer)."""

    orders: list[dict[str, Any]]
    clock: FakeClock = field(default_factory=FakeClock)
    order_cost: int = 20
    bucket_size: float = 2000.0
    restore_rate: float = 100.0
    max_cost: int = 1000
    actual_share: float = 0.5
    faults: list[Callable[[], httpx.Response]] = field(default_factory=list)
    # Bulk: polls before an operation completes, how it ends, download faults (popped per GET).
    bulk_polls: int = 2
    bulk_end: str = "COMPLETED"
    bulk_busy: int = 0
    # LIMIT_REACHED while this many operations run (None: no limit), and for every start after this many.
    bulk_slots: int | None = None
    bulk_starts: int | None = None
    bulk_inline_refund_lines: bool = False
    download_faults: list[str] = field(default_factory=list)
    bulk: dict[str, dict] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)
    throttled: int = 0
    operations: list[str] = field(default_factory=list)
    firsts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.nodes = [graphql_node(order) for order in self.orders]
        self._available = self.bucket_size
        self._at = self.clock()

    def transport(self) -> httpx.MockTransport:
        """The transport a client under test is given."""
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == BULK_HOST:
            return self._download(request)
        assert request.url.path.endswith("/graphql.json")
        if request.headers.get("X-Shopify-Access-Token") != TOKEN:
            return httpx.Response(401, json={"errors": "[API] Invalid API key or access token"})
        if self.faults:
            return self.faults.pop(0)()
        payload = json.loads(request.content)
        operation, variables = payload["operationName"], payload.get("variables") or {}
        self.operations.append(operation)
        first = int(variables.get("first") or 1)
        requested = {
            "Orders": 2 + first * self.order_cost,
            "OrdersByIds": len(variables.get("ids", [])) * self.order_cost,
            "OrdersCount": 1,
            "OrderLineItems": 2 + first * 3,
            "RefundLineItems": 2 + first * 2,
            "OrderRefunds": 100,
        }.get(operation, 10)
        if requested > self.max_cost:
            message = (
                f"Query cost is {requested}, which exceeds the single query max cost limit ({self.max_cost})."
            )
            return httpx.Response(
                200,
                json={
                    "errors": [{"message": message, "extensions": {"code": "MAX_COST_EXCEEDED"}}],
                    "extensions": {"cost": self._cost(requested, None)},
                },
            )
        available = self._refill()
        if available < requested:
            self.throttled += 1
            return httpx.Response(
                200,
                json={
                    "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                    "extensions": {"cost": self._cost(requested, None)},
                },
            )
        actual = requested * self.actual_share
        self._available -= actual
        if operation == "Orders":
            self.firsts.append(first)
        data = getattr(self, f"_{operation}")(variables, first)
        return httpx.Response(200, json={"data": data, "extensions": {"cost": self._cost(requested, actual)}})

    # -- operations -----------------------------------------------------------------------------------

    # Methods named after the operations they answer.
    def _Orders(self, variables: dict, first: int) -> dict:
        matching = sorted(self._search(variables.get("query")), key=lambda n: (n["updatedAt"], n["id"]))
        connection = _connection(matching, variables.get("after"), first)
        connection["nodes"] = [self._cut(node) for node in connection["nodes"]]
        return {"orders": connection}

    def _OrdersByIds(self, variables: dict, first: int) -> dict:
        by_id = {node["id"]: node for node in self.nodes}
        return {"nodes": [self._cut(by_id[i]) if i in by_id else None for i in variables["ids"]]}

    def _OrdersCount(self, variables: dict, first: int) -> dict:
        return {"ordersCount": {"count": len(self._search(variables.get("query")))}}

    def _OrderLineItems(self, variables: dict, first: int) -> dict:
        node = self._node(variables["id"])
        return {
            "node": {
                "id": node["id"],
                "lineItems": _connection(node["lineItems"]["nodes"], variables["after"], first),
            }
        }

    def _OrderRefunds(self, variables: dict, first: int) -> dict:
        node = self._node(variables["id"])
        return {"node": {"id": node["id"], "refunds": [self._cut_refund(r) for r in node["refunds"]]}}

    def _RefundLineItems(self, variables: dict, first: int) -> dict:
        refund = next(r for n in self.nodes for r in n["refunds"] if r["id"] == variables["id"])
        lines = _connection(refund["refundLineItems"]["nodes"], variables["after"], first)
        return {"node": {"id": refund["id"], "refundLineItems": lines}}

    # -- bulk operations ------------------------------------------------------------------------------

    def _BulkOrders(self, variables: dict, first: int) -> dict:
        if self.bulk_busy:
            self.bulk_busy -= 1
            message = (
                "A bulk query operation for this app and shop is already in progress: "
                "gid://shopify/BulkOperation/1."
            )
            errors = [{"field": None, "message": message}]
            return {"bulkOperationRunQuery": {"bulkOperation": None, "userErrors": errors}}
        running = sum(op["status"] == "RUNNING" for op in self.bulk.values())
        if (self.bulk_slots is not None and running >= self.bulk_slots) or (
            self.bulk_starts is not None and len(self.bulk) >= self.bulk_starts
        ):
            errors = [
                {"code": "LIMIT_REACHED", "field": None, "message": "A maximum of 5 bulk query operations"}
            ]
            return {"bulkOperationRunQuery": {"bulkOperation": None, "userErrors": errors}}
        operation_id = f"gid://shopify/BulkOperation/{100 + len(self.bulk)}"
        self.bulk[operation_id] = {"query": variables["query"], "polls": 0, "status": "RUNNING"}
        created = {"id": operation_id, "status": "CREATED"}
        return {"bulkOperationRunQuery": {"bulkOperation": created, "userErrors": []}}

    def _BulkOperationStatus(self, variables: dict, first: int) -> dict:
        op = self.bulk[variables["id"]]
        op["polls"] += 1
        if op["status"] == "RUNNING" and op["polls"] > self.bulk_polls:
            op["status"] = self.bulk_end
        state = {"id": variables["id"], "status": op["status"], "objectCount": str(op["polls"] * 10)}
        if op["status"] == "COMPLETED":
            name = variables["id"].rsplit("/", 1)[1]
            state["url"] = f"https://{BULK_HOST}/{name}.jsonl?signature={len(self.downloads)}"
        if op["status"] == "FAILED":
            state.update(
                errorCode="INTERNAL_SERVER_ERROR", partialDataUrl=f"https://{BULK_HOST}/partial.jsonl"
            )
        return {"node": state}

    def _CancelBulkOperation(self, variables: dict, first: int) -> dict:
        self.bulk[variables["id"]]["status"] = "CANCELED"
        cancelling = {"id": variables["id"], "status": "CANCELING"}
        return {"bulkOperationCancel": {"bulkOperation": cancelling, "userErrors": []}}

    def _download(self, request: httpx.Request) -> httpx.Response:
        self.downloads.append(str(request.url))
        assert "X-Shopify-Access-Token" not in request.headers  # a pre-signed URL never gets the token
        fault = self.download_faults.pop(0) if self.download_faults else None
        if fault == "expired":
            return httpx.Response(403, text="<Error><Code>AccessDenied</Code>Request has expired</Error>")
        name = request.url.path.strip("/").removesuffix(".jsonl")
        query = self.bulk[f"gid://shopify/BulkOperation/{name}"]["query"]  # the operation the URL names
        match = re.search(r'orders\(query: "([^"]*)"', query)
        nodes = sorted(
            self._search(match.group(1) if match else None), key=lambda n: (n["updatedAt"], n["id"])
        )
        by_id = {graphql_node(o)["id"]: o for o in self.orders}
        chosen = [by_id[n["id"]] for n in nodes]
        data = b"".join(bulk_lines(chosen, inline_refund_lines=self.bulk_inline_refund_lines))
        ranged = re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", ""))
        start = int(ranged.group(1)) if ranged and fault != "no-range" else 0
        status = 206 if start else 200
        if fault == "cut":
            return httpx.Response(status, stream=_CutStream(data[start:], keep=len(data[start:]) // 2))
        return httpx.Response(status, content=data[start:])

    # -- helpers --------------------------------------------------------------------------------------

    def _node(self, node_id: str) -> dict:
        return next(node for node in self.nodes if node["id"] == node_id)

    def _cut_refund(self, refund: dict) -> dict:
        return {
            **refund,
            "refundLineItems": _connection(
                refund["refundLineItems"]["nodes"], None, NESTED_REFUND_LINE_ITEMS
            ),
        }

    def _cut(self, node: dict) -> dict:
        return {
            **node,
            "lineItems": _connection(node["lineItems"]["nodes"], None, NESTED_LINE_ITEMS),
            "refunds": [self._cut_refund(r) for r in node["refunds"][:NESTED_REFUNDS]],
        }

    def _search(self, query: str | None) -> list[dict]:
        nodes = self.nodes
        for term in re.findall(r"(\w+):(>=|<=|>|<)?'?([^' ]+)'?", query or ""):
            name, comparator, value = term
            if name == "status" and value == "cancelled":
                nodes = [n for n in nodes if n["cancelledAt"]]
            elif name == "updated_at":
                bound = datetime.fromisoformat(value.replace("Z", "+00:00"))
                compare = {">=": lambda t, b=bound: t >= b, "<=": lambda t, b=bound: t <= b}[comparator]
                nodes = [
                    n for n in nodes if compare(datetime.fromisoformat(n["updatedAt"].replace("Z", "+00:00")))
                ]
        return nodes

    def _refill(self) -> float:
        now = self.clock()
        self._available = min(self.bucket_size, self._available + (now - self._at) * self.restore_rate)
        self._at = now
        return self._available

    def _cost(self, requested: float, actual: float | None) -> dict:
        return {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": self.bucket_size,
                "currentlyAvailable": int(self._available),
                "restoreRate": self.restore_rate,
            },
        }


def graphql_error(message: str, code: str) -> Callable[[], httpx.Response]:
    """A fault: an answer with one GraphQL error."""
    return lambda: httpx.Response(200, json={"errors": [{"message": message, "extensions": {"code": code}}]})


BULK_HOST = "bulk-results.test"


class _CutStream(httpx.SyncByteStream):
    """A body that breaks off after `keep` bytes, as a dropped download does."""

    def __init__(self, data: bytes, keep: int) -> None:
        self.data, self.keep = data, keep

    def __iter__(self) -> Iterator[bytes]:
        yield self.data[: self.keep // 2]
        yield self.data[self.keep // 2 : self.keep]
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
