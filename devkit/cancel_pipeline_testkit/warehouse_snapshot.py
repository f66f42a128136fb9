"""A read-only copy of a live instance's DuckDB file, taken once no run is writing it."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb


def snapshot_when_idle(
    source: Path, snapshot: Path, unfinished_run_ids: Callable[[], Sequence[str]], *, timeout_s: float = 120
) -> Path:
    """Copy `source` (and its WAL) to `snapshot` once no run is unfinished and the file opens read-only.

    Opening it read-only keeps writers out while it is copied, and releases it at once: later runs (a
    sensor's) never wait on the tests.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if not unfinished_run_ids():
            try:
                with duckdb.connect(str(source), read_only=True):
                    shutil.copyfile(source, snapshot)
                    wal = source.with_name(source.name + ".wal")
                    if wal.exists():
                        shutil.copyfile(wal, snapshot.with_name(snapshot.name + ".wal"))
                return snapshot
            except duckdb.IOException:
                pass  # a run started between the query and the open: wait for it
        if time.monotonic() > deadline:
            raise AssertionError(f"{source} stayed locked by runs {unfinished_run_ids()}")
        time.sleep(0.5)
