"""`ShopifyResource`: the Dagster resource that builds a Shopify client from the configuration contract.

Environment: `SHOPIFY_STORE`, `SHOPIFY_ACCESS_TOKEN` or `SHOPIFY_CLIENT_ID`/`SHOPIFY_CLIENT_SECRET`,
`SHOPIFY_API_VERSION`, `SHOPIFY_API` (`graphql` or `rest`: which Admin API reads the orders), the REST pacing
settings `SHOPIFY_BUCKET_SIZE` / `SHOPIFY_LEAK_RATE`, the GraphQL ones `SHOPIFY_GRAPHQL_BUCKET_POINTS` /
`SHOPIFY_GRAPHQL_RESTORE_RATE`, `SHOPIFY_BULK_THRESHOLD_HOURS` (a longer GraphQL range is read by bulk
operations), `SHOPIFY_BULK_CONCURRENCY` (how many bulk operations, one per slice of the range, run at once), and
`SHOPIFY_FETCH_STREAMS`, how many page streams a long fetch runs at once (one cursor cannot use a Plus bucket:
Shopify takes 200-500 ms a page). With no store configured the client talks, in-process, to the built-in demo
store.
"""

from __future__ import annotations

import logging
import math
import os
import re
from datetime import timedelta
from typing import Any

import dagster as dg
import httpx
from pydantic import Field

from cancel_pipeline.embedded import DEMO_STORE, embedded_shop
from cancel_pipeline.shopify.bulk import MAX_CONCURRENT_BULK, concurrent_bulk_limit
from cancel_pipeline.shopify.client import DEFAULT_API_VERSION, ShopifyClient, resolve_store
from cancel_pipeline.shopify.cost import STANDARD_BUCKET_POINTS, STANDARD_RESTORE_RATE
from cancel_pipeline.shopify.errors import ShopifyConfigError
from cancel_pipeline.shopify.graphql import ShopifyGraphQLClient
from cancel_pipeline.shopify.source import SHOPIFY_APIS, OrderSource

#: Base URL of the in-process demo store (never resolved by DNS: requests go through a WSGI transport).
DEMO_BASE_URL = "http://demo-store.local"

#: The demo store runs Plus-sized in-process, so a local run pages through a day in seconds.
DEMO_BUCKET_SIZE = 400
DEMO_LEAK_RATE = 20.0
#: ... and a Plus GraphQL cost bucket (1000 points a second).
DEMO_GRAPHQL_BUCKET_POINTS = 20000.0
DEMO_GRAPHQL_RESTORE_RATE = 1000.0

#: A real store's default plan: Standard.
STANDARD_BUCKET_SIZE = 40
STANDARD_LEAK_RATE = 2.0

_SECRET_VARIABLES = {
    "store": "SHOPIFY_STORE",
    "access_token": "SHOPIFY_ACCESS_TOKEN",
    "client_id": "SHOPIFY_CLIENT_ID",
    "client_secret": "SHOPIFY_CLIENT_SECRET",
    "api_version": "SHOPIFY_API_VERSION",
}

#: A scheduled run reads one daily window plus the overlap and pages; a backfill of several days bulks.
DEFAULT_BULK_THRESHOLD_HOURS = 72.0

#: More streams than this only adds threads: even Plus (20 requests/s) is kept busy by 8 streams at 400 ms.
MAX_FETCH_STREAMS = 16
#: The slow end of Shopify's time to answer a page of 250 orders, which sizes the default number of streams.
PAGE_LATENCY_S = 0.4


class ShopifyResource(dg.ConfigurableResource):
    """Shopify Admin API access for assets: `get_client()` returns a ready `ShopifyClient`.

    Leave `store` unset to use the built-in demo store in-process. Give secrets as `dg.EnvVar` (see
    `from_env`) so they stay out of run configuration and the UI.
    """

    store: str | None = Field(
        default=None,
        description="my-shop, my-shop.myshopify.com or a base URL; unset: the built-in demo store",
    )
    access_token: str | None = Field(default=None, description="Admin API token (use an EnvVar)")
    client_id: str | None = Field(default=None, description="client-credentials grant: client id")
    client_secret: str | None = Field(default=None, description="client-credentials grant: secret (EnvVar)")
    api_version: str = Field(default=DEFAULT_API_VERSION, description="pinned Admin API version, YYYY-MM")
    bucket_size: int | None = Field(
        default=None, description="leaky bucket size; default 40 (Standard), 400 for the demo store"
    )
    leak_rate: float | None = Field(
        default=None, description="requests leaked per second; default 2 (Standard), 20 for the demo store"
    )
    max_retries: int = Field(default=5, description="retries per request for 5xx, timeouts, resets")
    timeout_s: float = Field(default=30.0, description="HTTP timeout per request, seconds")
    api: str | None = Field(
        default=None,
        description="which Admin API reads the orders: graphql or rest; unset: graphql",
    )
    graphql_bucket_points: float | None = Field(
        default=None, gt=0, description="GraphQL cost bucket size in points; default 2000 (follows the store)"
    )
    graphql_restore_rate: float | None = Field(
        default=None,
        gt=0,
        description="GraphQL points restored per second: Standard 100, Advanced 200, Plus 1000 (follows the store)",
    )
    bulk_threshold_hours: float | None = Field(
        default=None,
        ge=0,
        description="GraphQL: a range longer than this many hours is read by bulk operations instead of "
        "paging; 0 turns bulk off; unset: 72 (a scheduled daily window pages, a backfill bulks)",
    )
    bulk_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CONCURRENT_BULK,
        description="GraphQL: how many bulk operations read a bulk range at once, each one contiguous "
        "updated_at slice of it; at most what the API version allows (5 from 2026-01, 1 before); unset: that "
        "most",
    )
    fetch_streams: int | None = Field(
        default=None,
        ge=1,
        le=MAX_FETCH_STREAMS,
        description="concurrent page streams of a long fetch (sharing one rate-limit bucket); 1: one cursor; "
        "unset: as many as the plan's leak rate needs at Shopify's page latency",
    )

    @classmethod
    def from_env(cls) -> ShopifyResource:
        """The resource for the current environment; variables that are set are passed as `dg.EnvVar`.

        The API choice and pacing settings are not secrets and are read now (`SHOPIFY_API`,
        `SHOPIFY_BUCKET_SIZE`, `SHOPIFY_LEAK_RATE`, `SHOPIFY_GRAPHQL_BUCKET_POINTS`,
        `SHOPIFY_GRAPHQL_RESTORE_RATE`, `SHOPIFY_BULK_CONCURRENCY`, `SHOPIFY_FETCH_STREAMS`).
        """
        settings: dict[str, Any] = {
            field: dg.EnvVar(variable)
            for field, variable in _SECRET_VARIABLES.items()
            if os.environ.get(variable)
        }
        if (size := os.environ.get("SHOPIFY_BUCKET_SIZE", "")).strip():
            settings["bucket_size"] = bucket_size_setting(size)
        if (rate := os.environ.get("SHOPIFY_LEAK_RATE", "")).strip():
            settings["leak_rate"] = leak_rate_setting(rate)
        if (api := os.environ.get("SHOPIFY_API")) is not None and api.strip():
            settings["api"] = api_setting(api)
        for variable, field in (
            ("SHOPIFY_GRAPHQL_BUCKET_POINTS", "graphql_bucket_points"),
            ("SHOPIFY_GRAPHQL_RESTORE_RATE", "graphql_restore_rate"),
        ):
            if (raw := os.environ.get(variable)) is not None and raw.strip():
                settings[field] = positive_setting(variable, raw)
        if (hours := os.environ.get("SHOPIFY_BULK_THRESHOLD_HOURS")) is not None and hours.strip():
            settings["bulk_threshold_hours"] = (
                0.0 if hours.strip() == "0" else positive_setting("SHOPIFY_BULK_THRESHOLD_HOURS", hours)
            )
        if (streams := os.environ.get("SHOPIFY_FETCH_STREAMS")) is not None and streams.strip():
            settings["fetch_streams"] = fetch_streams_setting(streams)
        # Neither is a secret, so both are checked now: a typo fails the load, not the first run.
        version = os.environ.get("SHOPIFY_API_VERSION", "")
        if version.strip():
            api_version_setting(version)
        if (concurrency := os.environ.get("SHOPIFY_BULK_CONCURRENCY")) is not None and concurrency.strip():
            settings["bulk_concurrency"] = bulk_concurrency_setting(
                concurrency, version.strip() or DEFAULT_API_VERSION
            )
        if (store := os.environ.get("SHOPIFY_STORE", "")).strip():
            store_setting(store)
        return cls(**settings)

    @property
    def page_streams(self) -> int:
        """`fetch_streams`, or when unset enough streams to keep the plan's bucket busy: Shopify answers a
        250-order page in 200-500 ms, so each stream makes about 1 / PAGE_LATENCY_S requests a second.
        Standard (2/s) gets one stream, Plus (20/s) eight; more than needed would only cut the fetch into
        more slices, each ending in a partly filled page. GraphQL walks one cursor: its cost bucket, not
        the latency, bounds a fetch."""
        if self.chosen_api == "graphql":
            return 1
        if self.fetch_streams is not None:
            return self.fetch_streams
        rate = self.leak_rate or (DEMO_LEAK_RATE if self.uses_embedded_store else STANDARD_LEAK_RATE)
        return max(1, min(MAX_FETCH_STREAMS, math.ceil(rate * PAGE_LATENCY_S)))

    @property
    def bulk_threshold(self) -> timedelta | None:
        """The range length above which GraphQL reads by bulk operation; None when bulk is off."""
        hours = (
            DEFAULT_BULK_THRESHOLD_HOURS if self.bulk_threshold_hours is None else self.bulk_threshold_hours
        )
        return timedelta(hours=hours) if hours > 0 else None

    @property
    def bulk_operations(self) -> int:
        """`bulk_concurrency`, or when unset as many bulk operations at once as the pinned API version allows
        (5 from 2026-01, 1 before); a value above that fails naming both settings."""
        version = _value(self.api_version) or DEFAULT_API_VERSION
        if self.bulk_concurrency is None:
            return concurrent_bulk_limit(version)
        return bulk_concurrency_setting(str(self.bulk_concurrency), version)

    @property
    def chosen_api(self) -> str:
        """`api`, or `graphql` when unset (for a real store and the built-in demo store alike)."""
        return api_setting(self.api) if self.api else "graphql"

    @property
    def uses_embedded_store(self) -> bool:
        """True when no store is configured and the built-in demo store answers."""
        return not _value(self.store)

    @property
    def store_identity(self) -> str:
        """Which store this is, as the warehouse records it: `demo` for the built-in demo store, else its
        host (`my-shop.myshopify.com`, or `host:port` of a base URL; never credentials)."""
        if self.uses_embedded_store:
            return DEMO_STORE
        _, label = resolve_store(_value(self.store) or "")
        return label.rpartition("@")[2]

    def get_client(
        self, logger: logging.Logger | None = None, *, progress: logging.Logger | None = None
    ) -> OrderSource:
        """A new client for the configured store and API (close it, or use it as a context manager).

        `progress` receives what a long read reports as it goes (a bulk operation's state and objects): pass
        the run's log. Per-page messages stay on `logger`, out of the run's event log."""
        if self.chosen_api == "graphql":
            return self._graphql_client(logger, progress)
        common: dict[str, Any] = {
            "api_version": _value(self.api_version) or DEFAULT_API_VERSION,
            "max_retries": self.max_retries,
            "timeout": self.timeout_s,
            "logger": logger,
        }
        if self.uses_embedded_store:
            size = self.bucket_size or DEMO_BUCKET_SIZE
            rate = self.leak_rate or DEMO_LEAK_RATE
            shop, token = embedded_shop(size, rate)
            return ShopifyClient(
                DEMO_BASE_URL,
                access_token=token,
                bucket_size=size,
                leak_rate=rate,
                transport=httpx.WSGITransport(app=shop),
                **common,
            )
        return ShopifyClient(
            _value(self.store) or "",
            access_token=_value(self.access_token),
            client_id=_value(self.client_id),
            client_secret=_value(self.client_secret),
            bucket_size=self.bucket_size or STANDARD_BUCKET_SIZE,
            leak_rate=self.leak_rate or STANDARD_LEAK_RATE,
            **common,
        )

    def _graphql_client(
        self, logger: logging.Logger | None, progress: logging.Logger | None
    ) -> ShopifyGraphQLClient:
        common: dict[str, Any] = {
            "progress_logger": progress,
            "api_version": _value(self.api_version) or DEFAULT_API_VERSION,
            "max_retries": self.max_retries,
            "timeout": self.timeout_s,
            "logger": logger,
            "bucket_points": self.graphql_bucket_points or STANDARD_BUCKET_POINTS,
            "restore_rate": self.graphql_restore_rate or STANDARD_RESTORE_RATE,
            "bulk_threshold": self.bulk_threshold,
            "bulk_concurrency": self.bulk_operations,
        }
        if self.uses_embedded_store:
            points = self.graphql_bucket_points or DEMO_GRAPHQL_BUCKET_POINTS
            rate = self.graphql_restore_rate or DEMO_GRAPHQL_RESTORE_RATE
            shop, token = embedded_shop(
                self.bucket_size or DEMO_BUCKET_SIZE, self.leak_rate or DEMO_LEAK_RATE, points, rate
            )
            common.update(bucket_points=points, restore_rate=rate)
            return ShopifyGraphQLClient(
                DEMO_BASE_URL, access_token=token, transport=httpx.WSGITransport(app=shop), **common
            )
        return ShopifyGraphQLClient(
            _value(self.store) or "",
            access_token=_value(self.access_token),
            client_id=_value(self.client_id),
            client_secret=_value(self.client_secret),
            **common,
        )


def api_setting(raw: str) -> str:
    """`SHOPIFY_API` as `graphql` or `rest`; anything else fails naming the variable."""
    api = raw.strip().lower()
    if api not in SHOPIFY_APIS:
        raise ShopifySettingsError(f"SHOPIFY_API must be graphql or rest, got {raw!r}")
    return api


def positive_setting(variable: str, raw: str) -> float:
    """A positive number from `variable`; anything else fails naming it."""
    try:
        value = float(raw.strip())
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ShopifySettingsError(f"{variable} must be a positive number, got {raw!r}")
    return value


class ShopifySettingsError(ValueError):
    """A `SHOPIFY_*` variable holds a value the pipeline cannot use; the message names the variable."""


_API_VERSION = re.compile(r"\d{4}-(0[1-9]|1[0-2])|unstable")


def bucket_size_setting(raw: str) -> int:
    """`SHOPIFY_BUCKET_SIZE` as a whole number of requests, at least 1."""
    try:
        size = int(raw.strip())
    except ValueError:
        size = 0
    if size < 1:
        raise ShopifySettingsError(
            f"SHOPIFY_BUCKET_SIZE must be a whole number of requests, at least 1 (40 on Standard, 400 on "
            f"Plus), got {raw!r}"
        )
    return size


def leak_rate_setting(raw: str) -> float:
    """`SHOPIFY_LEAK_RATE` as requests per second above zero."""
    try:
        rate = float(raw.strip())
    except ValueError:
        rate = 0.0
    if not math.isfinite(rate) or rate <= 0:
        raise ShopifySettingsError(
            f"SHOPIFY_LEAK_RATE must be a number of requests per second above zero (2 on Standard, 20 on "
            f"Plus), got {raw!r}"
        )
    return rate


def api_version_setting(raw: str) -> str:
    """`SHOPIFY_API_VERSION` as Shopify names versions: `YYYY-MM` or `unstable`."""
    version = raw.strip()
    if not _API_VERSION.fullmatch(version):
        raise ShopifySettingsError(
            f"SHOPIFY_API_VERSION must be an Admin API version such as {DEFAULT_API_VERSION!r}, got {raw!r}"
        )
    return version


def store_setting(raw: str) -> str:
    """`SHOPIFY_STORE` as the client takes it: `my-shop`, `my-shop.myshopify.com` or an http(s) base URL."""
    try:
        _, label = resolve_store(raw)
    except ShopifyConfigError as error:
        raise ShopifySettingsError(f"SHOPIFY_STORE: {error}") from None
    if any(character.isspace() for character in raw.strip()):
        raise ShopifySettingsError(f"SHOPIFY_STORE must be a shop name or URL without spaces, got {raw!r}")
    return label


def fetch_streams_setting(raw: str) -> int:
    """`SHOPIFY_FETCH_STREAMS` as an int in 1..MAX_FETCH_STREAMS; anything else fails naming the variable."""
    try:
        streams = int(raw.strip())
    except ValueError:
        streams = 0
    if not 1 <= streams <= MAX_FETCH_STREAMS:
        raise ShopifySettingsError(
            f"SHOPIFY_FETCH_STREAMS must be a whole number from 1 to {MAX_FETCH_STREAMS}, got {raw!r}"
        )
    return streams


def bulk_concurrency_setting(raw: str, api_version: str) -> int:
    """`SHOPIFY_BULK_CONCURRENCY` as a whole number from 1 to what `api_version` allows (5 from 2026-01, 1
    before); anything else fails naming the variable, and SHOPIFY_API_VERSION when the version is the limit."""
    try:
        concurrency = int(raw.strip())
    except ValueError:
        concurrency = 0
    if not 1 <= concurrency <= MAX_CONCURRENT_BULK:
        raise ShopifySettingsError(
            f"SHOPIFY_BULK_CONCURRENCY must be a whole number of bulk operations from 1 to "
            f"{MAX_CONCURRENT_BULK}, got {raw!r}"
        )
    allowed = concurrent_bulk_limit(api_version)
    if concurrency > allowed:
        raise ShopifySettingsError(
            f"SHOPIFY_BULK_CONCURRENCY={concurrency} is more than SHOPIFY_API_VERSION={api_version} allows: "
            f"Shopify runs one bulk query at a time per app before 2026-01; set SHOPIFY_BULK_CONCURRENCY=1 "
            f"or pin SHOPIFY_API_VERSION to 2026-01 or later"
        )
    return concurrency


def _value(setting: str | None) -> str | None:
    """A setting's value, resolving an `EnvVar` when the resource is used outside a Dagster run."""
    if isinstance(setting, dg.EnvVar):
        return setting.get_value()
    return setting or None
