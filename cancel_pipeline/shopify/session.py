"""`ShopifySession`: what the REST and the GraphQL clients share about talking to one store.

A session holds the store's base URL, the HTTP connection pool, the access-token provider (with the
client-credentials exchange), the secrets to keep out of every message, the counters, the stop flag of a
page-stream worker and the typed errors one set of hints is written for. Each client composes one session
and keeps its own pacing (leaky bucket for REST, cost bucket for GraphQL) and its own request loop; the
retry policy both follow lives in `retry.py`. `SessionClient` is the small base both clients derive from for
the parts of their public interface that only delegate (`stats`, `reset_stats`, `close`, `with`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import httpx
import orjson

from cancel_pipeline.shopify.auth import AccessTokenProvider, ClientCredentialsToken, StaticToken, TokenGrant
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
from cancel_pipeline.shopify.pages import ClientStats
from cancel_pipeline.shopify.rate_limit import parse_retry_after
from cancel_pipeline.shopify.retry import Failed, RetryPolicy, Setback, Throttled, failure_for_status
from cancel_pipeline.shopify.streams import FetchStopped

__all__ = [
    "DEFAULT_API_VERSION",
    "LOGGER_NAME",
    "TOKEN_HEADER",
    "SessionClient",
    "ShopifySession",
    "resolve_store",
]

#: A supported quarterly Admin API version; pin another with `api_version` / `SHOPIFY_API_VERSION`.
DEFAULT_API_VERSION = "2026-07"

LOGGER_NAME = "cancel_pipeline.shopify"

TOKEN_HEADER = "X-Shopify-Access-Token"
_HIDDEN = "<hidden>"
_EXCHANGE_PATH = "/admin/oauth/access_token"
#: Wait after a 429 to the token exchange that names no `Retry-After` (the exchange draws on no bucket).
_EXCHANGE_THROTTLE_WAIT = 1.0


def resolve_store(store: str) -> tuple[str, str]:
    """`(base_url, store_label)` for `my-shop`, `my-shop.myshopify.com` or a base URL."""
    store = store.strip().rstrip("/")
    if not store:
        raise ShopifyConfigError("no Shopify store configured", store="", endpoint="")
    if "://" in store:
        parts = urlsplit(store)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ShopifyConfigError(
                f"store URL {store!r} is not an http(s) base URL", store=store, endpoint=""
            )
        return store, parts.netloc
    host = store if "." in store else f"{store}.myshopify.com"
    return f"https://{host}", host


class ShopifySession:
    """One store's connection, credentials, counters and error wording, shared by whichever client uses it.

    Credentials: exactly one of `access_token` or (`client_id`, `client_secret`); a client-credentials token
    is obtained by `exchange_credentials` under `retry_policy`. `sleep` and `clock` are injectable for tests.
    """

    def __init__(
        self,
        store: str,
        *,
        access_token: str | None,
        client_id: str | None,
        client_secret: str | None,
        api_version: str,
        retry_policy: RetryPolicy,
        timeout: float,
        transport: httpx.BaseTransport | None,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        logger: logging.Logger | None,
    ) -> None:
        self.base_url, self.store = resolve_store(store)
        self.api_version = api_version
        self.retry_policy = retry_policy
        self.sleep = sleep
        self.clock = clock
        self.log = logger or logging.getLogger(LOGGER_NAME)
        self._secrets = [s for s in (access_token, client_secret) if s]
        self._auth = self._make_auth(access_token, client_id, client_secret)
        self.http = httpx.Client(
            transport=transport,
            timeout=timeout,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "cancel_pipeline"},
        )
        self.stats = ClientStats()
        self.stats_lock = threading.Lock()
        self._auth_lock = threading.RLock()
        # Set on a page-stream worker thread: its fetch's stop event (waits end early, requests stop).
        self._local = threading.local()

    def close(self) -> None:
        """Close the underlying HTTP connections."""
        self.http.close()

    # -- counters -------------------------------------------------------------------------------------

    def count_request(self, *, retry: bool) -> None:
        """One attempt is about to be sent (`retry`: it is not the request's first)."""
        with self.stats_lock:
            self.stats.requests += 1
            if retry:
                self.stats.retries += 1

    def count_bytes(self, response: httpx.Response) -> None:
        with self.stats_lock:
            self.stats.bytes_received += len(response.content)

    def count_throttle(self) -> None:
        """The server refused a request for rate."""
        with self.stats_lock:
            self.stats.throttled_429 += 1

    def count_wait(self, seconds: float) -> None:
        """Time spent waiting for rate: for a bucket, or out a throttle."""
        with self.stats_lock:
            self.stats.rate_limit_wait_s += seconds

    # -- stopping and waiting -------------------------------------------------------------------------

    def bind_stop(self, stop: threading.Event | None) -> None:
        """Called on a worker thread: its waits end early and its next request raises once `stop` is set."""
        self._local.stop = stop

    def check_stop(self) -> None:
        stop = getattr(self._local, "stop", None)
        if stop is not None and stop.is_set():
            raise FetchStopped()

    def pause(self, seconds: float) -> None:
        """Sleep; on a page-stream worker, wake as soon as the fetch is stopped (and raise FetchStopped)."""
        stop: threading.Event | None = getattr(self._local, "stop", None)
        if stop is None:
            self.sleep(seconds)
            return
        if self.sleep is time.sleep:
            stop.wait(seconds)
        else:
            self.sleep(seconds)
        self.check_stop()

    # -- credentials ----------------------------------------------------------------------------------

    def token_headers(self) -> dict[str, str]:
        """The header carrying the current token (exchanging the credentials first when one is due)."""
        with self._auth_lock:
            return {TOKEN_HEADER: self._auth.token()}

    def forget_token(self, endpoint: str) -> bool:
        """After a 401: drop the token so the next attempt exchanges the credentials again; False if it cannot.

        A client-credentials token can be revoked or expire early; a static token stays refused.
        """
        with self._auth_lock:
            renewable = self._auth.invalidate()
        if renewable:
            self.log.info("%s: token refused on %s, exchanging credentials again", self.store, endpoint)
        return renewable

    def _make_auth(
        self, access_token: str | None, client_id: str | None, client_secret: str | None
    ) -> AccessTokenProvider:
        has_grant = bool(client_id) or bool(client_secret)
        if access_token and has_grant:
            raise self._config_error(
                "both an access token and client credentials are configured; "
                "set SHOPIFY_ACCESS_TOKEN or SHOPIFY_CLIENT_ID/SHOPIFY_CLIENT_SECRET, not both"
            )
        if access_token:
            return StaticToken(access_token)
        if client_id and client_secret:
            return ClientCredentialsToken(
                client_id, client_secret, self.exchange_credentials, clock=self.clock
            )
        if has_grant:
            missing = "SHOPIFY_CLIENT_SECRET" if client_id else "SHOPIFY_CLIENT_ID"
            raise self._config_error(f"client credentials are incomplete, {missing} is not set")
        raise self._config_error(
            "no credentials configured; set SHOPIFY_ACCESS_TOKEN, or "
            "SHOPIFY_CLIENT_ID and SHOPIFY_CLIENT_SECRET for the client-credentials grant"
        )

    def _config_error(self, problem: str) -> ShopifyConfigError:
        return ShopifyConfigError(f"store {self.store}: {problem}", store=self.store, endpoint="")

    def exchange_credentials(self, fields: dict[str, str]) -> TokenGrant:
        """The client-credentials grant: form POST, JSON answer with `access_token` and `expires_in`.

        Sent like any request (counted, retried under the policy, stoppable) but on no bucket: the exchange
        is not an Admin API call.
        """
        url = self.base_url + _EXCHANGE_PATH
        request = f"POST {url}"
        retries = self.retry_policy.start()
        attempts = 0
        while True:
            attempts += 1
            self.check_stop()
            self.count_request(retry=attempts > 1)
            setback: Setback
            try:
                response = self.http.post(url, data=fields)
            except httpx.TransportError as exc:
                setback = Failed(type(exc).__name__)
            else:
                self.count_bytes(response)
                grant = self._grant_or_setback(response)
                if not isinstance(grant, Throttled | Failed):
                    self._secrets.append(grant[0])
                    self.log.info("%s: obtained an access token by client credentials", self.store)
                    return grant
                setback = grant
            delay = retries.after(setback)
            if delay is None:
                raise self.request_failed(request, _EXCHANGE_PATH, setback, attempts)
            if isinstance(setback, Throttled):
                self.count_wait(delay)
                self.log.warning(
                    "%s: %s on %s, waiting %.2f s", self.store, setback.problem, _EXCHANGE_PATH, delay
                )
            else:
                self.log.warning(
                    "%s: POST %s failed (%s), retry %d of %d in %.2f s",
                    self.store,
                    _EXCHANGE_PATH,
                    setback.problem,
                    retries.failures,
                    self.retry_policy.max_retries,
                    delay,
                )
            self.pause(delay)

    def _grant_or_setback(self, response: httpx.Response) -> TokenGrant | Setback:
        """The token and its lifetime from the exchange's answer, a setback to retry; raises the rest."""
        status = response.status_code
        if status == 429:
            self.count_throttle()
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            wait = _EXCHANGE_THROTTLE_WAIT if retry_after is None else retry_after
            return Throttled(wait, status=429, problem="throttled (429)")
        if (failure := failure_for_status(status)) is not None:
            return failure
        if not 200 <= status < 300:
            raise self.status_error(f"POST {_EXCHANGE_PATH}", _EXCHANGE_PATH, response, credentials=True)
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return Failed("body is not complete JSON (truncated?)", status)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise self.unexpected_body(f"POST {_EXCHANGE_PATH}", _EXCHANGE_PATH)
        expires_in = body.get("expires_in")
        return token, float(expires_in) if isinstance(expires_in, int | float) else None

    # -- errors ---------------------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """Remove any credential a server might echo back before the text enters an error or a log."""
        for secret in self._secrets:
            text = text.replace(secret, _HIDDEN)
        return text

    def status_error(
        self, request: str, endpoint: str, response: httpx.Response, *, credentials: bool = False
    ) -> ShopifyError:
        """The typed error for an HTTP status no retry can fix, with the hint a user can act on.

        `request` says what was sent (`GET /admin/...` or `GraphQL orders, /admin/...`); `credentials` marks
        the token exchange, whose refusal is about the client id and secret, not the token.
        """
        status = response.status_code
        detail = self.redact(_error_text(response))
        where = f"store {self.store}, {request}, HTTP {status}"
        suffix = f": {detail}" if detail else ""
        error_class: type[ShopifyError] = ShopifyError
        if credentials and status in (400, 401, 403):
            error_class = ShopifyAuthError
            hint = "Shopify refused the client credentials; check SHOPIFY_CLIENT_ID and SHOPIFY_CLIENT_SECRET"
        elif status == 401:
            error_class = ShopifyAuthError
            hint = "Shopify refused the access token; check SHOPIFY_ACCESS_TOKEN (or the client credentials)"
        elif status == 402:
            error_class = ShopifyPaymentRequiredError
            hint = "the store is frozen (payment required); nothing can be read until its bill is paid"
        elif status == 403:
            error_class = ShopifyForbiddenError
            hint = (
                "the app lacks an access scope: it needs read_orders, and read_all_orders for orders "
                "older than 60 days"
            )
        elif status == 404:
            error_class = ShopifyNotFoundError
            hint = (
                "not found; check the store name and the API version (SHOPIFY_API_VERSION); orders older "
                "than 60 days also need read_all_orders"
            )
        elif status == 423:
            error_class = ShopifyLockedError
            hint = "the store is locked"
        else:
            hint = "Shopify rejected the request"
        return error_class(f"{hint} ({where}){suffix}", store=self.store, endpoint=endpoint, status=status)

    def request_failed(
        self, request: str, endpoint: str, last: Setback, attempts: int
    ) -> ShopifyRequestFailed:
        """A request that still failed after every retry; `request` names it (a URL is redacted here)."""
        status = f"HTTP {last.status}" if last.status is not None else "no response"
        # A request named by its URL already shows the endpoint; one named by its operation does not.
        shown = self.redact(request)
        where = "" if endpoint in shown else f" ({endpoint})"
        return ShopifyRequestFailed(
            f"{shown} on store {self.store}{where} still failed after {attempts} attempts "
            f"(last: {status}, {last.problem})",
            store=self.store,
            endpoint=endpoint,
            status=last.status,
            attempts=attempts,
        )

    def unexpected_body(self, request: str, endpoint: str) -> ShopifyError:
        """A 2xx whose body is not the answer the request asks for."""
        return ShopifyError(
            f"unexpected response body from store {self.store}, {request}",
            store=self.store,
            endpoint=endpoint,
            status=200,
        )


class SessionClient:
    """The parts of a Shopify client's interface that only delegate to its `ShopifySession`."""

    def __init__(self, session: ShopifySession) -> None:
        self._session = session
        self.store = session.store
        self.api_version = session.api_version

    @property
    def stats(self) -> ClientStats:
        """What the client has sent and received since it was made (or since `reset_stats`)."""
        return self._session.stats

    def reset_stats(self) -> None:
        """Start the counters in `stats` from zero."""
        self._session.stats = ClientStats()

    def close(self) -> None:
        """Close the underlying HTTP connections."""
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(store={self.store!r}, api_version={self.api_version!r})"


def _error_text(response: httpx.Response, limit: int = 500) -> str:
    """Shopify's error text from `{"errors": ...}` / `{"error": ...}`, else the start of the body."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:limit].strip()
    if isinstance(body, dict):
        parts = [body[key] for key in ("errors", "error", "error_description") if key in body]
        if parts:
            text = "; ".join(p if isinstance(p, str) else orjson.dumps(p).decode() for p in parts)
            return text[:limit]
    return orjson.dumps(body).decode()[:limit]
