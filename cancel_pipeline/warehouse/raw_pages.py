"""The raw layer: Shopify order pages landed verbatim, one row per fetched page.

Every fetch is kept, so the tables derived from it can always be rebuilt and a version seen once is never
lost. `page_seq` orders the pages by landing time; the derived tables use it as their watermark.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from cancel_pipeline.shopify.pages import OrderPage

RAW_ORDER_PAGES_DDL = """
create sequence if not exists raw_order_pages_seq;
create table if not exists raw_order_pages (
    page_seq       bigint      not null default nextval('raw_order_pages_seq'),
    asset          varchar     not null,  -- raw asset name, or 'refresh' for pages fetched by order id
    partition_key  varchar     not null,  -- window key, 'first...last' for a range run, or the refresh run id
    window_start   timestamptz,           -- the Dagster window(s) this fetch covers (null for refresh)
    window_end     timestamptz,
    requested_min  timestamptz,           -- updated_at_min sent to Shopify: window_start less the overlap
    requested_max  timestamptz,           -- updated_at_max sent to Shopify
    page_number    integer     not null,  -- 1-based within one fetch
    fetched_at     timestamptz not null,
    api_version    varchar     not null,
    request_path   varchar     not null,  -- path and query of the first request; never a secret
    order_count    integer     not null,
    -- Uncompressed: a ZSTD-compressed body column is decompressed a whole vector (2,048 pages) at a time,
    -- a 2 GB allocation per scan at 1M orders whatever the batch; uncompressed pages are read one by one.
    body           json        using compression uncompressed not null,  -- the page as sent: {"orders": [...]}
    primary key (asset, partition_key, page_number)
);
"""

# --- Landing -------------------------------------------------------------------------------------------
#
# Fetching and landing are two phases. Pages are first spooled to local disk, one file per page, while they
# arrive over HTTP: no DuckDB connection is open, so a slow or rate-limited fetch never holds the warehouse's
# file lock, and memory stays at one page whatever the size of the window. Then one short transaction
# deletes the pages being replaced and inserts the spool, a bounded chunk of page files per statement, with
# `read_text(...)::json`: DuckDB reads and validates the bytes itself, so no Python loop touches them (this
# measured about twice as fast as `read_json` over newline-delimited pages).

DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024
"""Page bytes inserted per statement; bounds what one INSERT reads at a time."""


@dataclass(frozen=True)
class SpooledPage:
    """Where one page's body was spooled, with the page's fields."""

    path: str
    page_number: int
    request_path: str
    api_version: str
    fetched_at: datetime
    order_count: int
    size: int


class PageSpool:
    """Pages of one fetch, each body written verbatim to its own file in `directory` as it arrives.

    Iterating a spool gives its pages back; `chunks()` groups them for bounded INSERT statements.
    """

    def __init__(self, directory: Path, *, max_chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        self.directory = directory
        self.max_chunk_bytes = max_chunk_bytes
        self.spooled: list[SpooledPage] = []
        self.orders = 0
        self.bytes = 0

    @property
    def pages(self) -> int:
        """Number of pages spooled."""
        return len(self.spooled)

    def add(self, page: OrderPage) -> None:
        """Write one page's body to its own file."""
        path = self.directory / f"page-{len(self.spooled):06d}.json"
        path.write_bytes(page.body)
        self.spooled.append(
            SpooledPage(
                path=str(path),
                page_number=page.page_number,
                request_path=page.request_path,
                api_version=page.api_version,
                fetched_at=page.fetched_at,
                order_count=page.order_count,
                size=len(page.body),
            )
        )
        self.orders += page.order_count
        self.bytes += len(page.body)

    def extend(self, pages: Iterable[OrderPage]) -> PageSpool:
        """Append every page of `pages` (typically a client's page iterator)."""
        for page in pages:
            self.add(page)
        return self

    def chunks(self) -> Iterator[list[SpooledPage]]:
        """The spooled pages in order, in groups of at most `max_chunk_bytes` (at least one page each)."""
        chunk: list[SpooledPage] = []
        chunk_bytes = 0
        for page in self.spooled:
            if chunk and chunk_bytes + page.size > self.max_chunk_bytes:
                yield chunk
                chunk, chunk_bytes = [], 0
            chunk.append(page)
            chunk_bytes += page.size
        if chunk:
            yield chunk

    def __iter__(self) -> Iterator[OrderPage]:
        for page in self.spooled:
            yield OrderPage(
                page_number=page.page_number,
                request_path=page.request_path,
                api_version=page.api_version,
                fetched_at=page.fetched_at,
                body=Path(page.path).read_bytes(),
                order_count=page.order_count,
            )


@contextlib.contextmanager
def spooled_pages(
    pages: Iterable[OrderPage], *, max_chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[PageSpool]:
    """Spool `pages` into a temporary directory (under `TMPDIR`), removed when the block exits."""
    with tempfile.TemporaryDirectory(prefix="cancel-pipeline-pages-") as directory:
        yield PageSpool(Path(directory), max_chunk_bytes=max_chunk_bytes).extend(pages)


@dataclass(frozen=True)
class LandResult:
    """What one landing wrote."""

    pages: int
    orders: int
    body_bytes: int
    replaced_pages: int
    """Rows of earlier fetches that this landing replaced (same asset, window within the new one)."""


def ensure_raw_order_pages(con: duckdb.DuckDBPyConnection) -> None:
    """Create `raw_order_pages` and its sequence when missing."""
    con.execute(RAW_ORDER_PAGES_DDL)


def land_pages(
    con: duckdb.DuckDBPyConnection,
    *,
    asset: str,
    partition_key: str,
    window_start: datetime | None,
    window_end: datetime | None,
    requested_min: datetime | None,
    requested_max: datetime | None,
    pages: Iterable[OrderPage],
) -> LandResult:
    """Land one fetch in `raw_order_pages`, replacing what it supersedes, in one transaction.

    Replaced: the rows of the same `asset` landed under the same `partition_key`, and, for a windowed fetch,
    every fetch of that asset whose `[window_start, window_end)` lies within the new one. So re-materializing
    a window (or a range) gives the same rows, and a failure at any point, a crash included, leaves the
    previous contents. A re-import by order id passes `asset='refresh'`, its run id as `partition_key` and
    null window and requested bounds.

    `pages` should be a `PageSpool` filled before the connection was opened; any other iterable is spooled
    here first, which is fine for a handful of pages but holds the connection during the iteration.

    DuckDB holds an open transaction's new rows in memory until COMMIT, so the memory of one landing grows
    with the size of the fetch (about four times its bytes): a very large range is better run as several
    ranges.
    """
    if (window_start is None) != (window_end is None):
        raise ValueError("window_start and window_end are both set or both None")
    spooled = contextlib.nullcontext(pages) if isinstance(pages, PageSpool) else spooled_pages(pages)
    with spooled as spool:
        return _land_spool(
            con, asset, partition_key, window_start, window_end, requested_min, requested_max, spool
        )


def _land_spool(
    con: duckdb.DuckDBPyConnection,
    asset: str,
    partition_key: str,
    window_start: datetime | None,
    window_end: datetime | None,
    requested_min: datetime | None,
    requested_max: datetime | None,
    spool: PageSpool,
) -> LandResult:
    ensure_raw_order_pages(con)
    con.execute("begin transaction")
    try:
        [(replaced,)] = con.execute(
            """
            delete from raw_order_pages
            where asset = $asset
              and (partition_key = $key or (window_start >= $start and window_end <= $end))
            """,
            {"asset": asset, "key": partition_key, "start": window_start, "end": window_end},
        ).fetchall()
        for chunk in spool.chunks():
            con.execute(
                """
                insert into raw_order_pages (asset, partition_key, window_start, window_end, requested_min,
                    requested_max, page_number, fetched_at, api_version, request_path, order_count, body)
                select $asset, $key, $start, $end, $rmin, $rmax,
                    page.page_number, page.fetched_at, page.api_version, page.request_path, page.order_count,
                    file.content::json
                from read_text($files) as file
                join (
                    select unnest($files) as filename, unnest($numbers) as page_number,
                        unnest($fetched::timestamptz[]) as fetched_at, unnest($versions) as api_version,
                        unnest($paths) as request_path, unnest($counts) as order_count
                ) as page using (filename)
                order by page.page_number
                """,
                {
                    "asset": asset,
                    "key": partition_key,
                    "start": window_start,
                    "end": window_end,
                    "rmin": requested_min,
                    "rmax": requested_max,
                    "files": [page.path for page in chunk],
                    "numbers": [page.page_number for page in chunk],
                    "fetched": [page.fetched_at for page in chunk],
                    "versions": [page.api_version for page in chunk],
                    "paths": [page.request_path for page in chunk],
                    "counts": [page.order_count for page in chunk],
                },
            )
        con.execute("commit")
    except BaseException:
        # A failed COMMIT has already ended the transaction; the original error is the one to report.
        with contextlib.suppress(duckdb.TransactionException):
            con.execute("rollback")
        raise
    return LandResult(pages=spool.pages, orders=spool.orders, body_bytes=spool.bytes, replaced_pages=replaced)
