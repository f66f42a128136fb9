"""What assets, the sensor and the CLI need of a Shopify client, whichever API it speaks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Protocol

from cancel_pipeline.shopify.pages import ClientStats, OrderPage

#: The values of `SHOPIFY_API`: the GraphQL Admin API (the default for a real store) or REST.
SHOPIFY_APIS = ("graphql", "rest")


class OrderSource(Protocol):
    """A client for one store's orders: `ShopifyClient` (REST) or `ShopifyGraphQLClient`."""

    api: str
    store: str
    api_version: str
    stats: ClientStats

    def iter_order_pages(
        self,
        *,
        status: str = ...,
        updated_at_min: datetime | None = ...,
        updated_at_max: datetime | None = ...,
        limit: int = ...,
        fields: list[str] | None = ...,
        streams: int = ...,
    ) -> Iterator[OrderPage]:
        """Pages of the orders updated in the bounds (both inclusive), with the given status."""
        ...

    def refetch_page(self, request_path: str, page_number: int) -> OrderPage:
        """A page fetched again by the request that produced it, parsed in full."""
        ...

    def get_orders(self, ids: Iterable[int]) -> Iterator[OrderPage]:
        """Pages holding the given orders, any status."""
        ...

    def count_orders(
        self,
        *,
        status: str = ...,
        updated_at_min: datetime | None = ...,
        updated_at_max: datetime | None = ...,
    ) -> int:
        """How many orders match the filters."""
        ...

    def close(self) -> None:
        """Close the client's connections."""
        ...

    def __enter__(self) -> OrderSource: ...

    def __exit__(self, *exc: object) -> None: ...
