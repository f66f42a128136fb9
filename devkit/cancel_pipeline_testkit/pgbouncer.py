"""PgBouncer in front of a throwaway PostgreSQL cluster, started by the deployment's own script
(deploy/postgres/pgbouncer/start-pgbouncer.sh), so tests and benchmarks run the pooler as deployed.

Like the cluster, it runs as an unprivileged user when the caller is root, on a free port of 127.0.0.1, and is
stopped and its folder deleted on exit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg2

from cancel_pipeline_testkit.dagster_dev import PROJECT_ROOT, free_port, log_tail, stop_session
from cancel_pipeline_testkit.postgres import (
    DEFAULT_CLUSTER_USER,
    PostgresCluster,
    hand_over,
    unprivileged_prefix,
)

START_SCRIPT = PROJECT_ROOT / "deploy" / "postgres" / "pgbouncer" / "start-pgbouncer.sh"


class PgBouncerError(RuntimeError):
    """PgBouncer could not be started, or did not accept connections in time."""


@dataclass(frozen=True)
class PgBouncer:
    """A running PgBouncer and the cluster behind it; `url` holds the password, so never log it."""

    host: str
    port: int
    cluster: PostgresCluster
    log_path: Path

    @property
    def _through_pgbouncer(self) -> PostgresCluster:
        """The cluster as clients see it: same user, password and database, PgBouncer's address."""
        return replace(self.cluster, host=self.host, port=self.port)

    @property
    def url(self) -> str:
        """The instance's SQLAlchemy URL through PgBouncer."""
        return self._through_pgbouncer.url

    def connect(self, database: str | None = None, *, password: str | None = None) -> Any:
        """A psycopg2 connection through PgBouncer to `database` (the instance's by default); the caller
        closes it."""
        return self._through_pgbouncer.connect(database, password=password)

    def stats(self) -> dict[str, int]:
        """PgBouncer's totals for the instance's database (`SHOW STATS`): logins are not counted there, so
        `total_xact_count` and `total_query_count` say how much went through it."""
        connection = self.connect("pgbouncer")
        try:
            connection.autocommit = True  # the admin console has no transactions
            with connection.cursor() as cursor:
                cursor.execute("SHOW STATS")
                names = [column.name for column in cursor.description]
                for row in cursor.fetchall():
                    record = dict(zip(names, row, strict=True))
                    if record["database"] == self.cluster.database:
                        return {name: int(value) for name, value in record.items() if name != "database"}
        finally:
            connection.close()
        raise PgBouncerError(f"PgBouncer has no statistics for database {self.cluster.database!r}")


def find_pgbouncer() -> Path | None:
    """PgBouncer's binary (PATH, then Debian's /usr/sbin), or None when it is not installed."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")
    return Path(found) if found else None


@contextmanager
def run_pgbouncer(
    cluster: PostgresCluster, *, run_as: str = DEFAULT_CLUSTER_USER, start_timeout: float = 60.0
) -> Iterator[PgBouncer]:
    """Start PgBouncer for `cluster` with the deployment's script, yield it once it serves logins, then
    stop it. Raises `PgBouncerError` with its log when it does not come up."""
    binary = find_pgbouncer()
    if binary is None:
        raise PgBouncerError("PgBouncer is not installed (Debian's pgbouncer package)")
    folder = Path(tempfile.mkdtemp(prefix="cancel_pipeline_pgbouncer_"))
    prefix = unprivileged_prefix(run_as)
    if prefix:
        hand_over(folder, run_as)
    bouncer = PgBouncer(
        host="127.0.0.1", port=free_port(), cluster=cluster, log_path=folder / "pgbouncer.log"
    )
    env = {
        "PATH": f"{binary.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "POSTGRES_HOST": cluster.host,
        "POSTGRES_PORT": str(cluster.port),
        "POSTGRES_DB": cluster.database,
        "POSTGRES_USER": cluster.user,
        "POSTGRES_PASSWORD": cluster.password,
        "PGBOUNCER_LISTEN_ADDR": bouncer.host,
        "PGBOUNCER_PORT": str(bouncer.port),
        "PGBOUNCER_RUNTIME_DIR": str(folder / "runtime"),
    }
    with bouncer.log_path.open("wb") as log:
        # Its own session, so one signal reaches PgBouncer behind `runuser` too.
        process = subprocess.Popen(
            [*prefix, "/bin/sh", str(START_SCRIPT)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_logins(bouncer, process, start_timeout)
        yield bouncer
    finally:
        # SIGTERM is PgBouncer's immediate shutdown; the session reaches it behind `runuser` too.
        stop_session(process, timeout=10, name="PgBouncer")
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_logins(bouncer: PgBouncer, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise PgBouncerError(
                f"PgBouncer exited with code {process.returncode}:\n{log_tail(bouncer.log_path, 40)}"
            )
        try:
            bouncer.connect().close()
            return
        except psycopg2.OperationalError as error:
            if time.monotonic() > deadline:
                raise PgBouncerError(
                    f"PgBouncer refused logins for {timeout:.0f} s ({error}):\n{log_tail(bouncer.log_path, 40)}"
                ) from None
            time.sleep(0.2)
