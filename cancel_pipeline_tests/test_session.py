"""`ShopifySession`: both clients share one credential check, one token exchange and one set of error hints.

Each test runs the REST and the GraphQL client against the same in-process store (MockTransport) and
asserts they behave alike where the session is what decides.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from cancel_pipeline.shopify.client import ShopifyClient
from cancel_pipeline.shopify.errors import (
    ShopifyAuthError,
    ShopifyConfigError,
    ShopifyError,
    ShopifyForbiddenError,
    ShopifyNotFoundError,
    ShopifyRequestFailed,
)
from cancel_pipeline.shopify.graphql import ShopifyGraphQLClient
from cancel_pipeline.shopify.retry import RetryPolicy

SECRET = "shpss_session_test_secret"
GRANTED = "granted-token-session"
EXCHANGE = "/admin/oauth/access_token"

Client = ShopifyClient | ShopifyGraphQLClient


class Store:
    """Answers the token exchange and an orders count over either API; `exchange_faults` come first."""

    def __init__(self, exchange_faults: list[httpx.Response] | None = None, api_status: int = 200) -> None:
        self.exchange_faults = list(exchange_faults or [])
        self.api_status = api_status
        self.paths: list[str] = []
        self.sleeps: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path == EXCHANGE:
            if self.exchange_faults:
                return self.exchange_faults.pop(0)
            [sent] = parse_qs(request.content.decode())["client_secret"]
            if sent != SECRET:
                # A careless server echoing the secret must not get it into our message either.
                return httpx.Response(401, json={"error": f"invalid_client {sent}"})
            return httpx.Response(200, json={"access_token": GRANTED, "expires_in": 3600})
        if self.api_status != 200:
            return httpx.Response(self.api_status, json={"errors": f"nope (token {GRANTED})"})
        if request.headers.get("X-Shopify-Access-Token") != GRANTED:
            return httpx.Response(401, json={"errors": "[API] Invalid API key or access token"})
        if request.url.path.endswith("graphql.json"):
            return httpx.Response(200, json={"data": {"ordersCount": {"count": 1}}})
        return httpx.Response(200, json={"count": 1})


def rest(store: Store, **credentials: Any) -> Client:
    return ShopifyClient(
        "unit-shop",
        transport=httpx.MockTransport(store),
        sleep=store.sleeps.append,
        max_retries=2,
        **credentials,
    )


def graphql(store: Store, **credentials: Any) -> Client:
    return ShopifyGraphQLClient(
        "unit-shop",
        transport=httpx.MockTransport(store),
        sleep=store.sleeps.append,
        retry_policy=RetryPolicy(max_retries=2),
        **credentials,
    )


CLIENTS: list[Callable[..., Client]] = [rest, graphql]
GRANT = {"client_id": "the-client", "client_secret": SECRET}


@pytest.mark.parametrize("make", CLIENTS)
def test_credentials_must_be_one_complete_method(make: Callable[..., Client]) -> None:
    for credentials, words in [
        ({"access_token": "shpat_x", **GRANT}, "not both"),
        ({}, "no credentials configured"),
        ({"client_id": "the-client"}, "SHOPIFY_CLIENT_SECRET is not set"),
        ({"client_secret": SECRET}, "SHOPIFY_CLIENT_ID is not set"),
    ]:
        with pytest.raises(ShopifyConfigError, match=words) as caught:
            make(Store(), **credentials)
        assert "unit-shop.myshopify.com" in str(caught.value) and SECRET not in str(caught.value)


@pytest.mark.parametrize("make", CLIENTS)
def test_a_flaky_exchange_is_retried_and_counted(make: Callable[..., Client]) -> None:
    store = Store([httpx.Response(503), httpx.Response(429, headers={"Retry-After": "1.5"})])
    with make(store, **GRANT) as client:
        assert client.count_orders() == 1
        assert store.paths.count(EXCHANGE) == 3
        assert 1.5 in store.sleeps  # the throttle's Retry-After, not a backoff
        assert client.stats.requests == 4 and client.stats.retries == 2
        assert client.stats.throttled_429 == 1 and client.stats.rate_limit_wait_s == pytest.approx(1.5)
        client.reset_stats()
        assert client.stats.requests == 0


@pytest.mark.parametrize("make", CLIENTS)
def test_an_exchange_that_keeps_failing_names_the_endpoint_and_the_attempts(
    make: Callable[..., Client],
) -> None:
    store = Store([httpx.Response(502)] * 5)
    client = make(store, **GRANT)
    with client, pytest.raises(ShopifyRequestFailed) as caught:
        client.count_orders()
    text = str(caught.value)
    assert EXCHANGE in text and "unit-shop.myshopify.com" in text and "3 attempts" in text and "502" in text
    assert caught.value.attempts == 3 and caught.value.endpoint == EXCHANGE


@pytest.mark.parametrize("make", CLIENTS)
def test_refused_client_credentials_name_the_settings_and_hide_the_secret(
    make: Callable[..., Client], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make(Store(), client_id="the-client", client_secret="wrong-" + SECRET)
    with client, pytest.raises(ShopifyAuthError) as caught:
        client.count_orders()
    text = str(caught.value)
    assert "SHOPIFY_CLIENT_ID and SHOPIFY_CLIENT_SECRET" in text and EXCHANGE in text and "401" in text
    for shown in (text, repr(caught.value.args), caplog.text):
        assert SECRET not in shown
    assert "invalid_client <hidden>" in text


@pytest.mark.parametrize(
    ("status", "error_class", "words"),
    [
        (401, ShopifyAuthError, ["SHOPIFY_ACCESS_TOKEN"]),
        (403, ShopifyForbiddenError, ["read_orders", "read_all_orders for orders older than 60 days"]),
        (404, ShopifyNotFoundError, ["not found", "SHOPIFY_API_VERSION", "read_all_orders"]),
    ],
)
def test_both_clients_give_a_status_the_same_hint_without_the_token(
    status: int, error_class: type[ShopifyError], words: list[str]
) -> None:
    hints = []
    for make in CLIENTS:
        client = make(Store(api_status=status), **GRANT)
        with client, pytest.raises(error_class) as caught:
            client.count_orders()
        text = str(caught.value)
        assert all(word in text for word in words) and f"HTTP {status}" in text
        assert GRANTED not in text and "<hidden>" in text  # the echoed token is redacted
        hints.append(text.split(" (store ")[0])
    assert hints[0] == hints[1]


def test_repr_names_the_client_and_store_only() -> None:
    for make, name in [(rest, "ShopifyClient"), (graphql, "ShopifyGraphQLClient")]:
        with make(Store(), access_token="shpat_secret_token") as client:
            assert repr(client) == f"{name}(store='unit-shop.myshopify.com', api_version='2026-07')"
