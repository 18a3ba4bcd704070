"""``executemany`` on PostgreSQL sends an ``INSERT ... VALUES`` as one statement (or one
per repeat of a conflict key) instead of one per row: it must leave exactly what a
statement per row leaves, whatever the order of keys and repeats."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.postgres import PostgresViewStore, _rounds, _set_insert, to_postgres

TABLE = """CREATE TABLE IF NOT EXISTS w (
    p TEXT NOT NULL, s TEXT NOT NULL, kind INTEGER NOT NULL, held INTEGER NOT NULL,
    first_at INTEGER NOT NULL, last_at INTEGER NOT NULL, note TEXT, PRIMARY KEY (p, s))"""
#: an upsert whose result depends on the order of a key's rows (last_at, note), with a
#: constant among the values, as the data map's ``UPSERT_STORE`` has
UPSERT = """INSERT INTO w (p, s, kind, held, first_at, last_at, note)
VALUES (?, ?, 7, ?, ?, ?, ?)
ON CONFLICT (p, s) DO UPDATE SET held = w.held | excluded.held,
    first_at = least(w.first_at, excluded.first_at), last_at = excluded.last_at,
    note = coalesce(excluded.note, w.note)"""
#: a table without a key: rows numbered in insertion order (``rowid``)
LOG = ("CREATE TABLE IF NOT EXISTS l (p TEXT NOT NULL, n INTEGER NOT NULL, flag INTEGER, "
       "b BLOB)")
APPEND = "INSERT INTO l (p, n, flag, b) VALUES (?, ?, ?, ?)"


@pytest.fixture(scope="module")
def stores(postgres_server: Any) -> Iterator[tuple[PostgresViewStore, PostgresViewStore]]:
    pair = (PostgresViewStore(postgres_server.new_schema()),
            PostgresViewStore(postgres_server.new_schema()))
    for store in pair:
        with store.transaction() as tx:
            tx.execute(TABLE)
            tx.execute(LOG)
    yield pair
    for store in pair:
        store.close()


def test_constants_and_keys_are_understood() -> None:
    plan = _set_insert(to_postgres(UPSERT))
    assert plan is not None
    assert plan.names == ("p", "s", "held", "first_at", "last_at", "note")
    assert plan.keys == (0, 1)
    assert "SELECT p, s, 7, held" in plan.sql
    rows = [("a", "x", 1), ("b", "x", 2), ("a", "x", 3), ("a", "y", 4), ("a", "x", 5)]
    assert _rounds(rows, (0, 1)) == [[rows[0], rows[1], rows[3]], [rows[2]], [rows[4]]]
    # a quoted constant is not carried (its type would be guessed): row by row
    assert _set_insert(to_postgres("INSERT INTO w (p, s) VALUES (?, 'x')")) is None


rows = st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from("xy"),
                          st.integers(0, 7), st.integers(0, 9), st.integers(0, 9),
                          st.none() | st.sampled_from(["n1", "n2"])), max_size=12)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(rows, min_size=1, max_size=3))
def test_one_statement_per_round_equals_one_per_row(
        stores: tuple[PostgresViewStore, PostgresViewStore],
        batches: list[list[tuple[Any, ...]]]) -> None:
    sql = UPSERT
    together, one_by_one = stores
    for store in stores:
        with store.transaction() as tx:
            tx.execute("DELETE FROM w")
            tx.execute("DELETE FROM l")
    for batch in batches:
        with together.transaction() as tx:
            tx.executemany(sql, batch)
            tx.executemany(APPEND, [(r[0], r[3], r[3] > 4, r[0].encode() * r[2])
                                    for r in batch])
        with one_by_one.transaction() as tx:
            for row in batch:
                tx.execute(sql, row)
                tx.execute(APPEND, (row[0], row[3], row[3] > 4, row[0].encode() * row[2]))
    read = "SELECT * FROM w ORDER BY p, s"
    assert together.query(read) == one_by_one.query(read)
    # insertion order kept (the identity column numbers rows as a statement per row does)
    log = "SELECT p, n, flag, b FROM l ORDER BY rowid"
    assert together.query(log) == one_by_one.query(log)
