"""Where projections keep their views, and their log positions next to them.

The idea is the eventsourcing library's ``TrackingRecorder``: a projection writes its view
rows and the log position it has reached in ONE transaction, so after a crash it resumes
exactly where its last committed transaction ended: nothing skipped, nothing twice.

A view store is a SQL database behind a small interface (``transaction()`` yielding a
``ViewTransaction``), so a second backend (PostgreSQL) plugs in without touching the
projections. Projections write portable SQL with ``?`` placeholders and ``ON CONFLICT``;
a backend translates what its dialect spells otherwise (``consumers.postgres``), and
the statements that differ most (``ViewTransaction.insert_marks``, ``marks_elsewhere``)
are methods of the transaction.
"""

from __future__ import annotations

import functools
import json
import shutil
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.errors import ConfigurationError, OperationalError, PersistenceError
from ledger.files import private_file
from ledger.persistence import LogRecord, Position
from ledger.settings import Settings

#: Default SQLite page cache of a view store, in MB (``LEDGER_VIEW_CACHE_MB``).
DEFAULT_CACHE_MB = Settings.view_cache_mb
#: WAL pages between checkpoints (SQLite's default is 1000): a projection's batches touch
#: pages all over its tables, and a page written by several batches is copied back to the
#: database once per checkpoint.
WAL_AUTOCHECKPOINT = 10_000
#: ``first_time`` inserts with RETURNING (3.35) from ``json_each`` (built in since 3.38).
MIN_SQLITE = (3, 38)

TRACKING_SCHEMA = """
CREATE TABLE IF NOT EXISTS tracking (
    projection  TEXT NOT NULL,
    log_id      TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    "offset"    INTEGER NOT NULL,
    PRIMARY KEY (projection, log_id, partition)
);
CREATE TABLE IF NOT EXISTS event_marks (
    event_id    TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    "offset"    INTEGER NOT NULL,
    event_type  TEXT,
    PRIMARY KEY (event_id)
);
CREATE TABLE IF NOT EXISTS applied_events (
    projection  TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (projection, event_id)
);
CREATE TABLE IF NOT EXISTS quarantine (
    log_id         TEXT NOT NULL,
    partition      INTEGER NOT NULL,
    "offset"       INTEGER NOT NULL,
    event_id       TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    subject        TEXT,
    reason         TEXT NOT NULL,
    payload        BLOB,
    recorded_at    TEXT NOT NULL,
    quarantined_at TEXT NOT NULL,
    dead_lettered  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (log_id, partition, "offset")
);
CREATE TABLE IF NOT EXISTS subject_partitions (
    log_id      TEXT NOT NULL,
    pseudonym   TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    PRIMARY KEY (log_id, pseudonym, partition)
);
"""
#: SQLite's ``event_marks`` and ``applied_events``: the same tables without a rowid (the
#: key is the only index, so a mark is one B-tree insertion, not two).
SQLITE_TRACKING_SCHEMA = TRACKING_SCHEMA.replace(
    "PRIMARY KEY (projection, event_id)\n)", "PRIMARY KEY (projection, event_id)\n) WITHOUT ROWID"
).replace("PRIMARY KEY (event_id)\n)", "PRIMARY KEY (event_id)\n) WITHOUT ROWID")
#: The mark of an event applied by a store made before marks existed (``applied_events``
#: then held every projection's applied ids; see ``LEGACY_MARKS``).
LEGACY = (-1, -1)
#: Turns an older store's per-projection applied ids into marks: each id gets the mark
#: ``LEGACY``, and for those ``applied_events`` keeps deciding, projection by projection.
LEGACY_MARKS = ('INSERT OR IGNORE INTO event_marks (event_id, partition, "offset") '
                "SELECT DISTINCT event_id, -1, -1 FROM applied_events")
#: A mark to set: (key, partition, offset, event type or None).
Mark = tuple[str, int, int, str | None]
#: Columns of a quarantine row, in table order.
QUARANTINE_COLUMNS = ("log_id", "partition", "offset", "event_id", "event_type", "subject",
                      "reason", "payload", "recorded_at", "quarantined_at", "dead_lettered")
#: Longest reason kept for a quarantined record.
MAX_REASON = 2000


class ViewTransaction(ABC):
    """One open transaction on a view store."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; return the number of rows it changed."""

    @abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def columns(self, table: str) -> list[str]:
        """The columns of ``table`` in this store, in order (empty if there is none)."""
        return [row[1] for row in self.query(f"PRAGMA table_info({table})")]

    def key_columns(self, table: str, source: str) -> list[str]:
        """The primary key columns of ``table`` in the attached store ``source``."""
        return [row[1] for row in self.query(f"PRAGMA {source}.table_info({table})") if row[5]]

    def copy_rows(self, table: str, source: str) -> int:
        """Add the rows of ``table`` in the attached store ``source`` to this store's,
        but those whose key is here already; return how many were added."""
        return self.execute(f"INSERT OR IGNORE INTO main.{table} SELECT * FROM {source}.{table}")

    def track(self, projection: str, log_id: str, position: Position) -> None:
        """Record how far ``projection`` has read ``log_id``: commits with the view rows."""
        self.executemany(
            'INSERT INTO tracking (projection, log_id, partition, "offset") VALUES (?, ?, ?, ?) '
            'ON CONFLICT (projection, log_id, partition) DO UPDATE SET "offset" = excluded."offset"',
            [(projection, log_id, p, o) for p, o in position.items()],
        )

    def position(self, projection: str, log_id: str) -> Position:
        """The tracked position, read inside this transaction (so it cannot move under us)."""
        rows = self.query(
            'SELECT partition, "offset" FROM tracking WHERE projection = ? AND log_id = ?',
            (projection, log_id),
        )
        return {int(p): int(o) for p, o in rows}

    def positions(self, log_id: str) -> dict[str, Position]:
        """Every projection's tracked position in ``log_id``, read inside this transaction
        (one statement for all of them)."""
        out: dict[str, Position] = {}
        for projection, partition, offset in self.query(
                'SELECT projection, partition, "offset" FROM tracking WHERE log_id = ?',
                (log_id,)):
            out.setdefault(projection, {})[int(partition)] = int(offset)
        return out

    def quarantine(self, log_id: str, entries: Sequence[tuple[LogRecord, str]]) -> None:
        """Set aside records that cannot be applied, with their reasons: committed with the
        positions that move past them. A record already set aside stays as it was."""
        now = datetime.now(UTC).isoformat()
        self.executemany(
            'INSERT INTO quarantine (log_id, partition, "offset", event_id, event_type, '
            "subject, reason, payload, recorded_at, quarantined_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            'ON CONFLICT (log_id, partition, "offset") DO NOTHING',
            [(log_id, r.partition, r.offset, r.event_id[:200], r.event_type[:200],
              r.subject[:300] if r.subject else None, reason[:MAX_REASON], r.payload,
              r.recorded_at.isoformat(), now) for r, reason in entries])

    def note_partitions(self, log_id: str, pairs: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
        """Record in which partitions these people's events were found; return those of
        them found in more than one partition, with the partitions."""
        pairs = list(pairs)
        if not pairs:
            return {}
        self.executemany(
            "INSERT INTO subject_partitions (log_id, pseudonym, partition) VALUES (?, ?, ?) "
            "ON CONFLICT (log_id, pseudonym, partition) DO NOTHING",
            [(log_id, person, partition) for person, partition in pairs])
        people = sorted({person for person, _ in pairs})
        found: dict[str, list[int]] = {}
        for i in range(0, len(people), 500):
            chunk = people[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for person, partition in self.query(
                    "SELECT pseudonym, partition FROM subject_partitions WHERE log_id = ? "
                    f"AND pseudonym IN ({marks}) ORDER BY pseudonym, partition",
                    (log_id, *chunk)):
                found.setdefault(person, []).append(int(partition))
        return {person: parts for person, parts in found.items() if len(parts) > 1}

    def mark(self, marks: Sequence[Mark], shared: Sequence[Mark] = ()
             ) -> dict[str, tuple[int, int]]:
        """Mark where each event was first met: each key's (partition, offset), unless the
        key is marked already (see docs/ordering.md, "Retried copies"). Each key is given
        once, in ``marks`` or, for events about no one (copied to every partition, so
        usually marked already: kept apart to leave ``marks`` its fast path), in
        ``shared``. Returns the keys marked before at another position than the one
        given, with their marks (a retried copy, an event about no one met first in
        another partition, a projection meeting again what it was reset from); a key not
        returned is marked where given.

        The usual case is one statement: the insert, without rows back. SQLite reads the
        marks elsewhere with one more if some key was marked already; PostgreSQL does
        it all in one.
        """
        elsewhere: dict[str, tuple[int, int]] = {}
        if marks and self.insert_marks(marks) != len(marks):
            elsewhere = self.marks_elsewhere(marks)
        if shared and self.insert_marks(shared) != len(shared):
            elsewhere.update(self.marks_elsewhere(shared))
        return elsewhere

    @abstractmethod
    def insert_marks(self, marks: Sequence[Mark]) -> int:
        """Insert the marks whose keys are not marked yet, in one statement; return how
        many went in."""

    @abstractmethod
    def marks_elsewhere(self, marks: Sequence[Mark]) -> dict[str, tuple[int, int]]:
        """The stored marks of these keys that name another position than the one given,
        in one statement."""

    def forget_marks_if_unused(self) -> None:
        """Drop every mark once no projection has a position in this store (each one was
        just reset): a mark says which copy the projections past it applied, and there
        are none. A store that follows a topic made again from nothing needs this, and
        it keeps the marks of a full rebuild those of the log as read then."""
        if not self.query("SELECT 1 FROM main.tracking LIMIT 1"):
            self.execute("DELETE FROM main.event_marks")
            self.execute("DELETE FROM main.applied_events")

    def first_time(self, projection: str, event_ids: Sequence[str]) -> list[bool]:
        """Mark events as applied by ``projection`` (``applied_events``); per id, whether it
        is its first time. Only for ids marked ``LEGACY`` (a store made before
        ``event_marks``): for them, each projection keeps deciding as it did then.

        An id repeated within ``event_ids`` is new at most once, at its first occurrence.
        """
        if not event_ids:
            return []
        return first_occurrences(event_ids, self.new_ids(projection, event_ids))

    @abstractmethod
    def new_ids(self, projection: str, event_ids: Sequence[str]) -> set[str]:
        """Insert the ``(projection, id)`` pairs not yet in ``applied_events``, in one
        statement; return the ids inserted (each once)."""


def first_occurrences(event_ids: Sequence[str], pending: set[str]) -> list[bool]:
    """Per id, whether it is in ``pending`` (the ids just marked applied), at its first
    occurrence only."""
    out = []
    for event_id in event_ids:
        if event_id in pending:
            pending.discard(event_id)
            out.append(True)
        else:
            out.append(False)
    return out


class ViewStore(ABC):
    """A database holding projection views and their tracking rows."""

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[ViewTransaction]:
        """A transaction: committed if the block ends normally, rolled back otherwise."""
        yield  # type: ignore[misc]

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read outside any write transaction."""

    def rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """``query``, a row at a time (for reads too big to hold as one list)."""
        yield from self.query(sql, params)

    def position(self, projection: str, log_id: str) -> Position:
        rows = self.query(
            'SELECT partition, "offset" FROM tracking WHERE projection = ? AND log_id = ?',
            (projection, log_id),
        )
        return {int(p): int(o) for p, o in rows}

    def quarantine_counts(self) -> dict[str, int]:
        """Records set aside, per log."""
        return {log_id: int(n) for log_id, n in self.query(
            "SELECT log_id, count(*) FROM quarantine GROUP BY log_id")}

    def split_people(self, log_id: str, limit: int = 20) -> tuple[int, dict[str, list[int]]]:
        """People whose events were found in more than one partition of the log: how many,
        and up to ``limit`` of them with their partitions."""
        split = ("SELECT pseudonym FROM subject_partitions WHERE log_id = ? "
                 "GROUP BY pseudonym HAVING count(*) > 1")
        ((count,),) = self.query(f"SELECT count(*) FROM ({split}) AS s", (log_id,))
        out: dict[str, list[int]] = {}
        if count:
            for person, partition in self.query(
                    "SELECT pseudonym, partition FROM subject_partitions WHERE log_id = ? AND "
                    f"pseudonym IN ({split} ORDER BY pseudonym LIMIT ?) "
                    "ORDER BY pseudonym, partition", (log_id, log_id, limit)):
                out.setdefault(person, []).append(int(partition))
        return int(count), out

    def quarantined(self, log_id: str | None = None, *, limit: int = 100,
                    after: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """Quarantined records in log order (without payloads), ``limit`` of them after the
        position ``after``."""
        where, params = [], []
        if log_id is not None:
            where.append("log_id = ?")
            params.append(log_id)
        if after is not None:
            where.append('(partition > ? OR (partition = ? AND "offset" > ?))')
            params += [after[0], after[0], after[1]]
        sql = ('SELECT log_id, partition, "offset", event_id, event_type, subject, reason, '
               "recorded_at, quarantined_at, dead_lettered FROM quarantine"
               + (" WHERE " + " AND ".join(where) if where else "")
               + ' ORDER BY log_id, partition, "offset" LIMIT ?')
        names = ("log_id", "partition", "offset", "event_id", "event_type", "subject",
                 "reason", "recorded_at", "quarantined_at", "dead_lettered")
        return [dict(zip(names, row, strict=True))
                for row in self.query(sql, (*params, limit))]

    def quarantined_record(self, partition: int, offset: int,
                           log_id: str | None = None) -> dict[str, Any] | None:
        """One quarantined record, payload included."""
        sql = ("SELECT " + ", ".join(f'"{c}"' for c in QUARANTINE_COLUMNS)
               + ' FROM quarantine WHERE partition = ? AND "offset" = ?')
        params: list[Any] = [partition, offset]
        if log_id is not None:
            sql += " AND log_id = ?"
            params.append(log_id)
        rows = self.query(sql + " ORDER BY log_id LIMIT 1", params)
        return dict(zip(QUARANTINE_COLUMNS, rows[0], strict=True)) if rows else None

    def tracked_logs(self, projection: str) -> list[str]:
        return [r[0] for r in self.query(
            "SELECT DISTINCT log_id FROM tracking WHERE projection = ?", (projection,))]

    @contextmanager
    def snapshot(self) -> Iterator[ViewStore]:
        """Reads inside the block see one state of the views, whatever commits meanwhile.

        The default gives no such guarantee; backends that can (SQLite's read
        transactions) override it.
        """
        yield self

    # --- rebuilding aside: build views in scratch stores, then swap them in at once ---------

    @property
    def builds_aside(self) -> bool:
        """Whether ``scratch`` gives places to build views aside."""
        return False

    def scratch(self, count: int) -> list[str] | None:
        """Places for ``count`` fresh, empty stores beside this one, in which a rebuild
        builds views aside (``open_scratch``, or in another process ``scratch_opener()``)
        before ``adopt`` or ``merge`` swaps them in with one transaction; anything left from
        an earlier rebuild is cleared first. None if this store cannot build aside (one
        nobody else reads, such as an in-memory replay, is rebuilt in place)."""
        return None

    def scratch_opener(self) -> Callable[[str], ViewStore]:
        """Opens a scratch store by its place (picklable: a worker process calls it)."""
        raise NotImplementedError

    def drop_scratch(self) -> None:  # noqa: B027 - optional hook
        """Remove every scratch store (after a rebuild, whatever its outcome)."""

    def adopt(self, sources: Sequence[str], groups: Sequence[Sequence[Any]]) -> None:
        """Replace the views of the projections ``groups[i]`` by those built in the scratch
        store ``sources[i]``, rows, tracking and quarantine, in ONE transaction."""
        raise NotImplementedError

    def merge(self, sources: Sequence[str], projections: Sequence[Any]) -> int:
        """Replace the views of ``projections`` by the union of those built in the scratch
        stores ``sources`` (one share of the log's partitions each), in ONE transaction."""
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def merge_share(tx: ViewTransaction, projections: Sequence[Any], source: str,
                earlier: Sequence[str]) -> int:
    """Add the views ``projections`` built from one share of the log's partitions in the
    store ``source`` (attached, or a schema) to this one: rows (``Projection.merge``),
    tracking and marks (a mark here already stays). ``earlier`` are the shares merged
    before it. Returns the applications the share repeats (``repeated``)."""
    for p in projections:
        p.merge(tx, source)
        tx.execute(f"INSERT INTO main.tracking SELECT * FROM {source}.tracking "
                   "WHERE projection = ?", (p.name,))
    repeated = repeated_applications(tx, projections, source, earlier)
    tx.execute(f"INSERT OR IGNORE INTO main.event_marks SELECT * FROM {source}.event_marks")
    return repeated


def repeated_applications(tx: ViewTransaction, projections: Sequence[Any], source: str,
                          earlier: Sequence[str]) -> int:
    """The applications the share ``source`` made that an ``earlier`` share made too: an
    event about no one is in every partition, so every share applied it, once per
    projection that wants it, but those keeping registries per partition (they apply each
    partition's copy: their keys ``id@partition`` are the share's own). Such an event's
    plain-id mark is the one carrying its type."""
    if not earlier:
        return 0
    seen = " OR ".join(f"event_id IN (SELECT event_id FROM {e}.event_marks)" for e in earlier)
    repeated = 0
    for event_type, count in tx.query(
            f"SELECT event_type, count(*) FROM {source}.event_marks "
            f"WHERE event_type IS NOT NULL AND ({seen}) GROUP BY event_type"):
        repeated += int(count) * sum(1 for p in projections if p.wants(event_type)
                                     and not p.registries_per_partition)
    return repeated


class _SQLiteTransaction(ViewTransaction):
    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._db.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._db.executemany(sql, rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, params).fetchall()

    def insert_marks(self, marks: Sequence[Mark]) -> int:
        # one statement, no row back per mark (RETURNING would cost one per id)
        return self._db.execute(
            'INSERT OR IGNORE INTO event_marks (event_id, partition, "offset", event_type) '
            "SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each(?)",
            (json.dumps(marks),)).rowcount

    def marks_elsewhere(self, marks: Sequence[Mark]) -> dict[str, tuple[int, int]]:
        return {key: (partition, offset) for key, partition, offset in self._db.execute(
            'SELECT m.event_id, m.partition, m."offset" FROM json_each(?) AS j '
            "JOIN event_marks AS m ON m.event_id = j.value->>0 "
            'WHERE m.partition != j.value->>1 OR m."offset" != j.value->>2',
            (json.dumps(marks),))}

    def new_ids(self, projection: str, event_ids: Sequence[str]) -> set[str]:
        return {row[0] for row in self._db.execute(
            "INSERT OR IGNORE INTO applied_events (projection, event_id) "
            "SELECT ?, value FROM json_each(?) RETURNING event_id",
            (projection, json.dumps(list(event_ids))))}


class SQLiteViewStore(ViewStore):
    """Views in one SQLite file (WAL), or in memory for point-in-time answers (``:memory:``).

    ``cache_mb`` is SQLite's page cache for this connection (``LEDGER_VIEW_CACHE_MB``): a
    fixed amount of memory, whatever the size of the views.
    """

    def __init__(self, path: str | Path = ":memory:", *, synchronous: str = "NORMAL",
                 cache_mb: int = DEFAULT_CACHE_MB):
        if not isinstance(cache_mb, int) or cache_mb < 1:
            raise ConfigurationError(
                f"LEDGER_VIEW_CACHE_MB={cache_mb!r}: the view store's page cache must be a "
                "whole number of MB, at least 1"
            )
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise ConfigurationError(
                f"the view store needs SQLite {'.'.join(map(str, MIN_SQLITE))} or later "
                f"(RETURNING, json_each); this Python has {sqlite3.sqlite_version}")
        self.path = str(path)
        self.cache_mb = cache_mb
        if self.path != ":memory:":
            private_file(self.path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=60,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute(f"PRAGMA cache_size=-{cache_mb * 1024}")
            self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
            self._create_bookkeeping()
        except sqlite3.Error as exc:
            raise PersistenceError(f"cannot open the view store at {self.path}: {exc}") from exc

    def _create_bookkeeping(self) -> None:
        """The tracking tables; in a store made before ``event_marks``, its applied ids
        turned into ``LEGACY`` marks, in the transaction creating the table."""
        db = self._db
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'event_marks'").fetchall():
            db.executescript(SQLITE_TRACKING_SCHEMA)
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            older = bool(db.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'applied_events'").fetchall())
            for statement in SQLITE_TRACKING_SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            if older:
                db.execute(LEGACY_MARKS)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[ViewTransaction]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise OperationalError(f"the view store {self.path} is busy: {exc}") from exc
        try:
            yield _SQLiteTransaction(self._db)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise PersistenceError(f"committing views to {self.path} failed: {exc}") from exc

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, params).fetchall()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        cursor = self._db.execute(sql, params)
        while batch := cursor.fetchmany(4096):
            yield from batch

    @contextmanager
    def snapshot(self) -> Iterator[ViewStore]:
        # A deferred transaction: its first read fixes the snapshot (WAL) until COMMIT.
        self._db.execute("BEGIN")
        try:
            yield self
        finally:
            self._db.execute("COMMIT")

    @property
    def builds_aside(self) -> bool:
        return self.path != ":memory:"

    def scratch(self, count: int) -> list[str] | None:
        if not self.builds_aside:
            return None
        self.drop_scratch()  # a rebuild killed earlier left it
        folder = Path(self.path + ".rebuild")
        folder.mkdir(parents=True, mode=0o700)
        return [str(folder / f"views-{i}.db") for i in range(count)]

    def scratch_opener(self) -> Callable[[str], ViewStore]:
        return functools.partial(SQLiteViewStore, synchronous="OFF", cache_mb=self.cache_mb)

    def drop_scratch(self) -> None:
        if self.path != ":memory:":
            shutil.rmtree(self.path + ".rebuild", ignore_errors=True)

    def _copy_quarantine(self, tx: ViewTransaction, alias: str) -> None:
        """What a rebuild learnt about the log itself: records set aside, and which
        partitions each person's events were found in."""
        for table in ("quarantine", "subject_partitions"):
            tx.execute(f"INSERT OR IGNORE INTO main.{table} SELECT * FROM {alias}.{table}")

    def adopt(self, sources: Sequence[str], groups: Sequence[Sequence[Any]]) -> None:
        """Replace the views of the projections ``groups[i]`` by those in the SQLite file
        ``sources[i]`` (built there by a runner), rows, tracking and the records it
        quarantined, in ONE transaction.

        Each projection's tables are dropped and created afresh here, so the copy of each
        table is into an empty one of the same schema (SQLite's fast transfer).
        """
        with self._attached(sources) as aliases, self.transaction() as tx:
            for projections in groups:
                for p in projections:
                    p.reset(tx, indexes=True)
            tx.forget_marks_if_unused()
            for alias, projections in zip(aliases, groups, strict=True):
                for p in projections:
                    for table in (*p.tables, "tracking"):
                        where = " WHERE projection = ?" if table == "tracking" else ""
                        tx.execute(f"INSERT INTO main.{table} SELECT * FROM "
                                   f"{alias}.{table}{where}", (p.name,) if where else ())
                # a mark here stays: the projections not rebuilt applied its copy
                tx.execute(f"INSERT OR IGNORE INTO main.event_marks SELECT * FROM "
                           f"{alias}.event_marks")
                self._copy_quarantine(tx, alias)

    def merge(self, sources: Sequence[str], projections: Sequence[Any]) -> int:
        """Replace the views of ``projections`` by the union of the views built in the
        SQLite files ``sources`` (each from its own share of the log's partitions, see
        ``consumers.parallel``): rows (``Projection.merge``), tracking and applied event
        ids, in ONE transaction. Raises ``IntegrityError`` (nothing changed) if a person's
        rows are in two shares.

        Returns the applications made in more than one share (an event about no one is in
        every partition, so every share applied it), for the caller's count.
        """
        repeated = 0
        with self._attached(sources) as aliases, self.transaction() as tx:
            for p in projections:
                p.reset(tx, indexes=False)
            tx.forget_marks_if_unused()
            # share by share, so the first copies into empty tables (SQLite's fast transfer)
            for i, alias in enumerate(aliases):
                repeated += merge_share(tx, projections, alias, aliases[:i])
            for alias in aliases:
                self._copy_quarantine(tx, alias)
            for p in projections:
                p.create_indexes(tx)
        return repeated

    @contextmanager
    def _attached(self, sources: Sequence[str]) -> Iterator[list[str]]:
        aliases: list[str] = []
        try:
            for i, path in enumerate(sources):
                self._db.execute(f"ATTACH DATABASE ? AS rebuilt_{i}", (path,))
                aliases.append(f"rebuilt_{i}")
            yield aliases
        except sqlite3.Error as exc:
            raise PersistenceError(f"adopting rebuilt views into {self.path} failed: {exc}"
                                   ) from exc
        finally:
            for alias in aliases:
                self._db.execute(f"DETACH DATABASE {alias}")

    def close(self) -> None:
        self._db.close()
