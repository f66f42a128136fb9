"""`ShopifyGraphQLClient`: orders through the GraphQL Admin API, with the interface of the REST client.

`iter_order_pages`, `get_orders` and `count_orders` behave as `ShopifyClient`'s do, so assets, the sensor and
the CLI take either client. A page is one answer of the `orders` connection (or of `nodes(ids:)`), landed as
`{"response": <the answer verbatim>, "completions": [<follow-up answers verbatim>]}`: an order with more line
items, refunds or refund lines than the first nested page is completed by follow-up queries whose answers
travel with the page, so the warehouse's parse (which joins them back) sees every order whole.

Pacing is on the cost bucket (`cost.py`): the client books each query's requested cost before sending it and
adopts `extensions.cost.throttleStatus` from every answer. A query the server finds over the single-query
cost limit is sent again with a smaller `first` (pages shrink; nothing fails). Retries follow the shared
policy (`retry.py`): THROTTLED (200 or 429) after the bucket has refilled, 5xx, timeouts, dropped
connections and truncated bodies with backoff. Any other entry of a GraphQL `errors` list fails with a
message naming the store, the operation and the fix.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from cancel_pipeline.shopify.bulk import BulkSettings, concurrent_bulk_limit
from cancel_pipeline.shopify.bulk_slices import SlicedBulkRead
from cancel_pipeline.shopify.cost import (
    MAX_QUERY_COST,
    STANDARD_BUCKET_POINTS,
    STANDARD_RESTORE_RATE,
    CostBucket,
)
from cancel_pipeline.shopify.errors import ShopifyError, ShopifyRequestFailed
from cancel_pipeline.shopify.graphql_queries import (
    LINE_ITEM_COST,
    MAX_CONNECTION_PAGE,
    NESTED_REFUNDS,
    NODES_QUERY,
    ORDER_COST,
    ORDER_LINE_ITEMS_QUERY,
    ORDER_REFUNDS_QUERY,
    ORDERS_COUNT_QUERY,
    ORDERS_QUERY,
    REFUND_LINE_COST,
    REFUND_LINE_ITEMS_QUERY,
    gid,
    orders_search,
)
from cancel_pipeline.shopify.pages import OrderPage
from cancel_pipeline.shopify.rate_limit import parse_retry_after
from cancel_pipeline.shopify.retry import Failed, RetryPolicy, Setback, Throttled, failure_for_status
from cancel_pipeline.shopify.session import DEFAULT_API_VERSION, SessionClient, ShopifySession

__all__ = ["ShopifyGraphQLClient", "ShopifyGraphQLError"]

_QUERY_COST = re.compile(r"[Qq]uery cost is (\d+)")


class ShopifyGraphQLError(ShopifyError):
    """A GraphQL `errors` entry no retry can fix (unknown field, ACCESS_DENIED, ...); `code` is Shopify's."""

    def __init__(self, message: str, *, store: str, endpoint: str, code: str | None) -> None:
        super().__init__(message, store=store, endpoint=endpoint, status=200)
        self.code = code


class _TooCostly(Exception):
    """The server refused a query as over the single-query cost limit; `cost` is what it computed."""

    def __init__(self, cost: float | None) -> None:
        super().__init__(f"query cost {cost} over the limit")
        self.cost = cost


class ShopifyGraphQLClient(SessionClient):
    """GraphQL Admin API client for one store's orders, with `ShopifyClient`'s interface.

    Credentials: exactly one of `access_token` or (`client_id`, `client_secret`). Pacing: a model of the
    app's cost bucket (`bucket_points`, refilling `restore_rate` points a second; both follow the server).
    Retries: the shared `RetryPolicy` (`max_retries` failures, `max_throttle_retries` throttles per request).
    `sleep`, `clock` and the transport are injectable for tests.
    """

    api = "graphql"

    def __init__(
        self,
        store: str,
        *,
        access_token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        bucket_points: float = STANDARD_BUCKET_POINTS,
        restore_rate: float = STANDARD_RESTORE_RATE,
        max_query_cost: int = MAX_QUERY_COST,
        retry_policy: RetryPolicy | None = None,
        max_retries: int = 5,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
        bulk_threshold: timedelta | None = None,
        bulk_settings: BulkSettings | None = None,
        bulk_concurrency: int | None = None,
        progress_logger: logging.Logger | None = None,
    ) -> None:
        # Checked before the session opens its connection pool.
        allowed = concurrent_bulk_limit(api_version)
        if bulk_concurrency is not None and not 1 <= bulk_concurrency <= allowed:
            raise ValueError(
                f"bulk_concurrency must be from 1 to {allowed} at Admin API version {api_version} (Shopify runs "
                f"{allowed} bulk {'query' if allowed == 1 else 'queries'} at once per app there), "
                f"got {bulk_concurrency}"
            )
        self._retry = retry_policy or RetryPolicy(max_retries=max_retries)
        session = ShopifySession(
            store,
            access_token=access_token,
            client_id=client_id,
            client_secret=client_secret,
            api_version=api_version,
            retry_policy=self._retry,
            timeout=timeout,
            transport=transport,
            sleep=sleep,
            clock=clock,
            logger=logger,
        )
        super().__init__(session)
        self._bucket = CostBucket(bucket_points, restore_rate, clock=clock)
        self._max_query_cost = max_query_cost
        self._log = session.log
        self._progress = progress_logger or self._log
        # Requested cost of one order, learnt from the server's `requestedQueryCost` once it has answered.
        self._order_cost = float(ORDER_COST)
        self.bulk_threshold = bulk_threshold
        self._bulk_settings = bulk_settings or BulkSettings()
        self.bulk_concurrency = allowed if bulk_concurrency is None else bulk_concurrency
        """How many bulk operations (slices of a range) a bulk read runs at once."""
        self._bulk_reads: list[SlicedBulkRead] = []

    @property
    def log(self) -> logging.Logger:
        """Where a bulk operation's progress goes: the run's log inside Dagster, else the client's logger."""
        return self._progress

    @property
    def http(self) -> httpx.Client:
        """The HTTP connection pool (a bulk result is downloaded through it, without the token)."""
        return self._session.http

    def pause(self, seconds: float) -> None:
        """Wait, with the client's injectable sleep."""
        self._session.pause(seconds)

    def now(self) -> float:
        """Seconds on the client's injectable monotonic clock."""
        return self._session.clock()

    def close(self) -> None:
        """Cancel the bulk operations of a read left unfinished, then close the connections.

        A run stopped while its consumer (not this client) runs leaves the page iterator suspended, and its
        slices still running at Shopify would hold the app's bulk slots until the iterator is collected."""
        for read in list(self._bulk_reads):
            read.cancel()
        super().close()

    def execute(self, operation: str, query: str, variables: dict[str, Any], cost: float = 10) -> dict:
        """Send one query or mutation, paced and retried; its parsed answer (`data` and `extensions`)."""
        try:
            return self._post(operation, query, variables, cost)[1]
        except _TooCostly as exc:
            raise self._graphql_error(
                operation, [{"message": f"query cost {exc.cost} over the limit"}]
            ) from None

    @property
    def endpoint(self) -> str:
        """Path of the GraphQL endpoint (never a secret)."""
        return f"/admin/api/{self.api_version}/graphql.json"

    # -- public API ---------------------------------------------------------------------------------

    def iter_order_pages(
        self,
        *,
        status: str = "any",
        updated_at_min: datetime | None = None,
        updated_at_max: datetime | None = None,
        limit: int = MAX_CONNECTION_PAGE,
        fields: list[str] | None = None,
        streams: int = 1,
    ) -> Iterator[OrderPage]:
        """Pages of the `orders` connection for the filters, sorted by `updated_at`, one at a time.

        Each page holds up to `limit` orders, fewer when the single-query cost limit needs it. `fields` is
        REST's and not supported here; `streams` is accepted for interface parity, and one cursor is walked
        (the cost bucket, not the latency, bounds a GraphQL fetch). A range longer than `bulk_threshold` is
        read by bulk operations instead: `bulk_concurrency` of them at once, one per slice (`bulk_slices.py`).
        """
        if not 1 <= limit <= MAX_CONNECTION_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_CONNECTION_PAGE}, got {limit}")
        if streams < 1:
            raise ValueError(f"streams must be at least 1, got {streams}")
        if fields:
            raise ValueError(
                "fields= selects REST fields; the GraphQL client always selects the order fields"
            )
        if (
            updated_at_min is not None
            and updated_at_max is not None
            and self._wants_bulk(updated_at_min, updated_at_max)
        ):
            read = SlicedBulkRead(
                self,
                self._bulk_settings,
                status=status,
                updated_at_min=updated_at_min,
                updated_at_max=updated_at_max,
                concurrency=self.bulk_concurrency,
                request_path=lambda search: f"{self.endpoint} bulkOperationRunQuery {_selection(search)}",
                pager=lambda search, number: self._paged(search, limit, number),
            )
            self._bulk_reads.append(read)
            try:
                yield from read.pages()
            finally:
                self._bulk_reads.remove(read)
            return
        search = orders_search(status=status, updated_at_min=updated_at_min, updated_at_max=updated_at_max)
        yield from self._paged(search, limit, 1)

    def _paged(self, search: str | None, limit: int, page_number: int) -> Iterator[OrderPage]:
        """Pages of the `orders` connection for `search`, walking one cursor, numbered from `page_number`."""
        request_path = f"{self.endpoint} {_selection(search)}"
        after: str | None = None
        while True:
            variables: dict[str, Any] = {"after": after, "query": search}
            response, body, first = self._query_sized(
                "orders", ORDERS_QUERY, variables, limit, self._order_cost
            )
            connection = _dig(body, "data", "orders")
            nodes = connection.get("nodes") if isinstance(connection, dict) else None
            info = connection.get("pageInfo") if isinstance(connection, dict) else None
            if not isinstance(nodes, list) or not isinstance(info, dict):
                raise self._unexpected_body("orders")
            self._learn_order_cost(body, first)
            yield self._page(page_number, request_path, response, nodes, "orders")
            page_number += 1
            if not info.get("hasNextPage"):
                return
            after = info.get("endCursor")
            if not isinstance(after, str):
                raise self._unexpected_body("orders")

    def _wants_bulk(self, updated_at_min: datetime, updated_at_max: datetime) -> bool:
        """A range longer than `bulk_threshold` is read by bulk operations; shorter ones page."""
        return self.bulk_threshold is not None and updated_at_max - updated_at_min > self.bulk_threshold

    def refetch_page(self, request_path: str, page_number: int) -> OrderPage:
        """Not needed over GraphQL: every answer is parsed in full when it arrives (its cursor is in it), so
        a damaged body is retried there and no page lands unparsed."""
        raise ShopifyError(
            f"{self.store}: page {page_number} ({request_path}) came from the GraphQL API, whose answers are "
            "parsed on arrival; a page that does not parse at landing cannot be fetched again"
        )

    def get_orders(self, ids: Iterable[int]) -> Iterator[OrderPage]:
        """Pages holding the given orders (any status), by `nodes(ids:)` in batches the cost limit allows."""
        pending = [int(order_id) for order_id in ids]
        page_number = 1
        while pending:
            batch_size = self._orders_per_query(MAX_CONNECTION_PAGE)
            batch, pending = pending[:batch_size], pending[batch_size:]
            variables = {"ids": [gid("Order", order_id) for order_id in batch]}
            try:
                response, body = self._post("nodes", NODES_QUERY, variables, self._order_cost * len(batch))
            except _TooCostly as exc:
                self._shrink_order_cost(exc.cost, len(batch))
                pending = batch + pending
                continue
            nodes = _dig(body, "data", "nodes")
            if not isinstance(nodes, list):
                raise self._unexpected_body("nodes")
            self._learn_order_cost(body, len(batch))
            path = f"{self.endpoint} nodes(ids: {len(batch)} orders)"
            yield self._page(page_number, path, response, nodes, "nodes")
            page_number += 1

    def count_orders(
        self,
        *,
        status: str = "any",
        updated_at_min: datetime | None = None,
        updated_at_max: datetime | None = None,
    ) -> int:
        """`ordersCount` for the filters."""
        search = orders_search(status=status, updated_at_min=updated_at_min, updated_at_max=updated_at_max)
        _, body = self._post("ordersCount", ORDERS_COUNT_QUERY, {"query": search}, 1)
        count = _dig(body, "data", "ordersCount", "count")
        if not isinstance(count, int) or isinstance(count, bool):
            raise self._unexpected_body("ordersCount")
        return count

    # -- pages and nested completion ------------------------------------------------------------------

    def _page(
        self, page_number: int, request_path: str, response: httpx.Response, nodes: list, operation: str
    ) -> OrderPage:
        completions = self._complete(nodes)
        body = b'{"response":' + response.content + b',"completions":[' + b",".join(completions) + b"]}"
        page = OrderPage(
            page_number=page_number,
            request_path=request_path,
            api_version=response.headers.get("X-Shopify-API-Version") or self.api_version,
            fetched_at=datetime.now(UTC),
            body=body,
            order_count=sum(1 for node in nodes if node is not None),
            api=self.api,
            operation=operation,
        )
        self._log.debug(
            "%s GraphQL %s page %d: %d orders, %d completion queries (%d bytes)",
            self.store,
            operation,
            page_number,
            page.order_count,
            len(completions),
            len(body),
        )
        return page

    def _complete(self, nodes: list) -> list[bytes]:
        """Follow-up answers (verbatim) that complete the nested lists the page cut short."""
        completions: list[bytes] = []
        for node in nodes:
            if not isinstance(node, dict) or not isinstance(node.get("id"), str):
                continue  # not an order: the warehouse rejects it, there is nothing to complete
            order_id = node["id"]
            line_info = _dig(node, "lineItems", "pageInfo")
            if isinstance(line_info, dict) and line_info.get("hasNextPage"):
                completions += self._follow(
                    "orderLineItems", ORDER_LINE_ITEMS_QUERY, order_id, line_info, "lineItems", LINE_ITEM_COST
                )
            refunds = node.get("refunds")
            if isinstance(refunds, list) and len(refunds) >= NESTED_REFUNDS:
                # `refunds` is a list, not a connection: a full first page may hide more; ask for all of them.
                try:
                    response, body = self._post("orderRefunds", ORDER_REFUNDS_QUERY, {"id": order_id}, 500)
                except _TooCostly as exc:
                    message = f"the refunds of {order_id} cost {exc.cost}, over the single query limit"
                    raise self._graphql_error("orderRefunds", [{"message": message}]) from None
                completions.append(response.content)
                refunds = _dig(body, "data", "node", "refunds")
            for refund in refunds if isinstance(refunds, list) else []:
                info = _dig(refund, "refundLineItems", "pageInfo")
                if isinstance(info, dict) and info.get("hasNextPage") and isinstance(refund.get("id"), str):
                    completions += self._follow(
                        "refundLineItems",
                        REFUND_LINE_ITEMS_QUERY,
                        refund["id"],
                        info,
                        "refundLineItems",
                        REFUND_LINE_COST,
                    )
        return completions

    def _follow(
        self, operation: str, query: str, node_id: str, info: dict, field: str, node_cost: float
    ) -> list[bytes]:
        """Walk one nested connection of `node_id` from its `info` page on; the answers verbatim."""
        answers = []
        after = info.get("endCursor")
        while isinstance(after, str):
            variables = {"id": node_id, "after": after}
            response, body, _ = self._query_sized(operation, query, variables, MAX_CONNECTION_PAGE, node_cost)
            answers.append(response.content)
            info = _dig(body, "data", "node", field, "pageInfo")
            if not isinstance(info, dict):
                raise self._unexpected_body(operation)
            after = info.get("endCursor") if info.get("hasNextPage") else None
        return answers

    # -- sizing queries under the single-query cost limit ----------------------------------------------

    def _query_sized(
        self, operation: str, query: str, variables: dict[str, Any], limit: int, node_cost: float
    ) -> tuple[httpx.Response, dict, int]:
        """Send with the largest `first` the cost limit allows; a size the server refuses is split."""
        first = self._nodes_per_query(limit, node_cost)
        while True:
            try:
                response, body = self._post(
                    operation, query, {**variables, "first": first}, 2 + first * node_cost
                )
                return response, body, first
            except _TooCostly as exc:
                if first == 1:
                    raise self._graphql_error(
                        operation, [{"message": f"one node costs {exc.cost}, over the single query limit"}]
                    ) from None
                # Sized by what the server computed, and always smaller than the refused size.
                if exc.cost:
                    node_cost = max(node_cost, (exc.cost - 2) / first)
                first = min(first - 1, self._nodes_per_query(limit, node_cost), max(1, first // 2))
                if operation == "orders":
                    self._order_cost = node_cost
                self._log.info(
                    "%s: GraphQL %s is over the single query cost limit, asking for %d nodes per query",
                    self.store,
                    operation,
                    first,
                )

    def _nodes_per_query(self, limit: int, node_cost: float) -> int:
        return max(1, min(limit, math.floor((self._max_query_cost - 2) / max(node_cost, 1e-9))))

    def _orders_per_query(self, limit: int) -> int:
        return self._nodes_per_query(limit, self._order_cost)

    def _learn_order_cost(self, body: dict, first: int) -> None:
        requested = _dig(body, "extensions", "cost", "requestedQueryCost")
        if isinstance(requested, int | float) and requested > 0 and first > 0:
            self._order_cost = max(1.0, (float(requested) - 2) / first)

    def _shrink_order_cost(self, cost: float | None, count: int) -> None:
        learnt = (cost / count) if cost else self._order_cost * 2
        self._order_cost = max(learnt, self._order_cost * 1.01)

    # -- one query, with pacing and retries ---------------------------------------------------------

    def _post(
        self, operation: str, query: str, variables: dict[str, Any], estimated_cost: float
    ) -> tuple[httpx.Response, dict]:
        """Send one GraphQL query until it is answered without errors; the response and its parsed body."""
        retries = self._retry.start()
        attempts = 0
        renewed_token = False
        payload = {"query": query, "variables": variables, "operationName": _operation_name(query)}
        url = self._session.base_url + self.endpoint
        while True:
            self._session.check_stop()
            self._wait_for_bucket(estimated_cost)
            headers = self._session.token_headers()
            attempts += 1
            self._session.count_request(retry=attempts > 1)
            setback: Setback
            try:
                response = self._session.http.post(url, json=payload, headers=headers)
            except httpx.TransportError as exc:
                # Timeouts, refused/reset connections and bodies cut short (RemoteProtocolError).
                setback = Failed(type(exc).__name__)
            else:
                self._session.count_bytes(response)
                outcome = self._classify(operation, response, estimated_cost)
                if isinstance(outcome, dict):
                    return response, outcome
                if outcome is None:
                    if renewed_token or not self._session.forget_token(self.endpoint):
                        raise self._status_error(operation, response)
                    renewed_token = True  # a client-credentials token expired early: exchange once more
                    continue
                setback = outcome
            delay = retries.after(setback)
            if delay is None:
                raise self._request_failed(operation, setback, attempts)
            if isinstance(setback, Throttled):
                self._session.count_throttle()
                self._session.count_wait(delay)
                self._log.warning("%s: GraphQL %s throttled, waiting %.2f s", self.store, operation, delay)
            else:
                self._log.warning(
                    "%s: GraphQL %s failed (%s), retry %d of %d in %.2f s",
                    self.store,
                    operation,
                    setback.problem,
                    retries.failures,
                    self._retry.max_retries,
                    delay,
                )
            self._session.pause(delay)

    def _classify(
        self, operation: str, response: httpx.Response, estimated_cost: float
    ) -> dict | Setback | None:
        """The parsed body of a good answer, a setback to retry, None for a refused token; raises the rest."""
        status = response.status_code
        body: Any = None
        if status == 200 or status == 429:
            try:
                body = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                if status == 200:
                    return Failed("body is not complete JSON (truncated?)", status)
        cost = _dig(body, "extensions", "cost")
        if cost is not None:
            self._bucket.observe(cost)
        errors = body.get("errors") if isinstance(body, dict) else None
        codes = [_dig(error, "extensions", "code") for error in errors] if isinstance(errors, list) else []
        if status == 429 or "THROTTLED" in codes:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            wait = (
                retry_after if retry_after is not None else self._bucket.throttle_wait(cost, estimated_cost)
            )
            return Throttled(wait, status, "THROTTLED")
        if status != 200:
            failure = failure_for_status(status)
            if failure is not None:
                return failure
            if status == 401:
                return None
            raise self._status_error(operation, response)
        if errors:
            if "MAX_COST_EXCEEDED" in codes or any(_QUERY_COST.search(str(e.get("message"))) for e in errors):
                requested = _dig(cost, "requestedQueryCost")
                match = next((m for e in errors if (m := _QUERY_COST.search(str(e.get("message"))))), None)
                computed = float(match.group(1)) if match else requested
                raise _TooCostly(computed if isinstance(computed, int | float) else None)
            if any(code in ("INTERNAL_SERVER_ERROR",) for code in codes):
                return Failed("INTERNAL_SERVER_ERROR", status)
            raise self._graphql_error(operation, errors)
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise self._unexpected_body(operation)
        return body

    def _wait_for_bucket(self, cost: float) -> None:
        delay = self._bucket.reserve(cost)
        if delay > 0:
            self._session.count_wait(delay)
            self._session.pause(delay)

    # -- errors ---------------------------------------------------------------------------------------

    def _graphql_error(self, operation: str, errors: list) -> ShopifyGraphQLError:
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        code = _dig(first, "extensions", "code")
        message = self._session.redact(str(first.get("message", "")))[:300]
        if code == "ACCESS_DENIED":
            hint = (
                "the app lacks an access scope: grant read_orders, and read_all_orders for orders older than "
                "60 days"
            )
        elif "doesn't exist on type" in message or code == "undefinedField":
            hint = (
                f"Admin API version {self.api_version} does not know a field the pipeline asks for; pin "
                "SHOPIFY_API_VERSION to a supported version, or set SHOPIFY_API=rest"
            )
        else:
            hint = "Shopify refused the GraphQL query"
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        return ShopifyGraphQLError(
            f"{hint} (store {self.store}, GraphQL {operation}, {self.endpoint}"
            f"{', ' + code if isinstance(code, str) else ''}): {message}{more}",
            store=self.store,
            endpoint=self.endpoint,
            code=code if isinstance(code, str) else None,
        )

    def _status_error(self, operation: str, response: httpx.Response) -> ShopifyError:
        return self._session.status_error(f"GraphQL {operation}, {self.endpoint}", self.endpoint, response)

    def _request_failed(self, operation: str, last: Setback, attempts: int) -> ShopifyRequestFailed:
        return self._session.request_failed(f"GraphQL {operation}", self.endpoint, last, attempts)

    def _unexpected_body(self, operation: str) -> ShopifyError:
        return self._session.unexpected_body(f"GraphQL {operation} on {self.endpoint}", self.endpoint)


def _selection(search: str | None) -> str:
    """The `orders` selection as a request path shows it."""
    return f"orders(query: {search or ''!r}, sortKey: UPDATED_AT)"


def _operation_name(query: str) -> str | None:
    match = re.search(r"\b(?:query|mutation)\s+(\w+)", query)
    return match.group(1) if match else None


def _dig(value: Any, *keys: str) -> Any:
    """`value[k1][k2]...`, or None as soon as a level is not a dict."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
