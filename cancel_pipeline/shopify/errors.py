"""Typed errors of the Shopify client.

Every message names the store, the endpoint and the HTTP status a user can act on, and never a token or a
client secret: callers may log these messages and Dagster shows them in the UI.
"""

from __future__ import annotations


class ShopifyError(Exception):
    """Base class of every error the Shopify client raises."""

    def __init__(self, message: str, *, store: str, endpoint: str, status: int | None = None) -> None:
        super().__init__(message)
        self.store = store
        self.endpoint = endpoint
        self.status = status


class ShopifyConfigError(ShopifyError):
    """The client was configured in a way that cannot work (e.g. no credentials for a real store)."""


class ShopifyAuthError(ShopifyError):
    """401: the access token (or the client credentials) were refused."""


class ShopifyPaymentRequiredError(ShopifyError):
    """402: the store is frozen (unpaid bill)."""


class ShopifyForbiddenError(ShopifyError):
    """403: the app lacks a scope (read_orders, or read_all_orders for orders older than 60 days)."""


class ShopifyNotFoundError(ShopifyError):
    """404: the endpoint or the resource does not exist (also orders outside the 60-day window)."""


class ShopifyLockedError(ShopifyError):
    """423: the store is locked."""


class ShopifyRequestFailed(ShopifyError):
    """A request still failed after every retry (5xx, 429, timeouts, resets, truncated bodies)."""

    def __init__(self, message: str, *, store: str, endpoint: str, status: int | None, attempts: int) -> None:
        super().__init__(message, store=store, endpoint=endpoint, status=status)
        self.attempts = attempts
