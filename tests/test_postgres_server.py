"""The session's PostgreSQL server (tests/pgkit.py) is real, and gives each test its own database."""

from __future__ import annotations

import psycopg
from pgkit import PostgresServer


def test_the_session_server_is_a_real_postgresql_15_over_tcp_and_socket(
        postgres_server: PostgresServer) -> None:
    for tcp in (True, False):
        url = postgres_server.new_database(tcp=tcp)
        with psycopg.connect(url) as conn:
            (version,), = conn.execute("SHOW server_version_num").fetchall()
            assert int(version) // 10000 >= 15
            conn.execute("CREATE TABLE t (x BIGINT)")
            conn.execute("INSERT INTO t VALUES (1)")
            assert conn.execute("SELECT count(*) FROM t").fetchall() == [(1,)]


def test_each_database_starts_empty(postgres_server: PostgresServer) -> None:
    first, second = postgres_server.new_database(), postgres_server.new_database()
    assert first != second
    with psycopg.connect(first) as conn:
        conn.execute("CREATE TABLE only_here (x BIGINT)")
    with psycopg.connect(second) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'only_here'"
                            ).fetchall() == [(0,)]
