"""The embedded log: one SQLite file in WAL mode, zero set-up.

Invariants kept here:
- a batch is one ``BEGIN IMMEDIATE`` transaction: whole or nothing, even under SIGKILL
  (a one-record batch after this process's own last append: one autocommit INSERT at
  the next position, which fails if another writer took it);
- ``event_id`` is unique: a re-published event is reported as a duplicate, not stored;
- positions are rowids; since triggers refuse UPDATE and DELETE, no row ever leaves and
  a position is never reused (a rolled-back batch's rowids were never visible);
- every record is a leaf of the log's Merkle tree (``ledger.treelog``), grown in the same
  transaction as the rows and signed in checkpoints, so tampering with the file by other
  means is detected by ``ledger.verification`` (logs written before the tree carry a
  per-batch hash ``chain``: it is checked once, when their tree is first built);
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

from ledger.checkpoint import recorded_us
from ledger.errors import (
    IntegrityError,
    LedgerError,
    OperationalError,
    PersistenceError,
    TamperedLogError,
)
from ledger.files import private_file
from ledger.persistence import (
    AppendResult,
    EventLog,
    LogRecord,
    NewRecord,
    Position,
    check_batch,
)
from ledger.treelog import SQLiteTreeStore, TreeOptions

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

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", timeout: float = 30.0,
                 tree: TreeOptions | None = None, merkle: bool = True):
        """``tree``: how checkpoints are signed (default: the tree is kept, none signed);
        ``merkle=False`` keeps no tree at all (benchmarks' baseline only)."""
        self.path = Path(path)
        private_file(self.path)
        self._cached_head: tuple[int, float] | None = None
        self._tree: SQLiteTreeStore | None = None
        self._appended = False
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
            if merkle:
                origin = "pdl.local/log/" + SQLiteTreeStore.log_uuid(self._db)
                self._tree = SQLiteTreeStore(self._db, tree or TreeOptions(), origin)
                # A log from before the tree, or one another process has not finished
                # building: grow the tree over what it lacks. A tree larger than the log
                # is left for verify to report (records were removed).
                if self._tree.size(0) < max(self._last_position_locked(None), 0):
                    self.build_tree()
        except sqlite3.Error as exc:
            raise PersistenceError(f"cannot open the log at {self.path}: {exc}") from exc

    @property
    def log_id(self) -> str:
        return f"sqlite:{self.path.resolve()}"

    def close(self) -> None:
        try:
            # Only a process that appended signs on closing: a reader must not wait for
            # the write lock.
            if self._appended and self._tree is not None and self._tree.options.signer:
                self.seal()
        except LedgerError:
            pass  # a busy log: the next writer's checkpoint covers these records
        finally:
            self._db.close()

    # --- the Merkle tree ----------------------------------------------------------------

    @property
    def tree(self) -> SQLiteTreeStore | None:
        """The log's tree store (on this log's connection; hold ``lock`` to use it)."""
        return self._tree

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def seal(self) -> bool:
        """Sign a checkpoint of everything appended so far, if anything is new."""
        if self._tree is None:
            return False
        tree = self._tree
        with self._lock:
            return tree.write(lambda: tree.seal(0), f"cannot sign a checkpoint of {self.path}")

    def build_tree(self, progress: object = None) -> int:
        """Grow the tree over every record the tree does not cover yet (a log written before
        trees existed, or after ``reset``), in one transaction; return its size.

        A log from before the tree carries the old per-batch hash chain: it is checked
        first, so the new tree never seals records that the old chain already shows altered.
        """
        assert self._tree is not None
        tree, db = self._tree, self._db

        def grow() -> int:
            if db.execute("SELECT 1 FROM events WHERE chain IS NOT NULL LIMIT 1").fetchone():
                self._verify(db, None)
            done = tree.size(0)
            while True:
                rows = db.execute(
                    "SELECT position, event_id, event_type, subject, recorded_at, payload "
                    "FROM events WHERE position > ? ORDER BY position LIMIT ?",
                    (done, 20_000)).fetchall()
                if not rows:
                    break
                if rows[0][0] != done + 1:
                    raise TamperedLogError(f"position {done + 1} is missing from the log "
                                           f"(next is {rows[0][0]})")
                tree.grow(0, done, [(e, t, s, b) for _, e, t, s, _, b in rows],
                          [p for p, *_ in rows], [recorded_us(r[4]) for r in rows])
                done = rows[-1][0]
                if progress is not None:
                    progress(done)  # type: ignore[operator]
            tree.seal(0)
            return done

        with self._lock:
            return tree.write(grow, f"cannot build the Merkle tree of {self.path}")

    def rebuild_tree(self, progress: object = None) -> int:
        """Throw the tree's tiles and state away and grow them again from the log
        (``pdl verify --rebuild-tree``); stored checkpoints stay, and verify compares."""
        tree = self._tree
        assert tree is not None
        with self._lock:
            tree.write(lambda: tree.reset(0), f"cannot reset the Merkle tree of {self.path}")
        return self.build_tree(progress)

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
        last, recorded_at = self._cached_head
        now = max(time.time(), recorded_at)
        db, tree = self._db, self._tree
        try:
            if tree is not None:
                db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO events (position, event_id, event_type, subject, recorded_at,"
                " payload) VALUES (?, ?, ?, ?, ?, ?)",
                (last + 1, r.event_id, r.event_type, r.subject, now, r.payload),
            )
            if tree is not None:
                tree.grow(0, last, (r,), (last + 1,), recorded_us(now))
                db.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            self._rollback()
            if getattr(exc, "sqlite_errorname", "") == "SQLITE_CONSTRAINT_UNIQUE":
                raise _Duplicates() from exc  # the event id, not the position
            self._cached_head = None
            return None
        except (sqlite3.OperationalError, PersistenceError):
            # A stale snapshot (busy), or a tree another writer moved: nothing was
            # written; take the locked way.
            self._rollback()
            self._cached_head = None
            return None
        except BaseException:
            self._rollback()
            raise
        if tree is not None:
            tree.flush_files()
        self._appended = True
        self._cached_head = (last + 1, now)
        return last + 1

    def _rollback(self) -> None:
        if self._tree is not None:
            self._tree.roll_back()
        elif self._db.in_transaction:
            self._db.execute("ROLLBACK")

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
            now = max(time.time(), last)
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
                # NewRecord is (event_id, event_type, subject, payload): bound as it is.
                if len(new) > 1:
                    db.executemany(
                        "INSERT INTO events (event_id, event_type, subject, payload, recorded_at)"
                        " VALUES (?, ?, ?, ?, ?)",
                        [r + (now,) for r in new[:-1]],
                    )
                first = db.execute(
                    "INSERT INTO events (event_id, event_type, subject, payload, recorded_at)"
                    " VALUES (?, ?, ?, ?, ?)", (*new[-1], now),
                ).lastrowid - len(new) + 1
                if self._tree is not None:
                    self._tree.grow(0, first - 1, new, range(first, first + len(new)),
                                    recorded_us(now))
            db.execute("COMMIT")
            if new:
                self._cached_head = (first + len(new) - 1, now)
        except sqlite3.IntegrityError as exc:
            self._rollback()
            if "UNIQUE" in str(exc) and not check_existing:
                raise _Duplicates() from exc
            raise IntegrityError(f"the log refused the batch: {exc}") from exc
        except sqlite3.Error as exc:
            self._rollback()
            raise OperationalError(f"appending to {self.path} failed: {exc}") from exc
        except BaseException:
            self._rollback()
            raise
        if self._tree is not None:
            self._tree.flush_files()
        self._appended = self._appended or bool(fresh)
        return first, existing, fresh

    def _head(self) -> float:
        """recorded_at of the last record (0 if none), read inside the write transaction.

        Cached: while the last position is the one this process wrote, the cached time is
        current (another writer would have moved the position).
        """
        last = self._db.execute("SELECT max(position) FROM events").fetchone()[0]
        cached = self._cached_head
        if cached is not None and cached[0] == last:
            return cached[1]
        row = self._db.execute(
            "SELECT recorded_at FROM events ORDER BY position DESC LIMIT 1").fetchone()
        return float(row[0]) if row else 0.0

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
        """Recompute the tree from the log and compare it with the stored tree and
        checkpoints (signatures checked when this log has the signing key); return the
        number of records. Raises ``TamperedLogError`` naming what does not verify.
        ``Ledger.verify`` also decodes every record; ``pdl verify`` adds the verifier's
        trust state (``ledger.verification``)."""
        from ledger.verification import verify_sqlite

        if self._tree is None:
            raise PersistenceError("this log keeps no Merkle tree (opened with merkle=False)")
        signer = self._tree.options.signer
        report = verify_sqlite(self, signer.verifier if signer else None, None,
                               folder=self._tree.options.folder, decode_records=False,
                               progress=progress)
        if not report.ok:
            raise TamperedLogError("the log does not verify: "
                                   + "; ".join(p for t in report.trees for p in t.problems))
        return report.records

    def snapshot(self) -> sqlite3.Connection:
        """A connection of its own, in a read transaction: one WAL snapshot of the log and
        its tree, so publishing goes on while ``ledger.verification`` reads it."""
        snapshot = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        snapshot.execute("BEGIN")
        return snapshot

    @staticmethod
    def _verify(db: sqlite3.Connection, progress: object) -> int:
        """Check the per-batch hash chain of a log written before the Merkle tree."""
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
