"""What the Shopify client sends and how it reports failures, over an in-process transport."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs

import httpx
import orjson
import pytest

from cancel_pipeline.shopify.client import ShopifyClient, format_instant, resolve_store
from cancel_pipeline.shopify.errors import (
    ShopifyAuthError,
    ShopifyConfigError,
    ShopifyError,
    ShopifyForbiddenError,
    ShopifyLockedError,
    ShopifyNotFoundError,
    ShopifyPaymentRequiredError,
    ShopifyRequestFailed,
)
from cancel_pipeline_tests.test_client_support import TOKEN, ManualTime, PagedOrders

SECRET = "cc_secret_value_never_shown_42"


def make_client(handler, time: ManualTime | None = None, **kwargs) -> ShopifyClient:
    time = time or ManualTime()
    credentials = {} if "client_id" in kwargs else {"access_token": TOKEN}
    return ShopifyClient(
        "unit-shop",
        transport=httpx.MockTransport(handler),
        sleep=time.sleep,
        clock=time.clock,
        rng=random.Random(1),
        **credentials,
        **kwargs,
    )


def query_of(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.url.query.decode())


def test_store_forms_resolve_to_base_urls() -> None:
    assert resolve_store("my-shop") == ("https://my-shop.myshopify.com", "my-shop.myshopify.com")
    assert resolve_store("my-shop.myshopify.com") == (
        "https://my-shop.myshopify.com",
        "my-shop.myshopify.com",
    )
    assert resolve_store("http://127.0.0.1:8765/") == ("http://127.0.0.1:8765", "127.0.0.1:8765")
    with pytest.raises(ShopifyConfigError):
        resolve_store("  ")


def test_instants_are_sent_as_utc_z_and_naive_ones_are_refused() -> None:
    eastern = timezone(timedelta(hours=-5))
    assert format_instant(datetime(2023, 12, 31, 19, 30, tzinfo=eastern)) == "2024-01-01T00:30:00Z"
    assert format_instant(datetime(2024, 1, 1, 0, 30, 0, 999_000, tzinfo=UTC)) == "2024-01-01T00:30:00Z"
    with pytest.raises(ValueError, match="naive datetime"):
        format_instant(datetime(2024, 1, 1))


def test_first_request_carries_every_filter_and_later_ones_only_the_link() -> None:
    server = PagedOrders(5)
    client = make_client(server)
    pages = list(
        client.iter_order_pages(
            status="cancelled",
            updated_at_min=datetime(2024, 1, 1, 0, 0, tzinfo=UTC),
            updated_at_max=datetime(2024, 1, 1, 0, 30, tzinfo=UTC),
            limit=2,
            fields=["id", "updated_at"],
        )
    )
    assert [p.page_number for p in pages] == [1, 2, 3]
    assert [p.order_count for p in pages] == [2, 2, 1]
    assert [o["id"] for p in pages for o in p.orders()] == [1000, 1001, 1002, 1003, 1004]
    first, *later = server.requests
    assert first.url.path == "/admin/api/2026-07/orders.json"
    assert query_of(first) == {
        "status": ["cancelled"],
        "limit": ["2"],
        "updated_at_min": ["2024-01-01T00:00:00Z"],
        "updated_at_max": ["2024-01-01T00:30:00Z"],
        "fields": ["id,updated_at"],
    }
    for request in later:
        assert set(query_of(request)) == {"limit", "page_info"}
    assert pages[1].request_path == server.requests[1].url.raw_path.decode()
    assert pages[0].api_version == "2024-01"  # from the response header, not the configured version
    assert pages[0].fetched_at.tzinfo is not None and pages[0].fetched_at.utcoffset() == timedelta(0)
    assert orjson.loads(pages[0].body) == {"orders": pages[0].orders()}
    assert all(r.headers["X-Shopify-Access-Token"] == TOKEN for r in server.requests)


def test_pages_are_fetched_one_at_a_time() -> None:
    server = PagedOrders(6)
    client = make_client(server)
    pages = client.iter_order_pages(limit=2)
    next(pages)
    assert len(server.requests) == 1
    next(pages)
    assert len(server.requests) == 2


def test_get_orders_asks_in_batches_of_250_ids() -> None:
    seen: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ids = query_of(request)["ids"][0].split(",")
        seen.append(ids)
        assert query_of(request)["status"] == ["any"]
        return httpx.Response(200, json={"orders": [{"id": int(i)} for i in ids]})

    client = make_client(handler)
    pages = list(client.get_orders(range(1, 601)))
    assert [len(batch) for batch in seen] == [250, 250, 100]
    assert [p.page_number for p in pages] == [1, 2, 3]
    assert sum(p.order_count for p in pages) == 600


def test_count_and_cancel() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/orders/count.json"):
            assert query_of(request) == {"status": ["cancelled"], "updated_at_min": ["2024-01-01T00:00:00Z"]}
            return httpx.Response(200, json={"count": 17})
        assert request.method == "POST" and request.url.path.endswith("/orders/42/cancel.json")
        assert orjson.loads(request.content) == {"reason": "customer"}
        return httpx.Response(200, json={"order": {"id": 42, "cancel_reason": "customer"}})

    client = make_client(handler)
    assert client.count_orders(status="cancelled", updated_at_min=datetime(2024, 1, 1, tzinfo=UTC)) == 17
    assert client.cancel_order(42, reason="customer") == {"id": 42, "cancel_reason": "customer"}


@pytest.mark.parametrize(
    ("status", "error_class", "words"),
    [
        (401, ShopifyAuthError, ["access token"]),
        (402, ShopifyPaymentRequiredError, ["frozen"]),
        (403, ShopifyForbiddenError, ["read_orders", "read_all_orders"]),
        (404, ShopifyNotFoundError, ["not found"]),
        (423, ShopifyLockedError, ["locked"]),
        (400, ShopifyError, ["status cannot be passed when page_info is present"]),
        (422, ShopifyError, ["has fulfillments"]),
    ],
)
def test_actionable_errors_are_typed_not_retried_and_never_show_the_token(
    status: int, error_class: type[ShopifyError], words: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    text = {
        400: "status cannot be passed when page_info is present",
        422: "Cannot cancel an order that has fulfillments",
    }.get(status, "nope")
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        # A careless server echoing the token must not get it into our message either.
        return httpx.Response(status, json={"errors": f"{text} (token {TOKEN})"})

    client = make_client(handler)
    with pytest.raises(error_class) as caught:
        list(client.iter_order_pages())
    error = caught.value
    assert type(error) is error_class and error.status == status
    assert len(calls) == 1
    message = str(error)
    for word in [*words, "unit-shop.myshopify.com", "/admin/api/2026-07/orders.json", str(status)]:
        assert word in message
    assert error.endpoint == "/admin/api/2026-07/orders.json"
    for shown in (message, repr(error), repr(error.args), caplog.text, repr(client)):
        assert TOKEN not in shown


def test_failures_after_all_retries_name_url_status_and_attempts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(lambda request: httpx.Response(503, text="busy"), max_retries=2)
    with pytest.raises(ShopifyRequestFailed) as caught:
        client.count_orders()
    error = caught.value
    assert error.attempts == 3 and error.status == 503
    assert "https://unit-shop.myshopify.com/admin/api/2026-07/orders/count.json?status=any" in str(error)
    assert "3 attempts" in str(error) and "503" in str(error)
    assert TOKEN not in str(error) + repr(error) + caplog.text
    assert caplog.text.count("retry") == 2


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        b'{"orders": [{"id": 1},',  # a 200 cut short
    ],
)
def test_transient_failures_mid_walk_are_retried_on_the_same_url(failure) -> None:
    server = PagedOrders(6)
    failed = False

    def before(request: httpx.Request) -> httpx.Response | None:
        nonlocal failed
        if len(server.requests) == 2 and not failed:  # the second page
            failed = True
            if isinstance(failure, bytes):
                return httpx.Response(200, content=failure)
            raise failure
        return None

    server.before = before
    client = make_client(server)
    pages = list(client.iter_order_pages(limit=2))
    assert [o["id"] for p in pages for o in p.orders()] == [1000 + i for i in range(6)]
    assert server.requests[1].url == server.requests[2].url
    assert client.stats.retries == 1 and client.stats.requests == 4


def test_credentials_must_be_one_method() -> None:
    with pytest.raises(ShopifyConfigError, match="not both"):
        ShopifyClient("s", access_token=TOKEN, client_id="id", client_secret=SECRET)
    with pytest.raises(ShopifyConfigError, match="no credentials"):
        ShopifyClient("s")
    with pytest.raises(ShopifyConfigError, match="SHOPIFY_CLIENT_SECRET"):
        ShopifyClient("s", client_id="id")


class GrantServer:
    """Issues tokens by client credentials with a lifetime, and serves orders for the current token."""

    def __init__(self, time: ManualTime, ttl: int = 100) -> None:
        self.time = time
        self.ttl = ttl
        self.issued: list[str] = []
        self.expires: dict[str, float] = {}
        self.forms: list[dict[str, list[str]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/admin/oauth/access_token":
            assert request.headers["content-type"] == "application/x-www-form-urlencoded"
            form = parse_qs(request.content.decode())
            self.forms.append(form)
            if form["client_secret"] != [SECRET]:
                return httpx.Response(401, json={"error": "invalid_client"})
            token = f"granted-token-{len(self.issued)}"
            self.issued.append(token)
            self.expires[token] = self.time.now + self.ttl
            return httpx.Response(
                200, json={"access_token": token, "scope": "read_orders", "expires_in": self.ttl}
            )
        token = request.headers.get("X-Shopify-Access-Token")
        if token not in self.expires or self.time.now >= self.expires[token]:
            return httpx.Response(401, json={"errors": "[API] Invalid API key or access token"})
        return httpx.Response(200, json={"count": 1})


def test_client_credentials_are_exchanged_and_renewed_before_expiry() -> None:
    time = ManualTime()
    server = GrantServer(time, ttl=100)
    client = make_client(server, time, client_id="the-client", client_secret=SECRET)
    assert client.count_orders() == 1
    assert server.forms == [
        {"grant_type": ["client_credentials"], "client_id": ["the-client"], "client_secret": [SECRET]}
    ]
    time.now += 85
    assert client.count_orders() == 1
    assert len(server.issued) == 1  # 85 % of the lifetime: still the first token
    time.now += 6
    assert client.count_orders() == 1
    assert len(server.issued) == 2  # past 90 %: renewed before Shopify would refuse it


def test_a_revoked_granted_token_is_exchanged_again_once() -> None:
    time = ManualTime()
    server = GrantServer(time, ttl=1000)
    client = make_client(server, time, client_id="the-client", client_secret=SECRET)
    assert client.count_orders() == 1
    server.expires.clear()  # revoked on Shopify's side
    assert client.count_orders() == 1
    assert len(server.issued) == 2


def test_refused_client_credentials_raise_auth_error_without_the_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    time = ManualTime()
    client = make_client(GrantServer(time), time, client_id="the-client", client_secret="wrong-" + SECRET)
    with pytest.raises(ShopifyAuthError) as caught:
        client.count_orders()
    assert "SHOPIFY_CLIENT_SECRET" in str(caught.value) and "/admin/oauth/access_token" in str(caught.value)
    for shown in (str(caught.value), repr(caught.value), repr(caught.value.args), caplog.text):
        assert SECRET not in shown
