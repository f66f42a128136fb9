"""The outbox's checks on a real warehouse: overdue deliveries, and lists that say when they are cut."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from cancel_pipeline.defs.outbox.checks import deliveries_needing_follow_up, deliveries_not_overdue
from cancel_pipeline.defs.outbox.notices import cancellation_notices
from cancel_pipeline.defs.resources import WarehouseResource
from cancel_pipeline.outbox.targets import DEMO_TARGET_VARIABLE, TARGETS_FILE_VARIABLE
from cancel_pipeline.warehouse.connection import warehouse_connection
from cancel_pipeline.warehouse.schema import ensure_schema

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A warehouse and a targets file with one enabled target (`oms`) and one disabled (`retired`)."""
    targets = tmp_path / "targets.json"
    targets.write_text(
        json.dumps(
            {
                "targets": {
                    "oms": {"base_url": "http://127.0.0.1:9", "token_env": "TEST_OMS_TOKEN"},
                    "retired": {
                        "base_url": "http://127.0.0.1:9",
                        "token_env": "TEST_OMS_TOKEN",
                        "enabled": False,
                    },
                }
            }
        )
    )
    monkeypatch.setenv(TARGETS_FILE_VARIABLE, str(targets))
    monkeypatch.delenv(DEMO_TARGET_VARIABLE, raising=False)
    path = tmp_path / "warehouse.duckdb"
    with warehouse_connection(path) as con:
        ensure_schema(con)
    return path


def _insert(database: Path, rows: list[tuple[int, str, str, int, bool, timedelta]]) -> None:
    now = datetime.now(UTC)
    with warehouse_connection(database) as con:
        con.executemany(
            """
            insert into cancellation_deliveries
                (order_id, target, outcome, attempts, needs_follow_up, outcome_unknown, queued_at)
            values (?, ?, ?, ?, ?, false, ?)
            """,
            [
                (order_id, target, outcome, attempts, flag, now - age)
                for order_id, target, outcome, attempts, flag, age in rows
            ],
        )


def _run_check(database: Path, check: Any) -> dg.AssetCheckEvaluation:
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [cancellation_notices, check],
            selection=dg.AssetSelection.checks(check),
            resources={"duckdb": WarehouseResource(database=str(database))},
            instance=instance,
        )
    assert result.success
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_the_outbox_table_exists_empty_before_any_target_is_configured(tmp_path: Path) -> None:
    with warehouse_connection(tmp_path / "fresh.duckdb") as con:
        ensure_schema(con)
        assert con.execute("select count(*) from cancellation_deliveries").fetchone() == (0,)


def test_deliveries_waiting_past_the_threshold_are_flagged(database: Path) -> None:
    hours = timedelta(hours=1)
    _insert(
        database,
        [
            (1, "oms", "pending", 0, False, 7 * hours),  # never tried: max_per_run too small, say
            (2, "oms", "retrying", 2, False, 8 * hours),  # keeps failing short of the cap
            (3, "oms", "delivered", 1, False, 9 * hours),
            (4, "oms", "pending", 0, False, 1 * hours),  # not overdue yet (threshold: 6 h)
            (5, "retired", "pending", 0, False, 9 * hours),  # a disabled target is not called on purpose
            (6, "oms", "gave_up", 5, True, 9 * hours),  # the follow-up check's business
        ],
    )
    evaluation = _run_check(database, deliveries_not_overdue)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    metadata = {key: value.value for key, value in evaluation.metadata.items()}
    assert metadata["overdue_count"] == 2 and metadata["listed"] == "all 2"
    assert metadata["threshold_hours"] == 6 and 7.9 < metadata["oldest_age_hours"] < 8.1
    table = metadata["overdue_deliveries"]
    assert "| 1 " in table and "| 2 " in table
    assert not any(f"| {order_id} " in table for order_id in (3, 4, 5, 6))


def test_nothing_overdue_passes(database: Path) -> None:
    _insert(database, [(1, "oms", "pending", 0, False, timedelta(minutes=30))])
    evaluation = _run_check(database, deliveries_not_overdue)
    assert evaluation.passed


def test_the_follow_up_list_says_when_it_is_cut(database: Path) -> None:
    _insert(
        database, [(order_id, "oms", "rejected", 1, True, timedelta(hours=1)) for order_id in range(1, 53)]
    )
    evaluation = _run_check(database, deliveries_needing_follow_up)
    metadata = {key: value.value for key, value in evaluation.metadata.items()}
    assert metadata["flagged_count"] == 52
    assert metadata["listed"] == "the first 50 of 52"
    assert metadata["flagged_deliveries"].count("| rejected ") == 50
