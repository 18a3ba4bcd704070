"""Views in PostgreSQL (psycopg 3): one store shared by several consumers and readers.

Selected by ``LEDGER_VIEWS_URL=postgresql://...`` (``consumers.registry.open_views``);
SQLite stays the embedded default. Imports only the view-store interface.

Projections write one SQL for both stores (``?`` placeholders, ``ON CONFLICT``). What
differs is translated here, once per statement text (``to_postgres``):

- ``?`` becomes ``%s`` (and a literal ``%`` becomes ``%%``);
- ``INSERT OR IGNORE`` becomes ``INSERT ... ON CONFLICT DO NOTHING``;
- in ``CREATE TABLE``: ``INTEGER`` becomes ``BIGINT`` (SQLite's integers are 64-bit),
  ``BLOB`` becomes ``BYTEA``,
  ``TEXT`` compares byte-wise (``COLLATE "C"``, as SQLite's ``BINARY``: pages and
  ``ORDER BY`` give the same order on any server locale), ``INTEGER PRIMARY KEY
  AUTOINCREMENT`` becomes an identity column, and a table without a primary key gets the
  ``rowid`` column SQLite gives it implicitly (insertion order: ``consumers.scope_index``
  follows ``holdings_erased`` by it);
- the schema name ``main.`` (SQLite's) is dropped;
- ``insert_marks`` zips JSON arrays (``ROWS FROM``) where SQLite reads ``json_each``:
  one statement marks a batch's events;
- ``executemany`` of an ``INSERT ... VALUES`` becomes ONE ``INSERT ... SELECT FROM
  unnest(%s::type[], ...)`` of one array per column, typed as the table's columns
  (read once per table and connection, ``_ColumnTypes``), where that does exactly what a
  statement per row would (``_set_insert``, ``_array_literal``; otherwise rows go one by
  one, pipelined);
- Python ``bool`` parameters are stored as 0/1 integers, as SQLite stores them.

Invariants it keeps:

- view rows and tracking positions commit in one transaction (``transaction``);
- write transactions are serialised per schema (a transaction-scoped advisory lock, the
  equivalent of SQLite's ``BEGIN IMMEDIATE``): a transaction reads its positions and the
  cache tokens (``consumers.rows.WriteCache``) knowing no other writer is half-way, and
  identity values (``rowid``, the holdings journal's ``seq``) grow in commit order, which
  the scope index relies on;
- ``snapshot`` reads under ``REPEATABLE READ``: one state of the views for the block;
- driver errors are translated into the ledger's error tree, without the server's DETAIL
  (it can quote row values);
- a rebuild builds aside and swaps in with ONE transaction (``scratch``, ``adopt``): the
  views are built in fresh schemas beside the store's own (``<schema>__rebuild_<i>``),
  committed batch by batch there, which nobody reads; the swap then replaces, in one
  transaction holding the write lock, every row of the rebuilt projections' tables (and
  their tracking, event marks, cache tokens and the holdings generation) by the built ones.
  It deletes and inserts rows rather than dropping or renaming tables: PostgreSQL's DDL is
  not MVCC-safe (a reader whose snapshot predates a swap by DDL would read the swapped-in
  table as of that snapshot: empty or half-built), while rows swapped in one transaction are seen by every reader all old or all
  new. Identity columns continue above the copied values (``setval``). A rebuild killed
  before the swap leaves the old views serving; its scratch schemas are dropped by the
  next rebuild. The shares of a partition-split rebuild are merged into the first
  scratch schema, then swapped in the same way (``merge``).
"""

from __future__ import annotations

import functools
import json
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

from consumers.views import (
    LEGACY_MARKS,
    check_not_overtaken,
    TRACKING_SCHEMA,
    Mark,
    ViewStore,
    ViewTransaction,
    merge_share,
)
from ledger.errors import ConfigurationError, IntegrityError, OperationalError, PersistenceError

#: First key of the advisory lock that serialises the writers of one set of views (the
#: second is the schema's hash: views in two schemas of one database do not wait for
#: each other).
WRITE_LOCK = 0x70646C76  # "pdlv"

_CREATE_TABLE = re.compile(r"^\s*CREATE TABLE (IF NOT EXISTS )?(\w+)\s*\(", re.I)
_INSERT_OR_IGNORE = re.compile(r"\bINSERT OR IGNORE INTO\b", re.I)
_RETURNING = re.compile(r"\bRETURNING\b", re.I)


def _placeholders(sql: str) -> str:
    """``?`` to ``%s`` and ``%`` to ``%%``, outside quoted strings and identifiers."""
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
        if quote:
            if ch == quote:
                quote = None
            out.append("%%" if ch == "%" else ch)
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


@lru_cache(maxsize=4096)
def to_postgres(sql: str) -> str:
    """The PostgreSQL form of a statement written for both stores (see the module doc)."""
    sql = re.sub(r"\bmain\.", "", sql)
    if _INSERT_OR_IGNORE.search(sql):
        sql = _INSERT_OR_IGNORE.sub("INSERT INTO", sql)
        returning = _RETURNING.search(sql)
        if returning:
            sql = (sql[: returning.start()] + "ON CONFLICT DO NOTHING "
                   + sql[returning.start():])
        else:
            sql = sql.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    if _CREATE_TABLE.match(sql):
        sql = re.sub(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b",
                     "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", sql, flags=re.I)
        sql = re.sub(r"\bINTEGER\b", "BIGINT", sql)
        sql = re.sub(r"\bBLOB\b", "BYTEA", sql)
        sql = re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', sql)
        if "PRIMARY KEY" not in sql.upper():
            head = _CREATE_TABLE.match(sql)
            assert head is not None
            sql = (sql[: head.end()] + "rowid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                   + sql[head.end():])
    return _placeholders(sql)


#: ``INSERT INTO t (cols) VALUES (%s, 0, ...)`` and what follows (after ``to_postgres``).
_INSERT_VALUES = re.compile(
    r"^\s*INSERT\s+INTO\s+(?P<table>\w+)\s*\((?P<columns>[^)]*)\)\s*VALUES\s*"
    r"\((?P<values>[^()']*)\)(?P<tail>.*)$", re.I | re.S)
_CONFLICT = re.compile(
    r"^\s*ON\s+CONFLICT\s*(?:\((?P<target>[^)]*)\))?\s*DO\s+(?P<action>NOTHING|UPDATE)\b",
    re.I | re.S)
#: A constant in ``VALUES`` the set form can carry as it is: an integer.
_INTEGER = re.compile(r"-?\d+")
#: Statements that may change a table's columns (their types are then read again).
_DDL = re.compile(r"^\s*(CREATE|DROP|ALTER)\b", re.I)


@dataclass(frozen=True)
class _SetInsert:
    """How to send an ``executemany`` of one ``INSERT ... VALUES`` as ONE statement: each
    column given by parameters goes as ONE array of the column's type, and ``unnest``
    zips the arrays back into rows (one short statement, prepared once by the server,
    instead of one execution per row, and no per-row parameter handling in the client).
    The arrays' types are the table's columns' (``statement``, ``_ColumnTypes``)."""

    table: str
    #: The columns given by parameters, as the statement spells them, and as the
    #: catalogue names them (unquoted, or folded to lower case).
    given: tuple[str, ...]
    names: tuple[str, ...]
    head: str  # ``INSERT INTO t (cols) SELECT cols-or-constants FROM unnest(``
    tail: str  # ``ON CONFLICT ...``, or empty
    #: For ``DO UPDATE``: the positions (in a row of parameters) of the conflict target's
    #: columns. A statement may not update a row twice, so rows with one key go in
    #: successive statements (``_rounds``).
    keys: tuple[int, ...] | None

    def statement(self, types: Sequence[str]) -> str:
        """The statement, given the types of the columns ``names`` (``format_type``)."""
        arrays = ", ".join(f"%s::{t}[]" for t in types)
        return (f"{self.head}{arrays}) AS r({', '.join(self.given)})"
                + (" " + self.tail if self.tail else ""))


def _catalog_name(column: str) -> str:
    """A column as the statement spells it, as the catalogue names it."""
    if len(column) >= 2 and column[0] == column[-1] == '"':
        return column[1:-1].replace('""', '"')
    return column.lower()


@lru_cache(maxsize=1024)
def _set_insert(sql: str) -> _SetInsert | None:
    """The one-statement form of a (translated) statement, if it has one that does exactly
    what running it once per row does: a plain ``INSERT ... VALUES`` of placeholders and
    integer constants, optionally ``ON CONFLICT ... DO NOTHING`` or ``DO UPDATE`` without
    placeholders. Rows are inserted in their order (identity columns grow as they would
    row by row)."""
    m = _INSERT_VALUES.match(sql)
    if m is None or "%s" in m["tail"] or _RETURNING.search(m["tail"]):
        return None
    columns = [c.strip() for c in m["columns"].split(",")]
    values = [v.strip() for v in m["values"].split(",")]
    if len(values) != len(columns) or not all(v == "%s" or _INTEGER.fullmatch(v)
                                              for v in values):
        return None
    given = tuple(c for c, v in zip(columns, values, strict=True) if v == "%s")
    if not given:
        return None
    names = tuple(_catalog_name(c) for c in given)
    tail = m["tail"].strip().rstrip(";")
    keys: tuple[int, ...] | None = None
    if tail:
        conflict = _CONFLICT.match(tail)
        if conflict is None:
            return None
        if conflict["action"].upper() == "UPDATE":
            if not conflict["target"]:
                return None
            target = [_catalog_name(c.strip()) for c in conflict["target"].split(",")]
            constant = {_catalog_name(c) for c in columns} - set(names)
            if not set(target) <= set(names) | constant:
                return None
            # a constant column of the key is the same in every row: not compared
            keys = tuple(names.index(c) for c in target if c in names)
    listed = ", ".join(columns)
    selected = ", ".join(c if v == "%s" else v for c, v in zip(columns, values, strict=True))
    table = m["table"]
    return _SetInsert(table, given, names,
                      f"INSERT INTO {table} ({listed}) SELECT {selected} FROM unnest(",
                      tail, keys)


def _rounds(rows: list[Sequence[Any]], keys: tuple[int, ...]) -> list[list[Sequence[Any]]]:
    """``rows`` split into statements that each update a key at most once: every key's
    first row, then every key's second row, and so on. Run in that order they do what
    a statement per row does: a key's rows keep their order, and rows of different keys
    touch different rows of the table. (Only a key's first row can insert: identity
    values are still given in the rows' order.)"""
    found = list(map(operator.itemgetter(*keys), rows))
    if len(set(found)) == len(found):
        return [rows]  # every key once (the usual case)
    rounds: list[list[Sequence[Any]]] = []
    count: dict[Any, int] = {}
    for key, row in zip(found, rows):
        n = count.get(key, 0)
        count[key] = n + 1
        if n == len(rounds):
            rounds.append([row])
        else:
            rounds[n].append(row)
    return rounds


# --- rows as arrays -------------------------------------------------------------------
#
# A parameter of a statement per row reaches its column as PostgreSQL reads it: a Python
# ``str`` is sent untyped, so the column's type reads its text; an ``int`` as an integer,
# which an integer column stores and a text column writes in decimal; ``bool`` as 0/1
# (``_BoolAsInt``); ``bytes`` as ``bytea``, which a text column writes as hex. The array
# form gives each column ONE array literal whose elements are exactly those texts, read
# by the column type's input function: the same values. Anything else (a float: the
# server rounds it into an integer column and writes it its own way into a text one;
# an int into ``bytea``: refused; any other type) goes row by row.

#: How a column type's values are written as array elements, by ``format_type`` of the
#: column's type without its modifier (a ``varchar(n)`` array cast would truncate;
#: the assignment to the column checks the length, as a parameter's would).
_KINDS = {"bigint": "int", "integer": "int", "smallint": "int",
          "text": "text", "character varying": "text", "bytea": "bytea"}
_NONE = type(None)
_INT_PLAIN = frozenset({int, bool, _NONE})
_INT_ANY = frozenset({int, bool, str, _NONE})
_TEXT_PLAIN = frozenset({str, _NONE})
_TEXT_ANY = frozenset({str, int, bool, bytes, _NONE})
_BYTEA_ANY = frozenset({bytes, str, _NONE})


def _as_text(value: Any) -> str | None:
    """A value as a text column reads its parameter (see above)."""
    kind = type(value)
    if kind is str or value is None:
        return value
    if kind is bool:
        return "1" if value else "0"
    if kind is bytes:
        return "\\x" + value.hex()
    return str(value)  # an int


def _quoted(column: Sequence[str | None]) -> str:
    """Texts (or NULLs) as an array literal of quoted elements. JSON writes a list of
    strings as an array literal does (elements in double quotes, ``\\"`` and ``\\\\``
    inside, ``null`` for NULL): the quick way, in C, unless a control character got
    another escape, which the literal would not read back: its length tells."""
    text = json.dumps(column, ensure_ascii=False, separators=(",", ":"))
    given = "".join(filter(None, column))
    nulls = column.count(None)
    if len(text) != (len(given) + given.count('"') + given.count("\\") + len(column) + 1
                     + 2 * (len(column) - nulls) + 4 * nulls):
        text = "[" + ",".join(["null" if v is None else
                               '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                               for v in column]) + "]"
    return "{" + text[1:-1] + "}"


def _array_literal(kind: str, column: Sequence[Any]) -> str | None:
    """``column`` (one value per row) as the literal of an array of the column's type
    ``kind`` (``_KINDS``) whose elements are what parameters would store, or None if a
    value has no such element (see above)."""
    kinds = set(map(type, column))
    if kind == "int":
        if kinds <= _INT_PLAIN:
            # JSON's numbers and null are the literal's; true/false become 1/0
            text = json.dumps(column, separators=(",", ":"))
            if bool in kinds:
                text = text.replace("true", "1").replace("false", "0")
            return "{" + text[1:-1] + "}"
        if not kinds <= _INT_ANY:
            return None
    elif kind == "text":
        if not kinds <= _TEXT_ANY:
            return None
    elif not kinds <= _BYTEA_ANY:
        return None
    if not kinds <= _TEXT_PLAIN:
        column = [_as_text(v) for v in column]
    return _quoted(column)


#: Values of a conflict key that are equal in Python where the column finds them equal
#: (``_rounds``): one type per kind (1 and "1" are one key of a text column).
_KEY_TYPES = {"int": _INT_PLAIN, "text": _TEXT_PLAIN, "bytea": frozenset({bytes, _NONE})}


def _arrays(kinds: Sequence[str], keys: tuple[int, ...] | None,
            rows: list[Sequence[Any]]) -> list[list[str]] | None:
    """The parameters of the statements of the array form: per round (``_rounds``, if
    ``keys``), one array literal per column; None if a value has none, a row is of
    another length, or a key's values are not compared as the column compares them
    (the rows then go one by one)."""
    if set(map(len, rows)) != {len(kinds)}:
        return None
    rounds = [rows]
    if keys is not None:
        for k in keys:
            if not set(map(type, map(operator.itemgetter(k), rows))) <= _KEY_TYPES[kinds[k]]:
                return None
        rounds = _rounds(rows, keys)
    statements = []
    for part in rounds:
        arrays = []
        for kind, column in zip(kinds, zip(*part), strict=True):
            literal = _array_literal(kind, column)
            if literal is None:
                return None
            arrays.append(literal)
        statements.append(arrays)
    return statements


class _ColumnTypes:
    """The types of the columns the array form writes (``_SetInsert.statement``), read
    from the catalogue once per table and connection, with the version of the table's
    catalogue row (``pg_class``: its oid and ``xmin``, which a table dropped and made
    again, or altered in a way that changes a column's type, does not keep). Each
    transaction queues the versions of the tables it knows behind its first statement
    (``VERSIONS``: the answer comes with the first round trip it pays anyway) and reads
    a table again if its version moved. DDL run through the store, and a failed
    transaction, forget them all."""

    VERSIONS = ("SELECT t.name, c.oid::text || ':' || c.xmin::text "
                "FROM unnest(%s::text[]) AS t(name) LEFT JOIN pg_class c "
                "ON c.oid = to_regclass(t.name)")
    COLUMNS = ("SELECT a.attname, format_type(a.atttypid, NULL), "
               "c.oid::text || ':' || c.xmin::text FROM pg_class c JOIN pg_attribute a "
               "ON a.attrelid = c.oid WHERE c.oid = to_regclass(%s) AND a.attnum > 0 "
               "AND NOT a.attisdropped")

    def __init__(self) -> None:
        #: the version of each table read (None: no such table then)
        self.versions: dict[str, str | None] = {}
        #: per statement: its array form and the kinds of its columns, or None (none)
        self.plans: dict[_SetInsert, tuple[str, tuple[str, ...]] | None] = {}

    def forget(self) -> None:
        self.versions.clear()
        self.plans.clear()

    def check(self, versions: Iterable[tuple[str, str | None]]) -> None:
        """Forget the tables whose version is not the one their types were read at."""
        moved = {table for table, version in versions
                 if table in self.versions and self.versions[table] != version}
        if moved:
            for table in moved:
                del self.versions[table]
            for plan in [p for p in self.plans if p.table in moved]:
                del self.plans[plan]


class _BoolAsInt(Dumper):
    """``True``/``False`` as 1/0 in integer columns (SQLite's booleans)."""

    oid = psycopg.postgres.types["int8"].oid
    format = Format.TEXT

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


def _translate(exc: psycopg.Error, what: str) -> PersistenceError:
    # message_primary only: the DETAIL of a constraint error quotes the row's values
    primary = exc.diag.message_primary if exc.diag and exc.diag.message_primary else type(exc).__name__
    message = f"{what}: {primary}"
    if isinstance(exc, psycopg.errors.IntegrityError):
        return IntegrityError(message)
    if isinstance(exc, psycopg.OperationalError | psycopg.errors.SerializationFailure
                  | psycopg.errors.DeadlockDetected):
        return OperationalError(message)
    return PersistenceError(message)


class _PostgresTransaction(ViewTransaction):
    """Runs in pipeline mode: writes are queued and sent together, and a round trip is
    paid only where a result is needed (a query, a row count)."""

    def __init__(self, conn: psycopg.Connection[Any], pipeline: psycopg.Pipeline,
                 types: _ColumnTypes):
        self._conn = conn
        self._pipeline = pipeline
        self._cur = conn.cursor()
        self._types = types
        # the versions of the tables whose column types are known, queued now: the
        # answer comes with the first round trip (the transaction's positions)
        self._versions: psycopg.Cursor[Any] | None = None
        if types.versions:
            self._versions = conn.cursor()
            self._versions.execute(_ColumnTypes.VERSIONS, (list(types.versions),))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self._cur
        pg = to_postgres(sql)
        if _DDL.match(pg):
            self._types.forget()
        cur.execute(pg, params or None)
        self._pipeline.sync()
        return max(cur.rowcount, 0)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Rows of an ``INSERT ... VALUES`` go in ONE statement of one array per column
        (``_set_insert``), or one per repeat of a conflict key (``_rounds``), where that
        does exactly what a statement per row would; anything else row by row,
        pipelined."""
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return
        pg = to_postgres(sql)
        plan = _set_insert(pg) if len(rows) > 1 else None
        form = self._array_form(plan) if plan is not None else None
        if plan is not None and form is not None:
            statement, kinds = form
            statements = _arrays(kinds, plan.keys, rows)
            if statements is not None:
                for params in statements:
                    self._cur.execute(statement, params)
                return
        self._cur.executemany(pg, rows)

    def _array_form(self, plan: _SetInsert) -> tuple[str, tuple[str, ...]] | None:
        """``plan``'s statement for the types of its table's columns, and their kinds;
        None if a column is missing or of a type the arrays do not carry."""
        types = self._types
        if self._versions is not None:
            types.check(self._versions.fetchall())
            self._versions = None
        if plan in types.plans:
            return types.plans[plan]
        columns = self._conn.execute(_ColumnTypes.COLUMNS, (plan.table,)).fetchall()
        found = {name: kind for name, kind, _ in columns}
        names = [found.get(name) for name in plan.names]
        form = None
        if all(t in _KINDS for t in names):
            form = (plan.statement(names), tuple(_KINDS[t] for t in names))
        types.versions[plan.table] = columns[0][2] if columns else None
        types.plans[plan] = form
        return form

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(to_postgres(sql), params or None).fetchall()

    def columns(self, table: str) -> list[str]:
        return [row[0] for row in self._conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = %s ORDER BY ordinal_position", (table,))]

    def key_columns(self, table: str, source: str) -> list[str]:
        return [row[0] for row in self._conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indisprimary AND i.indrelid = "
            "(quote_ident(%s) || '.' || quote_ident(%s))::regclass ORDER BY a.attnum",
            (_unquote(source), table))]

    def copy_rows(self, table: str, source: str) -> int:
        # identity columns SQLite keeps hidden (``rowid``) are numbered afresh here, as
        # SQLite numbers them
        names = [row[0] for row in self._conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = %s AND is_identity = 'NO' ORDER BY ordinal_position",
            (_unquote(source), table))]
        columns = ", ".join(_ident(n) for n in names)
        return self.execute(f"INSERT INTO {_ident(table)} ({columns}) SELECT {columns} "
                            f"FROM {_ident(_unquote(source))}.{_ident(table)} "
                            "ON CONFLICT DO NOTHING")

    #: The batch's marks as rows (four JSON arrays zipped by the server: quicker to send
    #: than ``text[]`` arrays).
    _MARKS = ("SELECT k, p::bigint AS p, o::bigint AS o, t FROM ROWS FROM ("
              "json_array_elements_text(%s::json), json_array_elements_text(%s::json), "
              "json_array_elements_text(%s::json), json_array_elements_text(%s::json)) "
              "AS m(k, p, o, t)")

    def mark(self, marks: Sequence[Mark], shared: Sequence[Mark] = ()
             ) -> dict[str, tuple[int, int]]:
        # ONE round trip: the insert, and the marks stored before it (the statement's
        # snapshot does not see its own insert) that name another position
        marks = [*marks, *shared]
        if not marks:
            return {}
        # (the join runs only if some key was not inserted: a one-time filter)
        rows = self._conn.execute(
            f"WITH j AS ({self._MARKS}), ins AS ("
            'INSERT INTO event_marks (event_id, partition, "offset", event_type) '
            "SELECT k, p, o, t FROM j ON CONFLICT DO NOTHING RETURNING 1) "
            'SELECT m.event_id, m.partition, m."offset" FROM j '
            "JOIN event_marks AS m ON m.event_id = j.k "
            "WHERE (SELECT count(*) FROM ins) < %s "
            'AND (m.partition <> j.p OR m."offset" <> j.o)',
            (*_mark_arrays(marks), len(marks))).fetchall()
        return {key: (int(partition), int(offset)) for key, partition, offset in rows}

    def insert_marks(self, marks: Sequence[Mark]) -> int:
        return self.execute(
            'INSERT INTO event_marks (event_id, partition, "offset", event_type) '
            f"SELECT k, p, o, t FROM ({self._MARKS.replace('%s', '?')}) AS j "
            "ON CONFLICT DO NOTHING", _mark_arrays(marks))

    def marks_elsewhere(self, marks: Sequence[Mark]) -> dict[str, tuple[int, int]]:
        rows = self._conn.execute(
            f'WITH j AS ({self._MARKS}) SELECT m.event_id, m.partition, m."offset" FROM j '
            "JOIN event_marks AS m ON m.event_id = j.k "
            'WHERE m.partition <> j.p OR m."offset" <> j.o', _mark_arrays(marks)).fetchall()
        return {key: (int(partition), int(offset)) for key, partition, offset in rows}

    def new_ids(self, projection: str, event_ids: Sequence[str]) -> set[str]:
        rows = self._conn.execute(
            "INSERT INTO applied_events (projection, event_id) SELECT %s, unnest(%s::text[]) "
            "ON CONFLICT DO NOTHING RETURNING event_id", (projection, list(event_ids)))
        return {row[0] for row in rows.fetchall()}


def _mark_arrays(marks: Sequence[Mark]) -> tuple[str, str, str, str]:
    keys, partitions, offsets, types = zip(*marks, strict=True)
    return json.dumps(keys), json.dumps(partitions), json.dumps(offsets), json.dumps(types)


class PostgresViewStore(ViewStore):
    """Views in a PostgreSQL database, shared by every consumer and reader given its URL.

    ``schema`` (a scratch store of a rebuild, ``scratch_opener``) overrides the URL's
    schema: every name then resolves in that schema alone.
    """

    def __init__(self, url: str, *, schema: str | None = None):
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigurationError(
                "LEDGER_VIEWS_URL must be a postgresql:// URL "
                "(for example postgresql://pdl@db:5432/pdl)")
        self.url = url
        try:
            self._conn = psycopg.connect(url, autocommit=True, application_name="pdl-views")
        except psycopg.Error as exc:
            raise OperationalError(
                f"cannot connect to the view database named by LEDGER_VIEWS_URL: "
                f"{_first_line(exc)}") from exc
        self._conn.adapters.register_dumper(bool, _BoolAsInt)
        self._in_tx = False
        self._types = _ColumnTypes()
        try:
            if schema is not None:
                self._conn.execute("SELECT set_config('search_path', %s, false)",
                                   (_ident(schema),))
            ((self.schema,),) = self._conn.execute("SELECT current_schema()").fetchall()
        except psycopg.Error as exc:
            raise _translate(exc, "choosing the view schema failed") from exc
        if self.schema is None:
            raise ConfigurationError(
                "LEDGER_VIEWS_URL names no schema the user may create tables in "
                "(its search_path is empty or names schemas that do not exist)")
        with self.transaction() as tx:
            # in a store made before ``event_marks``, its applied ids become LEGACY marks
            # (under the write lock: one process does it)
            ((older,),) = tx.query("SELECT to_regclass('event_marks') IS NULL AND "
                                   "to_regclass('applied_events') IS NOT NULL")
            for statement in TRACKING_SCHEMA.split(";"):
                if statement.strip():
                    tx.execute(statement)
            if older:
                tx.execute(LEGACY_MARKS)

    @property
    def where(self) -> str:
        """The database, for messages: host and name, never the password."""
        info = self._conn.info
        return f"postgresql {info.host}:{info.port}/{info.dbname}"

    @contextmanager
    def transaction(self) -> Iterator[ViewTransaction]:
        conn = self._conn
        try:
            conn.execute("BEGIN")
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))",
                         (WRITE_LOCK,))
        except psycopg.Error as exc:
            self._rollback()
            raise _translate(exc, f"the view store {self.where} is unavailable") from exc
        try:
            with conn.pipeline() as pipeline:
                yield _PostgresTransaction(conn, pipeline, self._types)
        except psycopg.Error as exc:
            self._types.forget()  # DDL rolled back, or a statement typed by stale types
            self._rollback()
            raise _translate(exc, f"writing views to {self.where} failed") from exc
        except BaseException:
            self._types.forget()
            self._rollback()
            raise
        try:
            conn.execute("COMMIT")
        except psycopg.Error as exc:
            self._types.forget()
            self._rollback()
            raise _translate(exc, f"committing views to {self.where} failed") from exc

    def _rollback(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except psycopg.Error:
            pass  # the connection is gone: the server rolled back for us

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(to_postgres(sql), params or None).fetchall()
        except psycopg.Error as exc:
            if not self._in_tx:
                self._rollback()
            raise _translate(exc, f"reading views from {self.where} failed") from exc

    def rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        # a named (server-side) cursor needs a transaction: read in one, unless inside one
        if self._in_tx:
            with self._conn.cursor(name="pdl_rows") as cur:
                cur.execute(to_postgres(sql), params or None)
                while batch := cur.fetchmany(4096):
                    yield from batch
            return
        with self.snapshot():
            yield from self.rows(sql, params)

    @contextmanager
    def snapshot(self) -> Iterator[ViewStore]:
        if self._in_tx:
            yield self
            return
        self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self._in_tx = True
        try:
            yield self
        finally:
            self._in_tx = False
            self._rollback()

    # --- building aside ------------------------------------------------------------------

    @property
    def builds_aside(self) -> bool:
        return True


    def _scratch_prefix(self) -> str:
        return f"{self.schema}__rebuild_"

    def scratch(self, count: int) -> list[str] | None:
        self.drop_scratch()  # a rebuild killed earlier left them
        places = [f"{self._scratch_prefix()}{i}" for i in range(count)]
        try:
            for place in places:
                self._conn.execute(f"CREATE SCHEMA {_ident(place)}")
        except psycopg.Error as exc:
            raise _translate(exc, f"creating a schema to rebuild views in {self.where} "
                                  "failed (the user needs CREATE on the database)") from exc
        return places

    def scratch_opener(self) -> Callable[[str], ViewStore]:
        return functools.partial(_open_scratch, self.url)

    def drop_scratch(self) -> None:
        prefix = self._scratch_prefix()
        try:
            names = [row[0] for row in self._conn.execute(
                "SELECT nspname FROM pg_namespace WHERE left(nspname, %s) = %s",
                (len(prefix), prefix)).fetchall()]
            for name in names:
                self._conn.execute(f"DROP SCHEMA IF EXISTS {_ident(name)} CASCADE")
        except psycopg.Error as exc:
            raise _translate(exc, f"dropping rebuild schemas in {self.where} failed") from exc

    def adopt(self, sources: Sequence[str], groups: Sequence[Sequence[Any]]) -> None:
        """Replace the views of the projections ``groups[i]`` by those built in the scratch
        schema ``sources[i]``: every table built there (the projections' own, and any they
        keep beside them such as the holdings generation), their tracking and cache tokens,
        the marks of the events they applied (a mark here stays: the projections not
        rebuilt applied its copy; all go first if no other projection is left, see
        ``forget_marks_if_unused``), and the records quarantined, in ONE transaction (see
        the module doc).
        """
        live = _ident(self.schema)
        with self.transaction() as tx:
            for projections in groups:
                names = [p.name for p in projections]
                marks = ",".join("?" * len(names))
                for table in ("tracking", "applied_events", "view_meta"):
                    tx.execute(f"DELETE FROM {live}.{table} WHERE projection IN ({marks})",
                               names)
            kept = tx.forget_marks_if_unused()
            for source, projections in zip(sources, groups, strict=True):
                names = [p.name for p in projections]
                built = _tables(tx, source)
                here = set(_tables(tx, self.schema))
                for table in built:
                    if table in _BOOKKEEPING:
                        continue
                    if table in here and (_layout(tx, self.schema, table)
                                          != _layout(tx, source, table)):
                        # built under another layout (an upgrade): the table itself is
                        # replaced, which readers of an older snapshot cannot see through
                        tx.execute(f"DROP TABLE {live}.{_ident(table)}")
                        here.discard(table)
                    if table not in here:  # a projection's table this store never had
                        tx.execute(f"CREATE TABLE {live}.{_ident(table)} "
                                   f"(LIKE {_ident(source)}.{_ident(table)} INCLUDING ALL)")
                    self._replace_rows(tx, source, table)
                marks = ",".join("?" * len(names))
                for table in ("tracking", "view_meta"):
                    if table in built:
                        tx.execute(f"INSERT INTO {live}.{table} SELECT * FROM "
                                   f"{_ident(source)}.{table} WHERE projection IN ({marks})",
                                   names)
                # a mark here stays: the projections not rebuilt applied its copy
                tx.execute(f"INSERT INTO {live}.event_marks SELECT * FROM "
                           f"{_ident(source)}.event_marks ON CONFLICT DO NOTHING")
                if kept:
                    check_not_overtaken(tx, live, _ident(source), projections)
                for table in ("quarantine", "subject_partitions"):
                    tx.execute(f"INSERT INTO {live}.{table} SELECT * FROM "
                               f"{_ident(source)}.{table} ON CONFLICT DO NOTHING")

    def merge(self, sources: Sequence[str], projections: Sequence[Any]) -> int:
        """Replace the views of ``projections`` by the union of those built in the scratch
        schemas ``sources`` (one share of the log's partitions each): the shares are
        merged into the first scratch schema (``Projection.merge``: people's rows are
        disjoint, rows about no one kept once), which nobody reads, then swapped in by
        ``adopt``, in ONE transaction. Raises ``IntegrityError`` (nothing changed) if a
        person's rows are in two shares. Returns the applications made in more than one
        share, for the caller's count."""
        target = PostgresViewStore(self.url, schema=sources[0])
        repeated = 0
        try:
            with target.transaction() as tx:
                for i, source in enumerate(sources[1:], 1):
                    repeated += merge_share(tx, projections, _ident(source),
                                            [_ident(s) for s in sources[:i]])
                    for table in ("quarantine", "subject_partitions"):
                        tx.execute(f"INSERT INTO {table} SELECT * FROM {_ident(source)}.{table} "
                                   "ON CONFLICT DO NOTHING")
        finally:
            target.close()
        self.adopt(sources[:1], [projections])
        return repeated

    def _replace_rows(self, tx: ViewTransaction, source: str, table: str) -> None:
        live, built = f"{_ident(self.schema)}.{_ident(table)}", f"{_ident(source)}.{_ident(table)}"
        tx.execute(f"DELETE FROM {live}")
        tx.execute(f"INSERT INTO {live} OVERRIDING SYSTEM VALUE SELECT * FROM {built}")
        for (column,) in tx.query(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
                "AND table_name = ? AND is_identity = 'YES'", (self.schema, table)):
            # later rows (a consumer's, after the swap) continue above the copied values
            tx.query("SELECT setval(pg_get_serial_sequence(?, ?), "
                     f"coalesce((SELECT max({_ident(column)}) FROM {live}), 0) + 1, false)",
                     (live, column))

    def close(self) -> None:
        self._conn.close()


#: Tables of every view store, not of one projection: swapped row by row per projection.
_BOOKKEEPING = frozenset({"tracking", "event_marks", "applied_events", "view_meta",
                          "quarantine", "subject_partitions"})


def _ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _unquote(name: str) -> str:
    """A schema name as given to SQL (quoted by ``_ident``, or plain) as the catalogue has it."""
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return name[1:-1].replace('""', '"')
    return name


def _tables(tx: ViewTransaction, schema: str) -> list[str]:
    return [row[0] for row in tx.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
        "AND table_type = 'BASE TABLE' ORDER BY table_name", (schema,))]


def _layout(tx: ViewTransaction, schema: str, table: str) -> list[tuple[Any, ...]]:
    """A table's columns: name, type, identity."""
    return tx.query(
        "SELECT column_name, data_type, is_identity FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position", (schema, table))


def _open_scratch(url: str, schema: str) -> PostgresViewStore:
    """A scratch store of a rebuild (``PostgresViewStore.scratch_opener``; picklable)."""
    return PostgresViewStore(url, schema=schema)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
