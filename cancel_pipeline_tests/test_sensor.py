"""The cancellation sensor's cursor logic, against the demo store over HTTP with a frozen clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg
import pytest
from cancel_pipeline_simulators.demo_store import DemoStore, FrozenClock, serve

from cancel_pipeline.definitions import defs
from cancel_pipeline.defs.conventions import READ_NEW, READ_TAG
from cancel_pipeline.defs.ingestion.partitions import day_partitions
from cancel_pipeline.defs.ingestion.sensors import CancellationSensorError, evaluate_cancellation_tick
from cancel_pipeline.settings import PipelineSettings
from cancel_pipeline.shopify.client import ShopifyClient
from cancel_pipeline.shopify.resource import ShopifyResource

NOW = "2026-03-02T00:12:00+00:00"
"""Every tick happens here: the day 2026-03-02 is in progress, 2026-03-01 is the previous one."""

WINDOWS = day_partitions(PipelineSettings.from_env({"CANCEL_PIPELINE_FIRST_WINDOW": "2026-02-01"}))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@dataclass(frozen=True)
class Case:
    name: str
    cursor: str | None
    canceled_at: tuple[str, ...]
    """Times (UTC) at which an order is created and canceled in an otherwise empty store."""
    windows: tuple[str, ...]
    """Days requested; empty for a skipped tick."""


CASES = [
    Case("first tick, nothing new", None, (), ()),
    Case("first tick, a cancellation in the current day", None, ("2026-03-02T00:05:00",), ("2026-03-02",)),
    Case("first tick ignores the previous day", None, ("2026-03-01T23:50:00",), ()),
    Case("nothing new since the cursor", "2026-03-02T00:08:00+00:00", ("2026-03-02T00:05:00",), ()),
    Case(
        "new since a cursor in the current day",
        "2026-03-02T00:03:00+00:00",
        ("2026-03-02T00:05:00",),
        ("2026-03-02",),
    ),
    Case(
        "cursor reaching into the previous day",
        "2026-03-01T23:40:00+00:00",
        ("2026-03-01T23:50:00",),
        ("2026-03-01", "2026-03-02"),
    ),
    Case(
        "several cancellations coalesce into one run per day",
        "2026-03-02T00:01:00+00:00",
        ("2026-03-02T00:02:00", "2026-03-02T00:04:00", "2026-03-02T00:11:00"),
        ("2026-03-02",),
    ),
    Case(
        "restart from an old stored cursor: only the last two days",
        "2026-02-20T04:00:00+00:00",
        ("2026-03-02T00:05:00",),
        ("2026-03-01", "2026-03-02"),
    ),
    Case(
        "restart from an old stored cursor, nothing recent",
        "2026-02-20T04:00:00+00:00",
        ("2026-02-27T12:00:00",),
        (),
    ),
]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def empty_store(clock: FrozenClock) -> DemoStore:
    # No seeded history: the only cancellations are the ones a case makes.
    return DemoStore(
        clock=clock,
        orders_per_hour=0.0,
        burst_size=0,
        malformed_every_hours=10**6,
        bucket_size=400,
        leak_rate=20.0,
    )


@pytest.fixture
def base_url(empty_store: DemoStore) -> Iterator[str]:
    with serve(empty_store) as url:
        yield url


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_cursor_logic(case: Case, empty_store: DemoStore, clock: FrozenClock, base_url: str) -> None:
    for moment in case.canceled_at:
        clock.set(moment + "+00:00")
        order = empty_store.create_order()
        empty_store.cancel_order(order["id"], "customer")
    clock.set(NOW)
    empty_store.reset_counters()

    with ShopifyClient(base_url, access_token="demo-token", bucket_size=400, leak_rate=20.0) as client:
        result = evaluate_cancellation_tick(client, cursor=case.cursor, now=utc(NOW), partitions_def=WINDOWS)

    assert empty_store.stats()["admin_requests"] == 1  # one cheap request per tick
    assert [request.partition_key for request in result.run_requests or []] == list(case.windows)
    if case.windows:
        assert result.cursor == utc(NOW).isoformat()
        assert result.skip_reason is None
        run_keys = [request.run_key for request in result.run_requests]
        assert len(set(run_keys)) == len(run_keys)
        assert all(key.endswith("@" + utc(NOW).isoformat()) for key in run_keys)
        # Each run reads only what is new in its day since the day's last landed page.
        assert all(request.tags[READ_TAG] == READ_NEW for request in result.run_requests)
    else:
        assert result.cursor is None  # unchanged
        assert "No cancelled orders updated since" in str(result.skip_reason)


@pytest.mark.timeout(30)
def test_a_second_detection_in_the_same_day_gets_its_own_run(
    empty_store: DemoStore, clock: FrozenClock, base_url: str
) -> None:
    with ShopifyClient(base_url, access_token="demo-token", bucket_size=400, leak_rate=20.0) as client:
        clock.set("2026-03-02T10:02:00Z")
        empty_store.cancel_order(empty_store.create_order()["id"], "fraud")
        first = evaluate_cancellation_tick(
            client, cursor=None, now=utc("2026-03-02T10:03:00Z"), partitions_def=WINDOWS
        )
        clock.set("2026-03-02T10:06:00Z")
        empty_store.cancel_order(empty_store.create_order()["id"], "fraud")
        second = evaluate_cancellation_tick(
            client, cursor=first.cursor, now=utc("2026-03-02T10:07:00Z"), partitions_def=WINDOWS
        )
        # The same tick evaluated again (e.g. after a crash before the cursor was stored) repeats its run key,
        # which Dagster de-duplicates.
        again = evaluate_cancellation_tick(
            client, cursor=first.cursor, now=utc("2026-03-02T10:07:00Z"), partitions_def=WINDOWS
        )
    [first_request], [second_request] = first.run_requests, second.run_requests
    assert first_request.partition_key == second_request.partition_key == "2026-03-02"
    assert first_request.run_key != second_request.run_key
    assert again.run_requests[0].run_key == second_request.run_key
    assert second.cursor == "2026-03-02T10:07:00+00:00"


@pytest.mark.timeout(30)
def test_an_api_error_fails_the_tick_with_a_clear_message_and_keeps_the_cursor(base_url: str) -> None:
    sensor = defs.resolve_sensor_def("cancellation_sensor")
    shopify = ShopifyResource(store=base_url, access_token="wrong-secret-token", max_retries=0, api="rest")
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance, cursor="2026-03-02T10:00:00+00:00", resources={"shopify": shopify}
        )
        with pytest.raises(CancellationSensorError) as error:
            sensor(context)
        assert context.cursor == "2026-03-02T10:00:00+00:00"
    message = str(error.value)
    assert "Could not count cancelled orders" in message
    assert "401" in message
    assert "wrong-secret-token" not in message
