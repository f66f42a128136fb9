"""The resources every definition uses: the Shopify store and the DuckDB warehouse."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from cancel_pipeline.settings import SETTINGS, PipelineSettings
from cancel_pipeline.shopify.resource import ShopifyResource
from cancel_pipeline.warehouse.connection import warehouse_connection


class WarehouseResource(DuckDBResource):
    """`DuckDBResource` for the warehouse file: creates its folder, sets the session time zone to UTC, and
    waits out another process's file lock (with backoff) instead of failing at once."""

    @contextlib.contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to `database`, closed (and the file lock released) when the block exits."""
        with warehouse_connection(self.database, config=self.connection_config) as con:
            yield con


def build_resources(settings: PipelineSettings = SETTINGS) -> dict[str, Any]:
    """`shopify` (from the `SHOPIFY_*` variables; the demo store when none is set) and `duckdb`."""
    return {
        "shopify": ShopifyResource.from_env(),
        "duckdb": WarehouseResource(
            database=settings.duckdb_path, connection_config={"memory_limit": settings.duckdb_memory_limit}
        ),
    }


@dg.definitions
def resources() -> dg.Definitions:
    """`shopify` and `duckdb`, bound for every asset, check and sensor of the project."""
    return dg.Definitions(resources=build_resources())
