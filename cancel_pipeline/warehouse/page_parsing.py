"""Parsing landed pages into `raw_order_objects` rows, on every core the warehouse connection may use.

DuckDB runs `read_text(files)` -> `json_transform` on one thread for a few dozen pages, and parsing is most
of a landing's cost (benchmarks/RESULTS.md), so a landing's pages go in chunks (`BackgroundParser`, also fed while the fetch goes on) to
worker threads, each with its own in-memory DuckDB that parses, validates and types the chunk
(`typed_orders`) and writes its rows to a Parquet file in a scratch folder. The landing's transaction then
appends every file's rows with one INSERT. DuckDB releases the GIL while it runs, so the workers run in
parallel; each holds one chunk at a time, so memory does not grow with the size of a landing.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb

from cancel_pipeline.warehouse.graphql_orders import (
    COMPLETE_BULK_REJECTS_SQL,
    GRAPHQL_OBJECT_PATHS,
    INSERT_BULK_OBJECTS_SQL,
    INSERT_GRAPHQL_OBJECTS_SQL,
)
from cancel_pipeline.warehouse.typed_orders import (
    INSERT_OBJECTS_SQL,
    RAW_ORDER_OBJECTS_DDL,
    complete_rejects_sql,
)

WORKER_CHUNK_BYTES = 16 * 1024 * 1024
"""Page bytes one worker parses in one statement: parsing can hold about ten times as much (16 MB of a
Plus-sized store's pages did not fit in 128 MB)."""
WORKER_MEMORY_LIMIT = "384MB"

REST_SHAPE = "rest"
GRAPHQL_SHAPE = "graphql"
BULK_SHAPE = "bulk"


@dataclass(frozen=True)
class PageFile:
    """A landed page to parse: its page_seq, its file and the file's size."""

    page_seq: int
    path: str
    size: int
    shape: str = REST_SHAPE
    """How the body is laid out (`page_shape`): which SQL reads it."""


def page_shape(api: str, operation: str) -> str:
    """The layout of a page's body from the API and operation that produced it (`raw_order_pages` records
    both): `rest` (`{"orders": [...]}`), `graphql` (an answer with its completions) or `bulk` (a chunk of a
    bulk operation's JSONL)."""
    if api == "rest":
        return REST_SHAPE
    if api == "graphql":
        return BULK_SHAPE if operation == "bulk" else GRAPHQL_SHAPE
    raise ValueError(f"raw page from unknown API {api!r} (operation {operation!r}); expected rest or graphql")


@dataclass(frozen=True)
class _Shape:
    insert_sql: str
    object_paths: tuple[str, ...]
    line_items_key: str
    jsonl: bool = False


_SHAPES = {
    REST_SHAPE: _Shape(INSERT_OBJECTS_SQL, ("$.orders",), "line_items"),
    GRAPHQL_SHAPE: _Shape(INSERT_GRAPHQL_OBJECTS_SQL, GRAPHQL_OBJECT_PATHS, "lineItems"),
    BULK_SHAPE: _Shape(INSERT_BULK_OBJECTS_SQL, (), "lineItems", jsonl=True),
}


def insert_objects(con: duckdb.DuckDBPyConnection, pages: Sequence[PageFile]) -> None:
    """Parse, validate and type some pages' order objects into `raw_order_objects` of `con`; rejects keep
    their object verbatim. `pages` are in page_seq order; each page is read by the SQL of its shape."""
    for shape_name, group in itertools.groupby(sorted(pages, key=lambda p: p.shape), key=lambda p: p.shape):
        _insert_shape(con, _SHAPES[shape_name], list(group))


def _insert_shape(con: duckdb.DuckDBPyConnection, shape: _Shape, pages: list[PageFile]) -> None:
    seqs = [page.page_seq for page in pages]
    con.execute(shape.insert_sql, {"files": [page.path for page in pages], "seqs": seqs})
    file_of = {page.page_seq: page.path for page in pages}
    rejects: dict[tuple[int, str], list[int]] = {}
    for page_seq, position in con.execute(
        """
        select page_seq, position from raw_order_objects
        where page_seq in (select unnest($seqs)) and reason is not null
        order by page_seq, position
        """,
        {"seqs": seqs},
    ).fetchall():
        rejects.setdefault((int(page_seq), file_of[int(page_seq)]), []).append(int(position))
    if rejects and shape.jsonl:
        con.execute(
            COMPLETE_BULK_REJECTS_SQL,
            {"files": [path for _, path in rejects], "seqs": [page_seq for page_seq, _ in rejects]},
        )
    elif rejects:
        con.execute(
            complete_rejects_sql(
                rejects, object_paths=shape.object_paths, line_items_key=shape.line_items_key
            )
        )


def parse_pages(pages: Sequence[PageFile], scratch: Path, *, max_chunk_bytes: int, threads: int) -> list[str]:
    """Parse `pages` on up to `threads` workers into Parquet files of `raw_order_objects` rows in `scratch`
    (which must exist); returns the files. A page that is not JSON raises DuckDB's error."""
    parser = BackgroundParser(scratch, threads=threads, max_chunk_bytes=max_chunk_bytes)
    try:
        for page in pages:
            parser.add(page)
        return parser.files()
    finally:
        parser.close()


def append_parsed(
    con: duckdb.DuckDBPyConnection, files: Sequence[str], page_seqs: Sequence[int] | None = None
) -> None:
    """Append the rows of `parse_pages`'s files to `raw_order_objects` of `con` (in its open transaction).

    With `page_seqs`, the files' `page_seq` is a 1-based position standing in for `page_seqs[position - 1]`
    (pages parsed while they were fetched, before they had a page_seq).
    """
    if not files:
        return
    if page_seqs is None:
        con.execute(
            "insert into raw_order_objects by name select * from read_parquet($files)", {"files": list(files)}
        )
        return
    con.execute(
        """
        insert into raw_order_objects by name
        select o.* replace (m.page_seq as page_seq)
        from read_parquet($files) o
        join (select unnest($seqs) as page_seq, generate_subscripts($seqs, 1) as position) m
            on o.page_seq = m.position
        """,
        {"files": list(files), "seqs": list(page_seqs)},
    )


def parse_into(
    con: duckdb.DuckDBPyConnection, pages: Sequence[PageFile], scratch: Path, *, max_chunk_bytes: int
) -> None:
    """`parse_pages` then `append_parsed`, with as many workers as `con`'s `threads` setting."""
    files = parse_pages(pages, scratch, max_chunk_bytes=max_chunk_bytes, threads=connection_threads(con))
    append_parsed(con, files)


def connection_threads(con: duckdb.DuckDBPyConnection) -> int:
    """The `threads` setting of `con`: how many cores the warehouse connection is allowed."""
    [(threads,)] = con.execute("select current_setting('threads')::integer").fetchall()
    return int(threads)


class BackgroundParser:
    """Parses pages while they are still being fetched, so that landing only appends parsed rows.

    `add` queues a page (its page_seq, or its spool position standing in for it); pages go to the `threads`
    workers in chunks of at most `max_chunk_bytes / threads` (and WORKER_CHUNK_BYTES), so memory stays at a
    few chunks however many pages come, and a window of a few dozen pages still keeps every worker busy. A
    fetch spends most of its time waiting for Shopify or for the rate limit, and parsing in that time takes
    it out of the landing. `files()` waits for the workers and returns their Parquet files, raising the
    first worker's error (e.g. a page that is not JSON).
    """

    def __init__(self, scratch: Path, *, threads: int, max_chunk_bytes: int) -> None:
        threads = max(1, threads)
        self._scratch = scratch
        self._chunk_bytes = max(1, min(max_chunk_bytes // threads, WORKER_CHUNK_BYTES))
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="parse-pages")
        self._futures: list[Future[Path]] = []
        self._pending: list[PageFile] = []
        self._pending_bytes = 0

    def add(self, page: PageFile) -> None:
        """Queue one page; a full chunk starts parsing at once."""
        if self._pending and self._pending_bytes + page.size > self._chunk_bytes:
            self._submit()
        self._pending.append(page)
        self._pending_bytes += page.size

    def files(self) -> list[str]:
        """Parse what is still queued, wait for every chunk, and return the Parquet files in order."""
        self._submit()
        return [str(future.result()) for future in self._futures]

    def close(self) -> None:
        """Stop: chunks not started are dropped, running ones finish."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self) -> None:
        if self._pending:
            path = self._scratch / f"chunk-{len(self._futures):05d}.parquet"
            self._futures.append(self._pool.submit(_parse_chunk, self._pending, path))
            self._pending, self._pending_bytes = [], 0


def _parse_chunk(pages: list[PageFile], path: Path) -> Path:
    with _worker_connection() as worker:
        try:
            insert_objects(worker, pages)
            worker.execute(f"copy raw_order_objects to '{_literal(path)}' (format parquet)")
        finally:
            # Dropped, not emptied: an in-memory table keeps the blocks of deleted rows.
            worker.execute("drop table raw_order_objects")
            worker.execute(RAW_ORDER_OBJECTS_DDL)
    return path


# A worker's in-memory DuckDB is kept for the next chunk, in this landing or the next: the first parse on
# a new connection cost about five times the next ones (0.69 s against 0.14 s for 40 pages).
_IDLE_WORKERS: queue.SimpleQueue[tuple[int, duckdb.DuckDBPyConnection]] = queue.SimpleQueue()
_MAX_IDLE_WORKERS = max(2, os.cpu_count() or 1)


@contextlib.contextmanager
def _worker_connection() -> Iterator[duckdb.DuckDBPyConnection]:
    worker = None
    while worker is None:
        try:
            pid, idle = _IDLE_WORKERS.get_nowait()
        except queue.Empty:
            worker = _new_worker()
        else:
            if pid == os.getpid():  # a connection inherited across fork is unusable
                worker = idle
    try:
        yield worker
    except BaseException:
        worker.close()
        raise
    if _IDLE_WORKERS.qsize() < _MAX_IDLE_WORKERS:
        _IDLE_WORKERS.put((os.getpid(), worker))
    else:
        worker.close()


def _new_worker() -> duckdb.DuckDBPyConnection:
    # One chunk of pages (WORKER_CHUNK_BYTES) needs well under this; the limit keeps idle workers small.
    worker = duckdb.connect(config={"threads": 1, "memory_limit": WORKER_MEMORY_LIMIT})
    # Timestamps without an offset are read as UTC, as on the warehouse connection.
    worker.execute("set TimeZone = 'UTC'")
    worker.execute(RAW_ORDER_OBJECTS_DDL)
    return worker


def _literal(path: Path) -> str:
    return str(path).replace("'", "''")
