"""The embedded log: one SQLite file in WAL mode, zero set-up.

Invariants kept here:
- a batch is one ``BEGIN IMMEDIATE`` transaction: whole or nothing, even under SIGKILL;
- ``event_id`` is unique: a re-published event is reported as a duplicate, not stored;
- positions come from ``AUTOINCREMENT`` so they are never reused;
- triggers refuse UPDATE and DELETE, so no code path can rewrite history;
- each row carries a SHA-256 hash chain over all earlier rows, so tampering with the file
  by other means is detected by ``verify``;
- ``recorded_at`` never decreases, so "the log as of T" is a binary search, not an index.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

from ledger.errors import IntegrityError, OperationalError, PersistenceError, TamperedLogError
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
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL UNIQUE,
    event_type  TEXT NOT NULL,
    subject     TEXT,
    event_time  TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    payload     BLOB NOT NULL,
    chain       BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the ledger log is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the ledger log is append-only: DELETE refused'); END;
"""
GENESIS = b"\x00" * 32
PAGE = 2000


def chain_hash(previous: bytes, event_id: str, payload: bytes) -> bytes:
    return hashlib.sha256(previous + event_id.encode() + payload).digest()


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


class SQLiteEventLog(EventLog):
    """The embedded append-only log (one partition, offsets = positions from 1)."""

    name = "sqlite"

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", timeout: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
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

    # --- writing ----------------------------------------------------------------------

    def append(self, records: Sequence[NewRecord]) -> list[AppendResult]:
        if not records:
            return []
        check_batch(records)
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise OperationalError(f"the log at {self.path} is busy or unwritable: {exc}") from exc
        try:
            existing = self._existing(ids := [r.event_id for r in records])
            last = db.execute(
                "SELECT position, recorded_at, chain FROM events ORDER BY position DESC LIMIT 1"
            ).fetchone()
            previous = last[2] if last else GENESIS
            now = max(time.time(), last[1] if last else 0.0)
            rows = []
            seen: dict[str, int] = {}
            for index, r in enumerate(records):
                if r.event_id in existing or r.event_id in seen:
                    continue
                seen[r.event_id] = index
                previous = chain_hash(previous, r.event_id, r.payload)
                rows.append(
                    (r.event_id, r.event_type, r.subject, r.event_time.isoformat(), now,
                     r.payload, previous)
                )
            db.executemany(
                "INSERT INTO events (event_id, event_type, subject, event_time, recorded_at,"
                " payload, chain) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            if rows:
                first = db.execute("SELECT last_insert_rowid()").fetchone()[0] - len(rows) + 1
                new_positions = {rows[i][0]: first + i for i in range(len(rows))}
            else:
                new_positions = {}
            db.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            db.execute("ROLLBACK")
            raise IntegrityError(f"the log refused the batch: {exc}") from exc
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise OperationalError(f"appending to {self.path} failed: {exc}") from exc
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        results = []
        for index, r in enumerate(records):
            if seen.get(r.event_id) == index:
                results.append(AppendResult(r.event_id, 0, new_positions[r.event_id]))
            else:
                pos = existing.get(r.event_id) or new_positions.get(r.event_id, -1)
                results.append(AppendResult(r.event_id, 0, pos, duplicate=True))
        return results

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
    ) -> Iterator[LogRecord]:
        start = (after or {}).get(0, -1)
        end = self._last_position(until)
        remaining = limit if limit is not None else -1
        cursor = start
        while cursor < end and remaining != 0:
            page = PAGE if remaining < 0 else min(PAGE, remaining)
            rows = self._db.execute(
                "SELECT position, event_id, event_type, subject, recorded_at, payload "
                "FROM events WHERE position > ? AND position <= ? ORDER BY position LIMIT ?",
                (cursor, end, page),
            ).fetchall()
            if not rows:
                return
            for position, event_id, event_type, subject, recorded_at, payload in rows:
                yield LogRecord(0, position, event_id, event_type, subject, _utc(recorded_at),
                                payload)
            cursor = rows[-1][0]
            if remaining > 0:
                remaining -= len(rows)

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    # --- tamper evidence --------------------------------------------------------------

    def verify(self, progress: object = None) -> int:
        """Recompute the hash chain over the whole log; return the number of records checked.

        Raises ``TamperedLogError`` naming the first position that does not verify.
        """
        previous, expected_position, checked = GENESIS, None, 0
        for position, event_id, payload, chain in self._db.execute(
            "SELECT position, event_id, payload, chain FROM events ORDER BY position"
        ):
            if expected_position is not None and position != expected_position:
                # AUTOINCREMENT leaves no gaps in a log that only ever appended.
                raise TamperedLogError(
                    f"position {expected_position} is missing from the log (next is {position})"
                )
            previous = chain_hash(previous, event_id, payload)
            if previous != chain:
                raise TamperedLogError(
                    f"the record at position {position} (event {event_id}) does not match the "
                    "hash chain: it or an earlier record was altered"
                )
            expected_position = position + 1
            checked += 1
            if progress is not None and checked % 10000 == 0:
                progress(checked)  # type: ignore[operator]
        return checked
