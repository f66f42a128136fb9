"""What the `dagster dev` benchmarks share: the demo store and `dagster dev` started as a user would, run and
sensor-tick timings read from the webserver's GraphQL API, and short read-only looks into the warehouse.

`dagster dev` itself is started and stopped by the end-to-end test harness (`cancel_pipeline_tests.e2e`), so
the benchmarks and the tests launch Dagster the same way and leave no process behind.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    # Run as `python benchmarks/<script>.py`: the test package holding the `dagster dev` harness is not
    # installed, it is importable from the project root.
    sys.path.insert(0, str(PROJECT_ROOT))

from cancel_pipeline_simulators.demo_store import DemoStore, serve  # noqa: E402
from cancel_pipeline_testkit.dagster_dev import (  # noqa: E402
    DagsterDevError,
    DagsterDevServer,
    log_tail,
    run_dagster_dev,
    server_environment,
)
from cancel_pipeline_testkit.graphql import DagsterGraphQLClient, GraphQLError  # noqa: E402

__all__ = [
    "DEPLOYED_STORAGES",
    "PROJECT_ROOT",
    "STORAGES",
    "DagsterDevServer",
    "DagsterGraphQLClient",
    "RunEvent",
    "RunTiming",
    "SensorTick",
    "backfill_times",
    "dagster_dev_on_store",
    "instance_on",
    "launch_range_run",
    "read_only_query",
    "run_log_messages",
    "run_timings",
    "runs_of_job",
    "sensor_ticks",
    "server_environment",
    "stop_on_sigterm",
    "union_seconds",
]

RUN_FIELDS = "runId jobName status creationTime startTime endTime tags { key value }"

_RUNS = f"""
query Runs($filter: RunsFilter!, $limit: Int!) {{
  runsOrError(filter: $filter, limit: $limit) {{
    __typename
    ... on Runs {{ results {{ {RUN_FIELDS} }} }}
    ... on Error {{ message }}
  }}
}}
"""

_BACKFILL_TIMES = """
query BackfillTimes($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill { timestamp endTimestamp status }
    ... on Error { message }
  }
}
"""

_REPOSITORIES = """
query Repositories {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } sensors { name } } }
    ... on Error { message }
  }
}
"""

_SENSOR_TICKS = """
query SensorTicks($selector: SensorSelector!, $limit: Int!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      sensorState { ticks(limit: $limit) { tickId status timestamp endTimestamp runIds skipReason } }
    }
    ... on Error { message }
  }
}
"""


_JOB_REPOSITORIES = """
query JobRepositories {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } pipelines { name } } }
    ... on Error { message }
  }
}
"""

# The mutation the UI sends for "Launch as single run" / a Launchpad launch (dagster-webserver's
# LaunchPipelineExecution), with the answers we read.
_LAUNCH_RUN = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message }
    ... on Error { message }
  }
}
"""

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def launch_range_run(
    client: DagsterGraphQLClient,
    job: str,
    first: str,
    last: str,
    assets: Sequence[str] = (),
    run_config: str = "{}",
) -> str:
    """Launch one run of `job` over the partitions `first`..`last` (both included) and return its id.

    This is what the UI sends when a range is launched as a single run: `launchPipelineExecution` with the
    job's selector and the tags `dagster/asset_partition_range_start` / `_end` (the UI's `buildExecutionParams`
    in the Materialize dialog), so the run goes through the run queue, not the backfill daemon. With `assets`
    (and `job` "__ASSET_JOB", Dagster's implicit asset job), the run materializes those assets alone, as the
    asset page's Materialize dialog launches them.
    """
    repositories = client.execute(_JOB_REPOSITORIES)["repositoriesOrError"]
    if repositories["__typename"] != "RepositoryConnection":
        raise GraphQLError(f"repositories: {repositories['__typename']}: {repositories.get('message')}")
    owners = [node for node in repositories["nodes"] if any(p["name"] == job for p in node["pipelines"])]
    if len(owners) != 1:
        raise GraphQLError(f"job {job} found in {len(owners)} repositories, expected 1")
    params = {
        "mode": "default",
        "runConfigData": run_config,
        "selector": {
            "repositoryLocationName": owners[0]["location"]["name"],
            "repositoryName": owners[0]["name"],
            "pipelineName": job,
            **({"assetSelection": [{"path": [key]} for key in assets]} if assets else {}),
        },
        "executionMetadata": {
            "tags": [{"key": RANGE_START_TAG, "value": first}, {"key": RANGE_END_TAG, "value": last}]
        },
    }
    # Creating the run writes one ASSET_MATERIALIZATION_PLANNED event per window in the webserver before the
    # mutation answers: with Dagster's stock SQLite event log that alone can outlast a 30 s client timeout.
    with DagsterGraphQLClient(client.graphql_url, timeout=600.0) as patient:
        result = patient.execute(_LAUNCH_RUN, {"executionParams": params})["launchPipelineExecution"]
    if result["__typename"] != "LaunchRunSuccess":
        detail = result.get("message") or result.get("errors")
        raise GraphQLError(f"run of {job} not launched: {result['__typename']}: {detail}")
    return result["run"]["runId"]


@dataclass(frozen=True)
class RunTiming:
    """When a run was created (queued), started and ended, as epoch seconds (None while not reached)."""

    run_id: str
    job: str
    status: str
    created: float
    started: float | None
    ended: float | None
    tags: Mapping[str, str]

    @property
    def duration(self) -> float | None:
        """Start to end: the run's own time, without queueing."""
        return None if self.started is None or self.ended is None else self.ended - self.started


@dataclass(frozen=True)
class SensorTick:
    """One evaluation of a sensor."""

    tick_id: str
    status: str
    timestamp: float
    end_timestamp: float | None
    run_ids: tuple[str, ...]
    skip_reason: str | None


STORAGES = ("sqlite", "postgres", "postgres-direct")
"""Instance storages a benchmark can run `dagster dev` on: Dagster's stock SQLite (deploy/local/), PostgreSQL
behind PgBouncer as deployed (deploy/postgres/, on a throwaway local cluster), or the same PostgreSQL with no
pooler, to measure what PgBouncer saves."""

DEPLOYED_STORAGES = ("sqlite", "postgres")
"""The two storages the project ships an instance for; a benchmark's "both"."""


@contextmanager
def instance_on(storage: str) -> Iterator[tuple[str, dict[str, str]]]:
    """The instance's dagster.yaml text and the variables it needs, for a fresh instance on `storage`.

    "sqlite" is deploy/local/dagster.yaml as it is (Dagster's own SQLite storage in DAGSTER_HOME);
    "postgres" is deploy/postgres/dagster.yaml as it is, on a throwaway cluster behind PgBouncer started
    here (both stopped and deleted on exit), PgBouncer's URL in `DAGSTER_POSTGRES_URL`; "postgres-direct"
    gives the cluster's own URL instead.
    """
    if storage == "sqlite":
        yield (PROJECT_ROOT / "deploy" / "local" / "dagster.yaml").read_text(), {}
        return
    if storage not in STORAGES:
        raise ValueError(f"unknown storage {storage!r}: one of {', '.join(STORAGES)}")
    from cancel_pipeline_testkit.pgbouncer import run_pgbouncer
    from cancel_pipeline_testkit.postgres import run_postgres_cluster

    config = (PROJECT_ROOT / "deploy" / "postgres" / "dagster.yaml").read_text()
    with run_postgres_cluster() as cluster:
        if storage == "postgres-direct":
            yield config, {"DAGSTER_POSTGRES_URL": cluster.url}
            return
        with run_pgbouncer(cluster) as bouncer:
            yield config, {"DAGSTER_POSTGRES_URL": bouncer.url}


@contextmanager
def dagster_dev_on_store(
    workdir: Path,
    store: DemoStore,
    extra_env: Mapping[str, str] | None = None,
    instance_config: str | None = None,
) -> Iterator[tuple[DagsterDevServer, DagsterGraphQLClient]]:
    """Serve `store` over HTTP on 127.0.0.1 and run `dagster dev` on the project pointed at it.

    Both stop on exit, the server's whole process group included. A process of that group still alive 30 s
    after SIGTERM has been killed by the harness by the time its `DagsterDevError` arrives here; the figures
    are still good, so the error becomes a warning on stderr with the server's last log lines.
    """
    with serve(store) as store_url:
        env = {"SHOPIFY_STORE": store_url, "SHOPIFY_ACCESS_TOKEN": store.settings.access_token}
        env.update(extra_env or {})
        try:
            with (
                run_dagster_dev(workdir, extra_env=env, instance_yaml=instance_config) as server,
                DagsterGraphQLClient(server.graphql_url) as client,
            ):
                yield server, client
        except DagsterDevError as error:
            if "still running after it stopped" not in str(error):
                raise
            print(
                f"warning: {error}\nlast lines of the server log:\n{log_tail(workdir / 'dagster_dev.log', 30)}",
                file=sys.stderr,
            )


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into SystemExit, so a benchmark killed politely still stops every process it started."""

    def _exit(_signum: int, _frame: Any) -> None:
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _runs(client: DagsterGraphQLClient, run_filter: Mapping[str, Any], limit: int) -> list[RunTiming]:
    result = client.execute(_RUNS, {"filter": dict(run_filter), "limit": limit})["runsOrError"]
    if result["__typename"] != "Runs":
        raise GraphQLError(f"runs: {result['__typename']}: {result.get('message')}")
    return [
        RunTiming(
            run_id=run["runId"],
            job=run["jobName"],
            status=run["status"],
            created=run["creationTime"],
            started=run["startTime"],
            ended=run["endTime"],
            tags={tag["key"]: tag["value"] for tag in run["tags"]},
        )
        for run in result["results"]
    ]


def run_timings(client: DagsterGraphQLClient, run_ids: Iterable[str]) -> list[RunTiming]:
    """Timings of the given runs, oldest first."""
    ids = list(run_ids)
    if not ids:
        return []
    return sorted(_runs(client, {"runIds": ids}, len(ids)), key=lambda run: run.created)


def runs_of_job(client: DagsterGraphQLClient, job: str, limit: int = 500) -> list[RunTiming]:
    """The latest `limit` runs of `job`, oldest first."""
    return sorted(_runs(client, {"pipelineName": job}, limit), key=lambda run: run.created)


def backfill_times(client: DagsterGraphQLClient, backfill_id: str) -> tuple[float, float | None]:
    """When the backfill was launched and when the daemon marked it done (epoch seconds)."""
    result = client.execute(_BACKFILL_TIMES, {"backfillId": backfill_id})["partitionBackfillOrError"]
    if result["__typename"] != "PartitionBackfill":
        raise GraphQLError(f"backfill {backfill_id}: {result['__typename']}: {result.get('message')}")
    return result["timestamp"], result["endTimestamp"]


def sensor_ticks(client: DagsterGraphQLClient, sensor_name: str, limit: int = 200) -> list[SensorTick]:
    """The latest `limit` ticks of the sensor `sensor_name`, oldest first."""
    repositories = client.execute(_REPOSITORIES)["repositoriesOrError"]
    if repositories["__typename"] != "RepositoryConnection":
        raise GraphQLError(f"repositories: {repositories['__typename']}: {repositories.get('message')}")
    owners = [
        node for node in repositories["nodes"] if any(s["name"] == sensor_name for s in node["sensors"])
    ]
    if len(owners) != 1:
        raise GraphQLError(f"sensor {sensor_name} found in {len(owners)} repositories, expected 1")
    selector = {
        "repositoryName": owners[0]["name"],
        "repositoryLocationName": owners[0]["location"]["name"],
        "sensorName": sensor_name,
    }
    result = client.execute(_SENSOR_TICKS, {"selector": selector, "limit": limit})["sensorOrError"]
    if result["__typename"] != "Sensor":
        raise GraphQLError(f"sensor {sensor_name}: {result['__typename']}: {result.get('message')}")
    ticks = [
        SensorTick(
            tick_id=tick["tickId"],
            status=tick["status"],
            timestamp=tick["timestamp"],
            end_timestamp=tick["endTimestamp"],
            run_ids=tuple(tick["runIds"]),
            skip_reason=tick["skipReason"],
        )
        for tick in result["sensorState"]["ticks"]
    ]
    return sorted(ticks, key=lambda tick: tick.timestamp)


_LOGS_FOR_RUN = """
query LogsForRun($runId: ID!, $afterCursor: String, $limit: Int) {
  logsForRun(runId: $runId, afterCursor: $afterCursor, limit: $limit) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events { __typename ... on MessageEvent { message timestamp stepKey eventType } }
    }
    ... on Error { message }
  }
}
"""


@dataclass(frozen=True)
class RunEvent:
    """One event of a run's log: its type (`ASSET_MATERIALIZATION`, None for a log message), step, message and
    time (epoch seconds)."""

    event_type: str | None
    step_key: str | None
    message: str
    timestamp: float


def run_log_messages(client: DagsterGraphQLClient, run_id: str, page: int = 5000) -> list[RunEvent]:
    """Every event of the run's log, oldest first, read page by page as the UI's run view does."""
    events: list[RunEvent] = []
    cursor: str | None = None
    while True:
        result = client.execute(_LOGS_FOR_RUN, {"runId": run_id, "afterCursor": cursor, "limit": page})
        connection = result["logsForRun"]
        if connection["__typename"] != "EventConnection":
            raise GraphQLError(
                f"logs of run {run_id}: {connection['__typename']}: {connection.get('message')}"
            )
        events += [
            RunEvent(
                event_type=event.get("eventType"),
                step_key=event.get("stepKey"),
                message=event.get("message") or "",
                timestamp=int(event["timestamp"]) / 1000.0,
            )
            for event in connection["events"]
            if "timestamp" in event
        ]
        cursor = connection["cursor"]
        if not connection["hasMore"]:
            return events


def read_only_query(database: Path, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]] | None:
    """Rows of `sql` from a short read-only open of `database`, or None when a writer holds it (or it does
    not exist yet). The connection is closed at once, so a run that starts next waits a moment at most."""
    if not database.exists():
        return None
    try:
        with duckdb.connect(str(database), read_only=True) as con:
            return con.execute(sql, list(parameters)).fetchall()
    except duckdb.IOException:
        return None
    except duckdb.CatalogException:
        return None  # the tables are created by the first run


def union_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    """Total time covered by at least one of the `(start, end)` intervals."""
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            if current_end is not None and current_start is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None and current_start is not None:
        total += current_end - current_start
    return total
