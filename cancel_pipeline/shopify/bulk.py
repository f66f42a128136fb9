"""History through a Bulk Operation: one `bulkOperationRunQuery` over a range (or a slice of one) instead of paging.

Shopify runs the query on its side and offers the result as a JSONL file: one line per order, one per line
item and refund line with `__parentId` naming its parent (asked with `groupObjects: true`, so children come
right after their parent). This module starts one operation, polls it (`bulk_slices.py` schedules the polls:
each wait a tenth of the time the operation has run so far) while logging progress (objects so far, elapsed),
then streams the file and cuts it into pages of whole orders (a chunk ends only before an order's line), each
landed verbatim; the warehouse joins children to parents inside DuckDB.

What can go wrong, and what happens:

- the app already runs as many bulk queries as Shopify allows: `try_start` says so and the caller
  (`bulk_slices.py`, which cuts a range into slices read by concurrent operations) queues the slice, waits up
  to `wait_for_slot_s` for a slot, or pages instead;
- the operation FAILED (a `partialDataUrl` may exist), was CANCELED or EXPIRED: `BulkOperationFailed`; nothing
  partial is landed, because landing happens only once every page has been read;
- the download is cut: resumed from the last whole line (`Range`), or restarted and the bytes already read
  skipped when the server ignores ranges; an expired or unreachable URL is asked for again once;
- the run is stopped (an exception, Dagster terminating the run, the caller closing the iterator): the
  operation is cancelled with `bulkOperationCancel`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from cancel_pipeline.shopify.errors import ShopifyError
from cancel_pipeline.shopify.pages import OrderPage

#: Bytes of JSONL per landed page (cut on an order boundary): large enough to parse in few statements.
BULK_CHUNK_BYTES = 8 * 1024 * 1024

#: From this Admin API version an app may run five bulk queries at once per shop; before it, one.
CONCURRENT_BULK_FROM = "2026-01"
MAX_CONCURRENT_BULK = 5

_TERMINAL = {"COMPLETED", "FAILED", "CANCELED", "EXPIRED"}
_LINE_ITEM_FIELDS = "id sku title quantity currentQuantity variant { id } product { id }"
_REFUND_LINE_FIELDS = "lineItem { id } quantity restockType"

RUN_MUTATION = """
mutation BulkOrders($query: String!) {
  bulkOperationRunQuery(query: $query, groupObjects: true) {
    bulkOperation { id status }
    userErrors { code field message }
  }
}
"""

POLL_QUERY = """
query BulkOperationStatus($id: ID!) {
  node(id: $id) {
    ... on BulkOperation {
      id status errorCode objectCount rootObjectCount fileSize url partialDataUrl createdAt completedAt
    }
  }
}
"""

CURRENT_QUERY = """
query CurrentBulkOperation {
  currentBulkOperation(type: QUERY) { id status objectCount createdAt }
}
"""

CANCEL_MUTATION = """
mutation CancelBulkOperation($id: ID!) {
  bulkOperationCancel(id: $id) {
    bulkOperation { id status }
    userErrors { field message }
  }
}
"""


def bulk_orders_query(search: str | None) -> str:
    """The bulk query: every order of `search` with its line items and refunds (fields as `OrderFields`)."""
    argument = f"(query: {_quoted(search)}, sortKey: UPDATED_AT)" if search else "(sortKey: UPDATED_AT)"
    return f"""{{
  orders{argument} {{
    edges {{ node {{
      id name createdAt updatedAt cancelledAt cancelReason closedAt
      displayFinancialStatus displayFulfillmentStatus sourceName test currencyCode tags
      totalPriceSet {{ shopMoney {{ amount currencyCode }} }}
      lineItems {{ edges {{ node {{ {_LINE_ITEM_FIELDS} }} }} }}
      refunds {{ id createdAt refundLineItems {{ edges {{ node {{ {_REFUND_LINE_FIELDS} }} }} }} }}
    }} }}
  }}
}}"""


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class GraphQLSender(Protocol):
    """What a bulk export needs of the GraphQL client (`ShopifyGraphQLClient`)."""

    store: str
    api_version: str

    @property
    def endpoint(self) -> str: ...
    @property
    def log(self) -> logging.Logger: ...
    @property
    def http(self) -> httpx.Client: ...
    def now(self) -> float: ...
    def pause(self, seconds: float) -> None: ...
    def execute(self, operation: str, query: str, variables: dict[str, Any], cost: float = 10) -> dict: ...


class BulkOperationFailed(ShopifyError):
    """The bulk operation ended without a complete result (FAILED, CANCELED, EXPIRED, or no download)."""


@dataclass
class BulkSettings:
    """How a bulk export waits and reads."""

    wait_for_slot_s: float = 600.0
    """How long to wait for a bulk slot held by other bulk queries of the app (while none of the read's own
    operations runs, whose end would free one) before paging instead."""
    poll_initial_s: float = 1.0
    poll_max_s: float = 30.0
    poll_fraction: float = 0.1
    """A poll waits this share of the time the operation has run so far (between the initial and max
    delays), so the result is seen at most ~10% after it is ready; doubling the delay would risk 100%."""
    chunk_bytes: int = BULK_CHUNK_BYTES
    download_attempts: int = 5


class BulkExport:
    """One bulk export of orders through `client` (a `ShopifyGraphQLClient`); `label` names it in logs
    (a slice of a range read by several operations, e.g. `slice 2 of 5`)."""

    def __init__(self, client: GraphQLSender, settings: BulkSettings | None = None, label: str = "") -> None:
        self.client = client
        self.settings = settings or BulkSettings()
        self.label = label
        self.operation_id: str | None = None
        self.ended = False
        """True once Shopify reported the operation finished (completed or not), or once it was asked to cancel
        it: nothing left to cancel."""
        self.refusal: str | None = None
        """Why the last `try_start` could not start: Shopify's message about the app's busy bulk slots."""

    def try_start(self, search: str | None) -> str | None:
        """Ask once to start the operation; its id, or None when the app runs as many bulk queries as Shopify
        allows (OPERATION_IN_PROGRESS, LIMIT_REACHED: `refusal` says which). Any other refusal raises."""
        body = self.client.execute(
            "bulkOperationRunQuery", RUN_MUTATION, {"query": bulk_orders_query(search)}
        )
        payload = (body.get("data") or {}).get("bulkOperationRunQuery") or {}
        errors = payload.get("userErrors") or []
        operation = payload.get("bulkOperation") or {}
        if not errors and isinstance(operation.get("id"), str):
            self.operation_id = operation["id"]
            self.refusal = None
            self.client.log.info(
                "%s: bulk operation %s%s started", self.client.store, self.operation_id, self._labelled()
            )
            return self.operation_id
        busy = [e for e in errors if _in_progress(e)]
        if not busy:
            detail = "; ".join(str(e.get("message")) for e in errors) or "no operation returned"
            raise BulkOperationFailed(
                f"Shopify refused the bulk query (store {self.client.store}, bulkOperationRunQuery): {detail}",
                store=self.client.store,
                endpoint=self.client.endpoint,
            )
        self.refusal = str(busy[0].get("message"))
        return None

    def _labelled(self) -> str:
        return f" ({self.label})" if self.label else ""

    def observe(self, state: dict[str, Any], elapsed: float, total: str = "") -> dict[str, Any] | None:
        """Log a polled state (`total`: what a read of several operations adds); the state once COMPLETED,
        None while it runs, BulkOperationFailed once it ended otherwise."""
        status = state.get("status")
        self.client.log.info(
            "%s: bulk operation %s%s %s: %s objects (%s orders) after %.0f s%s",
            self.client.store,
            self.operation_id,
            self._labelled(),
            status,
            state.get("objectCount"),
            state.get("rootObjectCount"),
            elapsed,
            total,
        )
        if status in _TERMINAL:
            self.ended = True
        if status == "COMPLETED":
            return state
        if self.ended:
            raise self._ended(state)
        return None

    def poll(self) -> dict[str, Any]:
        """The operation's current state."""
        body = self.client.execute("bulkOperation", POLL_QUERY, {"id": self.operation_id})
        state = (body.get("data") or {}).get("node")
        if not isinstance(state, dict) or not isinstance(state.get("status"), str):
            raise BulkOperationFailed(
                f"bulk operation {self.operation_id} of store {self.client.store} is not found",
                store=self.client.store,
                endpoint=self.client.endpoint,
            )
        return state

    def cancel(self) -> None:
        """Ask Shopify to cancel the operation (best effort: a failure here must not hide the cause)."""
        if self.operation_id is None or self.ended:
            return
        self.ended = True  # asked once: a second request would only be refused
        try:
            self.client.execute("bulkOperationCancel", CANCEL_MUTATION, {"id": self.operation_id})
            self.client.log.warning("%s: bulk operation %s cancelled", self.client.store, self.operation_id)
        except Exception as exc:  # the run is already failing or stopping; say so and go on
            self.client.log.warning(
                "%s: could not cancel bulk operation %s: %s", self.client.store, self.operation_id, exc
            )

    def pages(self, state: dict[str, Any], request_path: str, first_number: int = 1) -> Iterator[OrderPage]:
        """The result file as pages of whole orders (verbatim JSONL), streamed, numbered from `first_number`."""
        url = state.get("url")
        if not url:
            return  # nothing matched: Shopify offers no file
        number = first_number
        for chunk, roots in self._chunks(str(url)):
            yield OrderPage(
                page_number=number,
                request_path=request_path,
                api_version=self.client.api_version,
                fetched_at=datetime.now(UTC),
                body=chunk,
                order_count=roots,
                api="graphql",
                operation="bulk",
            )
            number += 1

    def _chunks(self, url: str) -> Iterator[tuple[bytes, int]]:
        """(JSONL bytes, orders) cut before an order's line once `chunk_bytes` are reached."""
        parts: list[bytes] = []
        size = roots = 0
        for line in self._lines(url):
            is_root = b'"__parentId"' not in line
            if is_root and size >= self.settings.chunk_bytes:
                yield b"".join(parts), roots
                parts, size, roots = [], 0, 0
            parts.append(line)
            size += len(line)
            roots += is_root
        if parts:
            yield b"".join(parts), roots

    def _lines(self, url: str) -> Iterator[bytes]:
        """Whole lines of the file (newline included), resuming a cut download from the last whole line."""
        offset = 0
        failures = 0
        refreshed = False
        while True:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            pending = b""
            try:
                # The URL is pre-signed and may point elsewhere: it gets no Shopify token.
                with self.client.http.stream("GET", url, headers=headers) as response:
                    if response.status_code in (401, 403, 404, 410) and not refreshed:
                        refreshed = True
                        url = self._fresh_url()
                        continue
                    if response.status_code >= 500:
                        raise httpx.RemoteProtocolError(f"HTTP {response.status_code}")  # retried below
                    if response.status_code not in (200, 206):
                        raise self._download_failed(f"HTTP {response.status_code}")
                    skip = offset if (offset and response.status_code == 200) else 0  # range ignored
                    for data in response.iter_bytes():
                        if skip:
                            cut = min(skip, len(data))
                            data, skip = data[cut:], skip - cut
                        pending += data
                        *whole, pending = pending.split(b"\n")
                        for line in whole:
                            offset += len(line) + 1
                            if line.strip():
                                yield line + b"\n"
                if pending.strip():  # a last line without a newline
                    offset += len(pending)
                    yield pending + b"\n"
                return
            except httpx.TransportError as exc:
                failures += 1
                if failures >= self.settings.download_attempts:
                    raise self._download_failed(f"{type(exc).__name__} after {failures} attempts") from None
                self.client.log.warning(
                    "%s: bulk result download cut at byte %d (%s), resuming",
                    self.client.store,
                    offset,
                    type(exc).__name__,
                )
                self.client.pause(min(2.0**failures, 30.0))

    def _fresh_url(self) -> str:
        state = self.poll()
        url = state.get("url")
        if state.get("status") != "COMPLETED" or not url:
            raise self._download_failed(f"the result URL expired and the operation is {state.get('status')}")
        self.client.log.warning("%s: bulk result URL refused, using a fresh one", self.client.store)
        return str(url)

    def _download_failed(self, problem: str) -> BulkOperationFailed:
        return BulkOperationFailed(
            f"could not download the result of bulk operation {self.operation_id} from store "
            f"{self.client.store} ({problem}); nothing was landed, run the range again",
            store=self.client.store,
            endpoint=self.client.endpoint,
        )

    def _ended(self, state: dict[str, Any]) -> BulkOperationFailed:
        status = state.get("status")
        partial = " (Shopify kept partial data; it is not landed: a range lands whole or not at all)"
        message = (
            f"bulk operation {self.operation_id} of store {self.client.store} ended {status}"
            + (f" with {state['errorCode']}" if state.get("errorCode") else "")
            + (partial if state.get("partialDataUrl") else "")
            + "; nothing was landed. "
            + (
                "ACCESS_DENIED: grant read_orders, and read_all_orders for orders older than 60 days"
                if state.get("errorCode") == "ACCESS_DENIED"
                else "Run the range again (or set SHOPIFY_BULK_THRESHOLD_HOURS higher to page it)"
            )
        )
        return BulkOperationFailed(message, store=self.client.store, endpoint=self.client.endpoint)


def concurrent_bulk_limit(api_version: str) -> int:
    """How many bulk queries Shopify runs at once per app and shop at `api_version` (`YYYY-MM` or
    `unstable`): five from 2026-01, one before."""
    newer = api_version == "unstable" or api_version >= CONCURRENT_BULK_FROM
    return MAX_CONCURRENT_BULK if newer else 1


def poll_delay(elapsed: float, settings: BulkSettings) -> float:
    """Seconds until the next poll of an operation that has run `elapsed` seconds."""
    return min(settings.poll_max_s, max(settings.poll_initial_s, elapsed * settings.poll_fraction))


def _in_progress(error: dict[str, Any]) -> bool:
    code = error.get("code")
    message = str(error.get("message") or "").lower()
    return code in ("OPERATION_IN_PROGRESS", "LIMIT_REACHED") or "already in progress" in message
