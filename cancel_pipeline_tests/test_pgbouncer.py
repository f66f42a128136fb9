"""PgBouncer as the deployment starts it (deploy/postgres/pgbouncer/start-pgbouncer.sh): it logs clients in
with the instance user's SCRAM verifier, refuses a wrong password, hands one server session to many short
client connections, keeps the password out of its log, and is gone when the block ends."""

from __future__ import annotations

import socket

import psycopg2
import pytest
from cancel_pipeline_testkit.pgbouncer import find_pgbouncer, run_pgbouncer
from cancel_pipeline_testkit.postgres import find_postgres_bindir, run_postgres_cluster

pytestmark = pytest.mark.skipif(
    find_postgres_bindir() is None or find_pgbouncer() is None,
    reason="PostgreSQL's server or PgBouncer is not installed (.ci/run installs both)",
)

CLIENT_CONNECTIONS = 30


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _sessions(cluster_url: str, database: str) -> int:
    connection = psycopg2.connect(cluster_url.replace("postgresql+psycopg2", "postgresql").rsplit("/", 1)[0])
    try:
        with connection.cursor() as cursor:
            cursor.execute("select sessions from pg_stat_database where datname = %s", [database])
            (sessions,) = cursor.fetchone()
            return sessions
    finally:
        connection.close()


def test_short_connections_share_a_server_session() -> None:
    with run_postgres_cluster() as cluster, run_pgbouncer(cluster) as bouncer:
        before = _sessions(cluster.url, cluster.database)
        for number in range(CLIENT_CONNECTIONS):
            # As dagster-postgres does: autocommit, one statement, close.
            connection = psycopg2.connect(bouncer.url.replace("postgresql+psycopg2", "postgresql"))
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("select %s, current_user", [number])
                assert cursor.fetchone() == (number, cluster.user)
            connection.close()
        with pytest.raises(psycopg2.OperationalError, match="SASL authentication failed"):
            psycopg2.connect(
                host=bouncer.host,
                port=bouncer.port,
                user=cluster.user,
                password="wrong",
                dbname=cluster.database,
            )
        stats = bouncer.stats()
        opened = _sessions(cluster.url, cluster.database) - before
        port, log_path = bouncer.port, bouncer.log_path
        log = log_path.read_text()
    assert stats["total_xact_count"] >= CLIENT_CONNECTIONS, stats
    # Thirty client logins, one after the other, needed one server session (two leaves room for a retry).
    assert 1 <= opened <= 2, opened
    assert cluster.password not in log
    assert not _listening(port), "PgBouncer still listens after the block"
    assert not log_path.parent.exists(), "PgBouncer's folder was left behind"
