"""`python -m cancel_pipeline.cli`: `fetch` (a read-only look at the store) and `run` (the main job)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

from cancel_pipeline.cli import fetch_window, main
from cancel_pipeline.shopify.client import ShopifyClient
from cancel_pipeline_tests.pipeline_fixtures import expected_canceled_lines, reject_reason

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.timeout(60)


def test_summary_counts_match_the_store() -> None:
    store = DemoStore(clock=FrozenClock(NOW), bucket_size=400, leak_rate=20.0)
    start = NOW - timedelta(hours=24)
    with ShopifyClient(
        "http://demo-store.local", access_token="demo-token", transport=httpx.WSGITransport(app=store)
    ) as client:
        seen = fetch_window(client, start, NOW)
    orders = store.orders(status="any", updated_at_min=start, updated_at_max=NOW)
    good = [o for o in orders if reject_reason(o) is None]
    assert seen.orders == len(orders) and seen.rejected == len(orders) - len(good) > 0
    assert seen.canceled_by_reason == Counter(o["cancel_reason"] for o in good if o.get("cancelled_at"))
    # The tests' own reading of the contract's rule, independent of the warehouse's SQL.
    partial = [o for o in good if not o.get("cancelled_at") and expected_canceled_lines(o)]
    assert seen.partially_canceled == len(partial) > 0
    assert seen.test_orders == sum(1 for o in good if o.get("test"))
    assert seen.pages >= 1 and seen.canceled > 0


def test_fetch_prints_the_summary_for_a_served_store(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = DemoStore()  # real time: `run` asks for the 24 hours before now
    with serve(store) as base_url:
        monkeypatch.setenv("SHOPIFY_STORE", base_url)
        monkeypatch.setenv("SHOPIFY_ACCESS_TOKEN", "demo-token")
        assert main(["fetch"]) == 0
    out = capsys.readouterr().out
    figures = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w[\w -]*?)\s{2,}(\d+)$", out, re.M)}
    assert figures["orders"] > 0 and figures["pages"] >= 1 and figures["requests"] >= figures["pages"]
    assert {"canceled orders", "partially canceled orders", "retries"} <= set(figures)
    assert "cancel reason" in out and "rate-limit wait" in out


def test_fetch_reports_a_refused_token_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve(DemoStore()) as base_url:
        monkeypatch.setenv("SHOPIFY_STORE", base_url)
        monkeypatch.setenv("SHOPIFY_ACCESS_TOKEN", "shpat_cli_wrong_token_55")
        assert main(["fetch"]) == 2
    captured = capsys.readouterr()
    assert "error:" in captured.err and "401" in captured.err
    assert "shpat_cli_wrong_token_55" not in captured.err + captured.out
