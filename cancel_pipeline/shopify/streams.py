"""Concurrent page streams: one `updated_at` span fetched as several slices walked at the same time.

A single cursor is slower than a Plus bucket leaks, and a cursor cannot be split (its `page_info` is opaque),
but the span can: each slice is its own `orders.json` query with its own cursor. `plan_slices` cuts the span
so that nothing is missed; `stream_pages` walks the slices on worker threads and hands their pages to the
caller's thread, never letting a worker outlive the iterator.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cancel_pipeline.shopify.pages import OrderPage

#: Slices queued per worker: enough that the last busy slice leaves the other workers little to wait for.
SLICES_PER_STREAM = 4

#: A slice must hold this many pages' worth of orders: its last, partly filled page then costs <= 4 %.
MIN_PAGES_PER_SLICE = 25

#: How often a waiting worker or consumer looks whether the fetch was stopped, seconds.
POLL_S = 0.05


class FetchStopped(Exception):
    """Raised inside a worker when its fetch was stopped (an error elsewhere, or the caller closed it)."""


@dataclass(frozen=True)
class SliceFetch:
    """One slice of the span: `[start, end]`, both inclusive as Shopify reads them; `index` is its place."""

    index: int
    start: datetime
    end: datetime


def plan_slices(
    start: datetime,
    end: datetime,
    *,
    orders: int,
    limit: int,
    streams: int,
    slices_per_stream: int = SLICES_PER_STREAM,
    min_pages_per_slice: int = MIN_PAGES_PER_SLICE,
) -> list[SliceFetch]:
    """Cut `[start, end]` into adjacent slices sharing their boundary seconds; one slice when not worth it.

    Shopify's `updated_at_min` / `updated_at_max` are inclusive and its timestamps whole seconds. Adjacent
    slices share their boundary second, `[b0, b1], [b1, b2], ...`, so their union is exactly the span and
    nothing is missed even if a store kept fractions of a second (an order at `b1 + 0.5` is still inside
    `[b1, b2]`). Only orders updated in a boundary second can come twice, as the same version, which the
    warehouse merges. The first slice starts at `start` and the last ends at `end` exactly (as given); inner
    boundaries are whole seconds, at least one second apart.

    Slices are even in time, `slices_per_stream` per stream, so a dense slice (a sale, a burst) keeps one
    worker busy while the others drain the rest. Each slice costs at most one partly filled page more than a
    single walk would, so `orders` (from `orders/count.json`) and the page size `limit` bound the count to
    slices of at least `min_pages_per_slice` pages; a small span is one slice.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("slice bounds must be timezone-aware datetimes")
    first = math.floor(start.timestamp())
    last = math.floor(end.timestamp())
    span_s = last - first
    pages = math.ceil(max(orders, 0) / max(limit, 1))
    count = min(streams * slices_per_stream, pages // max(min_pages_per_slice, 1), span_s)
    if streams <= 1 or count < 2:
        return [SliceFetch(0, start, end)]
    bounds = [first + (span_s * i) // count for i in range(count + 1)]
    moments = [start, *(datetime.fromtimestamp(b, UTC) for b in bounds[1:-1]), end]
    return [SliceFetch(i, moments[i], moments[i + 1]) for i in range(count)]


def stream_pages(
    slices: Sequence[SliceFetch],
    fetch_slice: Callable[[SliceFetch], Iterator[OrderPage]],
    *,
    workers: int,
    queue_pages: int,
    bind_stop: Callable[[threading.Event | None], None] = lambda stop: None,
    name: str = "page-stream",
) -> Iterator[OrderPage]:
    """Walk `slices` with `workers` threads, yielding their pages in arrival order, numbered 1..n.

    `fetch_slice` walks one slice; each of its pages is handed on with the slice's first request path.
    Workers put pages on a queue of at most `queue_pages`, so memory stays bounded whatever the span.
    `bind_stop` is called on each worker thread with the fetch's stop event (and None when the worker ends),
    so the fetching code can end its waits early. The first error of any worker stops the others and is
    raised here as it was raised; closing the iterator early stops and joins the workers too. Threads start
    on the first `next()`.
    """
    stream = _PageStream(slices, fetch_slice, queue_pages=queue_pages, bind_stop=bind_stop)
    threads = stream.start(workers, name)
    try:
        for number, page in enumerate(stream.arrivals(threads), start=1):
            yield dataclasses.replace(page, page_number=number)
    finally:
        stream.stop_and_join(threads)


class _PageStream:
    """The state one `stream_pages` call shares between its workers and the caller's thread."""

    def __init__(
        self,
        slices: Sequence[SliceFetch],
        fetch_slice: Callable[[SliceFetch], Iterator[OrderPage]],
        *,
        queue_pages: int,
        bind_stop: Callable[[threading.Event | None], None],
    ) -> None:
        self._fetch_slice = fetch_slice
        self._bind_stop = bind_stop
        self._work: queue.SimpleQueue[SliceFetch] = queue.SimpleQueue()
        for piece in slices:
            self._work.put(piece)
        self._pages: queue.Queue[OrderPage] = queue.Queue(maxsize=max(1, queue_pages))
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._errors_lock = threading.Lock()

    # -- worker threads --------------------------------------------------------------------------------

    def start(self, workers: int, name: str) -> list[threading.Thread]:
        """Start the worker threads (at least one)."""
        threads = [
            threading.Thread(target=self._work_loop, name=f"{name}-{i + 1}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in threads:
            thread.start()
        return threads

    def _work_loop(self) -> None:
        """One worker: walk slices off the queue until none is left or the fetch stops."""
        self._bind_stop(self._stop)
        try:
            while (piece := self._next_slice()) is not None:
                if not self._walk(piece):
                    return
        except FetchStopped:
            pass
        except BaseException as exc:  # handed to the caller's thread, which raises it
            self._fail(exc)
        finally:
            self._bind_stop(None)

    def _next_slice(self) -> SliceFetch | None:
        if self._stop.is_set():
            return None
        try:
            return self._work.get_nowait()
        except queue.Empty:
            return None

    def _walk(self, piece: SliceFetch) -> bool:
        """Queue the slice's pages, each named by the slice's first request; False once the fetch stopped."""
        first_path: str | None = None
        with contextlib.closing(self._fetch_slice(piece)) as walk:  # type: ignore[type-var]
            for page in walk:
                first_path = first_path or page.request_path
                if not self._offer(dataclasses.replace(page, request_path=first_path)):
                    return False
        return True

    def _offer(self, page: OrderPage) -> bool:
        """Put `page` on the queue, waiting for room; False when the fetch stopped first."""
        while not self._stop.is_set():
            try:
                self._pages.put(page, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _fail(self, exc: BaseException) -> None:
        """Keep the first error for the caller and stop every worker."""
        with self._errors_lock:
            if not self._errors:
                self._errors.append(exc)
        self._stop.set()

    # -- the caller's thread ----------------------------------------------------------------------------

    def arrivals(self, threads: list[threading.Thread]) -> Iterator[OrderPage]:
        """Pages as they arrive, until every worker is done; a worker's error is raised here."""
        while True:
            if self._errors:
                raise self._errors[0]
            try:
                page = self._pages.get(timeout=POLL_S)
            except queue.Empty:
                if self._finished(threads) and not self._errors:
                    return
                continue  # an error is raised at the top of the loop
            yield page

    def _finished(self, threads: list[threading.Thread]) -> bool:
        return not any(thread.is_alive() for thread in threads) and self._pages.empty()

    def stop_and_join(self, threads: list[threading.Thread]) -> None:
        """Stop the workers, free what is queued and wait for every thread to end."""
        self._stop.set()
        while True:  # a worker blocked on a full queue sees `stop` within POLL_S
            try:
                self._pages.get_nowait()
            except queue.Empty:
                break
        for thread in threads:
            thread.join()
