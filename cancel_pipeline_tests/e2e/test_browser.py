"""The Dagster UI, in headless Chromium, after the end-to-end backfill: what a user sees.

Screenshots go to `screenshots/` (git-ignored) so a person can look at what the test saw.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cancel_pipeline_tests.e2e.browser import CHROMIUM_ARGS, ChromiumUnavailable, ensure_chromium
from cancel_pipeline_tests.e2e.graphql import DagsterGraphQLClient
from cancel_pipeline_tests.e2e.scenario import BACKFILL_ROOT, CompletedBackfill

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

STUCK_CHECK = ("orders", "orders_stuck_in_created")
"""The stuck-orders check, as (asset, check name)."""

UI_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from the system package, driven by Playwright."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    try:
        executable = ensure_chromium()
    except ChromiumUnavailable as error:
        pytest.skip(f"Chromium is not available: {error}")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(executable), args=list(CHROMIUM_ARGS))
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, completed_backfill: CompletedBackfill) -> Iterator[Any]:
    """A fresh page on the running UI, opened only once the backfill is done."""
    context = browser.new_context(
        viewport={"width": 1600, "height": 1000}, base_url=completed_backfill.server.base_url
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_asset_graph_shows_the_project_assets(
    page: Any, graphql: DagsterGraphQLClient, screenshots_dir: Path
) -> None:
    assets = sorted(graphql.asset_nodes())
    page.goto("/asset-groups")
    for key in assets:
        page.get_by_text(key, exact=True).first.wait_for()
    page.screenshot(path=screenshots_dir / "asset_graph.png")


def test_asset_page_shows_partitions_and_latest_materialization(
    page: Any, completed_backfill: CompletedBackfill, screenshots_dir: Path
) -> None:
    _first, last = completed_backfill.ranges[BACKFILL_ROOT]
    page.goto(f"/assets/{BACKFILL_ROOT}?view=partitions")
    page.get_by_text(last, exact=True).first.wait_for()
    page.screenshot(path=screenshots_dir / "asset_partitions.png")
    page.goto(f"/assets/{BACKFILL_ROOT}")
    page.get_by_text("Latest materialization").first.wait_for()
    page.screenshot(path=screenshots_dir / "asset_overview.png")
