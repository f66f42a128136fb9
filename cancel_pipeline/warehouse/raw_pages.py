"""The raw layer: Shopify order pages landed verbatim, one row per fetched page, parsed once on landing.

Every fetch is kept, so the tables derived from it can always be rebuilt and a version seen once is never
lost: the layer is append-only. A re-read window *supersedes* its earlier pages (`superseded_at` is set);
they stay in the page store and still feed `order_versions`, until a retention setting prunes them.
`page_seq` orders the pages by landing time; the derived tables use it as their watermark. The warehouse
holds one store's pages and records which (`warehouse_store`): it refuses to land another store's.

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
import fcntl
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import duckdb
import orjson

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
"""A spool folder without a lock file (one made before spools were locked) this old belongs to no fetch."""
SPOOL_LOCK = ".lock"
"""File in each spool and scratch folder, locked (`flock`) by the process using the folder for its life: a
folder whose lock can be taken was left by a process that died, and is swept at once."""

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
    superseded_at  timestamptz,           -- when a full re-read of its window landed (null: current)
    superseded_by  bigint                 -- first page_seq of that re-read
);
-- Databases created before pages recorded their API: every page then came from REST's orders.json.
alter table raw_order_pages add column if not exists api varchar default 'rest';
alter table raw_order_pages add column if not exists operation varchar default 'orders';
{RAW_ORDER_OBJECTS_DDL}
-- The store whose pages this warehouse holds, recorded by the first landing.
create table if not exists warehouse_store (
    store        varchar     not null,
    recorded_at  timestamptz not null
);
"""

# Columns added to `raw_order_pages` with the append-only layer; older files are migrated on open.
_ADDED_PAGE_COLUMNS = ("superseded_at", "superseded_by")


class WrongStoreError(RuntimeError):
    """The warehouse holds another store's pages; landing this store's would mix the two."""


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


def recorded_store(con: duckdb.DuckDBPyConnection) -> str | None:
    """The store whose pages the warehouse holds (None before its first landing)."""
    ensure_raw_order_pages(con)
    row = con.execute("select store from warehouse_store order by recorded_at limit 1").fetchone()
    return str(row[0]) if row else None


def check_store(con: duckdb.DuckDBPyConnection, store: str) -> None:
    """Record `store` as the warehouse's store if it has none yet; raise `WrongStoreError` if it has another.

    A warehouse made before stores were recorded adopts the store of its first landing after the upgrade.
    """
    row = con.execute("select store from warehouse_store order by recorded_at limit 1").fetchone()
    recorded = str(row[0]) if row else None
    if recorded is None:
        con.execute("insert into warehouse_store values (?, now())", [store])
    elif recorded != store:
        raise WrongStoreError(
            f"This warehouse ({_database_path(con)}) holds the orders of store {recorded!r}; refusing to land "
            f"pages of store {store!r}. Each store needs its own DuckDB file: unset CANCEL_PIPELINE_DUCKDB "
            f"(the default file is per store, data/<store>.duckdb) or point it at another file."
        )


def landed_coverage(
    con: duckdb.DuckDBPyConnection, asset: str, windows: dict[str, tuple[datetime, datetime]]
) -> dict[str, datetime | None]:
    """For each window `key -> [start, end)` of `asset`, how far its current pages reach (None: none landed).

    A page covers a window up to the smaller of its `requested_max` and the window's end, so a window is
    landed whole when its coverage is its end. This is the warehouse's own record of what it holds: the
    scheduled ticks continue from it and the catch-up plans from it.
    """
    if not windows:
        return {}
    ensure_raw_order_pages(con)
    keys = list(windows)
    rows = con.execute(
        """
        select w.key, max(least(p.requested_max, w.window_end)) filter (where p.requested_max is not null)
        from (
            select unnest($keys) as key, unnest($starts::timestamptz[]) as window_start,
                   unnest($ends::timestamptz[]) as window_end
        ) w
        left join raw_order_pages p
            on p.asset = $asset and p.superseded_at is null
            and p.window_start < w.window_end and p.window_end > w.window_start
        group by w.key
        """,
        {
            "asset": asset,
            "keys": keys,
            "starts": [windows[key][0] for key in keys],
            "ends": [windows[key][1] for key in keys],
        },
    ).fetchall()
    return {str(key): covered for key, covered in rows}


def prune_superseded(con: duckdb.DuckDBPyConnection, *, superseded_before: datetime) -> int:
    """Delete the pages superseded before `superseded_before` (rows, parsed objects and files); their count.

    What is lost: a rebuild (`full_refresh`) no longer sees the versions only those pages held, so
    `order_versions` rebuilt afterwards may lack them (the incremental tables keep them).
    """
    ensure_raw_order_pages(con)
    root = page_store_root(con)
    con.execute("begin transaction")
    try:
        pruned = con.execute(
            "delete from raw_order_pages where superseded_at < $before returning page_seq, body_file",
            {"before": superseded_before},
        ).fetchall()
        if pruned:
            con.execute(
                "delete from raw_order_objects where page_seq in (select unnest($seqs))",
                {"seqs": [int(seq) for seq, _ in pruned]},
            )
        con.execute("commit")
    except BaseException:
        with contextlib.suppress(duckdb.TransactionException):
            con.execute("rollback")
        raise
    for _, body_file in pruned:
        (root / str(body_file)).unlink(missing_ok=True)
    _sweep(con, root)
    return len(pruned)


def _database_path(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute(
        "select path from duckdb_databases() where database_name = current_database()"
    ).fetchone()
    return str(row[0]) if row and row[0] else ":memory:"


def migrate_raw_order_pages(con: duckdb.DuckDBPyConnection) -> None:
    """Bring a `raw_order_pages` of an older release to the current shape, in one transaction.

    Older files had a unique (asset, partition_key, page_number), which an append-only layer breaks (a
    re-read lands the same page numbers again); DuckDB cannot drop a constraint, so the table is rebuilt.
    """
    columns = {
        str(row[0])
        for row in con.execute(
            "select column_name from information_schema.columns"
            " where table_schema = 'main' and table_name = 'raw_order_pages'"
        ).fetchall()
    }
    if not columns or all(column in columns for column in _ADDED_PAGE_COLUMNS):
        return
    con.execute("begin transaction")
    try:
        con.execute("drop view if exists raw_order_page_bodies")
        con.execute("alter table raw_order_pages rename to raw_order_pages_before_migration")
        con.execute(RAW_ORDER_PAGES_DDL)
        con.execute("insert into raw_order_pages by name select * from raw_order_pages_before_migration")
        con.execute("drop table raw_order_pages_before_migration")
        con.execute("commit")
    except BaseException:
        with contextlib.suppress(duckdb.TransactionException):
            con.execute("rollback")
        raise


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

    def refetch_unparseable(self, refetch: Callable[[str, int], FetchedPage]) -> int:
        """Fetch again each REST page whose body did not parse; returns how many were replaced.

        A body can arrive complete and still not be JSON (a damaged byte): the client only proves its
        structure, the parse finds it. Looked for only when the background parse failed, so a good fetch
        pays nothing. `refetch(request_path, page_number)` parses what it fetches in full and retries a
        damaged answer itself; the landing then parses every page again.
        """
        if self.parser is None:
            return 0
        try:
            self.parser.files()
            return 0
        except duckdb.Error:
            damaged = [
                i for i, page in enumerate(self.spooled) if page.api == "rest" and not _is_json(page.path)
            ]
            if not damaged:
                raise
        self.parser.close()
        self.parser = None
        for index in damaged:
            self._replace(index, refetch(self.spooled[index].request_path, self.spooled[index].page_number))
        return len(damaged)

    def _replace(self, index: int, page: FetchedPage) -> None:
        old = self.spooled[index]
        Path(old.path).write_bytes(page.body)
        self.spooled[index] = replace(
            old,
            api_version=page.api_version,
            fetched_at=page.fetched_at,
            order_count=page.order_count,
            size=len(page.body),
        )
        self.orders += page.order_count - old.order_count
        self.bytes += len(page.body) - old.size


def _is_json(path: str) -> bool:
    try:
        orjson.loads(Path(path).read_bytes())
    except orjson.JSONDecodeError:
        return False
    return True


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
        # What a fetch or landing killed earlier left here goes now, not a day later.
        sweep_dead_spools(parent)
    with _locked_folder(parent, "fetch-") as directory:
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


@contextlib.contextmanager
def _locked_folder(parent: Path, prefix: str) -> Iterator[Path]:
    """A fresh folder under `parent`, its lock file held for the block, removed when the block exits."""
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        with open(directory / SPOOL_LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def sweep_dead_spools(incoming: Path) -> list[str]:
    """Remove the folders of `incoming` no live process holds (a fetch or landing killed mid-way left them:
    page files and parsed Parquet chunks); returns their names.

    A folder's lock file is held by its process for as long as it uses the folder, and the kernel releases
    it when the process dies however it dies, so a lock this call can take marks a leftover. A folder without
    a lock file (made by an older release, or created an instant ago) goes only once a day old.
    """
    swept: list[str] = []
    if not incoming.is_dir():
        return swept
    stale_before = time.time() - STALE_SPOOL_SECONDS
    for folder in incoming.iterdir():
        if not folder.is_dir():
            continue
        try:
            with open(folder / SPOOL_LOCK, "r+") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # in use
                shutil.rmtree(folder, ignore_errors=True)
                swept.append(folder.name)
        except FileNotFoundError:
            with contextlib.suppress(FileNotFoundError):
                if folder.stat().st_mtime < stale_before:
                    shutil.rmtree(folder, ignore_errors=True)
                    swept.append(folder.name)
    return swept


# --- Landing -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LandResult:
    """What one landing wrote."""

    pages: int
    orders: int
    body_bytes: int
    superseded_pages: int
    """Current pages of earlier fetches this landing superseded (same asset, window within the new one)."""


def ensure_raw_order_pages(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw tables, their sequence and the bodies view when missing (migrating older ones)."""
    migrate_raw_order_pages(con)
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
    store: str,
    supersede: bool = True,
) -> LandResult:
    """Land one fetch of `store` in the raw layer, in one transaction; nothing is ever deleted.

    With `supersede` (a full read of the window), the current pages the fetch replaces are marked
    superseded: those of the same `asset` landed under the same `partition_key`, and, for a windowed fetch,
    every fetch of that asset whose `[window_start, window_end)` lies within the new one. Without it (a
    tick reading what is new since the window's last page), the pages join the window's current ones.
    A failure at any point, a crash included, leaves the previous contents. A re-import by order id passes
    `asset='refresh'`, its run id as `partition_key` and null window and requested bounds. A page that is
    not JSON fails the whole landing; a warehouse holding another store's pages refuses it
    (`WrongStoreError`).

    `pages` should be a `PageSpool` filled before the connection was opened (ideally with `database=` so
    its files move into the page store by a rename); any other iterable is spooled here first, which is
    fine for a handful of pages but holds the connection during the iteration.
    """
    if (window_start is None) != (window_end is None):
        raise ValueError("window_start and window_end are both set or both None")
    spooled = contextlib.nullcontext(pages) if isinstance(pages, PageSpool) else spooled_pages(pages)
    with spooled as spool:
        replace = (
            (
                "asset = $asset and (partition_key = $key or (window_start >= $start and window_end <= $end))",
                {"asset": asset, "key": partition_key, "start": window_start, "end": window_end},
            )
            if supersede
            else None
        )
        bounds = {
            "window_start": window_start,
            "window_end": window_end,
            "requested_min": requested_min,
            "requested_max": requested_max,
        }
        return _land_spool(con, asset, partition_key, bounds, spool, replace, store)


def land_page(
    con: duckdb.DuckDBPyConnection,
    page: FetchedPage,
    *,
    asset: str,
    partition_key: str,
    store: str,
) -> int:
    """Land one page under (asset, partition_key, its page_number), superseding only that page; its page_seq.

    For re-importing or hand-building a single page; fetches go through `land_pages`.
    """
    with spooled_pages([page]) as spool:
        replace = (
            "asset = $asset and partition_key = $key and page_number = $number",
            {"asset": asset, "key": partition_key, "number": page.page_number},
        )
        bounds = dict.fromkeys(("window_start", "window_end", "requested_min", "requested_max"))
        _land_spool(con, asset, partition_key, bounds, spool, replace, store)
    [(page_seq,)] = con.execute(
        "select page_seq from raw_order_pages where asset = ? and partition_key = ? and page_number = ?"
        " and superseded_at is null",
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
    replace: tuple[str, dict] | None,
    store: str,
) -> LandResult:
    ensure_raw_order_pages(con)
    root = page_store_root(con)
    landing = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"
    relative_dir = f"{_SAFE_NAME.sub('_', asset)}/{landing}"
    landed_dir = root / relative_dir
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
            check_store(con, store)
            superseded = []
            if replace is not None:
                condition, params = replace
                superseded = con.execute(
                    f"""
                    update raw_order_pages set superseded_at = now(), superseded_by = $first_seq
                    where superseded_at is null and {condition}
                    returning page_seq
                    """,
                    {**params, "first_seq": page_seqs[0] if page_seqs else None},
                ).fetchall()
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
    _sweep(con, root)
    return LandResult(
        pages=spool.pages, orders=spool.orders, body_bytes=spool.bytes, superseded_pages=len(superseded)
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
    with _locked_folder(incoming, "parse-") as folder:
        yield folder


def _sweep(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """Remove every landing folder no page refers to, and the spools of dead processes.

    Unreferenced landing folders are what a crash between a landing's rename and its commit leaves behind
    (and what pruning empties). Sweeping them here is safe: this connection holds DuckDB's write lock, so
    no other landing is between those two steps.
    """
    referenced = {
        str(row[0])
        for row in con.execute(
            "select distinct regexp_extract(body_file, '^[^/]+/[^/]+') from raw_order_pages"
        ).fetchall()
    }
    sweep_dead_spools(root / INCOMING)
    for asset_dir in root.iterdir():
        if not asset_dir.is_dir() or asset_dir.name == INCOMING:
            continue
        for folder in asset_dir.iterdir():
            if f"{asset_dir.name}/{folder.name}" not in referenced:
                shutil.rmtree(folder, ignore_errors=True)
