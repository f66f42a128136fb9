"""A small client for the Dagster webserver's GraphQL API: the few operations the end-to-end tests need.

Every query names the fields it reads, so a schema change in Dagster fails here with the server's own error
message rather than as a missing key somewhere in a test.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

BACKFILL_DONE = frozenset({"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"})
"""Backfill statuses after which nothing more will run."""

_ASSET_NODES = """
query AssetNodes {
  assetNodes {
    assetKey { path }
    groupName
    isPartitioned
    isMaterializable
    dependencyKeys { path }
    hasAssetChecks
  }
}
"""

_LAUNCH_BACKFILL = """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""

_BACKFILL = """
query Backfill($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill {
      id
      status
      numPartitions
      error { message }
      runs(limit: 1000) { runId status tags { key value } }
    }
    ... on Error { message }
  }
}
"""

_ASSET_STATE = """
query AssetState($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode {
      partitionStats { numMaterialized numPartitions numFailed numMaterializing }
      assetMaterializations(limit: 1) { runId partition timestamp }
      assetChecksOrError {
        __typename
        ... on AssetChecks {
          checks {
            name
            executionForLatestMaterialization {
              runId
              status
              evaluation {
                success
                severity
                metadataEntries {
                  label
                  __typename
                  ... on IntMetadataEntry { intValue }
                  ... on FloatMetadataEntry { floatValue }
                  ... on TextMetadataEntry { text }
                  ... on BoolMetadataEntry { boolValue }
                }
              }
            }
          }
        }
      }
    }
    ... on Error { message }
  }
}
"""


_PARTITION_MATERIALIZATIONS = """
query PartitionMaterializations($assetKey: AssetKeyInput!, $partitions: [String!]!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode { latestMaterializationByPartition(partitions: $partitions) { runId partition } }
    ... on Error { message }
  }
}
"""

_UNFINISHED_RUNS = """
query UnfinishedRuns {
  runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED, CANCELING]}) {
    __typename
    ... on Runs { results { runId status } }
    ... on Error { message }
  }
}
"""

_INSTANCE = """
query Instance {
  instance {
    info
    daemonHealth { allDaemonStatuses { daemonType required healthy } }
  }
}
"""


class GraphQLError(RuntimeError):
    """The server answered with GraphQL errors, an error type, or not at all as expected."""


@dataclass(frozen=True)
class AssetNode:
    """What the asset graph says about one asset."""

    key: str
    group: str
    is_partitioned: bool
    is_materializable: bool
    dependencies: tuple[str, ...]
    has_checks: bool


@dataclass(frozen=True)
class CheckResult:
    """The latest execution of one asset check: None fields when it has not run."""

    name: str
    status: str | None
    run_id: str | None
    passed: bool | None
    severity: str | None
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class AssetState:
    """Materialization and check state of one asset."""

    key: str
    num_materialized: int | None
    num_partitions: int | None
    num_failed: int | None
    latest_materialization_run_id: str | None
    latest_materialization_partition: str | None
    checks: Mapping[str, CheckResult]


@dataclass(frozen=True)
class Backfill:
    """A backfill's status and the runs it launched."""

    backfill_id: str
    status: str
    error: str | None
    runs: Mapping[str, str]  # run id -> run status


def asset_key_path(key: str) -> list[str]:
    """The GraphQL path of a `/`-separated asset key."""
    return key.split("/")


class DagsterGraphQLClient:
    """Talks to one webserver's `/graphql` endpoint over HTTP."""

    def __init__(self, graphql_url: str, timeout: float = 30.0) -> None:
        self.graphql_url = graphql_url
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> DagsterGraphQLClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def execute(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run one operation and return its `data`; raise `GraphQLError` on any error the server reports."""
        response = self._http.post(
            self.graphql_url, json={"query": query, "variables": dict(variables or {})}
        )
        if response.status_code != 200:
            raise GraphQLError(
                f"{self.graphql_url} answered HTTP {response.status_code}: {response.text[:500]}"
            )
        answer = response.json()
        if answer.get("errors"):
            raise GraphQLError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def asset_nodes(self) -> dict[str, AssetNode]:
        """Every asset of the workspace, by `/`-separated key."""
        nodes = {}
        for node in self.execute(_ASSET_NODES)["assetNodes"]:
            key = "/".join(node["assetKey"]["path"])
            nodes[key] = AssetNode(
                key=key,
                group=node["groupName"],
                is_partitioned=node["isPartitioned"],
                is_materializable=node["isMaterializable"],
                dependencies=tuple("/".join(dep["path"]) for dep in node["dependencyKeys"]),
                has_checks=node["hasAssetChecks"],
            )
        return nodes

    def launch_backfill(
        self, partition_ranges: Mapping[str, tuple[str, str] | None], *, title: str | None = None
    ) -> str:
        """Launch an asset backfill and return its id.

        `partition_ranges` maps each asset key to its `(first, last)` partition keys, both included, or to
        None for an unpartitioned asset (which is then materialized once, after its parents).
        """
        selectors = []
        for key, key_range in partition_ranges.items():
            selector: dict[str, Any] = {"assetKey": {"path": asset_key_path(key)}}
            if key_range is not None:
                selector["partitions"] = {"range": {"start": key_range[0], "end": key_range[1]}}
            selectors.append(selector)
        params: dict[str, Any] = {"partitionsByAssets": selectors}
        if title:
            params["title"] = title
        result = self.execute(_LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise GraphQLError(f"backfill not launched: {result['__typename']}: {result.get('message')}")
        return result["backfillId"]

    def backfill(self, backfill_id: str) -> Backfill:
        """The backfill's current status and runs."""
        result = self.execute(_BACKFILL, {"backfillId": backfill_id})["partitionBackfillOrError"]
        if result["__typename"] != "PartitionBackfill":
            raise GraphQLError(f"backfill {backfill_id}: {result['__typename']}: {result.get('message')}")
        return Backfill(
            backfill_id=result["id"],
            status=result["status"],
            error=(result["error"] or {}).get("message"),
            runs={run["runId"]: run["status"] for run in result["runs"]},
        )

    def wait_for_backfill(self, backfill_id: str, timeout: float, poll_interval: float = 1.0) -> Backfill:
        """Poll until the backfill is done and none of its runs is still going; raise after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            backfill = self.backfill(backfill_id)
            runs_done = all(status in _RUN_DONE for status in backfill.runs.values())
            if backfill.status in BACKFILL_DONE and runs_done:
                return backfill
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"backfill {backfill_id} still {backfill.status} after {timeout:.0f} s; runs: {backfill.runs}"
                )
            time.sleep(poll_interval)

    def asset_state(self, key: str) -> AssetState:
        """Partition counts, latest materialization and latest check results of one asset."""
        result = self.execute(_ASSET_STATE, {"assetKey": {"path": asset_key_path(key)}})["assetNodeOrError"]
        if result["__typename"] != "AssetNode":
            raise GraphQLError(f"asset {key}: {result['__typename']}: {result.get('message')}")
        stats = result["partitionStats"] or {}
        materializations = result["assetMaterializations"]
        checks_or_error = result["assetChecksOrError"]
        if checks_or_error["__typename"] != "AssetChecks":
            raise GraphQLError(f"checks of {key}: {checks_or_error['__typename']}")
        return AssetState(
            key=key,
            num_materialized=stats.get("numMaterialized"),
            num_partitions=stats.get("numPartitions"),
            num_failed=stats.get("numFailed"),
            latest_materialization_run_id=materializations[0]["runId"] if materializations else None,
            latest_materialization_partition=materializations[0]["partition"] if materializations else None,
            checks={check["name"]: _check_result(check) for check in checks_or_error["checks"]},
        )

    def latest_materialization_runs(self, key: str, partitions: Sequence[str]) -> dict[str, str | None]:
        """For each partition of `key`, the run id of its latest materialization (None if never)."""
        result = self.execute(
            _PARTITION_MATERIALIZATIONS,
            {"assetKey": {"path": asset_key_path(key)}, "partitions": list(partitions)},
        )["assetNodeOrError"]
        if result["__typename"] != "AssetNode":
            raise GraphQLError(f"asset {key}: {result['__typename']}: {result.get('message')}")
        runs: dict[str, str | None] = dict.fromkeys(partitions)
        for event in result["latestMaterializationByPartition"]:
            if event is not None:
                runs[event["partition"]] = event["runId"]
        return runs

    def unfinished_run_ids(self) -> list[str]:
        """Runs that are queued, starting, running or being canceled (schedules and sensors included)."""
        result = self.execute(_UNFINISHED_RUNS)["runsOrError"]
        if result["__typename"] != "Runs":
            raise GraphQLError(f"runs: {result['__typename']}: {result.get('message')}")
        return [run["runId"] for run in result["results"]]

    def instance_info(self) -> str:
        """The instance's description as the UI's Deployment page shows it (its storages and settings)."""
        return self.execute(_INSTANCE)["instance"]["info"] or ""

    def daemon_health(self) -> dict[str, bool]:
        """For each daemon the instance requires, whether it sent a heartbeat recently."""
        statuses = self.execute(_INSTANCE)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return {status["daemonType"]: status["healthy"] for status in statuses if status["required"]}


_RUN_DONE = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


def _check_result(check: Mapping[str, Any]) -> CheckResult:
    execution = check["executionForLatestMaterialization"] or {}
    evaluation = execution.get("evaluation") or {}
    metadata = {}
    for entry in evaluation.get("metadataEntries", []):
        values = [value for name, value in entry.items() if name not in ("label", "__typename")]
        metadata[entry["label"]] = values[0] if values else entry["__typename"]
    return CheckResult(
        name=check["name"],
        status=execution.get("status"),
        run_id=execution.get("runId"),
        passed=evaluation.get("success"),
        severity=evaluation.get("severity"),
        metadata=metadata,
    )


def backfill_run_ids(backfill: Backfill) -> Sequence[str]:
    """The backfill's run ids, in a stable order for messages."""
    return sorted(backfill.runs)
