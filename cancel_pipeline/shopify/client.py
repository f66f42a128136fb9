"""`ShopifyClient`: the REST Admin API client for orders (paging, pacing, retries, typed errors).

One client talks to one store. Each request is sent in attempts: an attempt paces on the leaky bucket
(`rate_limit.py`), attaches the token and classifies the answer; the retry policy (`retry.py`) decides
whether a setback is tried again and after how long. What no retry can fix becomes a typed error
(`errors.py`) whose message a data engineer can act on and which never carries a credential.

One cursor is slower than a Plus bucket leaks, so `iter_order_pages(..., streams=N)` can walk a long span as
several `updated_at` slices at once (`streams.py`): worker threads share this client's bucket model,
connection pool and counters, and `_send` is thread-safe for that.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from cancel_pipeline.shopify.errors import ShopifyError, ShopifyRequestFailed
from cancel_pipeline.shopify.pages import ClientStats, OrderPage, order_count, parsed_order_count
from cancel_pipeline.shopify.rate_limit import LeakyBucket, parse_call_limit, parse_retry_after
from cancel_pipeline.shopify.retry import (
    RETRYABLE_STATUSES,
    Failed,
    RequestRetries,
    RetryPolicy,
    Setback,
    Throttled,
    failure_for_status,
)
from cancel_pipeline.shopify.session import (
    DEFAULT_API_VERSION,
    LOGGER_NAME,
    SessionClient,
    ShopifySession,
    resolve_store,
)
from cancel_pipeline.shopify.streams import SliceFetch, plan_slices, stream_pages

__all__ = [
    "DEFAULT_API_VERSION",
    "LOGGER_NAME",
    "MAX_PAGE_SIZE",
    "RETRYABLE_STATUSES",
    "ClientStats",
    "OrderPage",
    "ShopifyClient",
    "format_instant",
    "resolve_store",
]

#: Shopify's page size ceiling for `orders.json`, and the batch size of `ids=` look-ups.
MAX_PAGE_SIZE = 250


@dataclass(frozen=True)
class _Call:
    """One Admin API request as `_send` was asked for it; every attempt sends it again as it is."""

    method: str
    url: str
    params: dict[str, str | int] | None
    json_body: dict[str, Any] | None
    decode: Callable[[bytes], Any]

    @property
    def endpoint(self) -> str:
        return urlsplit(self.url).path


@dataclass(frozen=True)
class _Success:
    """A 2xx whose body decoded."""

    response: httpx.Response
    value: Any


@dataclass(frozen=True)
class _TokenRefused:
    """A 401 to an Admin API call: the token may have expired or been revoked."""

    response: httpx.Response


#: What one attempt came to; errors no retry can fix are raised instead.
_Outcome = _Success | _TokenRefused | Throttled | Failed


def format_instant(moment: datetime) -> str:
    """A filter instant as Shopify wants it: UTC with `Z`, whole seconds.

    Shopify's timestamps are whole seconds and both `*_min` and `*_max` are inclusive, so dropping the
    fraction never loses an order. Naive datetimes are refused: guessing their zone would shift a window.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"naive datetime {moment.isoformat()} given as an order filter; pass a timezone-aware "
            "datetime (e.g. datetime(..., tzinfo=UTC))"
        )
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ShopifyClient(SessionClient):
    """REST Admin API client for one store's orders; one page stream, or several sharing its bucket.

    Credentials: exactly one of `access_token` or (`client_id`, `client_secret`). Pacing: a local model of
    the store's leaky bucket (`bucket_size` requests leaking `leak_rate` per second), kept in step with
    `X-Shopify-Shop-Api-Call-Limit`. Retries: 429 after `Retry-After` (at most `max_throttle_retries` times
    per request); 5xx, timeouts, connection errors and truncated bodies with capped exponential backoff and
    jitter (at most `max_retries` times per request). `sleep`, `clock` and `rng` are injectable for tests.
    """

    api = "rest"

    def __init__(
        self,
        store: str,
        *,
        access_token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        bucket_size: int = 40,
        leak_rate: float = 2.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_throttle_retries: int = 20,
        bucket_headroom: float = 1.0,
        rng: random.Random | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._retry_policy = RetryPolicy(
            max_retries=max_retries,
            max_throttle_retries=max_throttle_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            rng=rng or random.Random(),
        )
        session = ShopifySession(
            store,
            access_token=access_token,
            client_id=client_id,
            client_secret=client_secret,
            api_version=api_version,
            retry_policy=self._retry_policy,
            timeout=timeout,
            transport=transport,
            sleep=sleep,
            clock=clock,
            logger=logger,
        )
        super().__init__(session)
        self._bucket = LeakyBucket(bucket_size, leak_rate, headroom=bucket_headroom, clock=clock)
        self._clock = clock
        self._log = session.log

    # -- public API ---------------------------------------------------------------------------------

    def iter_order_pages(
        self,
        *,
        status: str = "any",
        updated_at_min: datetime | None = None,
        updated_at_max: datetime | None = None,
        limit: int = MAX_PAGE_SIZE,
        fields: list[str] | None = None,
        streams: int = 1,
    ) -> Iterator[OrderPage]:
        """Pages of `GET orders.json` for the filters, one at a time.

        The first request carries every filter; later ones follow the `Link` `rel="next"` URL verbatim
        (Shopify keeps the filters in the cursor and refuses them next to `page_info`).

        `streams` > 1 (with both bounds given) fetches the span as disjoint `updated_at` slices walked by up to
        that many worker threads; see `streams.py`. Pages then come in arrival order, numbered 1..n over the
        whole fetch, each with the first request of its slice as `request_path`; an order updated in the
        second two slices share may come twice (a later version never is lost). One `orders/count.json`
        sizes the split, and a span too small to split is fetched as one stream. `streams=1` sends exactly
        the requests it always did.
        """
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
        if streams < 1:
            raise ValueError(f"streams must be at least 1, got {streams}")
        params = self._list_params(status, updated_at_min, updated_at_max, limit, fields)
        if streams == 1 or updated_at_min is None or updated_at_max is None:
            yield from self._walk_pages(self._api_url("orders.json"), params, first_page_number=1)
        else:
            yield from self._iter_sliced(status, updated_at_min, updated_at_max, limit, fields, streams)

    def refetch_page(self, request_path: str, page_number: int) -> OrderPage:
        """The page of `request_path` (as a page recorded it) fetched again and parsed in full.

        For a body that arrived complete but is not JSON (damaged in transit): the byte count that paces
        a fetch cannot tell it from a good one, the warehouse's parse can. A body still damaged is retried
        like a truncated one, and giving up names the request.
        """
        url = str(httpx.URL(self._session.base_url).join(request_path))
        response, count = self._send("GET", url, decode=parsed_order_count)
        if count is None:
            raise self._unexpected_body("GET", url)
        return OrderPage(
            page_number=page_number,
            request_path=request_path,
            api_version=response.headers.get("X-Shopify-API-Version") or self.api_version,
            fetched_at=datetime.now(UTC),
            body=response.content,
            order_count=count,
        )

    def get_orders(self, ids: Iterable[int]) -> Iterator[OrderPage]:
        """Pages holding the given orders (any status), asked for in batches of 250 ids."""
        page_number = 1
        id_iter = iter(ids)
        while batch := list(itertools.islice(id_iter, MAX_PAGE_SIZE)):
            params: dict[str, str | int] = {
                "ids": ",".join(str(int(order_id)) for order_id in batch),
                "status": "any",
                "limit": MAX_PAGE_SIZE,
            }
            for page in self._walk_pages(self._api_url("orders.json"), params, page_number):
                page_number += 1
                yield page

    def count_orders(
        self,
        *,
        status: str = "any",
        updated_at_min: datetime | None = None,
        updated_at_max: datetime | None = None,
    ) -> int:
        """`GET orders/count.json` for the filters."""
        params: dict[str, str | int] = {"status": status}
        if updated_at_min is not None:
            params["updated_at_min"] = format_instant(updated_at_min)
        if updated_at_max is not None:
            params["updated_at_max"] = format_instant(updated_at_max)
        url = self._api_url("orders/count.json")
        _, body = self._send("GET", url, params=params)
        count = body.get("count") if isinstance(body, dict) else None
        if not isinstance(count, int):
            raise self._unexpected_body("GET", url)
        return count

    def cancel_order(self, order_id: int, reason: str | None = None) -> dict:
        """`POST orders/{id}/cancel.json`; returns the canceled order (or Shopify's whole answer)."""
        url = self._api_url(f"orders/{int(order_id)}/cancel.json")
        payload = {"reason": reason} if reason else {}
        _, body = self._send("POST", url, json_body=payload)
        if not isinstance(body, dict):
            raise self._unexpected_body("POST", url)
        order = body.get("order")
        return order if isinstance(order, dict) else body

    # -- paging -------------------------------------------------------------------------------------

    def _list_params(
        self,
        status: str,
        updated_at_min: datetime | None,
        updated_at_max: datetime | None,
        limit: int,
        fields: list[str] | None,
    ) -> dict[str, str | int]:
        params: dict[str, str | int] = {"status": status, "limit": limit}
        if updated_at_min is not None:
            params["updated_at_min"] = format_instant(updated_at_min)
        if updated_at_max is not None:
            params["updated_at_max"] = format_instant(updated_at_max)
        if fields:
            params["fields"] = ",".join(fields)
        return params

    def _iter_sliced(
        self,
        status: str,
        updated_at_min: datetime,
        updated_at_max: datetime,
        limit: int,
        fields: list[str] | None,
        streams: int,
    ) -> Iterator[OrderPage]:
        """The span as concurrent slices, or as one stream when the count says it is too small to split."""
        orders = self.count_orders(
            status=status, updated_at_min=updated_at_min, updated_at_max=updated_at_max
        )
        slices = plan_slices(updated_at_min, updated_at_max, orders=orders, limit=limit, streams=streams)
        if len(slices) == 1:
            params = self._list_params(status, updated_at_min, updated_at_max, limit, fields)
            yield from self._walk_pages(self._api_url("orders.json"), params, first_page_number=1)
            return
        url = self._api_url("orders.json")

        def fetch_slice(piece: SliceFetch) -> Iterator[OrderPage]:
            params = self._list_params(status, piece.start, piece.end, limit, fields)
            return self._walk_pages(url, params, first_page_number=1)

        workers = min(streams, len(slices))
        # Each worker may have a request in flight the server has not counted yet: keep room for them.
        with self._bucket.keep_headroom(workers):
            yield from stream_pages(
                slices,
                fetch_slice,
                workers=workers,
                queue_pages=workers,
                bind_stop=self._session.bind_stop,
                name=f"shopify-{self.store}",
            )

    def _walk_pages(
        self, url: str, params: dict[str, str | int] | None, first_page_number: int
    ) -> Iterator[OrderPage]:
        page_number = first_page_number
        next_url: str | None = url
        while next_url is not None:
            # The body is counted, not parsed (`pages.order_count`): the warehouse parses it when it lands.
            response, count = self._send("GET", next_url, params=params, decode=order_count)
            if count is None:
                raise self._unexpected_body("GET", next_url)
            request_url = response.request.url
            page = OrderPage(
                page_number=page_number,
                request_path=request_url.raw_path.decode("ascii"),
                api_version=response.headers.get("X-Shopify-API-Version") or self.api_version,
                fetched_at=datetime.now(UTC),
                body=response.content,
                order_count=count,
            )
            self._log.debug(
                "%s page %d: %d orders (%d bytes)",
                self.store,
                page.page_number,
                page.order_count,
                len(page.body),
            )
            yield page
            page_number += 1
            next_url = response.links.get("next", {}).get("url")
            params = None  # the cursor carries the filters; Shopify answers 400 to any others

    # -- one request: attempts under the retry policy -----------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str | int] | None = None,
        json_body: dict[str, Any] | None = None,
        decode: Callable[[bytes], Any] = orjson.loads,
    ) -> tuple[httpx.Response, Any]:
        """Send until a 2xx with a JSON body arrives; returns the response and `decode(body)`.

        `decode` raises `orjson.JSONDecodeError` for a body that is not complete JSON, which is retried.
        """
        call = _Call(method, url, params, json_body, decode)
        retries = self._retry_policy.start()
        attempts = 0
        paced, renewed_token = True, False
        while True:
            attempts += 1
            outcome = self._attempt(call, paced=paced, retry=attempts > 1)
            if isinstance(outcome, _Success):
                return outcome.response, outcome.value
            if isinstance(outcome, _TokenRefused):
                if renewed_token or not self._session.forget_token(call.endpoint):
                    raise self._status_error(call, outcome.response)
                paced, renewed_token = True, True
                continue
            delay = retries.after(outcome)
            if delay is None:
                raise self._request_failed(call, outcome, attempts)
            self._wait_before_retry(call, outcome, delay, retries)
            # The wait after a throttle already let enough leak from the bucket for this one call.
            paced = not isinstance(outcome, Throttled)

    def _attempt(self, call: _Call, *, paced: bool, retry: bool) -> _Outcome:
        """Send `call` once and say what came of it; the errors no retry can fix are raised."""
        self._session.check_stop()
        request = self._build_request(call, paced=paced)
        sent_at = self._clock()
        self._session.count_request(retry=retry)
        try:
            response = self._session.http.send(request)
        except httpx.TransportError as exc:
            # Timeouts, refused/reset connections and bodies cut short (RemoteProtocolError).
            self._bucket.settle(sent_at, None)
            return Failed(type(exc).__name__)
        except BaseException:
            self._bucket.settle(sent_at, None)
            raise
        return self._classify(call, response, sent_at)

    def _build_request(self, call: _Call, *, paced: bool) -> httpx.Request:
        """The request with the current token, once its bucket slot is booked (and waited for if `paced`)."""
        # Pacing books the slot before the wait, so concurrent streams line up behind each other instead of
        # colliding. (The token exchange the header may need draws on no bucket: see `ShopifySession`.)
        if paced:
            self._wait_for_bucket()
        else:
            self._bucket.record_request()
        try:
            return self._session.http.build_request(
                call.method,
                call.url,
                params=call.params,
                json=call.json_body,
                headers=self._session.token_headers(),
            )
        except BaseException:
            self._bucket.settle(self._clock(), None)
            raise

    def _classify(self, call: _Call, response: httpx.Response, sent_at: float) -> _Outcome:
        """Success, a setback worth a retry, a refused token, or (raised) an error no retry can fix."""
        self._session.count_bytes(response)
        self._sync_bucket(response, sent_at)
        status = response.status_code
        if status == 429:
            return self._throttled(response)
        if 200 <= status < 300:
            try:
                return _Success(response, call.decode(response.content))
            except orjson.JSONDecodeError:
                return Failed("body is not complete JSON (truncated?)", status)
        if (failure := failure_for_status(status)) is not None:
            return failure
        if status == 401:
            return _TokenRefused(response)
        raise self._status_error(call, response)

    def _throttled(self, response: httpx.Response) -> Throttled:
        """A 429: retry after `Retry-After`, or when the bucket model says one request fits again."""
        self._session.count_throttle()
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        wait = self._bucket.wait_for_throttle() if retry_after is None else retry_after
        return Throttled(wait, status=429, problem="throttled (429)")

    def _wait_before_retry(
        self, call: _Call, setback: Setback, delay: float, retries: RequestRetries
    ) -> None:
        """Log the setback and wait `delay`; a throttle's wait counts as rate-limit wait, a failure's does not."""
        if isinstance(setback, Throttled):
            self._bucket.mark_full()  # a 429 proves the bucket is full, whatever the model thought
            self._log.warning(
                "%s: %s on %s, waiting %.2f s", self.store, setback.problem, call.endpoint, delay
            )
            self._session.count_wait(delay)
        else:
            self._log.warning(
                "%s: %s %s failed (%s), retry %d of %d in %.2f s",
                self.store,
                call.method,
                call.endpoint,
                setback.problem,
                retries.failures,
                self._retry_policy.max_retries,
                delay,
            )
        self._session.pause(delay)

    # -- pacing -----------------------------------------------------------------------------------------

    def _wait_for_bucket(self) -> None:
        delay = self._bucket.reserve()
        if delay > 0:
            self._session.count_wait(delay)
            try:
                self._session.pause(delay)
            except BaseException:
                self._bucket.settle(self._clock(), None)
                raise

    def _sync_bucket(self, response: httpx.Response, sent_at: float) -> None:
        call_limit = parse_call_limit(response.headers.get("X-Shopify-Shop-Api-Call-Limit"))
        if call_limit is not None and call_limit[1] != self._bucket.size:
            self._log.info(
                "%s: bucket size is %d (configured %d), following the store",
                self.store,
                call_limit[1],
                self._bucket.size,
            )
        self._bucket.settle(sent_at, call_limit)

    # -- errors ---------------------------------------------------------------------------------------

    def _api_url(self, resource: str) -> str:
        return f"{self._session.base_url}/admin/api/{self.api_version}/{resource}"

    def _status_error(self, call: _Call, response: httpx.Response) -> ShopifyError:
        return self._session.status_error(f"{call.method} {call.endpoint}", call.endpoint, response)

    def _request_failed(self, call: _Call, last: Setback, attempts: int) -> ShopifyRequestFailed:
        url = self._session.http.build_request(call.method, call.url, params=call.params).url
        return self._session.request_failed(f"{call.method} {url}", url.path, last, attempts)

    def _unexpected_body(self, method: str, url: str) -> ShopifyError:
        endpoint = urlsplit(url).path
        return self._session.unexpected_body(f"{method} {endpoint}", endpoint)
