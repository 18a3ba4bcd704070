"""The sealing consumer: Merkle trees and signed checkpoints for a log that keeps none.

Kafka brokers store records, not trees; this follower reads each partition in order and
grows one tree per partition in a SQLite file of its own (``LEDGER_TREE_PATH``), keeping
the index -> offset map (offsets have gaps at transaction markers), and signs checkpoints
as the SQLite log's writer does (``ledger.treelog``). Run it as ``pdl checkpoint`` (once)
or ``pdl checkpoint --follow`` (a long-lived process beside the producers).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.checkpoint import recorded_us
from ledger.errors import PersistenceError
from ledger.files import private_file
from ledger.persistence import EventLog
from ledger.treelog import SQLiteTreeStore, TreeOptions

if TYPE_CHECKING:
    from ledger.settings import Settings

BATCH = 5_000


class KafkaTreeSealer:
    """Grows the trees of ``log``'s partitions in ``path`` and signs their checkpoints."""

    def __init__(self, log: EventLog, path: Path, options: TreeOptions, origin: str):
        self.log = log
        self.path = path
        private_file(path)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.store = SQLiteTreeStore(self.db, replace(options, offsets=True), origin)
            topic = getattr(log, "topic", "log")
            known = self.db.execute(
                "SELECT value FROM merkle_meta WHERE key = 'topic'").fetchone()
            if known is None:
                self.db.execute("INSERT INTO merkle_meta VALUES ('topic', ?)", (topic,))
            elif known[0] != topic:
                raise PersistenceError(
                    f"the Merkle trees at {path} belong to the topic {known[0]!r}, not "
                    f"{topic!r}: point LEDGER_TREE_PATH at a file of this topic's own")
        except sqlite3.Error as exc:
            raise PersistenceError(f"cannot open the Merkle trees at {path}: {exc}") from exc

    @classmethod
    def from_settings(cls, log: EventLog, settings: Settings) -> KafkaTreeSealer:
        from ledger.verification import kafka_folder

        topic = getattr(log, "topic", "log")
        options = replace(TreeOptions.from_settings(settings, offsets=True),
                          folder=kafka_folder(settings, topic))
        return cls(log, settings.tree_file, options, f"pdl.local/kafka/{topic}")

    def close(self) -> None:
        self.db.close()

    def run_once(self, progress: Callable[[int], None] | None = None) -> dict[int, int]:
        """Seal everything the log holds now; return each tree's size."""
        sizes: dict[int, int] = {}
        done = 0
        for p in self.log.partitions():
            sizes[p] = self._partition(p, progress, done)
            done += sizes[p]
        return sizes

    def _partition(self, p: int, progress: Callable[[int], None] | None, base: int) -> int:
        store = self.store
        size = store.size(p)
        last = self._last_offset(p)
        batch: list[tuple[int, str, str, str | None, int, bytes]] = []

        def flush() -> None:
            nonlocal size
            if not batch:
                return
            self._write(lambda: store.grow(p, size, [r[1:4] + r[5:] for r in batch],
                                           [r[0] for r in batch], [r[4] for r in batch]))
            size += len(batch)
            batch.clear()
            if progress is not None:
                progress(base + size)

        for r in self.log.read({p: last}, partitions=[p]):
            if r.partition != p:
                continue
            batch.append((r.offset, r.event_id, r.event_type, r.subject,
                          recorded_us(r.recorded_at), r.payload))
            if len(batch) >= BATCH:
                flush()
        flush()
        if store.options.signer is not None:
            self._write(lambda: store.seal(p))
        return size

    def _last_offset(self, p: int) -> int:
        row = self.db.execute("SELECT last_offset FROM merkle_trees WHERE tree = ?",
                              (p,)).fetchone()
        return int(row[0]) if row else -1

    def _write(self, work: Callable[[], object]) -> None:
        self.store.write(work, f"cannot write the Merkle trees at {self.path}")
