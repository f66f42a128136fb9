"""End to end on the deployed topology (deploy/postgres/): a throwaway PostgreSQL cluster holds the instance,
PgBouncer (started by the deployment's own script) stands in front of it, and a gRPC code server, the daemon
and the webserver run as separate processes that reach the instance through PgBouncer only. A range backfill of the
cancellation feed is launched through the webserver's GraphQL API; the runs, the partition status, the
instance's own tables in PostgreSQL and the DuckDB tables are then checked.

The backfilled span is read from the loaded definitions (the newest partitions of `BACKFILL_ROOT` before the
store's frozen clock, up to `BACKFILL_SPAN`), so the test holds whatever the partitions' grain.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from cancel_pipeline_simulators.demo_store import DemoStore
from cancel_pipeline_testkit.deployment import Deployment, run_deployment
from cancel_pipeline_testkit.graphql import Backfill, DagsterGraphQLClient
from cancel_pipeline_testkit.pgbouncer import PgBouncer, find_pgbouncer, run_pgbouncer
from cancel_pipeline_testkit.postgres import PostgresCluster, find_postgres_bindir, run_postgres_cluster
from cancel_pipeline_testkit.selection import downstream_closure, partition_keys_in_range, partition_ranges
from cancel_pipeline_testkit.warehouse_snapshot import snapshot_when_idle

from cancel_pipeline_tests.e2e.scenario import BACKFILL_ROOT, BACKFILL_TIMEOUT_S, STORE_NOW

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

BACKFILL_SPAN = timedelta(hours=6)
"""At most this much of the newest time is backfilled, and always at least one partition."""

REQUIRED_DAEMONS = ("SCHEDULER", "SENSOR", "BACKFILL", "QUEUED_RUN_COORDINATOR", "MONITORING")
"""Daemons the deployed instance needs: run monitoring is switched on by deploy/postgres/dagster.yaml."""


@dataclass(frozen=True)
class DeployedBackfill:
    """A finished backfill on the deployment and what it was asked to do."""

    backfill: Backfill
    ranges: dict[str, tuple[str, str] | None]
    window: dg.TimeWindow


def newest_partitions_window(defs: dg.Definitions, key: str, now: datetime, span: timedelta) -> dg.TimeWindow:
    """The time covered by the newest whole partitions of `key` before `now`, at most `span` (at least one)."""
    partitions_def = defs.resolve_asset_graph().get(dg.AssetKey.from_user_string(key)).partitions_def
    assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition), f"{key}: {partitions_def!r}"
    keys = partitions_def.get_partition_keys(current_time=now)
    assert keys, f"{key} has no partition before {now}"
    windows = [partitions_def.time_window_for_partition_key(partition) for partition in keys[-200:]]
    first = len(windows) - 1
    while first > 0 and windows[-1].end - windows[first - 1].start <= span:
        first -= 1
    return dg.TimeWindow(windows[first].start, windows[-1].end)


@pytest.fixture(scope="module")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of its own, stopped and deleted after the module."""
    if find_postgres_bindir() is None:
        pytest.skip("PostgreSQL's server (initdb, pg_ctl) is not installed; .ci/run installs it")
    with run_postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def pgbouncer(postgres_cluster: PostgresCluster) -> Iterator[PgBouncer]:
    """PgBouncer in front of the cluster, as docker-compose.yml's "pgbouncer" service runs it."""
    if find_pgbouncer() is None:
        pytest.skip("PgBouncer is not installed; .ci/run installs it (Debian's pgbouncer package)")
    with run_pgbouncer(postgres_cluster) as bouncer:
        yield bouncer


@pytest.fixture(scope="module")
def deployment(
    pgbouncer: PgBouncer,
    demo_store: DemoStore,
    demo_store_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    """Code server, daemon and webserver on the cluster; only the code server knows the store."""
    store_env = {"SHOPIFY_STORE": demo_store_url, "SHOPIFY_ACCESS_TOKEN": demo_store.settings.access_token}
    with run_deployment(tmp_path_factory.mktemp("deployment"), pgbouncer.url, code_env=store_env) as running:
        yield running


@pytest.fixture(scope="module")
def client(deployment: Deployment) -> Iterator[DagsterGraphQLClient]:
    """A GraphQL client for the deployment's webserver."""
    with DagsterGraphQLClient(deployment.graphql_url) as graphql_client:
        yield graphql_client


@pytest.fixture(scope="module")
def deployed_backfill(
    client: DagsterGraphQLClient, deployment: Deployment, project_defs: dg.Definitions
) -> DeployedBackfill:
    """A backfill of `BACKFILL_ROOT` and everything downstream over its newest partitions, waited for."""
    nodes = client.asset_nodes()
    assert BACKFILL_ROOT in nodes, f"{BACKFILL_ROOT} is not in the asset graph: {sorted(nodes)}"
    window = newest_partitions_window(project_defs, BACKFILL_ROOT, STORE_NOW, BACKFILL_SPAN)
    ranges = partition_ranges(downstream_closure(nodes, BACKFILL_ROOT), nodes, project_defs, window)
    backfill_id = client.launch_backfill(ranges, title="deployment test")
    try:
        backfill = client.wait_for_backfill(backfill_id, timeout=BACKFILL_TIMEOUT_S)
    except TimeoutError as error:
        raise AssertionError(f"{error}\n{deployment.log_tail()}") from None
    return DeployedBackfill(backfill=backfill, ranges=ranges, window=window)


@pytest.fixture(scope="module")
def warehouse(
    deployed_backfill: DeployedBackfill,
    client: DagsterGraphQLClient,
    deployment: Deployment,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only copy of the deployment's DuckDB file, taken once no run writes it."""
    source = deployment.duckdb_path
    snapshot = snapshot_when_idle(
        source, tmp_path_factory.mktemp("deployed_warehouse") / source.name, client.unfinished_run_ids
    )
    connection = duckdb.connect(str(snapshot), read_only=True)
    try:
        yield connection
    finally:
        connection.close()


def test_backfill_runs_succeed(deployed_backfill: DeployedBackfill, deployment: Deployment) -> None:
    backfill = deployed_backfill.backfill
    assert backfill.status == "COMPLETED_SUCCESS", (
        f"backfill ended {backfill.status}: {backfill.error}; runs {backfill.runs}\n{deployment.log_tail()}"
    )
    assert backfill.runs and set(backfill.runs.values()) == {"SUCCESS"}, backfill.runs
    # A range backfill runs as one run per asset at most, never one per partition.
    assert len(backfill.runs) <= len(deployed_backfill.ranges), backfill.runs


def test_partition_status_shows_every_partition_materialized(
    deployed_backfill: DeployedBackfill, client: DagsterGraphQLClient, project_defs: dg.Definitions
) -> None:
    run_ids = set(deployed_backfill.backfill.runs)
    partitioned = {key: span for key, span in deployed_backfill.ranges.items() if span is not None}
    assert BACKFILL_ROOT in partitioned
    for key, key_range in deployed_backfill.ranges.items():
        state = client.asset_state(key)
        if key_range is None:
            assert state.latest_materialization_run_id in run_ids, f"{key} not materialized by the backfill"
            continue
        partitions = partition_keys_in_range(project_defs, key, key_range)
        by_partition = client.latest_materialization_runs(key, partitions)
        not_by_backfill = {partition: run for partition, run in by_partition.items() if run not in run_ids}
        assert not not_by_backfill, f"{key}: partitions not materialized by the backfill: {not_by_backfill}"
        assert state.num_materialized is not None and state.num_materialized >= len(partitions), state
        assert state.num_failed == 0, state


def test_instance_lives_in_postgres(
    deployed_backfill: DeployedBackfill,
    client: DagsterGraphQLClient,
    deployment: Deployment,
    postgres_cluster: PostgresCluster,
) -> None:
    info = client.instance_info()
    for storage in ("PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage"):
        assert storage in info, f"{storage} is not the instance's storage:\n{info}"
    assert postgres_cluster.password not in info, "the instance description shows the database password"
    connection = postgres_cluster.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "select run_id, status from runs where run_id = any(%s)",
                [list(deployed_backfill.backfill.runs)],
            )
            stored = dict(cursor.fetchall())
            cursor.execute(
                "select count(*) from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION'"
                " and run_id = any(%s)",
                [list(deployed_backfill.backfill.runs)],
            )
            (materializations,) = cursor.fetchone()
            cursor.execute('select concurrency_key, "limit" from concurrency_limits')
            pools = dict(cursor.fetchall())
    finally:
        connection.close()
    assert stored == dict.fromkeys(deployed_backfill.backfill.runs, "SUCCESS"), stored
    assert materializations > 0
    assert pools.get("duckdb_writer") == 1, pools
    # Nothing fell back to the SQLite files of a local instance.
    local_files = [path.name for path in deployment.dagster_home.rglob("*.db")]
    assert not local_files, f"SQLite storage files in the deployed instance: {local_files}"


def test_instance_traffic_goes_through_pgbouncer(
    deployed_backfill: DeployedBackfill, pgbouncer: PgBouncer, postgres_cluster: PostgresCluster
) -> None:
    stats = pgbouncer.stats()
    # Thousands of statements: the backfill's events, the daemon's ticks, the webserver's queries.
    assert stats["total_query_count"] > 1000, stats
    connection = postgres_cluster.connect("postgres")
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "select sessions from pg_stat_database where datname = %s", [postgres_cluster.database]
            )
            (sessions,) = cursor.fetchone()
    finally:
        connection.close()
    # PostgreSQL counts a session when it ends. Every Dagster process closes its connection after each
    # write: connected directly, thousands of sessions would have ended by now; through PgBouncer its
    # server sessions stay open for the next login, and only the test's own direct connections end.
    assert sessions <= 100 < stats["total_xact_count"], (sessions, stats)


def test_daemons_are_healthy(deployed_backfill: DeployedBackfill, client: DagsterGraphQLClient) -> None:
    health = client.daemon_health()
    missing = [daemon for daemon in REQUIRED_DAEMONS if daemon not in health]
    assert not missing, f"daemons the instance does not run: {missing} (runs {sorted(health)})"
    assert all(health.values()), health


def test_tables_hold_the_backfilled_orders(
    deployed_backfill: DeployedBackfill, warehouse: duckdb.DuckDBPyConnection, demo_store: DemoStore
) -> None:
    window = deployed_backfill.window
    landed = warehouse.execute(
        """
        select min(requested_min), max(requested_max), count(*)
        from raw_order_pages where asset = ? and window_start >= ? and window_end <= ?
        """,
        [BACKFILL_ROOT, window.start, window.end],
    ).fetchone()
    requested_min, requested_max, pages = landed
    assert pages, f"no {BACKFILL_ROOT} pages landed for {window}"
    expected = {
        order["id"]
        for order in demo_store.orders(
            status="cancelled", updated_at_min=requested_min, updated_at_max=requested_max
        )
        if isinstance(order["id"], int)
    }
    assert expected, "the demo store has no canceled order in the span: the test would prove nothing"
    canceled = {
        order_id for (order_id,) in warehouse.execute("select order_id from canceled_orders").fetchall()
    }
    assert expected <= canceled, (
        f"canceled orders missing from canceled_orders: {sorted(expected - canceled)}"
    )
    statuses = dict(warehouse.execute("select order_id, status from orders").fetchall())
    assert {statuses.get(order_id) for order_id in expected} == {"canceled"}
    (lines,) = warehouse.execute(
        "select count(*) from canceled_line_items where order_id in (select unnest(?))", [sorted(expected)]
    ).fetchone()
    assert lines > 0


def test_secrets_stay_out_of_the_logs(
    deployed_backfill: DeployedBackfill,
    deployment: Deployment,
    postgres_cluster: PostgresCluster,
    pgbouncer: PgBouncer,
    demo_store: DemoStore,
) -> None:
    secrets = {
        "database password": postgres_cluster.password,
        "store token": demo_store.settings.access_token,
    }
    logs: list[Path] = [*deployment.logs.values(), postgres_cluster.log_path, pgbouncer.log_path]
    for path in logs:
        text = path.read_text(errors="replace")
        assert text, f"{path.name} is empty: nothing was checked"
        for what, secret in secrets.items():
            assert secret not in text, f"the {what} appears in {path.name}"
