"""The Dagster UI, in headless Chromium, after the end-to-end backfill: what a user sees.

Screenshots go to `screenshots/` (git-ignored) so a person can look at what the test saw.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cancel_pipeline_testkit.graphql import DagsterGraphQLClient

from cancel_pipeline_tests.e2e.browser import CHROMIUM_ARGS, ChromiumUnavailable, ensure_chromium
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
def page(
    browser: Any, completed_backfill: CompletedBackfill, screenshots_dir: Path, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """A fresh page on the running UI, opened only once the backfill is done."""
    context = browser.new_context(
        viewport={"width": 1600, "height": 1000}, base_url=completed_backfill.server.base_url
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        page = context.new_page()
        # Dagster's first-visit "Join the community" dialog covers the UI whenever it shows up.
        page.add_locator_handler(
            page.get_by_text("Join the Dagster community"),
            lambda _dialog: page.get_by_role("button", name="Skip").click(),
        )
        yield page
        # What the page showed last, kept to explain a failure.
        page.screenshot(path=screenshots_dir / f"last_{request.node.name}.png")
    finally:
        context.close()


def test_asset_graph_shows_the_project_assets(
    page: Any, graphql: DagsterGraphQLClient, screenshots_dir: Path
) -> None:
    nodes = graphql.asset_nodes()
    page.goto("/asset-groups")
    graph = page.locator("svg foreignObject")
    # The global graph opens with every group collapsed: open each one. A group header may lie under the
    # side panel once another group has grown, so the click is dispatched to the header itself.
    for group in sorted({node.group for node in nodes.values()}):
        graph.get_by_text(group, exact=True).first.dispatch_event("click")
    # The graph draws only the nodes in view and fits the view to the graph when it loads; the UI keeps
    # the open groups, so a reload shows every asset.
    page.reload()
    # Zoomed out, the graph shortens long names in the middle ("canceled_li…_items"): a node counts as
    # shown when its label is the name or such a shortening of it.
    deadline = time.monotonic() + 30
    missing = sorted(nodes)
    while missing and time.monotonic() < deadline:
        # innerText (which keeps the layout's line breaks) exists on the HTML inside a foreignObject only.
        blocks = graph.evaluate_all(
            "nodes => nodes.map(node => Array.from(node.children, child => child.innerText || '').join('\\n'))"
        )
        labels = {line.strip() for block in blocks for line in block.splitlines()}
        missing = [key for key in sorted(nodes) if not any(_shows(label, key) for label in labels)]
        if missing:
            page.wait_for_timeout(500)
    assert not missing, f"the asset graph does not show {missing}"
    page.screenshot(path=screenshots_dir / "asset_graph.png")


def test_asset_page_shows_partitions_and_latest_materialization(
    page: Any, graphql: DagsterGraphQLClient, completed_backfill: CompletedBackfill, screenshots_dir: Path
) -> None:
    _first, last = completed_backfill.ranges[BACKFILL_ROOT]
    page.goto(f"/assets/{BACKFILL_ROOT}?view=partitions&partition={last}")
    counts = page.get_by_text(re.compile(r"^Materialized \((\d+)\)$")).first
    counts.wait_for()
    materialized = int(re.search(r"\d+", counts.inner_text()).group())
    assert materialized >= 1, f"the partitions tab shows {materialized} materialized days"
    page.get_by_text("Failed (0)", exact=True).first.wait_for()
    page.screenshot(path=screenshots_dir / "asset_partitions.png")
    latest = graphql.asset_state(BACKFILL_ROOT).latest_materialization_partition
    assert latest is not None
    page.goto(f"/assets/{BACKFILL_ROOT}")
    page.get_by_text("Latest materialization", exact=True).first.wait_for()
    page.get_by_text(latest, exact=True).first.wait_for()
    page.screenshot(path=screenshots_dir / "asset_overview.png")


def test_stuck_orders_check_shows_its_result(
    page: Any, graphql: DagsterGraphQLClient, completed_backfill: CompletedBackfill, screenshots_dir: Path
) -> None:
    asset, check = STUCK_CHECK
    assert asset in completed_backfill.ranges, f"{asset} is not downstream of {BACKFILL_ROOT}"
    result = graphql.asset_state(asset).checks.get(check)
    assert result is not None, f"{asset} has no check {check}"
    assert result.passed is not None, f"{check} has no result after the backfill"
    page.goto(f"/assets/{asset}?view=checks")
    page.get_by_text(check, exact=True).first.click()
    page.get_by_text("Evaluation result").first.wait_for()
    page.get_by_text("Passed" if result.passed else "Failed", exact=True).first.wait_for()
    page.screenshot(path=screenshots_dir / "stuck_orders_check.png")


def _shows(label: str, name: str) -> bool:
    """Whether a graph node's `label` is `name`, or `name` shortened in the middle with an ellipsis."""
    if label == name:
        return True
    head, ellipsis, tail = label.replace("...", "…").partition("…")
    return (
        bool(ellipsis) and len(head) + len(tail) < len(name) and name.startswith(head) and name.endswith(tail)
    )
