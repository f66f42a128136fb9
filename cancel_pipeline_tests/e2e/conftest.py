"""Session fixtures: one demo store over HTTP, one `dagster dev`, one backfill, shared by every e2e test.

The demo store's clock is frozen, so the backfilled windows hold the same orders on every run; the server
gets its own instance folder and DuckDB file under pytest's temporary directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve
from cancel_pipeline_testkit.dagster_dev import DagsterDevServer, run_dagster_dev
from cancel_pipeline_testkit.graphql import DagsterGraphQLClient
from cancel_pipeline_testkit.selection import downstream_closure, partition_ranges
from cancel_pipeline_testkit.warehouse_snapshot import snapshot_when_idle

from cancel_pipeline_tests.e2e.scenario import (
    BACKFILL_ROOT,
    BACKFILL_TIMEOUT_S,
    BACKFILL_WINDOW,
    FIRST_WINDOW,
    SCREENSHOTS,
    STORE_NOW,
    CompletedBackfill,
)


@pytest.fixture(scope="session")
def demo_store() -> DemoStore:
    """The demo store, its clock frozen at `STORE_NOW`."""
    return DemoStore(clock=FrozenClock(STORE_NOW))


@pytest.fixture(scope="session")
def demo_store_url(demo_store: DemoStore) -> Iterator[str]:
    """The demo store served over HTTP on a free port of 127.0.0.1."""
    with serve(demo_store) as url:
        yield url


@pytest.fixture(scope="session")
def dagster_dev_server(
    tmp_path_factory: pytest.TempPathFactory, demo_store: DemoStore, demo_store_url: str
) -> Iterator[DagsterDevServer]:
    """`dagster dev` on the project, pointed at the demo store over HTTP with its access token."""
    env = {
        "SHOPIFY_STORE": demo_store_url,
        "SHOPIFY_ACCESS_TOKEN": demo_store.settings.access_token,
        "SHOPIFY_API": "rest",  # written for the REST path; GraphQL has its own tests (test_graphql_*)
        "CANCEL_PIPELINE_FIRST_WINDOW": FIRST_WINDOW.isoformat(),
    }
    with run_dagster_dev(tmp_path_factory.mktemp("dagster_dev"), extra_env=env) as server:
        yield server


@pytest.fixture(scope="session")
def graphql(dagster_dev_server: DagsterDevServer) -> Iterator[DagsterGraphQLClient]:
    """A GraphQL client for the running webserver."""
    with DagsterGraphQLClient(dagster_dev_server.graphql_url) as client:
        yield client


@pytest.fixture(scope="session")
def project_defs() -> dg.Definitions:
    """The project's Definitions, loaded in this process to compute partition keys."""
    from cancel_pipeline.definitions import defs

    return defs


@pytest.fixture(scope="session")
def completed_backfill(
    graphql: DagsterGraphQLClient, dagster_dev_server: DagsterDevServer, project_defs: dg.Definitions
) -> CompletedBackfill:
    """A backfill of `BACKFILL_ROOT` and its downstream assets over `BACKFILL_WINDOW`, launched through
    the webserver's GraphQL API and waited for."""
    nodes = graphql.asset_nodes()
    assert BACKFILL_ROOT in nodes, f"{BACKFILL_ROOT} is not in the asset graph: {sorted(nodes)}"
    selection = downstream_closure(nodes, BACKFILL_ROOT)
    ranges = partition_ranges(selection, nodes, project_defs, BACKFILL_WINDOW)
    backfill_id = graphql.launch_backfill(ranges, title="end-to-end test")
    try:
        backfill = graphql.wait_for_backfill(backfill_id, timeout=BACKFILL_TIMEOUT_S)
    except TimeoutError as error:
        raise AssertionError(
            f"{error}\nlast lines of the server log:\n{dagster_dev_server.log_tail()}"
        ) from None
    return CompletedBackfill(backfill=backfill, ranges=ranges, server=dagster_dev_server)


@pytest.fixture(scope="session")
def warehouse(
    completed_backfill: CompletedBackfill,
    graphql: DagsterGraphQLClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only snapshot of the server's DuckDB file, taken once no run is writing it.

    Runs the sensor starts may still be going when the backfill is done, so the file is opened read-only
    (which keeps writers out), copied, and released at once: later runs never wait on the tests.
    """
    source = completed_backfill.server.duckdb_path
    snapshot = snapshot_when_idle(
        source, tmp_path_factory.mktemp("warehouse") / source.name, graphql.unfinished_run_ids
    )
    connection = duckdb.connect(str(snapshot), read_only=True)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture(scope="session")
def screenshots_dir() -> Path:
    """Where the browser tests save screenshots (git-ignored)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS
