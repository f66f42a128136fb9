"""A failure of `make run` / the CLI ends in one `error:` line naming its root cause; the traceback only with
`--verbose`; a settings error at load is one line naming the variable, whatever loads the definitions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

from cancel_pipeline.catch_up import root_cause

PROJECT = Path(__file__).resolve().parents[1]
WRONG_TOKEN = "shpat_wrong_token_for_error_lines"

pytestmark = pytest.mark.timeout(240)


class WarehouseTrouble(RuntimeError):
    """Stands for any of the pipeline's own errors raised inside a step."""


@dg.op
def failing_op() -> None:
    try:
        raise OSError("No space left on device")
    except OSError as error:
        raise WarehouseTrouble("could not write the warehouse:\n  the disk is full") from error


@dg.job
def failing_job() -> None:
    failing_op()


def test_the_root_cause_is_the_steps_own_error_in_one_line() -> None:
    result = failing_job.execute_in_process(raise_on_error=False)
    [failure] = [event for event in result.all_events if event.is_step_failure]
    error = failure.step_failure_data.error  # type: ignore[union-attr]
    # What Dagster itself records on top: its wrapper, which says nothing of the cause.
    assert "Error occurred while executing op" in error.message
    assert root_cause(error) == "WarehouseTrouble: could not write the warehouse: the disk is full"


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cancel_pipeline.cli", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOPIFY_", "CANCEL_PIPELINE_"))}
    env.update(overrides)
    return env


def test_a_failed_run_ends_with_the_shopify_error_and_its_fix(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(PROJECT / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
    store = DemoStore(clock=FrozenClock(datetime.now(UTC) - timedelta(minutes=5)), history_days=1)
    with serve(store) as base_url:
        env = _clean_env(
            DAGSTER_HOME=str(home),
            CANCEL_PIPELINE_DUCKDB=str(tmp_path / "warehouse.duckdb"),
            SHOPIFY_STORE=base_url,
            SHOPIFY_ACCESS_TOKEN=WRONG_TOKEN,
        )
        quiet = _cli(env, "run", "--days", "0.1")
        verbose = _cli(env, "run", "--days", "0.1", "--verbose")

    for done in (quiet, verbose):
        assert done.returncode == 2
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("error: run ") and " of canceled_order_job " in last, last
        assert "raw_canceled_order_pages: ShopifyAuthError: " in last and "401" in last, last
        assert "SHOPIFY_ACCESS_TOKEN" in last, last  # the fix
        assert "Error occurred while executing" not in last
        assert WRONG_TOKEN not in done.stdout + done.stderr
    # Our own traceback (the run's, as Dagster recorded it) only when asked for.
    assert "Traceback (most recent call last)" not in quiet.stderr
    assert "Traceback (most recent call last)" in verbose.stderr


@pytest.mark.parametrize(
    ("command", "variable", "value"),
    [
        (["-m", "cancel_pipeline.cli", "run"], "CANCEL_PIPELINE_OVERLAP_MINUTES", "ten"),
        (["-c", "import cancel_pipeline.definitions"], "CANCEL_PIPELINE_OVERLAP_MINUTES", "ten"),
        # Raised while Dagster's loader builds a definition, below its own exception.
        (["-c", "import cancel_pipeline.definitions"], "SHOPIFY_LEAK_RATE", "fast"),
        (
            [
                "-m",
                "dagster",
                "job",
                "execute",
                "-m",
                "cancel_pipeline.definitions",
                "-j",
                "canceled_order_job",
            ],
            "CANCEL_PIPELINE_OVERLAP_MINUTES",
            "ten",
        ),
    ],
    ids=["cli", "import", "import-shopify", "dagster-cli"],
)
def test_a_settings_error_at_load_is_one_line_naming_the_variable(
    tmp_path: Path, command: list[str], variable: str, value: str
) -> None:
    env = _clean_env(DAGSTER_HOME=str(tmp_path), **{variable: value})
    done = subprocess.run(
        [sys.executable, "-W", "ignore", *command],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and variable in lines[-1], done.stderr
    assert f"'{value}'" in lines[-1]
