"""The Merkle trees of a log, kept in SQLite tables beside it, and their signed checkpoints.

Invariants kept here:
- one tree per partition (SQLite log: tree 0 in ``log.db`` itself, grown in the append's own
  transaction; Kafka: one per partition in a file of the sealing consumer's), whose leaf
  ``i`` is the ``i``-th record of the partition (``ledger.checkpoint.encode_leaf``);
- the tree state (size, right edge) and the tiles change in the same transaction as the
  leaves they cover, so the tree never runs ahead of or behind what it was built from;
- a checkpoint is signed every ``checkpoint_records`` leaves or ``checkpoint_seconds``, and
  on ``seal``; it is stored in ``merkle_checkpoints`` and written, after the commit, to a
  file under the checkpoint folder (0600 in 0700 folders), which a user can copy or anchor
  elsewhere (a git repository, object-lock storage);
- the signing key never enters the log: it comes from ``LEDGER_SIGNING_KEY`` or
  ``LEDGER_SIGNING_KEY_FILE`` (``LEDGER_DEMO=1``: a generated key file in the data dir).
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ledger.checkpoint import (
    ALG_COSIGNATURE_V1,
    Checkpoint,
    NoteError,
    Signer,
    Verifier,
    leaf_hashes,
    leaf_prefix,
    sign_checkpoint,
)
from ledger.errors import ConfigurationError, OperationalError, PersistenceError
from ledger.files import private_dir
from ledger.merkle import (
    HASH_SIZE,
    TILE_HEIGHT,
    TILE_WIDTH,
    CompactRange,
    HashSource,
    TileWriter,
)

if TYPE_CHECKING:
    from ledger.settings import Settings

T = TypeVar("T")

TREE_SCHEMA = """
CREATE TABLE IF NOT EXISTS merkle_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS merkle_trees (
    tree        INTEGER PRIMARY KEY,
    origin      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    edge        BLOB NOT NULL,
    last_offset INTEGER NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS merkle_tiles (
    tree INTEGER NOT NULL, level INTEGER NOT NULL, idx INTEGER NOT NULL, hashes BLOB NOT NULL,
    PRIMARY KEY (tree, level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS merkle_offsets (
    tree INTEGER NOT NULL, idx INTEGER NOT NULL, offset INTEGER NOT NULL,
    PRIMARY KEY (tree, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS merkle_offsets_by_offset ON merkle_offsets (tree, offset);
CREATE TABLE IF NOT EXISTS merkle_checkpoints (
    tree INTEGER NOT NULL, size INTEGER NOT NULL, note TEXT NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (tree, size)
) WITHOUT ROWID;
"""

@dataclass(frozen=True)
class TreeOptions:
    """How a tree is checkpointed: by whom, how often, and where the files go."""

    signer: Signer | None = None
    every_records: int = 10_000
    every_seconds: float = 10.0
    folder: Path | None = None
    origin: str | None = None
    #: Keep the index -> offset map (Kafka: offsets have gaps at transaction markers).
    offsets: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, *, offsets: bool = False) -> TreeOptions:
        return cls(
            signer=signer_from(settings),
            every_records=settings.checkpoint_records,
            every_seconds=float(settings.checkpoint_seconds),
            folder=settings.checkpoint_folder,
            origin=settings.log_origin,
            offsets=offsets,
        )


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file renamed over it),
    0600, in 0700 folders: checkpoint files and trust states are never seen half written."""
    private_dir(path.parent, tighten=False)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def signer_from(settings: Settings) -> Signer | None:
    """The checkpoint signing key: ``LEDGER_SIGNING_KEY``, ``LEDGER_SIGNING_KEY_FILE``, or in
    demo mode a generated key kept in the data dir (0600). None: no checkpoints are signed."""
    raw, where = settings.signing_key, "LEDGER_SIGNING_KEY"
    if raw is None and settings.signing_key_file is not None:
        where = f"LEDGER_SIGNING_KEY_FILE ({settings.signing_key_file})"
        try:
            raw = settings.signing_key_file.read_text()
        except OSError as exc:
            raise ConfigurationError(f"{where} cannot be read: {exc.strerror}") from None
    if raw is None and settings.demo:
        path = settings.data_dir / "demo-signing.key"
        if not path.exists():
            write_atomic(path, str(Signer.generate("pdl-demo")) + "\n")
        raw, where = path.read_text(), f"demo signing key {path}"
    if raw is None:
        return None
    try:
        signer = Signer.parse(raw)
    except NoteError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    if signer.alg == ALG_COSIGNATURE_V1:
        raise ConfigurationError(f"{where} is a witness (cosignature) key, not a log signing key")
    return signer


def verifier_from(settings: Settings) -> Verifier | None:
    """The key checkpoints must be signed with: ``LEDGER_VERIFIER_KEY``, else the public half
    of the signing key when this process has it."""
    if settings.verifier_key:
        try:
            return Verifier.parse(settings.verifier_key)
        except NoteError as exc:
            raise ConfigurationError(f"LEDGER_VERIFIER_KEY: {exc}") from None
    signer = signer_from(settings)
    return signer.verifier if signer is not None else None


class _TreeState:
    """A tree being grown: its writer, leaf prefix and checkpoint bookkeeping."""

    def __init__(self, tree: int, origin: str, writer: TileWriter, last_offset: int,
                 checkpoint_size: int, checkpoint_at: float):
        self.tree = tree
        self.origin = origin
        self.prefix = leaf_prefix(origin, tree)
        self.writer = writer
        self.last_offset = last_offset
        self.checkpoint_size = checkpoint_size
        self.checkpoint_at = checkpoint_at

    @property
    def size(self) -> int:
        return self.writer.range.size


class SQLiteTreeStore:
    """Merkle trees, tiles and checkpoints in SQLite tables, on a connection it is given.

    Writing methods run inside the caller's transaction (``grow``, ``checkpoint``); the
    caller calls ``flush_files`` after its COMMIT, so a checkpoint file never shows a tree
    head that was rolled back.
    """

    def __init__(self, db: sqlite3.Connection, options: TreeOptions, default_origin: str):
        self.db = db
        self.options = options
        self._default_origin = default_origin
        self._states: dict[int, _TreeState] = {}
        self._pending: list[tuple[int, str, int]] = []  # (tree, note, size) to write to files
        db.executescript(TREE_SCHEMA)

    @classmethod
    def reader(cls, db: sqlite3.Connection) -> SQLiteTreeStore:
        """A read-only view of the tables on ``db`` (which may be inside a read
        transaction: no schema statement is run)."""
        store = cls.__new__(cls)
        store.db = db
        store.options = TreeOptions()
        store._default_origin = ""
        store._states, store._pending = {}, []
        return store

    # --- identity -----------------------------------------------------------------------

    @staticmethod
    def log_uuid(db: sqlite3.Connection) -> str:
        """A random id made when the tables are created: what the default origin names."""
        db.executescript(TREE_SCHEMA)
        row = db.execute("SELECT value FROM merkle_meta WHERE key = 'log_uuid'").fetchone()
        if row:
            return str(row[0])
        value = uuid.uuid4().hex
        db.execute("INSERT OR IGNORE INTO merkle_meta VALUES ('log_uuid', ?)", (value,))
        return str(db.execute("SELECT value FROM merkle_meta WHERE key = 'log_uuid'").fetchone()[0])

    def origin(self, tree: int) -> str:
        row = self.db.execute("SELECT origin FROM merkle_trees WHERE tree = ?", (tree,)).fetchone()
        if row:
            return str(row[0])
        base = self.options.origin or self._default_origin
        return base if tree == 0 and not self.options.offsets else f"{base}/{tree}"

    # --- growing ------------------------------------------------------------------------

    def size(self, tree: int) -> int:
        row = self.db.execute("SELECT size FROM merkle_trees WHERE tree = ?", (tree,)).fetchone()
        return int(row[0]) if row else 0

    def _load(self, tree: int) -> _TreeState:
        """The tree's state as stored (in the caller's transaction), cached while current."""
        row = self.db.execute(
            "SELECT origin, size, edge, last_offset FROM merkle_trees WHERE tree = ?", (tree,)
        ).fetchone()
        cached = self._states.get(tree)
        size = int(row[1]) if row else 0
        if cached is not None and cached.size == size and (row or size == 0):
            return cached
        if row is None:
            origin, edge, last_offset = self.origin(tree), b"", -1
        else:
            origin, edge, last_offset = row[0], row[2], int(row[3])
        partial: dict[int, bytes] = {}
        level = 0
        while size >> (TILE_HEIGHT * level):
            count = size >> (TILE_HEIGHT * level)
            if count % TILE_WIDTH:
                got = self.db.execute(
                    "SELECT hashes FROM merkle_tiles WHERE tree = ? AND level = ? AND idx = ?",
                    (tree, level, count >> TILE_HEIGHT),
                ).fetchone()
                partial[level] = got[0] if got else b""
            level += 1
        try:
            writer = TileWriter(CompactRange.unpack(size, edge), partial)
        except ValueError as exc:
            raise PersistenceError(f"the Merkle tree {tree} of the log is damaged: {exc}; "
                                   "rebuild it with `pdl verify --rebuild-tree`") from None
        last = self.db.execute(
            "SELECT size, created_at FROM merkle_checkpoints WHERE tree = ? "
            "ORDER BY size DESC LIMIT 1", (tree,)
        ).fetchone()
        state = _TreeState(tree, origin, writer, last_offset,
                           int(last[0]) if last else 0, float(last[1]) if last else time.time())
        self._states[tree] = state
        return state

    def grow(self, tree: int, first_index: int,
             records: Sequence[tuple[str, str, str | None, bytes]],
             offsets: Sequence[int], recorded: Sequence[int] | int) -> None:
        """Add the leaves of ``records`` ((event id, type, subject, payload), as
        ``NewRecord``), at ``offsets``, recorded at ``recorded`` µs (one time for all, or one
        each), leaf indexes from ``first_index``, in the caller's transaction; sign a
        checkpoint if one is due."""
        if not records:
            return
        state = self._load(tree)
        if state.size != first_index:
            raise PersistenceError(
                f"the Merkle tree {tree} has {state.size} leaves but the log's next record is "
                f"number {first_index}: rebuild it with `pdl verify --rebuild-tree`")
        times = itertools.repeat(recorded) if isinstance(recorded, int) else recorded
        hashes = leaf_hashes(state.prefix, first_index, records, offsets, times)
        try:
            state.writer.extend(hashes)
            self._save(state, offsets[-1])
            if self.options.offsets:
                self.db.executemany(
                    "INSERT INTO merkle_offsets (tree, idx, offset) VALUES (?, ?, ?)",
                    zip(itertools.repeat(tree), range(first_index, first_index + len(records)),
                        offsets))
            now = time.time()
            if self.options.signer is not None and (
                state.size - state.checkpoint_size >= self.options.every_records
                or now - state.checkpoint_at >= self.options.every_seconds
            ):
                self._sign(state, now)
        except BaseException:
            self._states.pop(tree, None)  # the caller rolls back: reload next time
            raise

    def _save(self, state: _TreeState, last_offset: int) -> None:
        db = self.db
        for level, idx, blob in state.writer.take_changes():
            db.execute("INSERT OR REPLACE INTO merkle_tiles (tree, level, idx, hashes) "
                       "VALUES (?, ?, ?, ?)", (state.tree, level, idx, blob))
        state.last_offset = last_offset
        db.execute(
            "INSERT OR REPLACE INTO merkle_trees (tree, origin, size, edge, last_offset) "
            "VALUES (?, ?, ?, ?, ?)",
            (state.tree, state.origin, state.size, state.writer.range.pack(), last_offset))

    def _sign(self, state: _TreeState, now: float) -> None:
        assert self.options.signer is not None
        if state.size == 0:
            return
        checkpoint = Checkpoint(state.origin, state.size, state.writer.range.root())
        note = str(sign_checkpoint(checkpoint, self.options.signer))
        self.db.execute(
            "INSERT OR REPLACE INTO merkle_checkpoints (tree, size, note, created_at) "
            "VALUES (?, ?, ?, ?)", (state.tree, state.size, note, now))
        state.checkpoint_size, state.checkpoint_at = state.size, now
        self._pending.append((state.tree, note, state.size))

    def seal(self, tree: int) -> bool:
        """Sign a checkpoint of the tree as it is now if it grew since the last one (in the
        caller's transaction). False when there is no signer or nothing new."""
        if self.options.signer is None:
            return False
        state = self._load(tree)
        if state.size == 0 or state.size == state.checkpoint_size:
            return False
        self._sign(state, time.time())
        return True

    def write(self, work: Callable[[], T], failure: str) -> T:
        """Run ``work`` (tree writes, and the caller's own statements on the same connection)
        in one ``BEGIN IMMEDIATE`` transaction, then write the checkpoint files it signed.

        On any error the transaction is rolled back and cached state forgotten; a SQLite
        error is raised as ``OperationalError("<failure>: <reason>")``.
        """
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            result = work()
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self.roll_back()
            raise OperationalError(f"{failure}: {exc}") from exc
        except BaseException:
            self.roll_back()
            raise
        self.flush_files()
        return result

    def roll_back(self) -> None:
        """Roll back the connection's open transaction, if any, and call ``rolled_back``."""
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        self.rolled_back()

    def flush_files(self) -> None:
        """Write the checkpoints signed in the committed transaction to the folder."""
        pending, self._pending = self._pending, []
        folder = self.options.folder
        if folder is None:
            return
        for tree, note, size in pending:
            try:
                write_atomic(folder / str(tree) / f"{size:015d}.checkpoint", note)
                write_atomic(folder / str(tree) / "latest.checkpoint", note)
            except OSError as exc:
                raise PersistenceError(f"cannot write checkpoint files under {folder}: "
                                       f"{exc.strerror}") from None

    def rolled_back(self) -> None:
        """The caller's transaction was rolled back: forget cached state and pending files."""
        self._states.clear()
        self._pending.clear()

    # --- reading ------------------------------------------------------------------------

    def trees(self) -> list[int]:
        return [int(r[0]) for r in self.db.execute("SELECT tree FROM merkle_trees ORDER BY tree")]

    def stored_head(self, tree: int) -> tuple[str, int, bytes]:
        """(origin, size, root) of the tree as its state row says."""
        row = self.db.execute("SELECT origin, size, edge FROM merkle_trees WHERE tree = ?",
                              (tree,)).fetchone()
        if row is None:
            return self.origin(tree), 0, CompactRange().root()
        return str(row[0]), int(row[1]), CompactRange.unpack(int(row[1]), row[2]).root()

    def checkpoints(self, tree: int) -> list[tuple[int, str]]:
        """(size, note text) of every stored checkpoint of the tree, oldest first."""
        return [(int(s), str(n)) for s, n in self.db.execute(
            "SELECT size, note FROM merkle_checkpoints WHERE tree = ? ORDER BY size", (tree,))]

    def offsets(self, tree: int, start: int = 0) -> Iterator[tuple[int, int]]:
        """(leaf index, offset) of the tree's leaves from ``start`` (Kafka)."""
        for idx, off in self.db.execute(
            "SELECT idx, offset FROM merkle_offsets WHERE tree = ? AND idx >= ? ORDER BY idx",
            (tree, start)):
            yield int(idx), int(off)

    def hashes(self, tree: int) -> HashSource:
        db = self.db

        def stored(level: int, start: int, count: int) -> list[bytes]:
            out: list[bytes] = []
            n, end = start, start + count
            while n < end:
                tile = n >> TILE_HEIGHT
                row = db.execute(
                    "SELECT hashes FROM merkle_tiles WHERE tree = ? AND level = ? AND idx = ?",
                    (tree, level, tile)).fetchone()
                blob = row[0] if row else b""
                stop = min(end, (tile + 1) << TILE_HEIGHT)
                lo = (n - (tile << TILE_HEIGHT)) * HASH_SIZE
                hi = (stop - (tile << TILE_HEIGHT)) * HASH_SIZE
                part = blob[lo:hi]
                out.extend(part[i : i + HASH_SIZE] for i in range(0, len(part), HASH_SIZE))
                if len(part) != hi - lo:
                    break
                n = stop
            return out

        return HashSource(stored)

    def reset(self, tree: int | None = None) -> None:
        """Forget a tree (or all): ``pdl verify --rebuild-tree`` grows it again from the log.
        Checkpoints stay: the rebuilt tree must agree with them."""
        where, args = ("WHERE tree = ?", (tree,)) if tree is not None else ("", ())
        for table in ("merkle_trees", "merkle_tiles", "merkle_offsets"):
            self.db.execute(f"DELETE FROM {table} {where}", args)
        self._states.clear()
