"""A range read by bulk operations running at once: the range cut into contiguous `updated_at` slices.

One operation's time at Shopify grows with the objects it writes, so N operations over N slices of a range can
finish in about 1/N of the time, if Shopify runs them in parallel (it allows five bulk queries at once per app
and shop from API version 2026-01, one before; how fast five run side by side is not published).
`SHOPIFY_BULK_CONCURRENCY` sets N.

- Slices: N equal time slices, none shorter than `MIN_SLICE`, with whole-second inclusive bounds that neither
  overlap nor leave a gap (`updated_at:>='A' AND updated_at:<='B'`; `:<` is not used: before 2027-01 Shopify's
  `:<'T'` also matches orders updated later in the second T).
- Starting: every slice is started at once, in order. A slice refused because the app already runs as many
  bulk queries as Shopify allows (another run of the app, or a shop allowing fewer) is queued and started when
  one of ours finishes. Only while none of ours runs is a slot waited for, up to `wait_for_slot_s`; then the
  whole range (no slice started) or the slices left are paged instead.
- Polling: one loop; each operation is polled a tenth of its own age apart (at least `poll_initial_s`), and
  every poll logs that operation's objects and the read's total.
- Pages: in slice order (the earliest range first), numbered on across slices, each naming its operation in
  `request_path`; a slice's file is streamed once it and every slice before it have completed.
- Failure: FAILED, CANCELED or EXPIRED of any slice fails the read. Nothing is landed: the raw asset lands
  only once every page has been read. On any exception or stop (Dagster terminating the run, the caller
  closing the iterator) every operation still running is cancelled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cancel_pipeline.shopify.bulk import (
    BulkExport,
    BulkOperationFailed,
    BulkSettings,
    GraphQLSender,
    poll_delay,
)
from cancel_pipeline.shopify.graphql_queries import orders_search
from cancel_pipeline.shopify.pages import OrderPage

#: Shorter slices hold too few orders for another operation's fixed cost (seconds queued at Shopify, its own
#: polls, download and last part-filled page) to pay off.
MIN_SLICE = timedelta(hours=1)

Pager = Callable[[str | None, int], Iterator[OrderPage]]
"""Pages (not bulk) of the orders an `orders` search matches, numbered from the given page number."""


def slice_bounds(start: datetime, end: datetime, count: int) -> list[tuple[datetime, datetime]]:
    """Up to `count` equal, contiguous slices of [start, end], none shorter than `MIN_SLICE`: (min, max), both
    inclusive to the second; the first keeps `start`, the last `end`."""
    count = max(1, min(count, int((end - start) / MIN_SLICE)))
    cuts = [(start + (end - start) * k / count).replace(microsecond=0) for k in range(1, count)]
    return list(zip([start, *cuts], [*(cut - timedelta(seconds=1) for cut in cuts), end], strict=True))


@dataclass
class _Slice:
    number: int
    low: datetime
    high: datetime
    search: str | None
    export: BulkExport
    started_at: float | None = None
    next_poll: float = 0.0
    objects: int = 0
    orders: int = 0
    result: dict[str, Any] | None = None
    queued: bool = False
    paged: bool = False

    @property
    def running(self) -> bool:
        return self.started_at is not None and self.result is None and not self.export.ended

    @property
    def pending(self) -> bool:
        return self.started_at is None and not self.paged


class SlicedBulkRead:
    """Orders of `status` updated in [updated_at_min, updated_at_max] through up to `concurrency` bulk
    operations at once (see the module docstring); `pages()` yields them."""

    def __init__(
        self,
        client: GraphQLSender,
        settings: BulkSettings,
        *,
        status: str,
        updated_at_min: datetime,
        updated_at_max: datetime,
        concurrency: int,
        request_path: Callable[[str | None], str],
        pager: Pager,
    ) -> None:
        self._client = client
        self._settings = settings
        self._min, self._max = updated_at_min, updated_at_max
        self._search = orders_search(
            status=status, updated_at_min=updated_at_min, updated_at_max=updated_at_max
        )
        self._selection_path = request_path
        self._pager = pager
        bounds = slice_bounds(updated_at_min, updated_at_max, concurrency)
        self._slices = [
            _Slice(
                number=number,
                low=low,
                high=high,
                search=orders_search(status=status, updated_at_min=low, updated_at_max=high),
                export=BulkExport(
                    client, settings, f"slice {number} of {len(bounds)}" if len(bounds) > 1 else ""
                ),
            )
            for number, (low, high) in enumerate(bounds, start=1)
        ]
        self._t0 = 0.0
        self._paused = 0.0
        self._peak = 0
        self._summarized = False

    def pages(self) -> Iterator[OrderPage]:
        """The range's pages, earliest slice first; cancels every running operation if it does not finish."""
        try:
            yield from self._read()
        except BaseException:
            # Stopped or failed while Shopify may still work on some slices: cancel them, or they would hold the
            # app's bulk slots until they finish. Operations that already ended are left alone.
            self.cancel()
            raise

    def cancel(self) -> None:
        """Cancel every operation of the read still running (best effort, each once)."""
        for part in self._slices:
            part.export.cancel()

    def _read(self) -> Iterator[OrderPage]:
        log, store = self._client.log, self._client.store
        if len(self._slices) > 1:
            log.info(
                "%s: reading orders updated in [%s, %s] by %d bulk operations, one per slice of %.1f h, "
                "started at once (SHOPIFY_BULK_CONCURRENCY)",
                store,
                self._min.isoformat(),
                self._max.isoformat(),
                len(self._slices),
                (self._max - self._min) / timedelta(hours=1) / len(self._slices),
            )
        self._t0 = self._client.now()
        self._start_pending()
        if all(part.started_at is None for part in self._slices):
            yield from self._pager(self._search, 1)  # no bulk slot at all: the range is paged, as one
            return
        number = 1
        for part in self._slices:
            while part.result is None and not part.paged:
                self._poll_round()
            if part.result is not None:
                pages = part.export.pages(part.result, self._path(part), number)
            else:
                pages = self._pager(part.search, number)
            for page in pages:
                yield page
                number = page.page_number + 1

    def _path(self, part: _Slice) -> str:
        return f"{self._selection_path(part.search)} {part.export.operation_id}"

    # -- starting ---------------------------------------------------------------------------------------

    def _start_pending(self) -> None:
        """Start the queued slices in order while Shopify takes them; wait for a slot only while none of ours
        runs (one of ours finishing frees one), and page what is left once `wait_for_slot_s` has passed."""
        log, store = self._client.log, self._client.store
        waited = 0.0
        delay = self._settings.poll_initial_s
        while pending := [part for part in self._slices if part.pending]:
            part = pending[0]
            if part.export.try_start(part.search) is not None:
                part.started_at = part.next_poll = self._now()
                self._peak = max(self._peak, sum(s.running for s in self._slices))
                continue
            refusal = part.export.refusal
            if any(s.running for s in self._slices):
                if not part.queued:
                    log.info(
                        "%s: slices %d to %d of %d queued: the app runs as many bulk queries as Shopify "
                        "allows (%s); each starts when one of ours finishes",
                        store,
                        part.number,
                        len(self._slices),
                        len(self._slices),
                        refusal,
                    )
                    for queued in pending:
                        queued.queued = True
                return
            if waited >= self._settings.wait_for_slot_s:
                if all(s.started_at is None for s in self._slices):
                    log.warning(
                        "%s: another bulk query of this app is still running after %.0f s (%s); paging "
                        "instead (the whole range)",
                        store,
                        waited,
                        refusal,
                    )
                else:
                    log.warning(
                        "%s: no bulk slot for slices %d to %d of %d after %.0f s (%s); paging their range "
                        "instead",
                        store,
                        part.number,
                        len(self._slices),
                        len(self._slices),
                        waited,
                        refusal,
                    )
                for left in pending:
                    left.paged = True
                return
            log.info(
                "%s: another bulk query of this app is running (%s); waiting %.0f s (%.0f s so far)",
                store,
                refusal,
                delay,
                waited,
            )
            self._pause(delay)
            waited += delay
            delay = min(delay * 2, self._settings.poll_max_s)

    # -- polling ------------------------------------------------------------------------------------------

    def _poll_round(self) -> None:
        """Wait for the next operation due a poll, poll every one due, and act on what ended."""
        running = [part for part in self._slices if part.running]
        if not running:
            self._start_pending()  # ours all finished while slices are queued
            return
        due = min(part.next_poll for part in running)
        if due > self._now():
            self._pause(due - self._now())
        failure: BulkOperationFailed | None = None
        finished = False
        for part in running:
            at = self._now()
            if part.next_poll > at:
                continue
            state = part.export.poll()
            part.objects, part.orders = _count(state.get("objectCount")), _count(state.get("rootObjectCount"))
            elapsed = at - (part.started_at or at)
            try:
                done = part.export.observe(state, elapsed, self._total(at))
            except BulkOperationFailed as error:
                failure = failure or error  # the others are cancelled as the read fails
                continue
            if done is not None:
                part.result, finished = done, True
            else:
                part.next_poll = at + poll_delay(elapsed, self._settings)
        if failure is not None:
            raise failure
        if finished and any(part.pending for part in self._slices):
            self._start_pending()
        self._summarize()

    def _total(self, at: float) -> str:
        if len(self._slices) == 1:
            return ""
        objects = sum(part.objects for part in self._slices)
        return f"; all {len(self._slices)} slices: {objects} objects after {at - self._t0:.0f} s"

    def _summarize(self) -> None:
        """Once every slice read by bulk has completed: the totals, and how many operations ran at once."""
        by_bulk = [part for part in self._slices if part.started_at is not None]
        if self._summarized or any(part.pending or part.result is None for part in by_bulk):
            return
        self._summarized = True
        if len(self._slices) == 1:
            return  # the operation's own COMPLETED line says it all
        self._client.log.info(
            "%s: bulk read COMPLETED: %d objects (%d orders) after %.0f s; %d of %d slices by bulk, at most "
            "%d bulk operations ran at once",
            self._client.store,
            sum(part.objects for part in by_bulk),
            sum(part.orders for part in by_bulk),
            self._now() - self._t0,
            len(by_bulk),
            len(self._slices),
            self._peak,
        )

    # -- time ---------------------------------------------------------------------------------------------

    def _now(self) -> float:
        # The pauses count even when the client's sleep is not its clock's (tests).
        return max(self._client.now(), self._t0 + self._paused)

    def _pause(self, seconds: float) -> None:
        self._client.pause(seconds)
        self._paused += seconds


def _count(value: Any) -> int:
    """An `UnsignedInt64` count (a string in JSON) as an int; 0 when absent."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
