"""Concurrent page streams: one `updated_at` span fetched as several slices walked at the same time.

Why: Shopify takes 200-500 ms to answer a 250-order page, so a single cursor gets 2-5 pages a second while
a Plus bucket leaks 20 requests a second. A cursor cannot be split (its `page_info` is opaque), but the span
can: each slice is its own `orders.json` query with its own cursor, and slices can be walked concurrently.

How the span is cut (`plan_slices`): Shopify's `updated_at_min` / `updated_at_max` are inclusive and its
timestamps whole seconds (the reference, §1 and §7.4; the demo store compares epoch seconds). Adjacent slices
share their boundary second, `[b0, b1], [b1, b2], ...`, the first starting at the span's start and the last
ending at its end, so their union is exactly the span and nothing is missed even if a store kept fractions
of a second (an order at `b1 + 0.5` is still inside `[b1, b2]`). Only orders updated in a boundary second
can come twice; they are the same version, which the warehouse merges. Slices are even in time, and there
are more of them than workers (`SLICES_PER_STREAM` each): workers pull the next slice from a queue, so a
dense slice (a sale, a burst) keeps one worker busy while the others drain the rest. Each slice costs at
most one partly filled page more than a single walk would, so a span is cut only into slices of at least
`MIN_PAGES_PER_SLICE` pages (from one `orders/count.json`): at most a few % more requests, and a small span
is one stream.

How pages come back (`stream_pages`): workers put pages on a bounded queue (a few pages: memory stays
bounded whatever the span) and the caller's thread takes them in arrival order and renumbers them 1..n. The
first error of any worker stops the others (their waits wake up, their next request is not sent) and is
raised to the caller as it was raised; closing the iterator early stops and joins the workers too. No
worker thread outlives the iterator.
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

    `orders` is how many orders the span holds (`orders/count.json`) and `limit` the page size: together
    they say how many pages the span has, which bounds the number of slices so the extra partial pages stay
    a small share. The first slice starts at `start` and the last ends at `end` exactly (as given); inner
    boundaries are whole seconds, at least one second apart.
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

    `fetch_slice` walks one slice (page numbers and request paths of its pages are replaced here);
    `bind_stop` is called on each worker thread with the fetch's stop event (and None when the worker ends),
    so the fetching code can end its waits early. Threads start on the first `next()`.
    """
    work: queue.SimpleQueue[SliceFetch] = queue.SimpleQueue()
    for piece in slices:
        work.put(piece)
    pages: queue.Queue[OrderPage] = queue.Queue(maxsize=max(1, queue_pages))
    stop = threading.Event()
    errors: list[BaseException] = []
    errors_lock = threading.Lock()

    def offer(page: OrderPage) -> bool:
        while not stop.is_set():
            try:
                pages.put(page, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        bind_stop(stop)
        try:
            while not stop.is_set():
                try:
                    piece = work.get_nowait()
                except queue.Empty:
                    return
                first_path: str | None = None
                with contextlib.closing(fetch_slice(piece)) as walk:  # type: ignore[type-var]
                    for page in walk:
                        first_path = first_path or page.request_path
                        if not offer(dataclasses.replace(page, request_path=first_path)):
                            return
        except FetchStopped:
            pass
        except BaseException as exc:  # handed to the caller's thread, which raises it
            with errors_lock:
                if not errors:
                    errors.append(exc)
            stop.set()
        finally:
            bind_stop(None)

    threads = [
        threading.Thread(target=run, name=f"{name}-{i + 1}", daemon=True) for i in range(max(1, workers))
    ]
    for thread in threads:
        thread.start()
    try:
        number = 0
        while True:
            if errors:
                raise errors[0]
            try:
                page = pages.get(timeout=POLL_S)
            except queue.Empty:
                finished = not any(thread.is_alive() for thread in threads) and pages.empty()
                if finished and not errors:
                    return
                continue  # an error is raised at the top of the loop
            number += 1
            yield dataclasses.replace(page, page_number=number)
    finally:
        stop.set()
        while True:  # free what is queued; a worker blocked on a full queue sees `stop` within POLL_S
            try:
                pages.get_nowait()
            except queue.Empty:
                break
        for thread in threads:
            thread.join()
