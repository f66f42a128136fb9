"""Opening the DuckDB warehouse file.

DuckDB lets one process at a time open a file for writing. Writers are serialized by the `duckdb_writer`
concurrency pool, but paths that bypass the pool (ad-hoc scripts, a reader started while a run writes) still
meet the file lock, so opening retries the lock error with capped exponential backoff before giving up.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb

LOCK_RETRY_SECONDS = 120.0
"""How long opening keeps retrying while another process holds the file lock."""


def is_lock_error(error: BaseException) -> bool:
    """Whether `error` is DuckDB refusing the file because another process holds its lock."""
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


def connect(
    database: str | Path,
    *,
    read_only: bool = False,
    config: Mapping[str, Any] | None = None,
    lock_retry_seconds: float = LOCK_RETRY_SECONDS,
) -> duckdb.DuckDBPyConnection:
    """Open `database` (creating its parent folder), with the session time zone set to UTC.

    Timestamps are stored as instants; UTC as the session zone makes every `timestamptz` read back, cast
    or truncated the same way whatever the machine's zone. `config` holds DuckDB options (e.g. `threads`).
    """
    if str(database) != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_retry_seconds
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(database), read_only=read_only, config=dict(config or {}))
            break
        except duckdb.IOException as error:
            if not is_lock_error(error) or time.monotonic() + delay > deadline:
                raise
            # Jitter keeps two waiting processes from retrying in lockstep.
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)
    con.execute("set TimeZone = 'UTC'")
    return con


@contextlib.contextmanager
def warehouse_connection(
    database: str | Path,
    *,
    read_only: bool = False,
    config: Mapping[str, Any] | None = None,
    lock_retry_seconds: float = LOCK_RETRY_SECONDS,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """`connect`, closed when the block exits (which releases the file lock)."""
    con = connect(database, read_only=read_only, config=config, lock_retry_seconds=lock_retry_seconds)
    try:
        yield con
    finally:
        con.close()
