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


def test_short_connections_share_a_server_session() -> None:
    with run_postgres_cluster() as cluster, run_pgbouncer(cluster) as bouncer:
        server_pids = set()
        for number in range(CLIENT_CONNECTIONS):
            # As dagster-postgres does: autocommit, one statement, close.
            connection = bouncer.connect()
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("select %s, current_user, pg_backend_pid()", [number])
                echoed, user, server_pid = cursor.fetchone()
            connection.close()
            assert (echoed, user) == (number, cluster.user)
            server_pids.add(server_pid)
        with pytest.raises(psycopg2.OperationalError, match="SASL authentication failed"):
            bouncer.connect(password="wrong")
        stats = bouncer.stats()
        port, log_path = bouncer.port, bouncer.log_path
        log = log_path.read_text()
    assert stats["total_xact_count"] >= CLIENT_CONNECTIONS, stats
    # Thirty client logins, one after the other, were served by one PostgreSQL process.
    assert len(server_pids) == 1, server_pids
    assert cluster.password not in log
    assert not _listening(port), "PgBouncer still listens after the block"
    assert not log_path.parent.exists(), "PgBouncer's folder was left behind"
