"""Opening the DuckDB warehouse file.

DuckDB lets one process at a time open a file for writing. Writers are serialized by the `duckdb_writer`
concurrency pool, but paths that bypass the pool (ad-hoc scripts, a reader started while a run writes) still
meet the file lock, so opening retries the lock error with capped exponential backoff before giving up. While
it waits it logs, every `LOCK_LOG_INTERVAL_SECONDS`, which process holds the lock (the PID in DuckDB's
message) and how long it will still wait; when it gives up, the error names that process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb

LOCK_RETRY_SECONDS = 120.0
"""How long opening keeps retrying while another process holds the file lock."""
LOCK_LOG_INTERVAL_SECONDS = 10.0
"""How often a wait for the file lock is logged."""

logger = logging.getLogger(__name__)

_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")


class WarehouseLockedError(duckdb.IOException):
    """Another process kept the DuckDB file's lock for the whole wait; the message names it."""


def lock_holder(error: BaseException) -> str:
    """Who holds the lock, from DuckDB's message: "PID 123 (/usr/bin/python3)", or "another process"."""
    match = _HOLDER.search(str(error))
    if match is None:
        return "another process"
    return f"PID {match['pid']} ({match['program']})"


KILL_PROBE_VARIABLE = "CANCEL_PIPELINE_TEST_KILL_PROBE"
"""Test-only: set to `landing` or `derivation`, the process pauses a minute before that transaction's COMMIT,
so the kill probes (`cancel_pipeline_tests/e2e`) can kill a run inside it."""


def pause_for_kill_probe(phase: str) -> None:
    """Pause before `phase`'s COMMIT when the kill probes ask for it (never otherwise)."""
    if os.environ.get(KILL_PROBE_VARIABLE) == phase:
        print(f"kill probe: paused before the {phase} commit", file=sys.stderr, flush=True)
        time.sleep(60)


def is_lock_error(error: BaseException) -> bool:
    """Whether `error` is DuckDB refusing the file because another process holds its lock."""
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


def connect(
    database: str | Path,
    *,
    read_only: bool = False,
    config: Mapping[str, Any] | None = None,
    lock_retry_seconds: float = LOCK_RETRY_SECONDS,
    log_interval_seconds: float = LOCK_LOG_INTERVAL_SECONDS,
) -> duckdb.DuckDBPyConnection:
    """Open `database` (creating its parent folder), with the session time zone set to UTC.

    Timestamps are stored as instants; UTC as the session zone makes every `timestamptz` read back, cast
    or truncated the same way whatever the machine's zone. `config` holds DuckDB options (e.g. `threads`).
    """
    if str(database) != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    deadline = started + lock_retry_seconds
    next_log = started
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(database), read_only=read_only, config=dict(config or {}))
            break
        except duckdb.IOException as error:
            if not is_lock_error(error):
                raise
            now = time.monotonic()
            if now >= deadline:
                raise WarehouseLockedError(
                    f"DuckDB file {database} stayed locked by {lock_holder(error)} for {now - started:.0f} s: "
                    "close that process (a notebook, the DuckDB CLI, a stuck run) and run again"
                ) from error
            if now >= next_log:
                logger.warning(
                    "Waiting for DuckDB's lock on %s, held by %s: waited %.0f s, will wait %.0f s more",
                    database,
                    lock_holder(error),
                    now - started,
                    deadline - now,
                )
                next_log = now + log_interval_seconds
            # Jitter keeps two waiting processes from retrying in lockstep; the last try is at the deadline.
            time.sleep(min(delay * random.uniform(0.5, 1.5), deadline - now))
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
