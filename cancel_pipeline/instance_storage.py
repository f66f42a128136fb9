"""Dagster's SQLite event log, made cheap per event: one pooled engine per shard and `synchronous=NORMAL`.

Why: a range run writes one ASSET_MATERIALIZATION event per window (and whoever creates the run one
ASSET_MATERIALIZATION_PLANNED per window). Dagster's `SqliteEventLogStorage._connect` builds a new SQLAlchemy
engine with `NullPool` for every event, so each event pays for a new engine (SQL compiled again), two new
SQLite connections (run shard, index shard), an fsync of the WAL on every commit (`synchronous=FULL`, SQLite's
default) and a WAL checkpoint each time the last connection closes: 10-23 ms an event, 15-35 s of bookkeeping
for a 30-day backfill of 30-minute windows. This storage keeps Dagster's schema, files, migrations and
behaviour (one database per run plus `index.db`, in the same folder as the default instance layout), and
changes only how connections are made; see `PooledSqliteEventLogStorage`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster._check as check
from dagster import Field, StringSource
from dagster._core.event_api import EventHandlerFn
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
    SqliteEventLogStorageWatchdog,
)
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool
from watchdog.events import FileSystemEvent
from watchdog.observers import Observer

EVENT_LOG_SUBFOLDER = os.path.join("history", "runs")
"""Where Dagster's default instance layout keeps the event log under DAGSTER_HOME (`index.db` and one
`<run_id>.db` per run, next to `history/runs.db` of the run storage): an existing home keeps working."""

MAX_RUN_SHARD_ENGINES = 16
"""Run-shard engines kept open per process; the least recently used is closed beyond this. A run writes
to its own shard, the webserver reads a few at a time: a bound keeps a long-lived process from holding a
file handle for every run it has ever shown."""

SYNCHRONOUS = "NORMAL"


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` with one pooled engine per shard per process and `PRAGMA synchronous=NORMAL`.

    Same databases, schema, alembic migrations, run sharding, index shard and watchers as Dagster's; only
    the connection handling differs:

    - **One engine per shard per process**, with a `QueuePool`, instead of a new `NullPool` engine per
      event. Connections are opened with Dagster's busy timeout (`SQLITE_BUSY_TIMEOUT_SECONDS`) so
      concurrent writers in other processes (webserver, daemon, run workers) wait for SQLite's write lock
      exactly as before. Threads: Dagster's per-storage lock still serializes every use of a connection,
      and a pooled connection is only ever used by one thread at a time (hence `check_same_thread=False`).
      Processes: engines are never shared across a fork; a child that finds the parent's engines drops
      them without closing the parent's connections (SQLAlchemy's recipe) and opens its own.
    - **`PRAGMA synchronous=NORMAL`** on every connection. The databases are in WAL mode, where NORMAL
      means a commit no longer fsyncs the WAL (only checkpoints sync). The databases stay consistent
      after a crash of any process; after a power loss or an OS crash the last events committed before
      it may be lost (SQLite's documented trade-off). For run history of one machine that is the right
      trade; use Postgres instance storage where it is not.
    - Because connections stay open, SQLite no longer checkpoints the WAL when each event's connection
      closes, so a run's `<run_id>.db` file is not touched by every write: the watcher that streams a
      running run's events to the UI also reacts to changes of `<run_id>.db-wal`.

    Config (dagster.yaml `event_log_storage:`): either `dagster_home` (the instance folder; the event log
    goes to `<dagster_home>/history/runs`, where Dagster's default layout has it), or `base_dir` (the event
    log folder itself, as for Dagster's class).
    """

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        # Set before the base initializer, which may already connect (to reindex a new index shard).
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        self._engines_lock = threading.Lock()
        self.engines_created = 0
        """How many engines this storage created (each shard once per process, unless evicted)."""
        self._known_tables: set[str] = set()
        self._known_asset_key_columns: set[str] = set()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            "dagster_home": Field(
                StringSource,
                is_required=False,
                description="The instance folder (DAGSTER_HOME); the event log goes to history/runs in it.",
            ),
            "base_dir": Field(
                StringSource, is_required=False, description="The event log folder itself (index.db in it)."
            ),
        }

    @classmethod
    def from_config_value(  # ty: ignore[invalid-method-override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledSqliteEventLogStorage:
        return cls(base_dir=event_log_folder(config_value), inst_data=inst_data)

    def _engine_for_shard(self, shard: str) -> Engine:
        with self._engines_lock:
            if self._engines_pid != os.getpid():
                # A forked child: the parent's pooled connections must not be used (or closed) here.
                for engine in self._engines.values():
                    engine.dispose(close=False)
                self._engines.clear()
                self._engines_pid = os.getpid()
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=QueuePool,
                pool_size=1,
                max_overflow=4,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            event.listen(engine, "connect", _set_synchronous)
            self.engines_created += 1
            self._engines[shard] = engine
            run_shards = [name for name in self._engines if name != INDEX_SHARD_NAME]
            for name in run_shards[: max(0, len(run_shards) - MAX_RUN_SHARD_ENGINES)]:
                self._engines.pop(name).dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            check.str_param(shard, "shard")
            engine = self._engine_for_shard(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        # Dagster's asks SQLite's schema through a new engine on every call, and the asset-event path calls
        # it for every event. A table that exists keeps existing (migrations only add), so a yes is kept;
        # a no is asked again, so a migration made by another process is seen.
        if table_name in self._known_tables:
            return True
        engine = self._engine_for_shard(INDEX_SHARD_NAME)
        with engine.connect() as conn:
            present = bool(engine.dialect.has_table(conn, table_name))
        if present:
            self._known_tables.add(table_name)
        return present

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        # Called for every asset event (schema introspection of `asset_keys`); same reasoning as has_table.
        if column_name in self._known_asset_key_columns:
            return True
        present = super()._has_asset_key_col_on_connection(conn, column_name)
        if present:
            self._known_asset_key_columns.add(column_name)
        return present

    def _dispose_engines(self) -> None:
        with self._engines_lock:
            for engine in self._engines.values():
                if self._engines_pid == os.getpid():
                    engine.dispose()
                else:
                    engine.dispose(close=False)
            self._engines.clear()

    def wipe(self) -> None:
        # The run shards' files are deleted: close our connections to them first.
        with self._db_lock:
            self._dispose_engines()
        super().wipe()

    def dispose(self) -> None:
        super().dispose()
        self._dispose_engines()

    def watch(self, run_id: str, cursor: str | None, callback: EventHandlerFn) -> None:
        if not self._obs:
            self._obs = Observer()
            self._obs.start()
        watchdog = _WalAwareWatchdog(self, run_id, callback, cursor)
        self._watchers[run_id][callback] = (
            watchdog,
            self._obs.schedule(watchdog, self._base_dir, recursive=True),
        )


class _WalAwareWatchdog(SqliteEventLogStorageWatchdog):
    """Dagster's run-shard watcher, also woken by the shard's WAL file (where pooled writers' commits go)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._paths = (self._log_path, f"{self._log_path}-wal")
        self._patterns = list(self._paths)

    def on_modified(self, event: FileSystemEvent) -> None:
        if event.src_path in self._paths:
            self._process_log()


def event_log_folder(config_value: Mapping[str, Any]) -> str:
    """The event log folder from the storage's config: `base_dir`, or `dagster_home`/history/runs."""
    if config_value.get("base_dir"):
        return str(config_value["base_dir"])
    if config_value.get("dagster_home"):
        return os.path.join(str(config_value["dagster_home"]), EVENT_LOG_SUBFOLDER)
    raise check.CheckError("PooledSqliteEventLogStorage needs `dagster_home` or `base_dir` in its config")


def _set_synchronous(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
    finally:
        cursor.close()
