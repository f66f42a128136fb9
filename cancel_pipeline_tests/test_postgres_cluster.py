"""The throwaway PostgreSQL cluster the deployment test runs on: reachable with its password only, and gone
(server stopped, folder deleted) when the block ends, even when the block fails."""

from __future__ import annotations

import os
import socket

import psycopg2
import pytest
from cancel_pipeline_testkit.postgres import PostgresClusterError, find_postgres_bindir, run_postgres_cluster

pytestmark = pytest.mark.skipif(
    find_postgres_bindir() is None, reason="PostgreSQL's server (initdb, pg_ctl) is not installed"
)


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_cluster_serves_its_database_and_is_removed_after_a_failure() -> None:
    with pytest.raises(RuntimeError, match="the block failed"), run_postgres_cluster() as cluster:
        port, folder = cluster.port, cluster.folder
        connection = psycopg2.connect(cluster.url.replace("postgresql+psycopg2", "postgresql"))
        with connection, connection.cursor() as cursor:
            cursor.execute("select current_database(), current_user")
            assert cursor.fetchone() == (cluster.database, cluster.user)
        connection.close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(
                host=cluster.host, port=port, user=cluster.user, password="wrong", dbname=cluster.database
            )
        raise RuntimeError("the block failed")
    assert not _listening(port), "the server still listens after the block"
    assert not folder.exists(), "the cluster's folder was left behind"


@pytest.mark.skipif(os.geteuid() != 0, reason="the cluster's user is only used when running as root")
def test_a_missing_cluster_user_is_named() -> None:
    with (
        pytest.raises(PostgresClusterError, match="'no_such_pg_user'"),
        run_postgres_cluster(cluster_user="no_such_pg_user"),
    ):
        pass
