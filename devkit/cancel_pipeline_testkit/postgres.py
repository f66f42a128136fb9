"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb in a temporary folder, a server on a free
port of 127.0.0.1 with password authentication, stopped and deleted on exit.

PostgreSQL refuses to run as root, so when the caller is root the cluster belongs to an unprivileged user
(`nobody` unless told otherwise) and its commands run through `runuser`. The binaries are found with
`pg_config --bindir`, then Debian's `/usr/lib/postgresql/<version>/bin`, then the PATH.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cancel_pipeline_testkit.dagster_dev import free_port, log_tail

DEFAULT_CLUSTER_USER = "nobody"
"""The unprivileged owner of the cluster when the caller is root."""

_SUPERUSER = "dagster"
_DATABASE = "dagster"


class PostgresClusterError(RuntimeError):
    """The cluster could not be created, started or stopped."""


@dataclass(frozen=True)
class PostgresCluster:
    """A running cluster and how to reach it; `url` holds the password, so never log it."""

    host: str
    port: int
    user: str
    password: str
    database: str
    folder: Path
    log_path: Path

    @property
    def url(self) -> str:
        """A SQLAlchemy URL for dagster-postgres, on the psycopg2 driver (see docs/deployment.md)."""
        return f"postgresql+psycopg2://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log, for error messages."""
        return log_tail(self.log_path, lines)

    def connect(self, database: str | None = None, *, password: str | None = None) -> Any:
        """A psycopg2 connection to `database` (the instance's by default) as the cluster's user; the caller
        closes it."""
        import psycopg2  # the driver dagster-postgres is configured with

        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password if password is None else password,
            dbname=database or self.database,
            connect_timeout=10,
        )


def find_postgres_bindir() -> Path | None:
    """The folder holding `initdb` and `pg_ctl`, or None when PostgreSQL's server is not installed."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        answer = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if answer.returncode == 0 and answer.stdout.strip():
            candidates.append(Path(answer.stdout.strip()))
    # Debian installs each major version side by side; the newest wins.
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates.extend(Path(path) for path in sorted(versions, key=_major_version, reverse=True))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _major_version(bindir: str) -> int:
    name = Path(bindir).parent.name
    return int(name) if name.isdigit() else -1


@contextmanager
def run_postgres_cluster(
    *, bindir: Path | None = None, cluster_user: str = DEFAULT_CLUSTER_USER, start_timeout: int = 60
) -> Iterator[PostgresCluster]:
    """Create and start a cluster, yield it with an empty database `dagster`, then stop it and delete it.

    The folder is made with `tempfile.mkdtemp` (not under pytest's folder, which other users cannot enter).
    Raises `PostgresClusterError` with the server's log when a step fails.
    """
    bindir = bindir or find_postgres_bindir()
    if bindir is None:
        raise PostgresClusterError("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    as_user = unprivileged_prefix(cluster_user)
    folder = Path(tempfile.mkdtemp(prefix="cancel_pipeline_pg_"))
    log_path = folder / "postgres.log"
    password = secrets.token_urlsafe(16)
    cluster = PostgresCluster(
        host="127.0.0.1",
        port=free_port(),
        user=_SUPERUSER,
        password=password,
        database=_DATABASE,
        folder=folder,
        log_path=log_path,
    )
    try:
        try:
            _create_cluster(cluster, bindir, as_user, cluster_user, start_timeout)
        except PostgresClusterError as error:
            raise PostgresClusterError(
                f"{error}\nlast lines of the PostgreSQL log:\n{cluster.log_tail()}"
            ) from None
        yield cluster
    finally:
        try:
            # The server may have started even when a later step failed.
            if (folder / "data" / "postmaster.pid").exists():
                stop = [*as_user, str(bindir / "pg_ctl"), "--pgdata", str(folder / "data"), "--mode=fast"]
                _run([*stop, "--wait", "--timeout=60", "stop"], "pg_ctl stop")
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _create_cluster(
    cluster: PostgresCluster, bindir: Path, as_user: list[str], cluster_user: str, start_timeout: int
) -> None:
    folder = cluster.folder
    data = folder / "data"
    if as_user:
        hand_over(folder, cluster_user)
    password_file = folder / "password"
    password_file.write_text(cluster.password)
    if as_user:
        hand_over(password_file, cluster_user)
    _run(
        [
            *as_user,
            str(bindir / "initdb"),
            "--pgdata",
            str(data),
            "--username",
            cluster.user,
            f"--pwfile={password_file}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--no-sync",
            "--no-instructions",
        ],
        "initdb",
    )
    password_file.unlink()
    # TCP on 127.0.0.1 only, no Unix socket (its default folder belongs to the postgres package);
    # durability is not wanted from a cluster that is deleted at the end.
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"\nlisten_addresses = '127.0.0.1'\nport = {cluster.port}\nunix_socket_directories = ''\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
        )
    pg_ctl = [*as_user, str(bindir / "pg_ctl"), "--pgdata", str(data)]
    _run(
        [*pg_ctl, "--log", str(cluster.log_path), "--wait", f"--timeout={start_timeout}", "start"],
        "pg_ctl start",
    )
    _create_database(cluster)


def hand_over(path: Path, user: str) -> None:
    """Make `user` the owner of `path` (a folder or file the unprivileged server writes or reads)."""
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def unprivileged_prefix(user: str) -> list[str]:
    """The command prefix that runs a command as `user` when we are root, else nothing (PostgreSQL and
    PgBouncer both refuse to run as root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise PostgresClusterError(
            f"cluster user {user!r} does not exist (PostgreSQL refuses root)"
        ) from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresClusterError(
            "running as root, but `runuser` is missing to drop to an unprivileged user"
        )
    return [runuser, "-u", user, "--"]


def _run(command: list[str], step: str) -> None:
    answer = subprocess.run(command, capture_output=True, text=True, check=False)
    if answer.returncode != 0:
        output = (answer.stdout + answer.stderr).strip()[-2000:]
        raise PostgresClusterError(f"{step} failed with code {answer.returncode}:\n{output}")


def _create_database(cluster: PostgresCluster) -> None:
    import psycopg2  # the driver dagster-postgres is configured with

    try:
        connection = cluster.connect("postgres")
    except psycopg2.Error as error:
        raise PostgresClusterError(f"cannot connect to the new cluster: {error}") from None
    try:
        connection.autocommit = True  # CREATE DATABASE refuses to run inside a transaction
        with connection.cursor() as cursor:
            cursor.execute(f"create database {cluster.database}")
    finally:
        connection.close()
