"""The cancellation sensor: the fast path from a cancellation in Shopify to the warehouse.

Each tick sends one cheap request, `orders/count.json?status=cancelled&updated_at_min=<cursor>`. When it
counts anything, the tick requests a run of the in-progress day of the cancellation feed (and of the
previous day when the cursor reaches back into it, just after midnight; older days are the schedules' and
the reconciliation's job) and moves the cursor to the tick's time. Each run reads only what is new in its
day since the day's last landed page (run tag `cancel_pipeline/read=new`). Everything detected in one tick
coalesces into one run per day.

The cursor is an ISO 8601 UTC instant: the newest time the requested runs are known to cover. It moves only
together with emitted run requests, so a tick that finds nothing, or fails, leaves it where it was.
"""

from datetime import UTC, datetime

import dagster as dg

from cancel_pipeline.defs.conventions import READ_NEW, READ_TAG
from cancel_pipeline.defs.ingestion.jobs import canceled_order_fast_path_job
from cancel_pipeline.defs.ingestion.partitions import CANCELED_ORDER_WINDOWS
from cancel_pipeline.settings import SETTINGS
from cancel_pipeline.shopify.errors import ShopifyError
from cancel_pipeline.shopify.resource import ShopifyResource
from cancel_pipeline.shopify.source import OrderSource

DETECTED_TAG = "cancel_pipeline/detected_cancellations"


class CancellationSensorError(RuntimeError):
    """The tick could not ask Shopify for new cancellations; the cursor stays where it was."""


def evaluate_cancellation_tick(
    client: OrderSource,
    *,
    cursor: str | None,
    now: datetime,
    partitions_def: dg.TimeWindowPartitionsDefinition = CANCELED_ORDER_WINDOWS,
) -> dg.SensorResult:
    """One tick at `now`, from `cursor`: run requests and the new cursor, or a skip reason and no cursor."""
    if now < partitions_def.start:
        return dg.SensorResult(skip_reason=f"The first window starts at {partitions_def.start.isoformat()}")
    current_key = partitions_def.get_partition_key_for_timestamp(now.timestamp())
    current = partitions_def.time_window_for_partition_key(current_key)
    previous_start = max(current.start - (current.end - current.start), partitions_def.start)
    # No cursor yet: watch from the start of the current day. A cursor older than the previous day is
    # clamped: the days before it are the schedules' business, not the fast path's.
    since = max(_parse_cursor(cursor), previous_start) if cursor else current.start

    try:
        count = client.count_orders(status="cancelled", updated_at_min=since)
    except ShopifyError as error:
        raise CancellationSensorError(
            f"Could not count cancelled orders updated since {since.isoformat()} on {client.store}: {error}. "
            f"The cursor stays at {cursor or 'its initial value'}; the next tick asks again."
        ) from error

    if count == 0:
        return dg.SensorResult(
            skip_reason=f"No cancelled orders updated since {since.isoformat()} (cursor unchanged)"
        )

    keys = [current_key]
    if since < current.start:
        keys.insert(0, partitions_def.get_partition_key_for_timestamp(since.timestamp()))
    new_cursor = now.astimezone(UTC).isoformat()
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                partition_key=key,
                run_key=f"{key}@{new_cursor}",
                tags={DETECTED_TAG: str(count), READ_TAG: READ_NEW},
            )
            for key in keys
        ],
        cursor=new_cursor,
    )


def _parse_cursor(cursor: str) -> datetime:
    try:
        moment = datetime.fromisoformat(cursor)
    except ValueError:
        raise CancellationSensorError(f"The sensor's cursor {cursor!r} is not an ISO 8601 instant") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


SENSOR_DESCRIPTION = (
    "Fast path for cancellations: once a tick, asks Shopify how many cancelled orders were updated since "
    "the cursor (one count request: `ordersCount`, or REST's orders/count.json); when there are any, runs "
    "canceled_order_fast_path_job (the raw pages and the tables in one run) for the day in progress (and "
    "the previous day if the cursor reaches into it), reading only what is new since the day's last landed "
    "page, right away instead of waiting for the schedule. A failing request fails the tick and leaves the "
    "cursor unchanged."
)


@dg.sensor(
    job=canceled_order_fast_path_job,
    minimum_interval_seconds=SETTINGS.sensor_interval_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=SENSOR_DESCRIPTION,
)
def cancellation_sensor(context: dg.SensorEvaluationContext, shopify: ShopifyResource) -> dg.SensorResult:
    """Evaluates one tick at the current time (see `evaluate_cancellation_tick`)."""
    with shopify.get_client() as client:
        return evaluate_cancellation_tick(client, cursor=context.cursor, now=datetime.now(UTC))
