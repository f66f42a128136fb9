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
import orjson

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
    body           json        not null,  -- the page as Shopify sent it: {"orders": [...]}
    primary key (asset, partition_key, page_number)
);
"""

# --- Landing -------------------------------------------------------------------------------------------
#
# Fetching and landing are two phases. Pages are first spooled to newline-delimited JSON files on local
# disk while they arrive over HTTP (no DuckDB connection is open, so a slow or rate-limited fetch never holds
# the warehouse's file lock, and memory stays at one page whatever the size of the window). Then one short
# transaction deletes the pages being replaced and inserts the spool with one `read_json` statement per
# spool file: DuckDB parses and copies the bytes itself, with the schema given, so no Python loop touches the
# rows and memory stays bounded by one spool file.


DEFAULT_SPOOL_FILE_BYTES = 64 * 1024 * 1024
"""A spool file is closed once it holds this much; each file is one INSERT, so this bounds landing memory."""

_SPOOL_COLUMNS = (
    "{page_number: 'INTEGER', request_path: 'VARCHAR', api_version: 'VARCHAR', "
    "fetched_at: 'TIMESTAMPTZ', order_count: 'INTEGER', body: 'JSON'}"
)
# A single Shopify page (250 orders) is a few MB; the cap only has to exceed the largest page.
_MAX_PAGE_BYTES = 1024 * 1024 * 1024


class PageSpool:
    """Pages of one fetch, written to newline-delimited JSON files in `directory` as they arrive.

    Each line is one page: its header fields and, under `body`, the page's bytes as received (a body that
    spans several lines is re-serialized compactly first; DuckDB's JSON column stores it compactly anyway,
    keeping its content and key order). Iterating a spool gives its pages back.
    """

    def __init__(self, directory: Path, *, max_file_bytes: int = DEFAULT_SPOOL_FILE_BYTES) -> None:
        self.directory = directory
        self.max_file_bytes = max_file_bytes
        self.files: list[Path] = []
        self.pages = 0
        self.orders = 0
        self.bytes = 0
        self._current: object | None = None
        self._current_bytes = 0

    def add(self, page: OrderPage) -> None:
        """Append one page, starting a new file when the current one is full."""
        body = page.body
        if b"\n" in body or b"\r" in body:
            body = orjson.dumps(orjson.loads(body))
        header = orjson.dumps(
            {
                "page_number": page.page_number,
                "request_path": page.request_path,
                "api_version": page.api_version,
                "fetched_at": page.fetched_at.isoformat(),
                "order_count": page.order_count,
            }
        )
        line = header[:-1] + b',"body":' + body + b"}\n"
        if self._current is None or self._current_bytes + len(line) > self.max_file_bytes:
            self._open_next_file()
        self._current.write(line)  # type: ignore[attr-defined]
        self._current_bytes += len(line)
        self.pages += 1
        self.orders += page.order_count
        self.bytes += len(page.body)

    def extend(self, pages: Iterable[OrderPage]) -> PageSpool:
        """Append every page of `pages` (typically a client's page iterator) and finish writing."""
        for page in pages:
            self.add(page)
        self.flush()
        return self

    def flush(self) -> None:
        """Close the file being written so DuckDB can read every page."""
        if self._current is not None:
            self._current.close()  # type: ignore[attr-defined]
            self._current = None

    def __iter__(self) -> Iterator[OrderPage]:
        self.flush()
        for path in self.files:
            with path.open("rb") as lines:
                for line in lines:
                    record = orjson.loads(line)
                    yield OrderPage(
                        page_number=record["page_number"],
                        request_path=record["request_path"],
                        api_version=record["api_version"],
                        fetched_at=datetime.fromisoformat(record["fetched_at"]),
                        body=orjson.dumps(record["body"]),
                        order_count=record["order_count"],
                    )

    def _open_next_file(self) -> None:
        self.flush()
        path = self.directory / f"pages-{len(self.files):05d}.jsonl"
        self.files.append(path)
        self._current = path.open("wb")
        self._current_bytes = 0


@contextlib.contextmanager
def spooled_pages(
    pages: Iterable[OrderPage], *, max_file_bytes: int = DEFAULT_SPOOL_FILE_BYTES
) -> Iterator[PageSpool]:
    """Spool `pages` into a temporary directory (under `TMPDIR`), removed when the block exits."""
    with tempfile.TemporaryDirectory(prefix="cancel-pipeline-pages-") as directory:
        yield PageSpool(Path(directory), max_file_bytes=max_file_bytes).extend(pages)


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
    """
    if (window_start is None) != (window_end is None):
        raise ValueError("window_start and window_end are both set or both None")
    if isinstance(pages, PageSpool):
        return _land_spool(
            con, asset, partition_key, window_start, window_end, requested_min, requested_max, pages
        )
    with spooled_pages(pages) as spool:
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
    spool.flush()
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
        for path in spool.files:
            con.execute(
                f"""
                insert into raw_order_pages (asset, partition_key, window_start, window_end, requested_min,
                    requested_max, page_number, fetched_at, api_version, request_path, order_count, body)
                select $asset, $key, $start, $end, $rmin, $rmax,
                    page_number, fetched_at, api_version, request_path, order_count, body
                from read_json({_sql_string(str(path))}, format = 'newline_delimited', records = true,
                    columns = {_SPOOL_COLUMNS}, maximum_object_size = {_MAX_PAGE_BYTES})
                """,
                {
                    "asset": asset,
                    "key": partition_key,
                    "start": window_start,
                    "end": window_end,
                    "rmin": requested_min,
                    "rmax": requested_max,
                },
            )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return LandResult(pages=spool.pages, orders=spool.orders, body_bytes=spool.bytes, replaced_pages=replaced)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
