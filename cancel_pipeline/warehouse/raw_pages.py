"""The raw layer: Shopify order pages landed verbatim, one row per fetched page, parsed once on landing.

Every fetch is kept, so the tables derived from it can always be rebuilt and a version seen once is never
lost. `page_seq` orders the pages by landing time; the derived tables use it as their watermark.

Three parts, written in one DuckDB transaction per landing:

- the page store: each body exactly as Shopify sent it, one file per page, in a folder beside the DuckDB
  file (`<name>.raw_pages/<asset>/<landing>/page-000001.json`). Bodies live outside the DuckDB file
  because DuckDB rewrites a row group's columns on every checkpoint that appended to it, so ~1 MB bodies
  as rows made every landing rewrite every page ever landed (figures in benchmarks/RESULTS.md). A file is
  written once and never rewritten.
- `raw_order_pages`: one row per page with where and when it was fetched, and `body_file`, its file in
  the page store. `raw_order_page_bodies` (a view) shows each row with its `body`.
- `raw_order_objects`: one row per order object of each page, parsed, validated and typed once: either the
  typed fields the derivation reads, or a reject reason with the object verbatim. Landing has to parse
  each page anyway to know it is JSON; keeping what that parse finds means no later step parses a page
  again (`typed_orders` holds the SQL).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import duckdb

from cancel_pipeline.warehouse.connection import pause_for_kill_probe
from cancel_pipeline.warehouse.page_parsing import (
    BackgroundParser,
    PageFile,
    append_parsed,
    connection_threads,
    page_shape,
    parse_into,
    parse_pages,
)
from cancel_pipeline.warehouse.typed_orders import RAW_ORDER_OBJECTS_DDL

PAGE_STORE_SUFFIX = ".raw_pages"
INCOMING = ".incoming"
"""Folder of the page store where fetches are spooled before their landing commits."""
PARSED = "parsed"
"""Folder of a spool holding its pages' parsed rows (Parquet), written while the fetch goes on."""
STALE_SPOOL_SECONDS = 24 * 3600
"""A spool folder this old belongs to no running fetch (a process killed mid-fetch left it)."""

RAW_ORDER_PAGES_DDL = f"""
create sequence if not exists raw_order_pages_seq;
create table if not exists raw_order_pages (
    page_seq       bigint      not null primary key,
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
    body_file      varchar     not null,  -- the page as sent, in the page store: <asset>/<landing>/page-N.json
    body_bytes     bigint      not null,
    api            varchar     not null default 'rest',    -- the API that produced the page: rest or graphql
    operation      varchar     not null default 'orders',  -- REST orders; GraphQL orders, nodes or bulk
    unique (asset, partition_key, page_number)
);
-- Databases created before pages recorded their API: every page then came from REST's orders.json.
alter table raw_order_pages add column if not exists api varchar default 'rest';
alter table raw_order_pages add column if not exists operation varchar default 'orders';
{RAW_ORDER_OBJECTS_DDL}"""

# --- The page store ------------------------------------------------------------------------------------


def page_store_for(database: str | Path) -> Path:
    """The page store of the DuckDB file `database`: `data/x.duckdb` -> `data/x.raw_pages`."""
    path = Path(database)
    return path.with_name(path.stem + PAGE_STORE_SUFFIX)


def page_store_root(con: duckdb.DuckDBPyConnection) -> Path:
    """The page store of the database `con` is connected to (its folder is created when missing)."""
    row = con.execute(
        "select path from duckdb_databases() where database_name = current_database()"
    ).fetchone()
    if not row or not row[0]:
        raise ValueError("the raw layer needs a DuckDB file (its page store sits beside it), not :memory:")
    root = page_store_for(row[0]).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def ensure_bodies_view(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """Create `raw_order_page_bodies` (every raw page with its `body` read from the page store) when it is
    missing or points at another folder (the DuckDB file was moved with its page store).

    The view reads every file of the store when queried; to read a few pages, filter `raw_order_pages` first
    and read their files (`read_text('<store>/' || body_file)`, or `page_bodies` from Python).
    """
    pattern = str(root / "*" / "*" / "page-*.json").replace("'", "''")
    prefix = (str(root) + os.sep).replace("'", "''")
    existing = con.execute(
        "select sql from duckdb_views() where view_name = 'raw_order_page_bodies' and schema_name = 'main'"
    ).fetchone()
    if existing and pattern in existing[0]:
        return
    con.execute(
        f"""
        create or replace view raw_order_page_bodies as
        select p.*, f.content as body
        from raw_order_pages p
        join read_text('{pattern}') f on f.filename = '{prefix}' || p.body_file
        """
    )


def page_bodies(con: duckdb.DuckDBPyConnection, page_seqs: Iterable[int]) -> dict[int, str]:
    """The verbatim bodies of the given pages, read from the page store."""
    wanted = sorted(set(page_seqs))
    if not wanted:
        return {}
    root = page_store_root(con)
    rows = con.execute(
        "select page_seq, body_file from raw_order_pages where page_seq in (select unnest($seqs))",
        {"seqs": wanted},
    ).fetchall()
    return {int(seq): (root / body_file).read_text() for seq, body_file in rows}


# --- Spooling ------------------------------------------------------------------------------------------
#
# Fetching and landing are two phases. Pages are first spooled to disk, one file per page, while they
# arrive over HTTP: no DuckDB connection is open, so a slow or rate-limited fetch never holds the warehouse's
# file lock, and memory stays at one page whatever the size of the window. Spooled into the page store's
# `.incoming` folder, the files become the landed pages by a rename.

DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024
"""Page bytes parsed per statement, over all threads; bounds what parsing holds in memory at a time."""


class FetchedPage(Protocol):
    """A page as a client hands it over: the body verbatim and where it came from."""

    @property
    def page_number(self) -> int: ...
    @property
    def request_path(self) -> str: ...
    @property
    def api_version(self) -> str: ...
    @property
    def fetched_at(self) -> datetime: ...
    @property
    def body(self) -> bytes: ...
    @property
    def order_count(self) -> int: ...


def _api_of(page: FetchedPage) -> tuple[str, str]:
    """The API and operation a page came from; a page object that does not say came from REST's orders."""
    return str(getattr(page, "api", "rest")), str(getattr(page, "operation", "orders"))


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
    api: str = "rest"
    operation: str = "orders"

    @property
    def name(self) -> str:
        """The file's name, kept when the spool becomes a landing in the page store."""
        return Path(self.path).name


class PageSpool:
    """Pages of one fetch, each body written verbatim to its own file in `directory` as it arrives.

    With a `parser`, each page is also handed to it, so it is parsed while the fetch goes on. Iterating a
    spool gives its pages back.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        parser: BackgroundParser | None = None,
    ) -> None:
        self.directory = directory
        self.max_chunk_bytes = max_chunk_bytes
        self.parser = parser
        self.spooled: list[SpooledPage] = []
        self.orders = 0
        self.bytes = 0

    @property
    def pages(self) -> int:
        """Number of pages spooled."""
        return len(self.spooled)

    def add(self, page: FetchedPage) -> None:
        """Write one page's body to its own file."""
        path = self.directory / f"page-{len(self.spooled) + 1:06d}.json"
        path.write_bytes(page.body)
        api, operation = _api_of(page)
        self.spooled.append(
            SpooledPage(
                path=str(path),
                page_number=page.page_number,
                request_path=page.request_path,
                api_version=page.api_version,
                fetched_at=page.fetched_at,
                order_count=page.order_count,
                size=len(page.body),
                api=api,
                operation=operation,
            )
        )
        self.orders += page.order_count
        self.bytes += len(page.body)
        if self.parser is not None:
            self.parser.add(
                PageFile(len(self.spooled), str(path), len(page.body), page_shape(api, operation))
            )

    def extend(self, pages: Iterable[FetchedPage]) -> PageSpool:
        """Append every page of `pages` (typically a client's page iterator)."""
        for page in pages:
            self.add(page)
        return self

    def bodies(self) -> Iterator[bytes]:
        """The spooled bodies, in order, read back from their files."""
        for page in self.spooled:
            yield Path(page.path).read_bytes()


@contextlib.contextmanager
def spooled_pages(
    pages: Iterable[FetchedPage],
    *,
    database: str | Path | None = None,
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    parse_threads: int | None = None,
) -> Iterator[PageSpool]:
    """Spool `pages` into a fresh folder, removed when the block exits unless a landing took its files.

    With `database`, the folder is in that file's page store, so landing moves the files by a rename, and
    pages are parsed on `parse_threads` threads (default: one per core) while the rest are fetched; otherwise
    it is under `TMPDIR`, and landing copies the files and parses them.
    """
    if database is None:
        parent = Path(tempfile.gettempdir())
    else:
        parent = page_store_for(database) / INCOMING
        parent.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="fetch-", dir=parent))
    parser = None
    if database is not None:
        threads = parse_threads or os.cpu_count() or 1
        (directory / PARSED).mkdir()
        parser = BackgroundParser(directory / PARSED, threads=threads, max_chunk_bytes=max_chunk_bytes)
    try:
        yield PageSpool(directory, max_chunk_bytes=max_chunk_bytes, parser=parser).extend(pages)
    finally:
        if parser is not None:
            parser.close()
        shutil.rmtree(directory, ignore_errors=True)


# --- Landing -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LandResult:
    """What one landing wrote."""

    pages: int
    orders: int
    body_bytes: int
    replaced_pages: int
    """Rows of earlier fetches that this landing replaced (same asset, window within the new one)."""


def ensure_raw_order_pages(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw tables, their sequence and the bodies view when missing."""
    con.execute(RAW_ORDER_PAGES_DDL)
    with contextlib.suppress(ValueError):  # an in-memory database has no page store, hence no view
        ensure_bodies_view(con, page_store_root(con))


def land_pages(
    con: duckdb.DuckDBPyConnection,
    *,
    asset: str,
    partition_key: str,
    window_start: datetime | None,
    window_end: datetime | None,
    requested_min: datetime | None,
    requested_max: datetime | None,
    pages: Iterable[FetchedPage],
) -> LandResult:
    """Land one fetch in the raw layer, replacing what it supersedes, in one transaction.

    Replaced: the pages of the same `asset` landed under the same `partition_key`, and, for a windowed fetch,
    every fetch of that asset whose `[window_start, window_end)` lies within the new one. So re-materializing
    a window (or a range) gives the same rows, and a failure at any point, a crash included, leaves the
    previous contents. A re-import by order id passes `asset='refresh'`, its run id as `partition_key` and
    null window and requested bounds. A page that is not JSON fails the whole landing.

    `pages` should be a `PageSpool` filled before the connection was opened (ideally with `database=` so
    its files move into the page store by a rename); any other iterable is spooled here first, which is
    fine for a handful of pages but holds the connection during the iteration.
    """
    if (window_start is None) != (window_end is None):
        raise ValueError("window_start and window_end are both set or both None")
    spooled = contextlib.nullcontext(pages) if isinstance(pages, PageSpool) else spooled_pages(pages)
    with spooled as spool:
        replace = (
            "asset = $asset and (partition_key = $key or (window_start >= $start and window_end <= $end))",
            {"asset": asset, "key": partition_key, "start": window_start, "end": window_end},
        )
        bounds = {
            "window_start": window_start,
            "window_end": window_end,
            "requested_min": requested_min,
            "requested_max": requested_max,
        }
        return _land_spool(con, asset, partition_key, bounds, spool, replace)


def land_page(
    con: duckdb.DuckDBPyConnection,
    page: FetchedPage,
    *,
    asset: str,
    partition_key: str,
) -> int:
    """Land one page under (asset, partition_key, its page_number), replacing only that page; its page_seq.

    For re-importing or hand-building a single page; fetches go through `land_pages`.
    """
    with spooled_pages([page]) as spool:
        replace = (
            "asset = $asset and partition_key = $key and page_number = $number",
            {"asset": asset, "key": partition_key, "number": page.page_number},
        )
        bounds = dict.fromkeys(("window_start", "window_end", "requested_min", "requested_max"))
        _land_spool(con, asset, partition_key, bounds, spool, replace)
    [(page_seq,)] = con.execute(
        "select page_seq from raw_order_pages where asset = ? and partition_key = ? and page_number = ?",
        [asset, partition_key, page.page_number],
    ).fetchall()
    return int(page_seq)


_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def _land_spool(
    con: duckdb.DuckDBPyConnection,
    asset: str,
    partition_key: str,
    bounds: dict[str, datetime | None],
    spool: PageSpool,
    replace: tuple[str, dict],
) -> LandResult:
    ensure_raw_order_pages(con)
    root = page_store_root(con)
    landing = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"
    relative_dir = f"{_SAFE_NAME.sub('_', asset)}/{landing}"
    landed_dir = root / relative_dir
    condition, params = replace
    page_seqs = [
        int(row[0])
        for row in con.execute(
            "select nextval('raw_order_pages_seq') from range($n)", {"n": spool.pages}
        ).fetchall()
    ]
    with contextlib.ExitStack() as scratch_folder:
        # Parsed before the transaction opens (or while fetching): the write lock is held only for writes.
        if spool.parser is not None:
            files = spool.parser.files()
        else:
            pages = [
                PageFile(number, page.path, page.size, page_shape(page.api, page.operation))
                for number, page in enumerate(spool.spooled, 1)
            ]
            files = parse_pages(
                pages,
                scratch_folder.enter_context(_scratch(root)),
                max_chunk_bytes=spool.max_chunk_bytes,
                threads=connection_threads(con),
            )
        con.execute("begin transaction")
        try:
            replaced = con.execute(
                f"delete from raw_order_pages where {condition} returning page_seq, body_file", params
            ).fetchall()
            replaced_files = [str(body_file) for _, body_file in replaced]
            if replaced:
                con.execute(
                    "delete from raw_order_objects where page_seq in (select unnest($seqs))",
                    {"seqs": [int(seq) for seq, _ in replaced]},
                )
            _move_spool(spool, landed_dir)
            _insert_pages(con, asset, partition_key, bounds, spool, page_seqs, relative_dir)
            append_parsed(con, files, page_seqs)
            pause_for_kill_probe("landing")
            con.execute("commit")
        except BaseException:
            # A failed COMMIT has already ended the transaction; the original error is the one to report.
            with contextlib.suppress(duckdb.TransactionException):
                con.execute("rollback")
            _restore_spool(spool, landed_dir)
            raise
    _remove_unreferenced(con, root, replaced_files)
    return LandResult(
        pages=spool.pages, orders=spool.orders, body_bytes=spool.bytes, replaced_pages=len(replaced_files)
    )


def _move_spool(spool: PageSpool, landed_dir: Path) -> None:
    """Make the spool's files the landing's: renamed within the page store's file system, else copied."""
    landed_dir.mkdir(parents=True)
    for page in spool.spooled:
        target = landed_dir / page.name
        try:
            os.replace(page.path, target)
        except OSError:  # the spool is on another file system (TMPDIR)
            shutil.copyfile(page.path, target)


def _restore_spool(spool: PageSpool, landed_dir: Path) -> None:
    """After a failed landing, give the spool its files back and remove the landing's folder."""
    for page in spool.spooled:
        with contextlib.suppress(OSError):
            if not Path(page.path).exists():
                os.replace(landed_dir / page.name, page.path)
    shutil.rmtree(landed_dir, ignore_errors=True)


def _insert_pages(
    con: duckdb.DuckDBPyConnection,
    asset: str,
    partition_key: str,
    bounds: dict[str, datetime | None],
    spool: PageSpool,
    page_seqs: list[int],
    relative_dir: str,
) -> None:
    con.execute(
        """
        insert into raw_order_pages (page_seq, asset, partition_key, window_start, window_end, requested_min,
            requested_max, page_number, fetched_at, api_version, request_path, order_count, body_file,
            body_bytes, api, operation)
        select unnest($seqs), $asset, $key, $window_start, $window_end, $requested_min, $requested_max,
            unnest($numbers), unnest($fetched::timestamptz[]), unnest($versions), unnest($paths),
            unnest($counts), unnest($files), unnest($sizes), unnest($apis), unnest($operations)
        """,
        {
            "seqs": page_seqs,
            "asset": asset,
            "key": partition_key,
            **bounds,
            "numbers": [page.page_number for page in spool.spooled],
            "fetched": [page.fetched_at for page in spool.spooled],
            "versions": [page.api_version for page in spool.spooled],
            "paths": [page.request_path for page in spool.spooled],
            "counts": [page.order_count for page in spool.spooled],
            "files": [f"{relative_dir}/{page.name}" for page in spool.spooled],
            "sizes": [page.size for page in spool.spooled],
            "apis": [page.api for page in spool.spooled],
            "operations": [page.operation for page in spool.spooled],
        },
    )


def reparse_landed_pages(
    con: duckdb.DuckDBPyConnection, *, max_chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> int:
    """Rebuild `raw_order_objects` from every page in the page store (in the caller's transaction, if any),
    e.g. after the validation rules changed; returns the number of pages parsed."""
    root = page_store_root(con)
    pages = [
        PageFile(int(page_seq), str(root / body_file), int(body_bytes), page_shape(api, operation))
        for page_seq, body_file, body_bytes, api, operation in con.execute(
            "select page_seq, body_file, body_bytes, api, operation from raw_order_pages order by page_seq"
        ).fetchall()
    ]
    con.execute("delete from raw_order_objects")
    with _scratch(root) as scratch:
        parse_into(con, pages, scratch, max_chunk_bytes=max_chunk_bytes)
    return len(pages)


@contextlib.contextmanager
def _scratch(root: Path) -> Iterator[Path]:
    """A folder for the parsed rows' Parquet files, in the page store's `.incoming` (swept if orphaned)."""
    incoming = root / INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="parse-", dir=incoming) as folder:
        yield Path(folder)


def _remove_unreferenced(con: duckdb.DuckDBPyConnection, root: Path, replaced_files: list[str]) -> None:
    """Delete the files of replaced pages, then every landing folder no page refers to any more.

    Unreferenced folders are also what a crash between a landing's rename and its commit leaves behind.
    Sweeping them here is safe: this connection holds DuckDB's write lock, so no other landing is between
    those two steps. Spool folders are swept once a day old (a fetch may be spooling right now).
    """
    for relative in replaced_files:
        (root / relative).unlink(missing_ok=True)
    referenced = {
        str(row[0])
        for row in con.execute(
            "select distinct regexp_extract(body_file, '^[^/]+/[^/]+') from raw_order_pages"
        ).fetchall()
    }
    stale_before = time.time() - STALE_SPOOL_SECONDS
    for asset_dir in root.iterdir():
        if not asset_dir.is_dir():
            continue
        for folder in asset_dir.iterdir():
            if asset_dir.name == INCOMING:
                if folder.stat().st_mtime < stale_before:
                    shutil.rmtree(folder, ignore_errors=True)
            elif f"{asset_dir.name}/{folder.name}" not in referenced:
                shutil.rmtree(folder, ignore_errors=True)
