"""The embedded log: one SQLite file in WAL mode, zero set-up.

Invariants kept here:
- a batch is one ``BEGIN IMMEDIATE`` transaction: whole or nothing, even under SIGKILL
  (a one-record batch after this process's own last append: one autocommit INSERT at
  the next position, which fails if another writer took it);
- ``event_id`` is unique: a re-published event is reported as a duplicate, not stored;
- positions are rowids; since triggers refuse UPDATE and DELETE, no row ever leaves and
  a position is never reused (a rolled-back batch's rowids were never visible);
- the last row of each batch carries a SHA-256 hash chained over every earlier row, so
  tampering with the file by other means is detected by ``verify`` (hashing per batch
  rather than per row keeps the append path cheap; ``verify`` checks at batch ends);
- ``recorded_at`` never decreases, so "the log as of T" is a binary search, not an index.
"""

from __future__ import annotations

import functools
import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

from ledger.errors import IntegrityError, OperationalError, PersistenceError, TamperedLogError
from ledger.files import private_file
from ledger.persistence import (
    AppendResult,
    EventLog,
    LogRecord,
    NewRecord,
    Position,
    check_batch,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY,
    event_id    TEXT NOT NULL UNIQUE,
    event_type  TEXT NOT NULL,
    subject     TEXT,
    recorded_at REAL NOT NULL,
    payload     BLOB NOT NULL,
    chain       BLOB
);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the ledger log is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the ledger log is append-only: DELETE refused'); END;
"""
GENESIS = b"\x00" * 32
PAGE = 2000


def chain_hash(previous: bytes, rows: Iterable[tuple[str, bytes]]) -> bytes:
    """The chain value after ``rows`` (event id, payload), given the previous batch's value."""
    h = hashlib.sha256(previous)
    for event_id, payload in rows:
        h.update(event_id.encode())
        h.update(len(payload).to_bytes(4, "big"))
        h.update(payload)
    return h.digest()


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


class SQLiteEventLog(EventLog):
    """The embedded append-only log (one partition, offsets = positions from 1)."""

    name = "sqlite"
    stores_ids_once = True
    trusted_types = True
    can_verify = True

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", timeout: float = 30.0):
        self.path = Path(path)
        private_file(self.path)
        self._cached_head: tuple[int, float, bytes] | None = None
        # One connection, shared by the threads of a process: a write transaction and the
        # statements of other threads must not interleave on it.
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, timeout=timeout, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise PersistenceError(f"cannot open the log at {self.path}: {exc}") from exc

    @property
    def log_id(self) -> str:
        return f"sqlite:{self.path.resolve()}"

    def close(self) -> None:
        self._db.close()

    def reopener(self) -> Callable[[], SQLiteEventLog]:
        return functools.partial(SQLiteEventLog, self.path)

    # --- writing ----------------------------------------------------------------------

    def append(self, records: Sequence[NewRecord]) -> list[AppendResult]:
        if not records:
            return []
        first, existing, fresh = self._write(records)
        positions = {event_id: first + i for i, event_id in enumerate(fresh)}
        results = []
        for index, r in enumerate(records):
            if fresh.get(r.event_id) == index:
                results.append(AppendResult(r.event_id, 0, positions[r.event_id]))
            else:
                pos = existing.get(r.event_id) or positions.get(r.event_id, -1)
                results.append(AppendResult(r.event_id, 0, pos, duplicate=True))
        return results

    def append_counted(self, records: Sequence[NewRecord]) -> tuple[int, int]:
        if not records:
            return 0, 0
        _, _, fresh = self._write(records)
        return len(fresh), len(records) - len(fresh)

    def _write(self, records: Sequence[NewRecord]) -> tuple[int, dict[str, int], dict[str, int]]:
        """Append; return the first new position, the ids already stored (with their
        positions) and the ids stored now (with their index in ``records``), in order."""
        check_batch(records)
        with self._lock:
            return self._write_locked(records)

    def _write_locked(self, records: Sequence[NewRecord]
                      ) -> tuple[int, dict[str, int], dict[str, int]]:
        try:
            if len(records) == 1 and self._cached_head is not None:
                done = self._append_one(records[0])
                if done is not None:
                    return done, {}, {records[0].event_id: 0}
            return self._append(records, check_existing=False)
        except _Duplicates:
            # Rare: an event id is already in the log (a retried publish). Redo the batch,
            # leaving out what is already there.
            return self._append(records, check_existing=True)

    def _append_one(self, r: NewRecord) -> int | None:
        """One record in one autocommit INSERT at the position after this process's last.

        Saves BEGIN, the head query and COMMIT statements of a one-event publish. Correct
        because positions have no gaps: if another writer appended since, that position
        is taken and the INSERT fails, and None sends the caller the locked way.
        """
        assert self._cached_head is not None
        last, recorded_at, chain = self._cached_head
        now = max(time.time(), recorded_at)
        value = chain_hash(chain, ((r.event_id, r.payload),))
        try:
            self._db.execute(
                "INSERT INTO events (position, event_id, event_type, subject, recorded_at,"
                " payload, chain) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (last + 1, r.event_id, r.event_type, r.subject, now, r.payload, value),
            )
        except sqlite3.IntegrityError as exc:
            if getattr(exc, "sqlite_errorname", "") == "SQLITE_CONSTRAINT_UNIQUE":
                raise _Duplicates() from exc  # the event id, not the position
            self._cached_head = None
            return None
        except sqlite3.OperationalError:
            # A stale snapshot (busy): nothing was written; take the locked way.
            self._cached_head = None
            return None
        self._cached_head = (last + 1, now, value)
        return last + 1

    def _append(self, records: Sequence[NewRecord],
                check_existing: bool) -> tuple[int, dict[str, int], dict[str, int]]:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise OperationalError(f"the log at {self.path} is busy or unwritable: {exc}") from exc
        try:
            existing = self._existing([r.event_id for r in records]) if check_existing else {}
            last = self._head()
            now = max(time.time(), last[0] if last else 0.0)
            # event id -> index in records, of the records to store now (first of each id)
            fresh = dict(zip([r.event_id for r in records], range(len(records))))
            if existing or len(fresh) < len(records):
                fresh = {}
                for index, r in enumerate(records):
                    if r.event_id not in existing and r.event_id not in fresh:
                        fresh[r.event_id] = index
            new = records if len(fresh) == len(records) else [records[i] for i in fresh.values()]
            first = 0
            if new:
                chain = chain_hash(last[1] if last else GENESIS,
                                   ((r.event_id, r.payload) for r in new))
                # NewRecord is (event_id, event_type, subject, payload): bound as it is.
                if len(new) > 1:
                    db.executemany(
                        "INSERT INTO events (event_id, event_type, subject, payload, recorded_at)"
                        " VALUES (?, ?, ?, ?, ?)",
                        [r + (now,) for r in new[:-1]],
                    )
                first = db.execute(
                    "INSERT INTO events (event_id, event_type, subject, payload, recorded_at,"
                    " chain) VALUES (?, ?, ?, ?, ?, ?)", (*new[-1], now, chain),
                ).lastrowid - len(new) + 1
            db.execute("COMMIT")
            if new:
                self._cached_head = (first + len(new) - 1, now, chain)
        except sqlite3.IntegrityError as exc:
            db.execute("ROLLBACK")
            if "UNIQUE" in str(exc) and not check_existing:
                raise _Duplicates() from exc
            raise IntegrityError(f"the log refused the batch: {exc}") from exc
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise OperationalError(f"appending to {self.path} failed: {exc}") from exc
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return first, existing, fresh

    def _head(self) -> tuple[float, bytes] | None:
        """(recorded_at, chain) of the last batch, read inside the write transaction.

        Cached: while the last position is the one this process wrote, the cached chain
        value is current (another writer would have moved the position).
        """
        last = self._db.execute("SELECT max(position) FROM events").fetchone()[0]
        cached = self._cached_head
        if cached is not None and cached[0] == last:
            return cached[1], cached[2]
        return self._db.execute(
            "SELECT recorded_at, chain FROM events WHERE chain IS NOT NULL "
            "ORDER BY position DESC LIMIT 1"
        ).fetchone()  # type: ignore[no-any-return]

    def _existing(self, ids: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for i in range(0, len(ids), 900):
            chunk = ids[i : i + 900]
            marks = ",".join("?" * len(chunk))
            found.update(
                self._db.execute(
                    f"SELECT event_id, position FROM events WHERE event_id IN ({marks})", chunk
                ).fetchall()
            )
        return found

    # --- reading ----------------------------------------------------------------------

    def _last_position(self, until: datetime | None = None) -> int:
        with self._lock:
            return self._last_position_locked(until)

    def _last_position_locked(self, until: datetime | None) -> int:
        row = self._db.execute("SELECT max(position) FROM events").fetchone()
        hi = row[0] or 0
        if until is None or hi == 0:
            return hi if hi else -1
        limit = until.timestamp()
        # recorded_at never decreases with position, so binary-search the rowid.
        lo, best = 1, -1
        while lo <= hi:
            mid = (lo + hi) // 2
            got = self._db.execute(
                "SELECT position, recorded_at FROM events WHERE position >= ? "
                "ORDER BY position LIMIT 1",
                (mid,),
            ).fetchone()
            if got is None:
                hi = mid - 1
            elif got[1] <= limit:
                best, lo = got[0], got[0] + 1
            else:
                hi = mid - 1
        return best

    def end_position(self, until: datetime | None = None) -> Position:
        return {0: self._last_position(until)}

    def read(
        self,
        after: Mapping[int, int] | None = None,
        *,
        until: datetime | None = None,
        limit: int | None = None,
        partitions: Collection[int] | None = None,
    ) -> Iterator[LogRecord]:
        if partitions is not None and 0 not in partitions:
            return iter(())
        return self._scan((after or {}).get(0, -1), self._last_position(until),
                          -1 if limit is None else limit)

    def read_about(self, subject: str, *, until: datetime | None = None) -> Iterator[LogRecord]:
        """One person's records. No index on ``subject`` (it would slow every append), but
        SQLite tests the column while scanning, so only their rows reach Python."""
        return self._scan(-1, self._last_position(until), -1, subject)

    def _scan(self, cursor: int, end: int, remaining: int,
              subject: str | None = None) -> Iterator[LogRecord]:
        """Records after ``cursor`` up to ``end`` (at most ``remaining``, -1: all; only
        ``subject``'s if given), a page per statement under the connection's lock."""
        where = " AND subject = ?" if subject is not None else ""
        extra = (subject,) if subject is not None else ()
        while cursor < end and remaining != 0:
            page = PAGE if remaining < 0 else min(PAGE, remaining)
            with self._lock:
                rows = self._db.execute(
                    "SELECT position, event_id, event_type, subject, recorded_at, payload "
                    f"FROM events WHERE position > ? AND position <= ?{where} "
                    "ORDER BY position LIMIT ?",
                    (cursor, end, *extra, page),
                ).fetchall()
            if not rows:
                return
            for position, event_id, event_type, subj, recorded_at, payload in rows:
                yield LogRecord(0, position, event_id, event_type, subj, _utc(recorded_at),
                                payload)
            cursor = rows[-1][0]
            if remaining > 0:
                remaining -= len(rows)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    # --- tamper evidence --------------------------------------------------------------

    def verify(self, progress: Callable[[int], None] | None = None) -> int:
        """Recompute the hash chain over the whole log; return the number of records checked.

        Raises ``TamperedLogError`` naming the first position that does not verify. Reads
        one snapshot through a connection of its own, so publishing goes on meanwhile and
        a batch being appended is never half seen.
        """
        snapshot = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        try:
            snapshot.execute("BEGIN")  # a read transaction: one WAL snapshot throughout
            return self._verify(snapshot, progress)
        finally:
            snapshot.close()

    @staticmethod
    def _verify(db: sqlite3.Connection, progress: object) -> int:
        hasher = hashlib.sha256(GENESIS)
        expected, checked, open_since = None, 0, None
        for position, event_id, payload, chain in db.execute(
            "SELECT position, event_id, payload, chain FROM events ORDER BY position"
        ):
            if expected is not None and position != expected:
                # Rows are never deleted, so positions have no gaps.
                raise TamperedLogError(
                    f"position {expected} is missing from the log (next is {position})"
                )
            if not isinstance(payload, bytes) or not isinstance(event_id, str):
                raise TamperedLogError(f"the record at position {position} was rewritten "
                                       "(its payload is no longer bytes)")
            hasher.update(event_id.encode())
            hasher.update(len(payload).to_bytes(4, "big"))
            hasher.update(payload)
            open_since = open_since or position
            if chain is not None:
                if hasher.digest() != chain:
                    raise TamperedLogError(
                        f"the batch at positions {open_since}-{position} does not match the hash "
                        "chain: a record in it, or before it, was altered"
                    )
                hasher, open_since = hashlib.sha256(chain), None
            expected = position + 1
            checked += 1
            if progress is not None and checked % 10000 == 0:
                progress(checked)  # type: ignore[operator]
        if open_since is not None:
            raise TamperedLogError(
                f"records from position {open_since} on end without their batch's chain value: "
                "the end of a batch was removed"
            )
        return checked


class _Duplicates(Exception):
    """Internal: the optimistic append met an event id already in the log."""
