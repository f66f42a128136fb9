"""`make run`'s main job: planning the catch-up, and `cli run` end to end in a subprocess as a user runs it."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve
from hypothesis import given
from hypothesis import strategies as st

from cancel_pipeline.catch_up import contiguous_ranges, plan_feed
from cancel_pipeline.defs.ingestion.partitions import day_partitions
from cancel_pipeline.settings import PipelineSettings

PROJECT = Path(__file__).resolve().parents[1]
KEYS = [f"k{index:03d}" for index in range(60)]


@given(st.sets(st.sampled_from(KEYS)))
def test_contiguous_ranges_cover_exactly_the_keys(keys: set[str]) -> None:
    ranges = contiguous_ranges(sorted(keys), KEYS)
    covered = [key for first, last in ranges for key in KEYS[KEYS.index(first) : KEYS.index(last) + 1]]
    assert covered == sorted(keys)
    # Ranges are maximal: two neighbouring ranges always leave a gap between them.
    for (_, last), (first, _) in itertools.pairwise(ranges):
        assert KEYS.index(first) > KEYS.index(last) + 1


def test_plan_reads_missing_days_whole_and_tops_up_the_days_landed_in_part() -> None:
    days = day_partitions(PipelineSettings.from_env({"CANCEL_PIPELINE_FIRST_WINDOW": "2026-01-01"}))
    now = datetime(2026, 3, 5, 12, 10, tzinfo=UTC)
    first = plan_feed("job", "asset", days, {}, now=now, lookback=timedelta(days=3))
    assert (first.ranges, first.top_ups, first.windows, first.runs) == (
        [("2026-03-02", "2026-03-05")],
        [],
        4,
        1,
    )
    # After that run every day is landed, today up to the run's "now": only today is topped up.
    landed = {
        key: min(days.time_window_for_partition_key(key).end, now) for key in days.get_partition_keys(now)
    }
    later = now + timedelta(minutes=30)
    again = plan_feed("job", "asset", days, landed, now=later, lookback=timedelta(days=3))
    assert (again.ranges, again.top_ups, again.windows) == ([], ["2026-03-05"], 1)
    # A hole is read whole; a day a tick left unfinished (its pages stop at 18:00) is topped up.
    holes = {**landed, "2026-03-03": None, "2026-03-04": datetime(2026, 3, 4, 18, tzinfo=UTC)}
    patched = plan_feed("job", "asset", days, holes, now=later, lookback=timedelta(days=3))
    assert (patched.ranges, patched.top_ups) == ([("2026-03-03", "2026-03-03")], ["2026-03-04", "2026-03-05"])


def _run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cancel_pipeline.cli", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _warehouse_rows(report: str) -> dict[str, int]:
    block = report.split("warehouse", 1)[1].split("\n\n", 1)[0]
    return {m.group(1).strip(): int(m.group(2)) for m in re.finditer(r"^([a-z' ]+?)\s+(\d+)$", block, re.M)}


def _windows(report: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(canceled_\w+_job)\s+(\d+)", report, re.M)}


@pytest.mark.timeout(400)
def test_run_catches_up_through_dagster_and_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(PROJECT / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
    database = tmp_path / "warehouse.duckdb"
    # The store's history stops a little before now, so both runs see exactly the same store.
    store = DemoStore(clock=FrozenClock(datetime.now(UTC) - timedelta(minutes=5)))
    with serve(store) as base_url:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "CANCEL_PIPELINE_DUCKDB": str(database),
            "SHOPIFY_STORE": base_url,
            "SHOPIFY_ACCESS_TOKEN": "demo-token",
        }
        first = _run_cli(env, "run", "--days", "1")
        assert first.returncode == 0, first.stderr[-3000:]
        second = _run_cli(env, "run", "--days", "1")
        assert second.returncode == 0, second.stderr[-3000:]
        env["SHOPIFY_ACCESS_TOKEN"] = "shpat_wrong_token_for_cli_run"
        refused = _run_cli(env, "run", "--days", "1")
        # The built-in demo store pointed at this store's warehouse: refused before any run.
        demo_env = {key: value for key, value in env.items() if not key.startswith("SHOPIFY_")}
        other_store = _run_cli(demo_env, "run", "--days", "1")

    first_rows, second_rows = _warehouse_rows(first.stdout), _warehouse_rows(second.stdout)
    assert first_rows["orders"] > 0 and first_rows["canceled orders"] > 0
    # Raw pages keep every fetch, so only they grow when today is topped up.
    assert second_rows.pop("raw pages kept") > first_rows.pop("raw pages kept")
    assert first_rows == second_rows
    # Yesterday and today, read whole in one run per feed; then today topped up from where it stops.
    assert _windows(first.stdout) == {"canceled_order_job": 2, "canceled_items_job": 2}
    assert _windows(second.stdout) == {"canceled_order_job": 1, "canceled_items_job": 1}
    assert str(database) in first.stdout and "cancel reason" in first.stdout
    # Runs are recorded in the instance, where the UI reads them.
    assert any((home / "history").rglob("*.db")) or any(home.rglob("runs.db"))

    assert refused.returncode == 2
    assert "401" in refused.stderr and "raw_canceled_order_pages" in refused.stderr
    assert "shpat_wrong_token_for_cli_run" not in refused.stdout + refused.stderr

    assert other_store.returncode == 2, other_store.stderr[-3000:]
    assert "holds the orders of store '127.0.0.1:" in other_store.stderr
    assert "refusing to land pages of store 'demo'" in other_store.stderr
    assert "Traceback" not in other_store.stderr and "days of raw_" not in other_store.stdout
