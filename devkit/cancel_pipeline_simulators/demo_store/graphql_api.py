"""Shopify's GraphQL Admin API for orders and bulk queries, from the same history as the REST API.

`POST /admin/api/{version}/graphql.json` with the REST token; body JSON {query, variables, operationName}
or the raw query as application/graphql. Every answer that got past validation carries
extensions.cost {requestedQueryCost, actualQueryCost, throttleStatus}. Bulk results are served, without
auth like Shopify's signed storage URLs, at /bulk-results/<token>.jsonl, with Range support.

What is simulated, and what is a guess:
- Simulated from Shopify's docs: the `orders` connection (first/after/last/before/reverse, sortKey ID,
  CREATED_AT, PROCESSED_AT, UPDATED_AT with id as tie-break, at most 250 a page), `ordersCount` with
  {count, precision} capped by `limit`, `order`, `node(s)`, the Order fields the pipeline reads; search
  syntax (graphql_search.py); cost rules and THROTTLED (graphql_cost.py); bulk restrictions, statuses,
  URL lifetime of seven days, one running bulk query per app before 2026-01 and five from it (bulk.py).
- Guesses (Shopify does not document them): default sortKey ID; `first` over 250 and a missing
  first/last are errors; cursors are base64 JSON {last_id, last_value}; bucket sizes per plan
  (settings.GRAPHQL_PLANS); the cost of list fields; the bulk latency model; `url` null when nothing
  matched; userError wording other than the in-progress one; a failed download answers like the
  storage service would (400 ExpiredToken XML for an expired URL).
- Queries that fail parsing or validation get top-level errors and no cost (nothing was computed).
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    OperationDefinitionNode,
    StringValueNode,
    execute,
    get_operation_ast,
    get_variable_values,
    parse,
    validate,
)

from .bulk import FINISHED, BulkOperations, BulkQueryInvalid, BulkTiming, read_range, validate_bulk_query
from .graphql_cost import SINGLE_QUERY_MAX, CostStatus, PointsBucket, query_cost
from .graphql_model import connection, graphql_order, parse_gid
from .graphql_schema import schema
from .graphql_search import OrderSearch, SearchError, parse_search
from .orders import Match
from .responses import Response, base_url, error_response, json_response, read_body

if TYPE_CHECKING:
    from .api import DemoStore

BUCKET_KEY = "app"
"""Shopify meters GraphQL per app and store; the demo store serves one app."""
LISTING_CACHE_SIZE = 8
BULK_PAGE = 250
UNDEFINED_FIELD = re.compile(r"^Cannot query field '([^']+)' on type '([^']+)'\.")
BULK_LIMIT_FROM = "2026-01"
CURSOR_ARGUMENT = re.compile(r'\b(?:after|before)\s*:\s*(?:"([^"]+)"|\$(\w+))')
SORT_KEYS: dict[str, Callable[[Match], tuple[int, ...]]] = {
    "ID": lambda m: (m[0].id,),
    "CREATED_AT": lambda m: (m[0].created, m[0].id),
    "PROCESSED_AT": lambda m: (m[0].created, m[0].id),
    "UPDATED_AT": lambda m: (m[1].updated, m[0].id),
}
EXPIRED_XML = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ExpiredToken</Code>"
    b"<Message>The provided token has expired.</Message></Error>"
)


@dataclass
class Context:
    """Per execution: the store, the API version, the moment it answers for, and bulk paging state."""

    service: GraphQLService
    version: str
    now: datetime
    base_url: str
    bulk: bool = False
    bulk_after: str | None = None
    bulk_next: str | None = None

    @property
    def now_seconds(self) -> int:
        """The moment as UTC epoch seconds."""
        return int(self.now.timestamp())


class GraphQLService:
    """The store's GraphQL endpoint: parsing, cost, the points bucket, execution, bulk operations."""

    def __init__(self, store: DemoStore) -> None:
        s = store.settings
        self.store = store
        self.schema = schema()
        self.bucket = PointsBucket(s.graphql_bucket_size, s.graphql_restore_rate)
        self.bulk = BulkOperations(
            BulkTiming(s.bulk_start_delay, s.bulk_seconds_per_1000, s.bulk_cancel_delay)
        )
        self._listings: OrderedDict[tuple[Any, ...], tuple[list[Match], list[tuple[int, ...]]]] = (
            OrderedDict()
        )
        self._listings_lock = threading.Lock()
        # Checking the running operations and starting one is a single step, or two requests could both pass.
        self._bulk_start_lock = threading.Lock()

    # -- HTTP -------------------------------------------------------------------------------------------

    def handle(
        self, environ: dict[str, Any], version: str, number: int, headers: list[tuple[str, str]]
    ) -> Response:
        """Answer one authenticated POST to graphql.json."""
        if environ.get("REQUEST_METHOD") != "POST":
            return json_response(405, {"errors": "GraphQL queries must be sent with POST"}, headers)
        request = _request_body(environ)
        if request is None:
            return json_response(400, {"errors": {"query": "Required parameter missing or invalid"}}, headers)
        text, variables, operation_name = request
        store = self.store
        fault = store.faults.pick(number, _has_cursor(text, variables))
        if fault is not None and fault.status is not None:
            _wait(store)
            if fault.status == 429:
                retry = fault.retry_after if fault.retry_after is not None else 2.0
                status = CostStatus(self.bucket.maximum, 0, self.bucket.restore_rate)
                response = self._throttled(0, status, 429)
                response.headers += [*headers, ("Retry-After", f"{retry:.2f}")]
                return response
            return error_response(fault.status, headers)
        response = self._answer(environ, version, text, variables, operation_name)
        response.headers[:0] = headers
        response.truncate = bool(fault and fault.truncate)
        return response

    def _answer(
        self, environ: dict[str, Any], version: str, text: str, variables: dict[str, Any], name: str | None
    ) -> Response:
        try:
            document = parse(text)
        except GraphQLError as error:
            return json_response(200, {"errors": [_formatted(error)]})
        errors = validate(self.schema, document)
        if errors:
            return json_response(200, {"errors": [_formatted(e) for e in errors]})
        operation = get_operation_ast(document, name)
        if operation is None:
            message = f"No operation named {name!r}" if name else "An operation name is required"
            return json_response(200, {"errors": [{"message": message}]})
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        # Costed on the coerced variables, so a variable's default value counts as sent.
        coerced = get_variable_values(self.schema, operation.variable_definitions, variables)
        if isinstance(coerced, list):
            return json_response(200, {"errors": [_formatted(e) for e in coerced]})
        requested = query_cost(self.schema, operation, fragments, coerced)
        if requested > SINGLE_QUERY_MAX:
            status = CostStatus(self.bucket.maximum, self._available(), self.bucket.restore_rate)
            error = {
                "message": f"Query cost is {requested}, which exceeds the single query max cost limit "
                f"({SINGLE_QUERY_MAX}).\n\nSee https://shopify.dev/concepts/about-apis/rate-limits for more "
                "information on how the cost of a query is calculated.\n\nTo query larger amounts of data with "
                "fewer limits, bulk operations should be used instead.",
                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": SINGLE_QUERY_MAX},
            }
            return json_response(
                200, {"errors": [error], "extensions": {"cost": _cost(requested, None, status)}}
            )
        allowed, status = self.bucket.take(BUCKET_KEY, requested)
        if not allowed:
            return self._throttled(requested, status, self.store.settings.graphql_throttled_status)
        _wait(self.store)
        context = Context(self, version, self.store.clock(), base_url(environ))
        result = execute(
            self.schema,
            document,
            root_value=self.root(context),
            context_value=context,
            variable_values=variables,
            operation_name=name,
        )
        if result.data is None:
            actual = 0 if result.errors else requested
        else:
            actual = min(requested, query_cost(self.schema, operation, fragments, coerced, result.data))
        status = self.bucket.refund(BUCKET_KEY, requested - actual)
        payload: dict[str, Any] = {}
        if result.errors:
            payload["errors"] = [_formatted(e) for e in result.errors]
        if result.data is not None or not result.errors:
            payload["data"] = result.data
        payload["extensions"] = {"cost": _cost(requested, actual, status)}
        return json_response(200, payload)

    def _available(self) -> float:
        _, status = self.bucket.take(BUCKET_KEY, 0)
        return status.available

    def _throttled(self, requested: int, status: CostStatus, http_status: int) -> Response:
        payload = {
            "errors": [
                {
                    "message": "Throttled",
                    "extensions": {
                        "code": "THROTTLED",
                        "documentation": "https://shopify.dev/api/usage/rate-limits",
                    },
                }
            ],
            "extensions": {"cost": _cost(requested, None, status)},
        }
        return json_response(http_status, payload)

    # -- downloads ---------------------------------------------------------------------------------------

    def download(
        self, environ: dict[str, Any], token: str
    ) -> tuple[int, list[tuple[str, str]], Iterable[bytes]]:
        """A bulk result file: (status, headers, body chunks); streamed from disk, Range honoured."""
        store = self.store
        op = self.bulk.by_token(token)
        if op is None or not self.bulk.downloadable(op, store.clock()):
            if op is not None and self.bulk.status(op, store.clock()) == "EXPIRED":
                return 400, [("Content-Type", "application/xml; charset=UTF-8")], [EXPIRED_XML]
            return 404, [("Content-Type", "text/plain")], [b"Not Found"]
        fault = store.faults.pick_download()
        _wait(store)
        if fault is not None and fault.expired:
            return 400, [("Content-Type", "application/xml; charset=UTF-8")], [EXPIRED_XML]
        if fault is not None and fault.status is not None:
            response = error_response(fault.status)
            return fault.status, [("Content-Type", response.content_type)], [response.body]
        size = op.size
        start, stop = 0, size
        status = 200
        headers = [("Content-Type", "application/jsonl"), ("Accept-Ranges", "bytes")]
        wanted = environ.get("HTTP_RANGE")
        if wanted:
            parsed = _byte_range(wanted, size)
            if parsed is None:
                return 416, [("Content-Range", f"bytes */{size}")], [b""]
            start, stop = parsed
            status = 206
            headers.append(("Content-Range", f"bytes {start}-{stop - 1}/{size}"))
        headers.append(("Content-Length", str(stop - start)))
        body: Iterable[bytes] = read_range(op.path, start, stop)
        if fault is not None and fault.cut_after is not None:
            cut = (stop - start) // 2 if fault.cut_after < 0 else fault.cut_after
            body = _cut(body, cut)
        return status, headers, body

    # -- resolvers ---------------------------------------------------------------------------------------

    def root(self, context: Context) -> dict[str, Any]:
        """The root value: one resolver per root field (query and mutation)."""
        return {
            "orders": lambda info, **args: self._orders(context, **args),
            "ordersCount": lambda info, query=None, limit=None: self._orders_count(context, query, limit),
            "order": lambda info, id: self._order(context, id),
            "node": lambda info, id: self._node(context, id),
            "nodes": lambda info, ids: [self._node(context, one) for one in ids],
            "currentBulkOperation": lambda info, type="QUERY": self._current_bulk(context, type),
            "bulkOperation": lambda info, id: self._bulk_operation(context, id),
            "bulkOperationRunQuery": lambda info, query, groupObjects=None: self._run_bulk(context, query),
            "bulkOperationCancel": lambda info, id: self._cancel_bulk(context, id),
        }

    def _search(self, context: Context, query: str | None) -> OrderSearch:
        try:
            return parse_search(query, self.store.tz, context.version)
        except SearchError as error:
            raise GraphQLError(
                str(error), extensions={"code": "BAD_REQUEST", "argumentName": "query"}
            ) from None

    def listing(
        self, search: OrderSearch, sort_key: str, now: int
    ) -> tuple[list[Match], list[tuple[int, ...]]]:
        """Every matching order sorted ascending by `sort_key` (id breaks ties), with the keys; cached."""
        book = self.store.book
        cache_key = (search, sort_key, now, book.revision)
        with self._listings_lock:
            cached = self._listings.get(cache_key)
            if cached is not None:
                self._listings.move_to_end(cache_key)
                return cached
        key = SORT_KEYS[sort_key]
        matches = sorted((m for m in book.matches(search.filters, now) if search.admits_id(m[0].id)), key=key)
        listing = (matches, [key(m) for m in matches])
        with self._listings_lock:
            self._listings[cache_key] = listing
            if len(self._listings) > LISTING_CACHE_SIZE:
                self._listings.popitem(last=False)
        return listing

    def _orders(
        self, context: Context, sortKey: str = "ID", query: str | None = None, **args: Any
    ) -> dict[str, Any]:
        search = self._search(context, query)
        matches, keys = self.listing(search, sortKey, context.now_seconds)
        book = self.store.book
        if context.bulk:
            args = {"first": BULK_PAGE, "after": context.bulk_after, "reverse": args.get("reverse")}
        page = connection(matches, SORT_KEYS[sortKey], args, node=lambda m: graphql_order(book, m), keys=keys)
        if context.bulk:
            info = page["pageInfo"]
            context.bulk_next = info["endCursor"] if info["hasNextPage"] else None
        return page

    def _orders_count(self, context: Context, query: str | None, limit: int | None) -> dict[str, Any]:
        matches, _ = self.listing(self._search(context, query), "ID", context.now_seconds)
        count = len(matches)
        if limit is not None and count > limit:
            return {"count": limit, "precision": "AT_LEAST"}
        return {"count": count, "precision": "EXACT"}

    def _order(self, context: Context, order_id: str) -> dict[str, Any] | None:
        _, number = parse_gid(order_id, "Order")
        match = self.store.book.get(number, context.now_seconds)
        return graphql_order(self.store.book, match) if match else None

    def _node(self, context: Context, node_id: str) -> dict[str, Any] | None:
        kind, _ = parse_gid(node_id)
        if kind == "Order":
            return self._order(context, node_id)
        if kind == "BulkOperation":
            return self._bulk_operation(context, node_id)
        return None

    def _current_bulk(self, context: Context, operation_type: str) -> dict[str, Any] | None:
        op = self.bulk.latest() if operation_type == "QUERY" else None
        return self.bulk.as_graphql(op, context.now, context.base_url) if op else None

    def _bulk_operation(self, context: Context, op_id: str) -> dict[str, Any] | None:
        _, number = parse_gid(op_id, "BulkOperation")
        op = self.bulk.get(number)
        return self.bulk.as_graphql(op, context.now, context.base_url) if op else None

    def _run_bulk(self, context: Context, text: str) -> dict[str, Any]:
        try:
            document = validate_bulk_query(self.schema, text)
        except BulkQueryInvalid as error:
            return _bulk_error("INVALID", ["query"], str(error))
        search = _root_search(document)
        if search is not None:
            try:
                parse_search(search, self.store.tz, context.version)
            except SearchError as error:
                return _bulk_error("INVALID", ["query"], f"Invalid bulk query: {error}")
        limit = self.store.settings.bulk_max_running
        if limit is None:
            newer = context.version == "unstable" or context.version >= BULK_LIMIT_FROM
            limit = 5 if newer else 1
        with self._bulk_start_lock:
            return self._start_bulk(context, text, document, limit)

    def _start_bulk(self, context: Context, text: str, document: DocumentNode, limit: int) -> dict[str, Any]:
        running = self.bulk.running(context.now)
        if len(running) >= limit:
            if limit == 1:
                message = (
                    f"A bulk query operation for this app and shop is already in progress: {running[0].gid}."
                )
                return _bulk_error("OPERATION_IN_PROGRESS", None, message)
            return _bulk_error(
                "LIMIT_REACHED", None, f"A maximum of {limit} bulk query operations can run at the same time."
            )
        snapshot = context.now
        version, url = context.version, context.base_url

        def run_page(doc: DocumentNode, cursor: str | None) -> tuple[dict[str, Any], str | None]:
            page_context = Context(self, version, snapshot, url, bulk=True, bulk_after=cursor)
            result = execute(self.schema, doc, root_value=self.root(page_context), context_value=page_context)
            if result.data is None:
                raise RuntimeError(f"bulk page failed: {result.errors}")
            return result.data, page_context.bulk_next

        op = self.bulk.start(
            self.schema, text, document, snapshot, run_page, self.store.faults.take_bulk_fault()
        )
        shown = self.bulk.as_graphql(op, context.now, context.base_url)
        # The mutation answers before any work is done.
        shown.update(status="CREATED", objectCount="0", rootObjectCount="0", fileSize=None, url=None)
        shown.update(completedAt=None, partialDataUrl=None, errorCode=None)
        return {"bulkOperation": shown, "userErrors": []}

    def _cancel_bulk(self, context: Context, op_id: str) -> dict[str, Any]:
        _, number = parse_gid(op_id, "BulkOperation")
        op = self.bulk.get(number)
        if op is None:
            return {
                "bulkOperation": None,
                "userErrors": [{"field": ["id"], "message": "Bulk operation does not exist"}],
            }
        status = self.bulk.status(op, context.now)
        shown = self.bulk.as_graphql(op, context.now, context.base_url)
        if status in FINISHED or status == "CANCELING":
            message = f"A bulk operation cannot be canceled when it is {status.lower()}, id: {op.gid}"
            return {"bulkOperation": shown, "userErrors": [{"field": None, "message": message}]}
        self.bulk.cancel(op, context.now)
        return {"bulkOperation": self.bulk.as_graphql(op, context.now, context.base_url), "userErrors": []}


def _root_search(document: DocumentNode) -> str | None:
    """The search string literal of a bulk query's top-level connection, if it has one."""
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    root = next(s for s in operation.selection_set.selections if isinstance(s, FieldNode))
    for argument in root.arguments:
        if argument.name.value == "query" and isinstance(argument.value, StringValueNode):
            return argument.value.value
    return None


def _bulk_error(code: str, field: list[str] | None, message: str) -> dict[str, Any]:
    return {"bulkOperation": None, "userErrors": [{"code": code, "field": field, "message": message}]}


def _cost(requested: int, actual: int | None, status: CostStatus) -> dict[str, Any]:
    return {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": status.as_json()}


def _formatted(error: GraphQLError) -> dict[str, Any]:
    """graphql-core's error as Shopify (graphql-ruby) words the common ones."""
    formatted = dict(error.formatted)
    match = UNDEFINED_FIELD.match(error.message)
    if match:
        field, type_name = match.groups()
        formatted["message"] = f"Field '{field}' doesn't exist on type '{type_name}'"
        formatted["extensions"] = {"code": "undefinedField", "typeName": type_name, "fieldName": field}
    return formatted


def _request_body(environ: dict[str, Any]) -> tuple[str, dict[str, Any], str | None] | None:
    raw = read_body(environ)
    if environ.get("CONTENT_TYPE", "").startswith("application/graphql"):
        text = raw.decode("utf-8", "replace")
        return (text, {}, None) if text.strip() else None
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return None
    variables = payload.get("variables") or {}
    if not isinstance(variables, dict):
        return None
    name = payload.get("operationName")
    return payload["query"], variables, name if isinstance(name, str) else None


def _has_cursor(text: str, variables: dict[str, Any]) -> bool:
    """Whether a request pages on from a cursor (GraphQL's page_info): a literal or a non-null variable."""
    for match in CURSOR_ARGUMENT.finditer(text):
        literal, variable = match.groups()
        if literal or (variable and variables.get(variable)):
            return True
    return False


def _wait(store: DemoStore) -> None:
    if store.faults.latency:
        time.sleep(store.faults.latency)


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """[start, stop) of a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range, or None when unsatisfiable."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":
        start, stop = max(size - int(last), 0), size
    else:
        start = int(first)
        stop = min(int(last) + 1, size) if last else size
    if start >= size or start >= stop:
        return None
    return start, stop


def _cut(chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    sent = 0
    for chunk in chunks:
        if sent + len(chunk) >= limit:
            yield chunk[: limit - sent]
            return
        sent += len(chunk)
        yield chunk
