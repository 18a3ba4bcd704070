"""``executemany`` on PostgreSQL sends an ``INSERT ... VALUES`` as one statement (or one
per repeat of a conflict key) instead of one per row: it must leave exactly what a
statement per row leaves, whatever the order of keys and repeats."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.postgres import (PostgresViewStore, _array_literal, _rounds, _set_insert,
                                to_postgres)
from ledger.errors import PersistenceError

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
            for table in (TABLE, LOG, HARD, KEYED):
                tx.execute(table)
    yield pair
    for store in pair:
        store.close()


def test_constants_and_keys_are_understood() -> None:
    plan = _set_insert(to_postgres(UPSERT))
    assert plan is not None
    assert plan.names == ("p", "s", "held", "first_at", "last_at", "note")
    assert plan.keys == (0, 1)
    sql = plan.statement(["text", "text", "bigint", "bigint", "bigint", "text"])
    assert "SELECT p, s, 7, held" in sql
    assert "FROM unnest(%s::text[], %s::text[], %s::bigint[]" in sql
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
    _empty(stores, "w", "l")
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


# --- the array form with values that are hard to carry ---------------------------------

#: a table of every kind of column the array form carries, without a key (``rowid``)
HARD = ("CREATE TABLE IF NOT EXISTS h (t TEXT, n INTEGER, b BLOB, "
        '"Odd Name" TEXT, k TEXT NOT NULL DEFAULT \'\')')
HARD_INSERT = 'INSERT INTO h (t, n, b, "Odd Name", k) VALUES (?, ?, ?, ?, 9)'
#: an upsert keyed by a text column whose values are hard (repeats go in rounds)
KEYED = "CREATE TABLE IF NOT EXISTS u (k TEXT PRIMARY KEY, v INTEGER, w TEXT)"
KEYED_UPSERT = ("INSERT INTO u (k, v, w) VALUES (?, ?, ?) ON CONFLICT (k) DO UPDATE SET "
                "v = u.v + excluded.v, w = coalesce(excluded.w, u.w) || '|' || u.w")

#: texts an array literal or JSON would treat specially, non-ASCII, control characters
#: (not NUL: PostgreSQL's text refuses it either way, see below)
ODD = st.sampled_from(["", "NULL", "null", "\\", '"', '\\"', "\\\\", "{}", "{a,b}", " x ",
                       "a,b", "\\x41", "\n", "\t\r", "\x01\x1f", "é€😀", "\u2028", "'",
                       "True", "None", "[1]", "\\u0041", "a\\nb", " "])
TEXT = ODD | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                     max_size=8)
INT64 = st.integers(-2**63, 2**63 - 1)
#: what parameters of a statement per row put into each kind of column
TEXT_VALUES = st.none() | TEXT | INT64 | st.booleans() | st.binary(max_size=4)
INT_VALUES = st.none() | INT64 | st.booleans() | st.sampled_from([" 7 ", "-0", "+3", "12"])
BYTEA_VALUES = st.none() | st.binary(max_size=6) | st.sampled_from(
    ["abc", "\\x4142", "", "\\\\", "é"])
#: one key of a text column written three ways (the rounds must see one key: row by row)
KEY_ALIASES = st.sampled_from([1, "1", True])
#: a float sends the whole statement row by row (the server rounds it into an integer)
FLOATS = st.floats(-1e12, 1e12, allow_nan=False)
hard_rows = st.lists(st.tuples(TEXT_VALUES, INT_VALUES, BYTEA_VALUES, TEXT_VALUES),
                     min_size=2, max_size=10)


def _empty(stores: tuple[PostgresViewStore, PostgresViewStore], *tables: str) -> None:
    """Both stores' ``tables`` emptied (each hypothesis example starts afresh)."""
    for store in stores:
        with store.transaction() as tx:
            for table in tables:
                tx.execute(f"DELETE FROM {table}")


def _both(stores: tuple[PostgresViewStore, PostgresViewStore], sql: str,
          batches: list[list[tuple[Any, ...]]]) -> None:
    together, one_by_one = stores
    _empty(stores, "h", "u")
    for batch in batches:
        with together.transaction() as tx:
            tx.executemany(sql, batch)
        with one_by_one.transaction() as tx:
            for row in batch:
                tx.execute(sql, row)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(hard_rows, min_size=1, max_size=2),
       floats=st.lists(FLOATS, max_size=1))
def test_arrays_carry_hard_values_as_parameters_do(
        stores: tuple[PostgresViewStore, PostgresViewStore],
        batches: list[list[tuple[Any, ...]]], floats: list[float]) -> None:
    if floats:  # a float among the integers: that batch goes row by row, as it must
        batches[0][0] = (batches[0][0][0], floats[0], *batches[0][0][2:])
    _both(stores, HARD_INSERT, batches)
    read = 'SELECT t, n, b, "Odd Name", k FROM h ORDER BY rowid'
    together, one_by_one = stores
    assert together.query(read) == one_by_one.query(read)
    assert len(together.query(read)) == sum(map(len, batches))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.tuples(ODD | KEY_ALIASES, st.integers(-5, 5),
                                           st.none() | TEXT),
                                 min_size=2, max_size=10), min_size=1, max_size=2))
def test_arrays_upsert_hard_keys_as_statements_per_row_do(
        stores: tuple[PostgresViewStore, PostgresViewStore],
        batches: list[list[tuple[Any, ...]]]) -> None:
    _both(stores, KEYED_UPSERT, batches)
    read = "SELECT k, v, w FROM u ORDER BY k"
    together, one_by_one = stores
    assert together.query(read) == one_by_one.query(read)


@pytest.mark.parametrize("rows, error", [
    ([("a\x00b", 1, None, None), ("b", 2, None, None)], PersistenceError),  # NUL in text
    ([(None, None, 5, None), (None, None, 6, None)], PersistenceError),  # int into bytea
    ([(None, "x", None, None), (None, 2, None, None)], PersistenceError),  # not a number
    ([("\ud800", 1, None, None), ("b", 2, None, None)], UnicodeEncodeError),  # surrogate
])
def test_arrays_refuse_what_parameters_refuse(
        stores: tuple[PostgresViewStore, PostgresViewStore],
        rows: list[tuple[Any, ...]], error: type[Exception]) -> None:
    together, one_by_one = stores
    for store in stores:
        with store.transaction() as tx:
            tx.execute("DELETE FROM h")
    with pytest.raises(error):
        with together.transaction() as tx:
            tx.executemany(HARD_INSERT, rows)
    with pytest.raises(error):
        with one_by_one.transaction() as tx:
            for row in rows:
                tx.execute(HARD_INSERT, row)
    # nothing written, and the store still writes
    assert together.query("SELECT count(*) FROM h") == [(0,)]
    with together.transaction() as tx:
        tx.executemany(HARD_INSERT, [("a", 1, b"\x00", "z"), ("b", 2, None, None)])
    assert together.query("SELECT t, n, b FROM h ORDER BY rowid") == [
        ("a", 1, b"\x00"), ("b", 2, None)]


def test_literals_of_each_kind() -> None:
    assert _array_literal("int", (1, None, True, False, -2**63)) == (
        "{1,null,1,0,-9223372036854775808}")
    assert _array_literal("int", (1, 2.0)) is None  # a float: row by row
    assert _array_literal("int", ("7", None)) == '{"7",null}'
    assert _array_literal("text", ('a"b', "c\\d", None, "")) == '{"a\\"b","c\\\\d",null,""}'
    # a control character: quoted by hand (JSON's \n is not the literal's)
    assert _array_literal("text", ("a\nb", '"')) == '{"a\nb","\\""}'
    assert _array_literal("text", (5, True, b"\x01")) == '{"5","1","\\\\x01"}'
    assert _array_literal("bytea", (b"\xff", "ab", None)) == '{"\\\\xff","ab",null}'
    assert _array_literal("bytea", (5, b"")) is None  # refused row by row
    assert _array_literal("text", (1.5, "a")) is None


def test_types_follow_a_table_made_again(postgres_server: Any) -> None:
    """The column types are read once per table and connection; a table another process
    drops and makes again, or alters, with other types is read again (the cached types
    would send text where ``bytea`` is now wanted, which the server refuses)."""
    url = postgres_server.new_schema()
    writer, other = PostgresViewStore(url), PostgresViewStore(url)
    try:
        with writer.transaction() as tx:
            tx.execute("CREATE TABLE IF NOT EXISTS m (v TEXT, n INTEGER)")
        insert = "INSERT INTO m (v, n) VALUES (?, ?)"
        with writer.transaction() as tx:
            tx.executemany(insert, [("\\x41", 1), ("b", 2)])
        with other.transaction() as tx:
            tx.execute("DROP TABLE m")
            tx.execute("CREATE TABLE m (v BLOB, n TEXT)")
        with writer.transaction() as tx:
            tx.executemany(insert, [("\\x41", 1), (b"c", 2)])
        assert writer.query("SELECT v, n FROM m") == [(b"A", "1"), (b"c", "2")]
        with other.transaction() as tx:
            tx.execute("ALTER TABLE m ALTER COLUMN n TYPE BIGINT USING n::bigint")
        with writer.transaction() as tx:
            tx.executemany(insert, [(b"d", True), (b"e", "4")])
        assert writer.query("SELECT n FROM m ORDER BY n") == [(1,), (1,), (2,), (4,)]
        # DDL through the store itself, in the same transaction as the writes
        with writer.transaction() as tx:
            tx.execute("DROP TABLE m")
            tx.execute("CREATE TABLE m (v INTEGER, n TEXT)")
            tx.executemany(insert, [("7", 5), (None, None)])
        assert writer.query("SELECT v, n FROM m ORDER BY v") == [(7, "5"), (None, None)]
    finally:
        writer.close()
        other.close()
