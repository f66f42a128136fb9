"""End to end: a backfill of a raw asset alone, launched through the webserver, is followed by the tables.

Nothing else is launched: the running `dagster dev` (its daemon and the shipped `automation_sensor`) must
derive the tables, and send the notices, by itself.

It shares the session's `dagster dev` with `test_e2e_backfill.py` and runs after it (files run in name
order): its automation run becomes the tables' latest materialization, which the shared backfill's tests
would otherwise mistake for theirs.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import dagster as dg
import duckdb
import pytest
from cancel_pipeline_testkit.dagster_dev import DagsterDevServer
from cancel_pipeline_testkit.graphql import DagsterGraphQLClient
from cancel_pipeline_testkit.selection import partition_ranges

from cancel_pipeline_tests.e2e.scenario import BACKFILL_ROOT, BACKFILL_TIMEOUT_S, BACKFILL_WINDOW

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

RAW_ONLY_WINDOW = dg.TimeWindow(BACKFILL_WINDOW.end, BACKFILL_WINDOW.end + timedelta(days=1))
"""The day after the shared backfill's (the store's last, up to its frozen now), so this test lands pages no
other run has landed."""
FOLLOW_TIMEOUT_S = 180.0
FOLLOWERS = {"order_versions", "order_rejects", "canceled_orders", "canceled_line_items", "orders"}

_AUTOMATION_RUNS = """
query AutomationRuns {
  runsOrError(filter: {tags: [{key: "dagster/sensor_name", value: "automation_sensor"}]}) {
    __typename
    ... on Runs { results { runId status assetSelection { path } } }
    ... on Error { message }
  }
}
"""


def _automation_runs(graphql: DagsterGraphQLClient) -> list[dict[str, Any]]:
    result = graphql.execute(_AUTOMATION_RUNS)["runsOrError"]
    assert result["__typename"] == "Runs", result
    return result["results"]


def test_a_raw_only_backfill_is_followed_by_the_tables(
    graphql: DagsterGraphQLClient, dagster_dev_server: DagsterDevServer, project_defs: dg.Definitions
) -> None:
    before = {run["runId"] for run in _automation_runs(graphql)}
    ranges = partition_ranges([BACKFILL_ROOT], graphql.asset_nodes(), project_defs, RAW_ONLY_WINDOW)
    backfill = graphql.wait_for_backfill(
        graphql.launch_backfill(ranges, title="raw pages only"), timeout=BACKFILL_TIMEOUT_S
    )
    assert backfill.status == "COMPLETED_SUCCESS", (backfill, dagster_dev_server.log_tail())
    deadline = time.monotonic() + FOLLOW_TIMEOUT_S
    while True:
        done = [
            run
            for run in _automation_runs(graphql)
            if run["runId"] not in before and run["status"] in {"SUCCESS", "FAILURE", "CANCELED"}
        ]
        if done:
            break
        assert time.monotonic() < deadline, (
            f"no automation run within {FOLLOW_TIMEOUT_S:.0f} s\n{dagster_dev_server.log_tail()}"
        )
        time.sleep(2)
    [run] = done
    assert run["status"] == "SUCCESS", dagster_dev_server.log_tail()
    selected = {"/".join(key["path"]) for key in run["assetSelection"]}
    assert selected == {*FOLLOWERS, "cancellation_notices"}
    # Every page the raw-only backfill landed is derived.
    while graphql.unfinished_run_ids():
        assert time.monotonic() < deadline + 60, graphql.unfinished_run_ids()
        time.sleep(1)
    with duckdb.connect(str(dagster_dev_server.duckdb_path), read_only=True) as con:
        [(landed, derived)] = con.execute(
            """
            select (select max(page_seq) from raw_order_pages where window_start >= ? and window_end <= ?),
                   (select last_page_seq from derivation_state)
            """,
            [RAW_ONLY_WINDOW.start, RAW_ONLY_WINDOW.end],
        ).fetchall()
    assert landed is not None and derived >= landed
    # Only one derivation followed: later ticks request nothing more.
    time.sleep(40)
    assert len([r for r in _automation_runs(graphql) if r["runId"] not in before]) == 1
