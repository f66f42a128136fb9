"""Delivering cancellation notices through the outbox, so no target is sent an order twice once delivered.

For each enabled target a run (1) queues, in one short transaction, a row for each canceled order the target
takes and has no row for; (2) claims the due rows, a batch at a time, in a committed transaction (outcome
'sending', a claim token, a lease covering the batch's calls); (3) calls the target for each, with no DuckDB
connection open; (4) records the answers in one short transaction, each only if its claim is still its own.
A run overlapping another skips every row the other has claimed, and a delivered row is never due again, so
a confirmed cancellation is never re-sent.

The one case no design can settle is a crash (or a lost answer) after the call left and before its answer
was recorded: the target may or may not have cancelled the order. Such a row stays 'sending' until its lease
runs out and is then sent again, flagged as following an unknown outcome. The outbox errs towards sending
twice rather than not at all, because the costs are lopsided: a missed cancellation lets a fulfillment
service ship goods the customer no longer wants, while a duplicate cancel of an order the target already
cancelled is refused by it. That refusal (a 4xx saying the order is already cancelled) is then recorded as
delivered, not as a rejection. A timeout or a 5xx after the request left is treated the same way.

A 401 stops the run at once: the refused claim and the batch's uncalled ones are released (no attempt
counted), nothing more is marked delivered, and `BadCredentials` names the target and its token variable,
never the token.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import duckdb

from cancel_pipeline.clock import utc_now
from cancel_pipeline.outbox.client import CallResult, CancelOrderClient
from cancel_pipeline.outbox.deliveries import (
    Claim,
    DueDelivery,
    Outcome,
    claim_deliveries,
    due_deliveries,
    enqueue_new_cancellations,
    ensure_deliveries_schema,
    record_outcome,
    release_claims,
    release_flagged,
)
from cancel_pipeline.outbox.targets import Target, resolve_token
from cancel_pipeline.warehouse.schema import ensure_schema

Connect = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
Clock = Callable[[], datetime]
AfterCall = Callable[[Claim, CallResult], None]

LEASE_SLACK = timedelta(seconds=30)
"""Added to twice the call timeout per claimed delivery: a claim outlives the calls it covers, and a crashed
run's claims expire soon after."""
CLAIM_BATCH = 10
"""Deliveries claimed (and their answers recorded) per transaction: fewer warehouse round trips, while a
crash leaves at most this many outcomes unknown (and so sent again, see above)."""
CONFLICT_RETRIES = 20
T = TypeVar("T")

log = logging.getLogger(__name__)


class BadCredentials(RuntimeError):
    """A target answered 401: its token is wrong or revoked. The run stops; nothing was marked delivered."""


@dataclass
class TargetRun:
    """What one run did for one target."""

    target: str
    queued: int = 0
    released: int = 0
    due: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    """This run's outcomes by name, plus 'skipped' (claimed by another run) and 'claim_lost'."""
    attempted: list[int] = field(default_factory=list)


@dataclass
class DeliveryRun:
    """What one run of the outbox did, per target."""

    targets: list[TargetRun] = field(default_factory=list)

    def totals(self) -> Counter[str]:
        """This run's outcomes over every target."""
        total: Counter[str] = Counter()
        for target in self.targets:
            total.update(target.outcomes)
        return total

    def attempted_keys(self) -> list[tuple[int, str]]:
        """(order_id, target) of every delivery this run called a target for."""
        return [(order_id, target.target) for target in self.targets for order_id in target.attempted]


def backoff(target: Target, attempts: int) -> timedelta:
    """The wait before the next try after `attempts` retryable failures: doubling, capped."""
    seconds = min(target.backoff_base_s * 2 ** max(attempts - 1, 0), target.backoff_max_s)
    return timedelta(seconds=seconds)


def decide(target: Target, claim: Claim, result: CallResult, now: datetime) -> Outcome:
    """The row to record for a call's answer (bad credentials are handled by the caller)."""
    if result.kind == "delivered":
        return Outcome("delivered", result.status, None)
    if result.kind == "not_found":
        return Outcome("not_found", result.status, result.message)
    if result.kind == "rejected":
        if claim.after_unknown_outcome and result.says_already_cancelled:
            note = f"taken as delivered: an earlier call's outcome was unknown and the target says: {result.message}"
            return Outcome("delivered", result.status, note)
        return Outcome("rejected", result.status, result.message, needs_follow_up=True)
    attempts = claim.attempts + 1
    unknown = claim.after_unknown_outcome or result.may_have_reached_target
    if attempts >= target.max_attempts:
        return Outcome(
            "gave_up", result.status, result.message, needs_follow_up=True, outcome_unknown=unknown
        )
    return Outcome(
        "retrying",
        result.status,
        result.message,
        outcome_unknown=unknown,
        next_attempt_at=now + backoff(target, attempts),
    )


def deliver_cancellations(
    connect: Connect,
    targets: Sequence[Target],
    *,
    run_id: str,
    retry_flagged: bool = False,
    clock: Clock = utc_now,
    token_for: Callable[[Target], str] = resolve_token,
    after_call: AfterCall | None = None,
    logger: logging.Logger | logging.LoggerAdapter = log,
) -> DeliveryRun:
    """Tell every target in `targets` (each with a base URL) of the canceled orders it has not been told of.

    `connect` opens a short-lived warehouse connection; it is never held while a target is called.
    `retry_flagged` first makes flagged deliveries due again (the on-demand retry). `after_call` runs between
    each call and its record (a seam for crash tests). Raises `BadCredentials` on a 401.
    """
    run = DeliveryRun()
    for target in targets:
        run.targets.append(
            _deliver_to(connect, target, run_id, retry_flagged, clock, token_for, after_call, logger)
        )
    return run


def _deliver_to(
    connect: Connect,
    target: Target,
    run_id: str,
    retry_flagged: bool,
    clock: Clock,
    token_for: Callable[[Target], str],
    after_call: AfterCall | None,
    logger: logging.Logger | logging.LoggerAdapter,
) -> TargetRun:
    if target.base_url is None:
        raise ValueError(f"target {target.name!r} has no base URL (serve the demo target first)")
    stats = TargetRun(target.name)

    def queue(con: duckdb.DuckDBPyConnection) -> list[DueDelivery]:
        ensure_schema(con)
        ensure_deliveries_schema(con)
        con.execute("begin transaction")
        if retry_flagged:
            stats.released = release_flagged(con, [target.name], clock())
        stats.queued = enqueue_new_cancellations(con, target.name, target.orders, clock())
        due = due_deliveries(con, target.name, clock(), target.max_per_run)
        con.execute("commit")
        return due

    due = _without_conflicts(connect, queue)
    stats.due = len(due)
    logger.info(
        f"target {target.name}: {stats.queued} newly queued, {stats.released} flagged released, {stats.due} due"
    )
    if not due:
        return stats
    token = token_for(target)
    with CancelOrderClient(
        target.base_url, token, token_header=target.token_header, timeout_s=target.timeout_s
    ) as client:
        for first in range(0, len(due), CLAIM_BATCH):
            batch = [item.order_id for item in due[first : first + CLAIM_BATCH]]
            claims = _claim(connect, target, batch, f"{run_id}:{uuid.uuid4().hex[:12]}", clock)
            stats.outcomes["skipped"] += len(batch) - len(claims)
            _call_and_record(connect, client, target, token, claims, stats, clock, after_call, logger)
    return stats


def _call_and_record(
    connect: Connect,
    client: CancelOrderClient,
    target: Target,
    token: str,
    claims: list[Claim],
    stats: TargetRun,
    clock: Clock,
    after_call: AfterCall | None,
    logger: logging.Logger | logging.LoggerAdapter,
) -> None:
    """Call the target for each claim, then record every answer in one short transaction."""
    answered: list[tuple[Claim, Outcome, CallResult]] = []
    refused: tuple[Claim, CallResult] | None = None
    for claim in claims:
        result = _scrubbed(client.cancel(claim.order_id, claim.cancel_reason), token)
        if after_call is not None:
            after_call(claim, result)
        stats.attempted.append(claim.order_id)
        if result.kind == "bad_credentials":
            refused = (claim, result)
            break
        answered.append((claim, decide(target, claim, result, clock()), result))

    def record(con: duckdb.DuckDBPyConnection) -> list[bool]:
        con.execute("begin transaction")
        recorded = [record_outcome(con, claim, outcome, clock()) for claim, outcome, _ in answered]
        if refused is not None:
            # The token, not the orders, is at fault: the refused and the uncalled claims go back as they were.
            release_claims(con, claims[len(answered) :])
        con.execute("commit")
        return recorded

    recorded = _without_conflicts(connect, record)
    for (claim, outcome, result), kept in zip(answered, recorded, strict=True):
        if not kept:
            stats.outcomes["claim_lost"] += 1
            logger.warning(
                f"target {target.name}: order {claim.order_id}'s claim expired before its answer "
                f"({outcome.outcome}) was recorded; another run owns it now"
            )
            continue
        stats.outcomes[outcome.outcome] += 1
        if outcome.outcome in ("rejected", "gave_up"):
            logger.warning(
                f"target {target.name}: order {claim.order_id} {outcome.outcome} "
                f"(HTTP {result.status}): {result.message}; flagged for follow-up"
            )
    if refused is not None:
        raise BadCredentials(
            f"target {target.name!r} refused its token (HTTP 401, token from {target.token_env}): "
            f"{refused[1].message or 'bad credentials'}. The run stopped; no order was marked delivered "
            "after the refusal."
        )


def _scrubbed(result: CallResult, token: str) -> CallResult:
    # A target echoing the token in an error must not carry it into the warehouse or the logs.
    if not result.message or token not in result.message:
        return result
    return CallResult(
        result.kind, result.status, result.message.replace(token, "***"), result.may_have_reached_target
    )


def _without_conflicts(connect: Connect, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """`work` in a fresh connection, retried while it meets a write conflict.

    Two runs in one process share the database, and DuckDB answers concurrent writes of the same row (a
    claim, or queuing the same new order) with an error rather than waiting. The retry sees the other run's
    committed write: the row is claimed, or already queued. Two threads opening the file at the same moment
    can also meet a "file handle conflict", which the next try does not.
    """
    for attempt in range(CONFLICT_RETRIES):
        try:
            with connect() as con:
                return work(con)
        except (duckdb.TransactionException, duckdb.ConstraintException, duckdb.ResourceInUseException):
            if attempt == CONFLICT_RETRIES - 1:
                raise
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


def _claim(connect: Connect, target: Target, order_ids: list[int], token: str, clock: Clock) -> list[Claim]:
    # The lease covers every call of the batch, each bounded by the timeout, with slack for the records.
    lease = timedelta(seconds=2 * target.timeout_s * len(order_ids)) + LEASE_SLACK

    def claim(con: duckdb.DuckDBPyConnection) -> list[Claim]:
        now = clock()
        return claim_deliveries(con, order_ids, target.name, token=token, now=now, lease_until=now + lease)

    return _without_conflicts(connect, claim)
