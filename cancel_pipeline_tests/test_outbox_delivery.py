"""The outbox over real HTTP: every outcome of a Cancel Order call, retries across runs, overlapping runs, and a
crash between a call and its record, against the fake target served on 127.0.0.1 and a real DuckDB file."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from cancel_pipeline_simulators.fake_target import FakeTarget, serve

from cancel_pipeline.outbox.deliver import LEASE_SLACK, BadCredentials, DeliveryRun, deliver_cancellations
from cancel_pipeline.outbox.deliveries import OrderFilter, ensure_deliveries_schema
from cancel_pipeline.outbox.targets import MissingToken, Target
from cancel_pipeline.warehouse.connection import warehouse_connection
from cancel_pipeline.warehouse.schema import ensure_schema

TOKEN = "target-secret-token"
TOKEN_ENV = "OUTBOX_TEST_TOKEN"
START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves; the outbox reads it for claims, leases and backoff."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Outbox:
    """A warehouse file, the fake target served over HTTP, and a target pointing at it."""

    database: Path
    fake: FakeTarget
    target: Target
    clock: Clock

    def connect(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return warehouse_connection(self.database)

    def run(self, *targets: Target, run_id: str = "run", **kwargs: Any) -> DeliveryRun:
        """One run of the outbox for `targets` (default: the fake target)."""
        return deliver_cancellations(
            self.connect,
            list(targets) or [self.target],
            run_id=run_id,
            clock=self.clock,
            token_for=lambda target: TOKEN,
            **kwargs,
        )

    def cancel(self, order_id: int, reason: str | None = "customer", **columns: Any) -> None:
        """Put (or replace) `order_id` in canceled_orders, as the derivation would."""
        row = {
            "order_id": order_id,
            "order_name": f"#{order_id}",
            "cancelled_at": START - timedelta(hours=1),
            "cancel_reason": reason,
            "source_name": "web",
            "created_at": START - timedelta(days=1),
            "updated_at": START - timedelta(hours=1),
            "test": False,
            **columns,
        }
        with self.connect() as con:
            con.execute("delete from canceled_orders where order_id = ?", [order_id])
            con.execute(
                f"insert into canceled_orders ({', '.join(row)}) values ({', '.join('?' * len(row))})",
                list(row.values()),
            )

    def rows(self) -> dict[int, dict[str, Any]]:
        """The outbox rows of the fake target, by order id."""
        with self.connect() as con:
            cursor = con.execute("select * from cancellation_deliveries where target = ?", [self.target.name])
            names = [column[0] for column in cursor.description]
            return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    fake = FakeTarget(TOKEN)
    database = tmp_path / "warehouse.duckdb"
    with warehouse_connection(database) as con:
        ensure_schema(con)
        ensure_deliveries_schema(con)
    with serve(fake) as url:
        target = Target(name="oms", base_url=url, token_env=TOKEN_ENV, timeout_s=2.0, max_attempts=3)
        yield Outbox(database, fake, target, Clock())


def test_delivers_each_order_once_with_its_reason(outbox: Outbox) -> None:
    outbox.cancel(1, "customer")
    outbox.cancel(2, None)
    run = outbox.run()
    assert run.totals()["delivered"] == 2
    assert outbox.fake.cancelled == {1: "customer", 2: None}
    rows = outbox.rows()
    assert {row["outcome"] for row in rows.values()} == {"delivered"}
    assert rows[1]["attempts"] == 1 and rows[1]["last_status"] == 200
    assert rows[1]["delivered_at"] == START and rows[1]["first_tried_at"] == START
    assert not rows[1]["needs_follow_up"] and rows[1]["claim_token"] is None

    # A later run sends nothing; neither does a new version of an order canceled again.
    outbox.clock.advance(hours=1)
    outbox.cancel(1, "fraud", updated_at=START + timedelta(minutes=30))
    again = outbox.run()
    assert again.attempted_keys() == []
    assert len(outbox.fake.received) == 2


def test_not_found_is_recorded_and_never_retried(outbox: Outbox) -> None:
    outbox.fake.unknown_orders.add(5)
    outbox.cancel(5)
    outbox.run()
    row = outbox.rows()[5]
    assert (row["outcome"], row["last_status"], row["error"]) == ("not_found", 404, "Not Found")
    assert not row["needs_follow_up"]
    outbox.clock.advance(days=2)
    outbox.run()
    assert len(outbox.fake.requests_for(5)) == 1


@pytest.mark.parametrize(("status", "message"), [(400, "reason: is invalid"), (406, "current state")])
def test_rejection_is_flagged_with_the_message_and_retried_only_on_demand(
    outbox: Outbox, status: int, message: str
) -> None:
    outbox.fake.order_statuses[7] = status
    outbox.cancel(7)
    outbox.run()
    row = outbox.rows()[7]
    assert row["outcome"] == "rejected" and row["last_status"] == status and row["needs_follow_up"]
    assert message in row["error"]
    outbox.clock.advance(days=1)
    outbox.run()
    assert len(outbox.fake.requests_for(7)) == 1

    # Someone fixes it at the target; the on-demand retry sends it once more.
    del outbox.fake.order_statuses[7]
    retried = outbox.run(retry_flagged=True)
    assert retried.targets[0].released == 1
    row = outbox.rows()[7]
    assert row["outcome"] == "delivered" and not row["needs_follow_up"] and row["attempts"] == 2
    assert outbox.fake.accepted_cancels() == {7: 1}


def test_server_errors_retry_across_runs_with_backoff_until_the_cap(outbox: Outbox) -> None:
    outbox.fake.order_statuses[9] = 500
    outbox.cancel(9)
    outbox.run()
    row = outbox.rows()[9]
    assert row["outcome"] == "retrying" and row["attempts"] == 1 and row["last_status"] == 500
    assert row["next_attempt_at"] == START + timedelta(seconds=60)

    outbox.clock.advance(seconds=59)  # not due yet: nothing is sent
    outbox.run()
    assert len(outbox.fake.requests_for(9)) == 1
    outbox.clock.advance(seconds=2)
    outbox.run()
    row = outbox.rows()[9]
    assert len(outbox.fake.requests_for(9)) == 2 and row["attempts"] == 2
    assert row["next_attempt_at"] == outbox.clock.now + timedelta(seconds=120)  # doubled

    outbox.clock.advance(seconds=121)
    outbox.run()  # the third attempt reaches the cap of 3
    row = outbox.rows()[9]
    assert row["outcome"] == "gave_up" and row["needs_follow_up"] and row["attempts"] == 3
    outbox.clock.advance(days=1)
    outbox.run()
    assert len(outbox.fake.requests_for(9)) == 3


def test_a_transient_500_then_success_delivers(outbox: Outbox) -> None:
    outbox.cancel(10)
    outbox.fake.fail_next(500)
    outbox.run()
    assert outbox.rows()[10]["outcome"] == "retrying"
    outbox.clock.advance(minutes=2)
    outbox.run()
    row = outbox.rows()[10]
    assert row["outcome"] == "delivered" and row["attempts"] == 2
    assert outbox.fake.accepted_cancels() == {10: 1}


@pytest.mark.timeout(30)
def test_timeout_after_the_target_acted_is_resent_and_the_refusal_counts_as_delivered(outbox: Outbox) -> None:
    outbox.cancel(11)
    outbox.fake.delay_s = 1.0
    outbox.run(replace(outbox.target, timeout_s=0.2))
    row = outbox.rows()[11]
    assert row["outcome"] == "retrying" and row["last_status"] is None and row["outcome_unknown"]
    assert "ReadTimeout" in row["error"]
    assert 11 in outbox.fake.cancelled  # the target did cancel it

    outbox.fake.delay_s = 0.0
    outbox.clock.advance(minutes=2)
    outbox.run()
    row = outbox.rows()[11]
    assert row["outcome"] == "delivered" and row["last_status"] == 406
    assert "already cancelled" in row["error"]
    assert outbox.fake.accepted_cancels() == {11: 1}


def test_connection_error_is_retried(outbox: Outbox, tmp_path: Path) -> None:
    outbox.cancel(12)
    with serve(FakeTarget(TOKEN)) as closed_url:
        pass  # the server is gone: its port refuses connections
    run = outbox.run(replace(outbox.target, base_url=closed_url))
    assert run.totals()["retrying"] == 1
    row = outbox.rows()[12]
    assert row["outcome"] == "retrying" and row["last_status"] is None and not row["outcome_unknown"]
    assert row["error"].startswith("connection failed")


def test_bad_credentials_fail_the_run_at_once_and_mark_nothing(outbox: Outbox) -> None:
    for order_id in (20, 21, 22):
        outbox.cancel(order_id)
    outbox.fake.token = "rotated"
    with pytest.raises(BadCredentials) as raised:
        outbox.run()
    message = str(raised.value)
    assert "'oms'" in message and TOKEN_ENV in message and "401" in message
    assert TOKEN not in message
    assert len(outbox.fake.received) == 1  # stopped at the first answer
    rows = outbox.rows()
    assert {row["outcome"] for row in rows.values()} == {"pending"}
    assert all(row["attempts"] == 0 and row["claim_token"] is None for row in rows.values())

    outbox.fake.token = TOKEN  # the token is fixed: the next run delivers everything
    assert outbox.run().totals()["delivered"] == 3


def test_a_missing_token_variable_stops_before_any_call(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    outbox.cancel(23)
    with pytest.raises(MissingToken, match=TOKEN_ENV):
        deliver_cancellations(outbox.connect, [outbox.target], run_id="r", clock=outbox.clock)
    assert outbox.fake.received == []


def test_orders_are_filtered_by_source_and_test_flag(outbox: Outbox) -> None:
    outbox.cancel(30, source_name="web")
    outbox.cancel(31, source_name="pos")
    outbox.cancel(32, source_name="web", test=True)
    pos_only = replace(outbox.target, orders=OrderFilter(source_names=("pos",)))
    outbox.run(pos_only)
    assert set(outbox.fake.cancelled) == {31}


@pytest.mark.timeout(60)
def test_overlapping_runs_deliver_each_order_exactly_once(outbox: Outbox) -> None:
    order_ids = list(range(100, 116))
    for order_id in order_ids:
        outbox.cancel(order_id)
    outbox.fake.delay_s = 0.05  # keeps calls in flight while the other run claims
    runs: list[DeliveryRun] = []
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            runs.append(outbox.run(run_id=name))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(f"run{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=50)
    assert not errors
    received = [request.order_id for request in outbox.fake.received]
    assert sorted(received) == order_ids  # every order sent, none twice
    assert sum(run.totals()["delivered"] for run in runs) == len(order_ids)
    assert all(run.totals()["delivered"] for run in runs), "both runs should have done part of the work"
    assert {row["outcome"] for row in outbox.rows().values()} == {"delivered"}


class Crash(Exception):
    """Stands for the process dying between a call and its record."""


def test_crash_between_call_and_record_errs_towards_one_refused_resend(outbox: Outbox) -> None:
    outbox.cancel(40)

    def crash(claim: Any, result: Any) -> None:
        raise Crash

    with pytest.raises(Crash):
        outbox.run(after_call=crash)
    row = outbox.rows()[40]
    assert row["outcome"] == "sending" and row["claimed_until"] > outbox.clock.now
    assert outbox.fake.accepted_cancels() == {40: 1}

    # Within the lease another run leaves it alone: the first may still be recording.
    outbox.clock.advance(seconds=5)
    assert outbox.run().attempted_keys() == [] and len(outbox.fake.received) == 1

    # Past the lease the outcome is unknown: it is sent again, and the target's refusal counts as delivered.
    outbox.clock.advance(seconds=2 * outbox.target.timeout_s + LEASE_SLACK.total_seconds())
    outbox.run()
    row = outbox.rows()[40]
    assert row["outcome"] == "delivered" and row["last_status"] == 406 and not row["needs_follow_up"]
    assert [request.status for request in outbox.fake.requests_for(40)] == [200, 406]
    outbox.clock.advance(days=1)
    outbox.run()
    assert len(outbox.fake.requests_for(40)) == 2


def test_a_first_refusal_saying_already_cancelled_is_still_a_rejection(outbox: Outbox) -> None:
    # Cancelled at the target by someone else: with no earlier unknown outcome, a person should know.
    outbox.fake.cancelled[50] = "staff"
    outbox.cancel(50)
    outbox.run()
    row = outbox.rows()[50]
    assert row["outcome"] == "rejected" and row["needs_follow_up"]
