"""The outbox: `cancellation_deliveries`, one row per (canceled order, downstream target).

The row is the whole state of telling one target about one cancellation. Its key is `(order_id, target)`, so
an order canceled again in a later version finds its row already there and is not queued twice. A call to a
target is always preceded by a committed claim (`outcome = 'sending'`, a claim token and a lease), and its
answer is recorded afterwards only while that claim is still ours: a run that overlaps another skips rows the
other holds, and a row whose lease ran out with no answer recorded is known to have an unknown outcome.

Outcomes:

| outcome     | meaning                                                          | sent again?                  |
|-------------|------------------------------------------------------------------|------------------------------|
| pending     | queued, never tried                                              | yes, on the next run         |
| sending     | claimed by a run that is calling the target (until `claimed_until`) | only after the lease expires |
| delivered   | the target confirmed the cancellation                            | never                        |
| not_found   | the target does not know the order (404)                         | never                        |
| rejected    | the target refused it (400/406/...): flagged for follow-up       | only by the retry job        |
| retrying    | 500, timeout or connection error; next try at `next_attempt_at`  | yes, once due                |
| gave_up     | still failing after the attempt cap: flagged for follow-up       | only by the retry job        |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

from cancel_pipeline.warehouse.schema import CANCELLATION_DELIVERIES_DDL, DELIVERIES_TABLE

FLAGGED_OUTCOMES = ("rejected", "gave_up")
"""Outcomes that need a person; the follow-up check lists them and the retry job releases them."""


@dataclass(frozen=True)
class OrderFilter:
    """Which canceled orders a target is told about; an empty list means "any"."""

    source_names: Sequence[str] = ()
    tags: Sequence[str] = ()
    canceled_since: datetime | None = None
    include_test_orders: bool = False


@dataclass(frozen=True)
class DueDelivery:
    """A delivery a run should attempt now."""

    order_id: int
    cancel_reason: str | None


@dataclass(frozen=True)
class Claim:
    """A committed claim on one delivery: this run may call the target for it."""

    order_id: int
    target: str
    token: str
    cancel_reason: str | None
    attempts: int
    """Attempts counted before this one."""
    after_unknown_outcome: bool
    """An earlier call may have reached the target without its answer being recorded."""


def ensure_deliveries_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create `cancellation_deliveries` if missing (the session time zone is set to UTC). `ensure_schema`
    creates it too, so a warehouse has the (empty) table before any target is configured."""
    con.execute("set TimeZone = 'UTC'")
    con.execute(CANCELLATION_DELIVERIES_DDL)


def deliveries_table_exists(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the outbox table exists (a warehouse made before the table joined `ensure_schema` may lack it
    until its next run)."""
    row = con.execute(
        "select count(*) from information_schema.tables where table_schema = 'main' and table_name = ?",
        [DELIVERIES_TABLE],
    ).fetchone()
    return bool(row and row[0])


def enqueue_new_cancellations(
    con: duckdb.DuckDBPyConnection, target: str, order_filter: OrderFilter, now: datetime
) -> int:
    """Queue a 'pending' row for every canceled order the target takes and has no row for yet; returns how
    many were queued. An order already queued (in any outcome) is left alone, whatever its new version says."""
    conditions = [
        "not exists (select 1 from cancellation_deliveries d where d.order_id = c.order_id "
        "and d.target = $target)"
    ]
    params: dict[str, Any] = {"target": target, "now": now}
    if not order_filter.include_test_orders:
        conditions.append("not c.test")
    if order_filter.source_names:
        conditions.append("c.source_name in (select unnest($sources::varchar[]))")
        params["sources"] = list(order_filter.source_names)
    if order_filter.canceled_since is not None:
        conditions.append("c.cancelled_at >= $since")
        params["since"] = order_filter.canceled_since
    tag_join = ""
    if order_filter.tags:
        # Tags are not in the tables; they are kept with the object the order's latest version came from.
        tag_join = """
            join order_versions v on v.order_id = c.order_id and v.updated_at = c.updated_at
            join raw_order_objects o on o.page_seq = v.page_seq and o.order_id = v.order_id
        """
        conditions.append(
            "list_has_any(list_transform(string_split(coalesce(o.tags, ''), ','), lambda t: lower(trim(t))), "
            "$tags::varchar[])"
        )
        params["tags"] = [tag.strip().lower() for tag in order_filter.tags]
    sql = f"""
        insert into cancellation_deliveries
            (order_id, target, outcome, attempts, cancel_reason, needs_follow_up, outcome_unknown, queued_at)
        select distinct c.order_id, $target, 'pending', 0, c.cancel_reason, false, false, $now
        from canceled_orders c {tag_join}
        where {" and ".join(conditions)}
        on conflict do nothing
        returning order_id
    """
    return len(con.execute(sql, params).fetchall())


DUE_CONDITION = """
    ((outcome in ('pending', 'retrying') and (next_attempt_at is null or next_attempt_at <= $now))
     or (outcome = 'sending' and claimed_until < $now))
"""


def due_deliveries(
    con: duckdb.DuckDBPyConnection, target: str, now: datetime, limit: int
) -> list[DueDelivery]:
    """Deliveries of `target` to attempt now: queued, due for a retry, or claimed by a run whose lease ran
    out (its outcome is unknown), oldest first."""
    rows = con.execute(
        f"""
        select order_id, cancel_reason from cancellation_deliveries
        where target = $target and {DUE_CONDITION}
        order by queued_at, order_id
        limit $limit
        """,
        {"target": target, "now": now, "limit": limit},
    ).fetchall()
    return [DueDelivery(int(order_id), reason) for order_id, reason in rows]


def claim_deliveries(
    con: duckdb.DuckDBPyConnection,
    order_ids: Sequence[int],
    target: str,
    *,
    token: str,
    now: datetime,
    lease_until: datetime,
) -> list[Claim]:
    """Claim those of `order_ids` that are still due, in one committed transaction; rows another run holds,
    or that no longer need sending, are left out. A lease that ran out marks the lost call's outcome unknown."""
    con.execute("begin transaction")
    try:
        rows = con.execute(
            f"""
            update cancellation_deliveries
            set outcome = 'sending',
                outcome_unknown = outcome_unknown or outcome = 'sending',
                claim_token = $token,
                claimed_until = $lease_until,
                first_tried_at = coalesce(first_tried_at, $now),
                last_tried_at = $now
            where target = $target and order_id in (select unnest($order_ids::bigint[])) and {DUE_CONDITION}
            returning order_id, cancel_reason, attempts, outcome_unknown
            """,
            {
                "token": token,
                "lease_until": lease_until,
                "now": now,
                "order_ids": list(order_ids),
                "target": target,
            },
        ).fetchall()
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    claims = {
        int(order_id): Claim(int(order_id), target, token, reason, int(attempts), bool(unknown))
        for order_id, reason, attempts, unknown in rows
    }
    return [claims[order_id] for order_id in order_ids if order_id in claims]


def release_claims(con: duckdb.DuckDBPyConnection, claims: Sequence[Claim]) -> None:
    """Give claimed rows back, uncalled or refused for reasons not theirs (a 401), as they were before the
    claim: due again, no attempt counted."""
    for claim in claims:
        con.execute(
            """
            update cancellation_deliveries
            set outcome = case when attempts = 0 then 'pending' else 'retrying' end,
                first_tried_at = case when attempts = 0 and not outcome_unknown then null else first_tried_at end,
                claim_token = null,
                claimed_until = null
            where order_id = $order_id and target = $target and outcome = 'sending' and claim_token = $token
            """,
            {"order_id": claim.order_id, "target": claim.target, "token": claim.token},
        )


@dataclass(frozen=True)
class Outcome:
    """What to record for one call."""

    outcome: str
    status: int | None
    error: str | None
    counts_as_attempt: bool = True
    needs_follow_up: bool = False
    outcome_unknown: bool = False
    next_attempt_at: datetime | None = None


def record_outcome(con: duckdb.DuckDBPyConnection, claim: Claim, outcome: Outcome, now: datetime) -> bool:
    """Record the answer of a claimed call; False (and nothing written) when the claim is no longer ours,
    because its lease ran out and another run took the row over."""
    row = con.execute(
        """
        update cancellation_deliveries
        set outcome = $outcome,
            attempts = attempts + $attempt,
            last_status = $status,
            error = $error,
            needs_follow_up = $follow_up,
            outcome_unknown = $unknown,
            delivered_at = case when $outcome = 'delivered' then $now else delivered_at end,
            next_attempt_at = $next_attempt_at,
            claim_token = null,
            claimed_until = null
        where order_id = $order_id and target = $target and outcome = 'sending' and claim_token = $token
        returning order_id
        """,
        {
            "outcome": outcome.outcome,
            "attempt": 1 if outcome.counts_as_attempt else 0,
            "status": outcome.status,
            "error": outcome.error,
            "follow_up": outcome.needs_follow_up,
            "unknown": outcome.outcome_unknown,
            "now": now,
            "next_attempt_at": outcome.next_attempt_at,
            "order_id": claim.order_id,
            "target": claim.target,
            "token": claim.token,
        },
    ).fetchone()
    return row is not None


def release_flagged(
    con: duckdb.DuckDBPyConnection, targets: Sequence[str], now: datetime, order_ids: Sequence[int] = ()
) -> int:
    """Make flagged deliveries of `targets` (all of them, or only `order_ids`) due now; returns how many.

    They keep their attempt count, so a released delivery that fails again with a retryable error is
    flagged again at once: an on-demand retry is one more attempt, not a new round of automatic ones.
    """
    if not targets:
        return 0
    params: dict[str, Any] = {"targets": list(targets), "now": now}
    only_orders = ""
    if order_ids:
        only_orders = "and order_id in (select unnest($orders::bigint[]))"
        params["orders"] = list(order_ids)
    released = con.execute(
        f"""
        update cancellation_deliveries
        set outcome = 'retrying', needs_follow_up = false, next_attempt_at = $now
        where needs_follow_up and target in (select unnest($targets::varchar[])) {only_orders}
        returning order_id
        """,
        params,
    ).fetchall()
    return len(released)


def flagged_deliveries(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Deliveries needing manual follow-up (rejected, or given up after the cap), oldest first."""
    return _dicts(
        con.execute(
            """
            select order_id, target, outcome, attempts, last_status, error, first_tried_at, last_tried_at
            from cancellation_deliveries
            where needs_follow_up
            order by first_tried_at nulls last, order_id, target
            """
        )
    )


UNDELIVERED_OUTCOMES = ("pending", "retrying", "sending")
"""Outcomes of a delivery still waiting to reach its target."""


def overdue_deliveries(
    con: duckdb.DuckDBPyConnection, targets: Sequence[str], now: datetime, older_than: timedelta
) -> list[dict[str, Any]]:
    """Deliveries to `targets` still undelivered (pending, retrying or being sent) more than `older_than`
    after they were queued, oldest first: runs that never reach them, or a target that keeps failing."""
    if not targets:
        return []
    return _dicts(
        con.execute(
            """
            select order_id, target, outcome, attempts, last_status, error, queued_at, next_attempt_at
            from cancellation_deliveries
            where outcome in (select unnest($outcomes::varchar[]))
              and target in (select unnest($targets::varchar[]))
              and queued_at < $cutoff
            order by queued_at, order_id, target
            """,
            {"outcomes": list(UNDELIVERED_OUTCOMES), "targets": list(targets), "cutoff": now - older_than},
        )
    )


def delivery_rows(con: duckdb.DuckDBPyConnection, keys: Sequence[tuple[int, str]]) -> list[dict[str, Any]]:
    """The rows of the given (order_id, target) keys, for previews, in key order."""
    if not keys:
        return []
    return _dicts(
        con.execute(
            """
            select d.order_id, d.target, d.outcome, d.attempts, d.last_status, d.error, d.needs_follow_up,
                   d.first_tried_at, d.delivered_at, d.next_attempt_at
            from cancellation_deliveries d
            join (select unnest($orders::bigint[]) as order_id, unnest($targets::varchar[]) as target) k
                using (order_id, target)
            order by d.order_id, d.target
            """,
            {"orders": [key[0] for key in keys], "targets": [key[1] for key in keys]},
        )
    )


def outcome_counts(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, int]]:
    """(target, outcome, deliveries) over the whole table, by target then outcome."""
    return [
        (str(target), str(outcome), int(count))
        for target, outcome, count in con.execute(
            "select target, outcome, count(*) from cancellation_deliveries group by 1, 2 order by 1, 2"
        ).fetchall()
    ]


def _dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [column[0] for column in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
