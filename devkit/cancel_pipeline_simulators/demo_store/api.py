"""The WSGI application: Shopify's REST Admin API for orders, OAuth, and the demo control endpoints."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import parse_qs, quote

import orjson

from .auth import TokenRegistry
from .clock import Clock
from .faults import FaultInjector
from .orders import OrderBook, OrderError
from .query import BadRequest, Cursor, decode_cursor, encode_cursor, parse_filter, parse_limit
from .ratelimit import LeakyBucket
from .responses import Response, base_url, error_response, json_response, query_params, read_body
from .settings import DemoStoreSettings
from .stats import RequestStats


class GraphQLEndpoint(Protocol):
    """What the API calls of the store's GraphQL service (graphql_api.GraphQLService)."""

    def handle(
        self, environ: dict[str, Any], version: str, number: int, headers: list[tuple[str, str]]
    ) -> Response: ...

    def download(
        self, environ: dict[str, Any], token: str
    ) -> tuple[int, list[tuple[str, str]], Iterable[bytes]]: ...


class DemoStore(Protocol):
    """What the API reads of the store it serves (the store itself imports this module)."""

    settings: DemoStoreSettings
    clock: Clock
    tz: Any
    book: OrderBook
    tokens: TokenRegistry
    bucket: LeakyBucket
    faults: FaultInjector
    request_stats: RequestStats
    graphql: GraphQLEndpoint


ADMIN_PATH = re.compile(r"^/admin/api/(\d{4}-\d{2}|unstable)/(.+)$")
ORDER_PATH = re.compile(r"^orders/(\d+)\.json$")
CANCEL_PATH = re.compile(r"^orders/(\d+)/cancel\.json$")
BULK_RESULT_PATH = re.compile(r"^/bulk-results/([A-Za-z0-9_-]+)\.jsonl$")
UNAUTHORIZED = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
NOT_FOUND = {"errors": "Not Found"}
CORRUPTIBLE_NUMBER = re.compile(rb":\d")
PAGE_INFO_COMPANIONS = ("page_info", "limit", "fields")


def application(
    store: DemoStore, environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes]:
    """Serve one WSGI request."""
    path = environ.get("PATH_INFO", "")
    if match := BULK_RESULT_PATH.match(path):
        # Streamed from disk (a result can be large), so it skips the buffered path below.
        status, headers, chunks = store.graphql.download(environ, match.group(1))
        store.request_stats.record(status)
        start_response(Response(status).status_line(), headers)
        return chunks
    if path.startswith("/_demo/"):
        response = _control(store, environ, path)
    else:
        if path == "/admin/oauth/access_token":
            response = _oauth(store, environ)
        elif match := ADMIN_PATH.match(path):
            response = _admin(store, environ, match.group(1), match.group(2))
        else:
            response = json_response(404, NOT_FOUND)
        store.request_stats.record(response.status)
    body = response.body
    headers = [("Content-Type", response.content_type), ("Content-Length", str(len(body))), *response.headers]
    if response.truncate:
        # As a dropped connection would: the full length announced, half the bytes sent.
        body = body[: len(body) // 2]
    elif response.corrupt:
        # As a flipped byte would: the first number after a colon starts with a letter.
        body = CORRUPTIBLE_NUMBER.sub(rb":x", body, count=1)
    start_response(response.status_line(), headers)
    return [body]


def _admin(store: DemoStore, environ: dict[str, Any], version: str, route: str) -> Response:
    version_header = ("X-Shopify-API-Version", version)
    token = environ.get("HTTP_X_SHOPIFY_ACCESS_TOKEN")
    now = store.clock()
    if not store.tokens.valid(token, now.timestamp()):
        return json_response(401, UNAUTHORIZED, [version_header])
    assert token is not None
    number = store.request_stats.next_admin_request()
    if route == "graphql.json":
        # GraphQL is metered on query cost, not by the REST call bucket.
        return store.graphql.handle(environ, version, number, [version_header])
    params = query_params(environ)
    fault = store.faults.pick(number, "page_info" in params)
    if fault is not None and fault.status is not None:
        _wait(store)
        return _fault_response(store, fault.status, fault.retry_after, version_header)
    # Shopify counts a call when it arrives and refuses an over-limit one at once; the time it takes to
    # answer (`latency`, 200-500 ms for a page of 250 orders) comes after.
    verdict = store.bucket.take(token)
    limit_header = ("X-Shopify-Shop-Api-Call-Limit", verdict.header)
    if not verdict.allowed:
        return _throttled(store, verdict.retry_after, [version_header, limit_header])
    _wait(store)
    try:
        response = _route(store, environ, version, route, params, int(now.timestamp()))
    except BadRequest as error:
        response = json_response(400, {"errors": error.errors})
    except OrderError as error:
        response = json_response(error.status, error.body)
    response.headers[:0] = [version_header, limit_header]
    response.truncate = bool(fault and fault.truncate)
    response.corrupt = bool(fault and fault.corrupt)
    return response


def _wait(store: DemoStore) -> None:
    if store.faults.latency:
        time.sleep(store.faults.latency)


def _route(
    store: DemoStore, environ: dict[str, Any], version: str, route: str, params: dict[str, str], now: int
) -> Response:
    method = environ.get("REQUEST_METHOD", "GET")
    if route == "orders.json" and method == "GET":
        return _list_orders(store, environ, version, params, now)
    if route == "orders/count.json" and method == "GET":
        return json_response(200, {"count": store.book.count(parse_filter(params, store.tz), now)})
    if (match := ORDER_PATH.match(route)) and method == "GET":
        found = store.book.get(int(match.group(1)), now)
        if found is None:
            return json_response(404, NOT_FOUND)
        return json_response(200, {"order": _fields(store.book.render(found), params.get("fields"))})
    if (match := CANCEL_PATH.match(route)) and method == "POST":
        reason = _json_body(environ).get("reason")
        cancelled = store.book.cancel(int(match.group(1)), reason, now)
        return json_response(200, {"order": store.book.render(cancelled)})
    if route in ("orders.json", "orders/count.json") or ORDER_PATH.match(route) or CANCEL_PATH.match(route):
        return json_response(405, {"errors": f"{method} is not allowed on {route}"})
    return json_response(404, NOT_FOUND)


def _list_orders(
    store: DemoStore, environ: dict[str, Any], version: str, params: dict[str, str], now: int
) -> Response:
    limit = parse_limit(params.get("limit"))
    fields = params.get("fields") or None
    if "page_info" in params:
        extra = [name for name in params if name not in PAGE_INFO_COMPANIONS]
        if extra:
            message = f"{', '.join(extra)} cannot be passed when page_info is present"
            raise BadRequest({"page_info": [message]})
        cursor = decode_cursor(params["page_info"])
        filters, after = cursor.filters, (cursor.last_value, cursor.last_id)
        forward = cursor.direction == "next"
    else:
        filters, after, forward = parse_filter(params, store.tz), None, True
    page, more = store.book.page(filters, now, limit, after=after, forward=forward)
    if fields:
        rendered = [orjson.dumps(_fields(store.book.render(m), fields)) for m in page]
    else:
        rendered = [store.book.render_bytes(m, now) for m in page]
    # One join, one copy of the ~1 MB body (joining then concatenating copied it twice).
    parts = [b'{"orders":[']
    for order in rendered:
        parts += (order, b",")
    if rendered:
        parts.pop()
    parts.append(b"]}")
    body = b"".join(parts)
    links = []
    if page:
        url = f"{base_url(environ)}/admin/api/{version}/orders.json?limit={limit}"
        if fields:
            url += f"&fields={quote(fields, safe=',')}"
        has_previous = more if not forward else after is not None
        has_next = more if forward else True
        if has_previous:
            first = page[0][0]
            token = encode_cursor(Cursor("prev", first.id, first.created, filters))
            links.append(f'<{url}&page_info={token}>; rel="previous"')
        if has_next:
            last = page[-1][0]
            token = encode_cursor(Cursor("next", last.id, last.created, filters))
            links.append(f'<{url}&page_info={token}>; rel="next"')
    headers = [("Link", ", ".join(links))] if links else []
    return Response(200, body, headers)


def _fields(order: dict[str, Any], fields: str | None) -> dict[str, Any]:
    if not fields:
        return order
    wanted = {name.strip() for name in fields.split(",")}
    return {key: value for key, value in order.items() if key in wanted}


def _json_body(environ: dict[str, Any]) -> dict[str, Any]:
    raw = read_body(environ)
    if not raw.strip():
        return {}
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object")
    return payload


def _throttled(store: DemoStore, retry_after: float, headers: list[tuple[str, str]]) -> Response:
    message = (
        f"Exceeded {store.settings.leak_rate:g} calls per second for api client. "
        "Reduce request rates to resume uninterrupted service."
    )
    return json_response(429, {"errors": message}, [*headers, ("Retry-After", f"{retry_after:.2f}")])


def _fault_response(
    store: DemoStore, status: int, retry_after: float | None, version_header: tuple[str, str]
) -> Response:
    if status == 429:
        size = store.settings.bucket_size
        limit_header = ("X-Shopify-Shop-Api-Call-Limit", f"{size}/{size}")
        return _throttled(
            store, retry_after if retry_after is not None else 2.0, [version_header, limit_header]
        )
    return error_response(status, [version_header])


def _oauth(store: DemoStore, environ: dict[str, Any]) -> Response:
    if environ.get("REQUEST_METHOD") != "POST":
        return json_response(405, {"error": "method_not_allowed"})
    raw = read_body(environ)
    if environ.get("CONTENT_TYPE", "").startswith("application/json"):
        try:
            form = {k: str(v) for k, v in orjson.loads(raw).items()}
        except (orjson.JSONDecodeError, AttributeError):
            return json_response(400, {"error": "invalid_request", "error_description": "malformed body"})
    else:
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    if form.get("grant_type") != "client_credentials":
        return json_response(
            400,
            {"error": "unsupported_grant_type", "error_description": "grant_type must be client_credentials"},
        )
    if not store.tokens.credentials_match(form.get("client_id", ""), form.get("client_secret", "")):
        return json_response(
            401, {"error": "invalid_client", "error_description": "Client authentication failed."}
        )
    token = store.tokens.issue(store.clock().timestamp())
    return json_response(
        200, {"access_token": token, "scope": store.tokens.scope, "expires_in": store.tokens.expires_in}
    )


def _control(store: DemoStore, environ: dict[str, Any], path: str) -> Response:
    method = environ.get("REQUEST_METHOD", "GET")
    if path == "/_demo/stats" and method == "GET":
        return json_response(200, store.stats())
    if path == "/_demo/faults" and method == "GET":
        return json_response(200, store.faults.snapshot())
    if path == "/_demo/faults" and method == "POST":
        try:
            store.faults.configure(**_json_body(environ))
        except (TypeError, ValueError) as error:
            return json_response(400, {"errors": str(error)})
        except BadRequest as error:
            return json_response(400, {"errors": error.errors})
        return json_response(200, store.faults.snapshot())
    if path == "/_demo/reset" and method == "POST":
        store.reset_counters()
        return json_response(200, store.stats())
    return json_response(404, NOT_FOUND)
