"""Projections and the runner that feeds them from the log.

A ``Projection`` declares its name, the event types it wants and its tables, and turns a
batch of events into view rows. The ``ProjectionRunner`` reads the log from each
projection's tracked position, decodes each record once, and for every batch writes the
view rows and the new position in one view-store transaction (see ``consumers.views``).
Rebuilding is: drop the projection's tables and tracking, create them afresh, replay.
"""

from __future__ import annotations

import gc
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import compress, groupby
from operator import itemgetter
from typing import Any, ClassVar, NamedTuple

from schemas import Event, decode
from schemas.events import PSEUDONYM

from consumers.views import LEGACY, Mark, ViewStore, ViewTransaction
from ledger.errors import IntegrityError
from ledger.persistence import EventLog, LogRecord, Position

logger = logging.getLogger(__name__)
from ledger.settings import Settings


class Item(NamedTuple):
    """One decoded event with where it sits in the log (a tuple: one is made per event
    read, at a fraction of a frozen dataclass's cost)."""

    record: LogRecord
    event: Event
    #: ``event.time`` in microseconds since the epoch (``to_us``), computed
    #: once for every projection that reads it.
    at: int


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_us(value: datetime) -> int:
    """A timezone-aware time as integer microseconds since the epoch."""
    return (value - EPOCH) // _MICROSECOND


class Projection(ABC):
    """A view of the log: declares what it reads and the tables it owns."""

    name: ClassVar[str]
    #: Event types this projection wants; empty means every type.
    topics: ClassVar[frozenset[str]] = frozenset()
    #: Statements creating its tables and indexes (portable SQL).
    schema: ClassVar[tuple[str, ...]] = ()
    #: Statements creating indexes that only queries read, never ``apply``: a rebuild
    #: creates them after its replay (one sort, instead of an index insertion per row).
    indexes: ClassVar[tuple[str, ...]] = ()
    #: Tables dropped on rebuild.
    tables: ClassVar[tuple[str, ...]] = ()
    #: Those of ``tables`` whose rows record how the log was batched (a change journal),
    #: not what it says: dropped and copied with the others, left out when views are
    #: compared (an incremental run and a rebuild write them differently).
    volatile: ClassVar[tuple[str, ...]] = ()
    #: Its share of a rebuild's work, relative to the others (to split a parallel rebuild).
    cost: ClassVar[float] = 1.0
    #: Whether it is given every partition's copy of an event about no one (a registry
    #: event: recipient, policy version, staff list, incident, audit record), each in its
    #: own partition's order, instead of the first copy any partition shows. A projection
    #: whose rules read registries while applying a person's event sets it and keeps its
    #: registries per partition: a person's event then meets exactly the registry events
    #: before it in its own partition, whatever order partitions are read in (see
    #: docs/ordering.md). What it writes about no one must be idempotent across copies and
    #: name one canonical copy (the lowest partition's).
    registries_per_partition: ClassVar[bool] = False

    def wants(self, event_type: str) -> bool:
        return not self.topics or event_type in self.topics

    def create(self, tx: ViewTransaction, *, indexes: bool = True) -> None:
        """Create the tables (and the query indexes, unless ``indexes`` is False)."""
        for statement in self.schema:
            tx.execute(statement)
        if indexes:
            self.create_indexes(tx)

    def create_indexes(self, tx: ViewTransaction) -> None:
        for statement in self.indexes:
            tx.execute(statement)

    def drop(self, tx: ViewTransaction) -> None:
        for table in self.tables:
            tx.execute(f"DROP TABLE IF EXISTS main.{table}")

    def reset(self, tx: ViewTransaction, *, indexes: bool) -> None:
        """Empty views, as before the first event: tables dropped and made again (query
        indexes too if ``indexes``), tracking forgotten (and the applied ids of a store
        made before marks). The marks stay: the projection meets each first copy again
        and applies it (see ``_marks`` and ``_select``)."""
        self.drop(tx)
        for table in ("tracking", "applied_events"):
            tx.execute(f"DELETE FROM main.{table} WHERE projection = ?", (self.name,))
        self.create(tx, indexes=indexes)

    def merge(self, tx: ViewTransaction, source: str) -> None:
        """Add the rows this projection built in the attached view store ``source`` (one
        share of a partition-split rebuild, ``consumers.parallel``) to its tables here.

        Shares hold disjoint people; events about no one are in every share, so the rows
        they write come once per share. A table keyed by them keeps the first share's copy
        (``INSERT OR IGNORE``); a projection with unkeyed rows about no one overrides this.
        Volatile tables are not copied: they describe how one run was batched.
        Raises ``IntegrityError`` if one person's rows are in two shares (their events were
        in two partitions: partitions added to the topic, or a producer that did not key
        by pseudonym), because the merged rows would then be wrong.
        """
        for table in self.tables:
            if table in self.volatile:
                continue
            _check_people_disjoint(tx, table, source)
            tx.copy_rows(table, source)

    @abstractmethod
    def apply(self, tx: ViewTransaction, items: Sequence[Item]) -> None:
        """Write the view rows for these events (already filtered to ``topics``, in log order)."""


def _check_people_disjoint(tx: ViewTransaction, table: str, source: str) -> None:
    """Refuse to merge a share whose people (a table keyed by ``pseudonym`` alone) are
    already here."""
    if tx.key_columns(table, source) != ["pseudonym"]:
        return
    clash = tx.query(f"SELECT 1 FROM {source}.{table} WHERE pseudonym IN "
                     f"(SELECT pseudonym FROM main.{table}) LIMIT 1")
    if clash:
        raise IntegrityError(
            f"a person's events are in more than one partition of the log (found merging "
            f"{table}): the log cannot be rebuilt a share of partitions per process. Were "
            "partitions added to the topic? Rebuild in one process (--workers 1)"
        )


BadRecordHandler = Callable[[LogRecord, str], None]

#: Exceptions a projection raises on one record's content (a value it cannot store or
#: compute with), as opposed to the store or the machine failing: the record is isolated
#: and quarantined, and the projection goes on. Anything else stops the run.
POISON: tuple[type[BaseException], ...] = (
    ArithmeticError, ValueError, TypeError, LookupError, AttributeError, RecursionError,
)


# Why a record is set aside (``ProjectionRunner._read``). A reason about a record another
# producer wrote never quotes the subject: it may be a person's real identifier.
_CLEAR = "clear personal values in the log: events must be sealed (publish via pdl)"
_NOBODY_KEYED = "the record's key names a person, but the event is about no one"
_NOT_PSEUDONYM = ("subject is not a pseudonym of this ledger (p_ and 32 base32 characters): "
                  "it may be a person's real identifier; publish through pdl")
_KEY_NOT_SUBJECT = ("the record's key is not its subject: a person's events must be keyed by "
                    "their pseudonym to stay in one partition (see docs/robustness.md)")

_PARTITION, _OFFSET = itemgetter(0), itemgetter(1)  # of a LogRecord


def _bounds(batch: list[LogRecord]) -> tuple[Position, Position]:
    """Where the batch starts and ends, per partition: its least and greatest offsets.
    A poll's records come a run per partition: each run's offsets are read in C."""
    first: Position = {}
    last: Position = {}
    for partition, run in groupby(batch, key=_PARTITION):
        offsets = list(map(_OFFSET, run))
        low, high = min(offsets), max(offsets)
        if low < first.get(partition, low + 1):
            first[partition] = low
        if high > last.get(partition, -1):
            last[partition] = high
    return first, last


#: People whose partition a runner remembers (to record each person's partitions once).
HOMES_CACHE = 500_000


@dataclass
class RunStats:
    """What a run did: records read, applications, bad records (quarantined), duplicates
    skipped, and people it found in a second partition."""

    records: int = 0
    applied: int = 0
    bad: int = 0
    duplicates: int = 0
    #: With an event-time bound (``valid_until``): events left out because they happened
    #: after it, and the earliest event time read (microseconds), bound or not.
    later: int = 0
    earliest_us: int | None = None
    split: int = 0

    def add(self, other: RunStats) -> None:
        self.records += other.records
        self.applied += other.applied
        self.bad += other.bad
        self.duplicates += other.duplicates
        self.later += other.later
        if other.earliest_us is not None and (self.earliest_us is None
                                              or other.earliest_us < self.earliest_us):
            self.earliest_us = other.earliest_us
        self.split += other.split


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off while projecting (process-wide; nests, threads).

    Projecting keeps large live caches (people's states, held segments) and allocates
    millions of short-lived objects; each full collection walks every one of them. Measured
    on a 200k-event rebuild: 33 full and 430 middle collections, a third of the time.
    Projections make almost no reference cycles (~900 objects in that run), so nothing
    piles up: reference counting frees the rest, and collection resumes after the run.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


#: Records per transaction of a rebuild: a person's events cluster in the log, so a big
#: batch reads and writes each person's rows once for several of their events, and each
#: commit copies fewer pages per record. The decoded batch is the memory it costs.
REBUILD_BATCH_SIZE = Settings.rebuild_batch


class ProjectionRunner:
    """Feeds projections from a log, tracking each one's position atomically with its rows."""

    def __init__(
        self,
        log: EventLog,
        store: ViewStore,
        projections: Sequence[Projection],
        *,
        batch_size: int = 1000,
        on_bad_record: BadRecordHandler | None = None,
        dedupe: bool | None = None,
        valid_until: datetime | None = None,
    ):
        self.log = log
        # Event time bound (``--valid-at``): events that happened later are read (their
        # positions advance) but not applied, whenever they were recorded.
        self.valid_until_us = to_us(valid_until) if valid_until is not None else None
        self.store = store
        self.projections = list(projections)
        self.batch_size = batch_size
        #: Told of each record set aside (after the quarantine row is written), if given.
        self.on_bad_record = on_bad_record
        # The SQLite log stores an event id once; Kafka may carry a retried publish twice.
        self.dedupe = not log.stores_ids_once if dedupe is None else dedupe
        # Records of a type no projection here wants are not decoded. Only where the log
        # wrote the type itself from the validated event (SQLite): a Kafka record's type
        # header comes from its producer, and a malformed record must reach the handler.
        self.types: frozenset[str] | None = None
        #: pseudonym -> the partition its events were last found in (``note_partitions``)
        self._homes: dict[str, int] = {}
        if log.trusted_types and all(p.topics for p in self.projections):
            self.types = frozenset().union(*(p.topics for p in self.projections))
        with store.transaction() as tx:
            for p in self.projections:
                p.create(tx)

    def positions(self) -> dict[str, Position]:
        return {p.name: self.store.position(p.name, self.log.log_id) for p in self.projections}

    def _start(self, positions: dict[str, Position]) -> Position:
        """The earliest position any projection still needs, per partition."""
        start: Position = {}
        partitions: set[int] = set()
        for pos in positions.values():
            partitions |= set(pos)
        for partition in partitions:
            start[partition] = min(pos.get(partition, -1) for pos in positions.values())
        if any(not pos for pos in positions.values()):
            return {}
        return start

    def run(
        self,
        *,
        until: datetime | None = None,
        progress: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        partitions: Iterable[int] | None = None,
    ) -> RunStats:
        """Catch up with the log as it is now (or as it stood at ``until``), on every
        partition or on ``partitions`` only."""
        with paused_gc():
            return self._run(until, progress, should_stop, partitions)

    def _run(self, until: datetime | None, progress: Callable[[int], None] | None,
             should_stop: Callable[[], bool] | None,
             partitions: Iterable[int] | None) -> RunStats:
        positions = self.positions()
        stats = RunStats()
        batch: list[LogRecord] = []
        wanted = frozenset(partitions) if partitions is not None else None
        for record in self.log.read(self._start(positions), until=until, partitions=wanted):
            batch.append(record)
            if len(batch) >= self.batch_size:
                self._apply(batch, stats)
                if progress:
                    progress(len(batch))
                batch = []
                if should_stop and should_stop():
                    return stats
        if batch:
            self._apply(batch, stats)
            if progress:
                progress(len(batch))
        return stats

    def process(self, records: Sequence[LogRecord]) -> RunStats:
        """Apply records delivered by someone else (a Kafka consumer in a group).

        Records at or before a projection's tracked position are skipped inside the
        transaction, so a redelivery after a rebalance or a crash changes nothing.
        """
        stats = RunStats()
        if records:
            with paused_gc():
                self._apply(list(records), stats)
        return stats

    def _apply(self, batch: list[LogRecord], stats: RunStats) -> None:
        """Apply a batch in one transaction. If a projection fails on the batch's content
        (``POISON``), the batch is applied again a record at a time, and the record it
        fails on is quarantined: nothing stops the run, nothing else is skipped."""
        try:
            stats.add(self._apply_batch(batch))
        except POISON as exc:
            if len(batch) > 1:
                for record in batch:
                    self._apply([record], stats)
                return
            reason = f"a projection failed on it: {type(exc).__name__}: {exc}"
            stats.add(self._apply_batch(batch, poisoned=reason))

    def _read(self, batch: list[LogRecord], poisoned: str | None, stats: RunStats,
              ) -> tuple[list[Item], list[str], list[tuple[LogRecord, str]],
                         set[tuple[str, int]]]:
        """Decode and check a batch's records, once for every projection: the items to
        apply and their event types (two lists in log order), the records set aside with
        their reasons, and the (person, partition) pairs this runner has not noted yet.

        One loop with everything it reads held locally: this is the applying process's
        work per record outside the projections (docs/projection-cpu.md)."""
        types = self.types
        if poisoned is not None:
            return [], [], [(r, poisoned) for r in batch
                            if types is None or r.event_type in types], set()
        items: list[Item] = []
        etypes: list[str] = []
        bad: list[tuple[LogRecord, str]] = []
        moved: set[tuple[str, int]] = set()
        checks = self.log.checks_subjects
        # Every key of ``homes`` is the subject of an event this runner applied, so it
        # passed the checks below, as did those of ``known``: a person met again skips
        # the pseudonym's regex.
        homes = self._homes
        known: set[str] = set()
        note = self.log.self_contained_partitions
        bound = self.valid_until_us
        earliest = stats.earliest_us
        fullmatch = PSEUDONYM.fullmatch
        new_item = tuple.__new__  # Item(...) without NamedTuple's Python-level __new__
        for record in batch:
            partition, _, _, event_type, key, _, payload = record
            if types is not None and event_type not in types:
                continue
            try:
                event = decode(payload)
                if event.data.personal:
                    raise ValueError(_CLEAR)
                at = (event.time - EPOCH) // _MICROSECOND  # to_us, inline
            except Exception as exc:  # noqa: BLE001 - any decode failure is a bad record
                bad.append((record, _reason(exc)))
                continue
            subject = event.subject
            home = None
            if subject is None:
                if checks and key is not None:
                    bad.append((record, _NOBODY_KEYED))
                    continue
            else:
                home = homes.get(subject)
                if checks:
                    if home is None and subject not in known:
                        if not fullmatch(subject):
                            bad.append((record, _NOT_PSEUDONYM))
                            continue
                        known.add(subject)
                    if key != subject:
                        bad.append((record, _KEY_NOT_SUBJECT))
                        continue
            if bound is not None:
                if earliest is None or at < earliest:
                    earliest = at
                if at > bound:
                    stats.later += 1
                    continue
            if note and subject and home != partition:
                moved.add((subject, partition))
            items.append(new_item(Item, (record, event, at)))
            etypes.append(event.type)
        stats.earliest_us = earliest
        return items, etypes, bad, moved

    def _apply_batch(self, batch: list[LogRecord], poisoned: str | None = None) -> RunStats:
        stats = RunStats()
        stats.records = len(batch)
        items, etypes, bad, moved = self._read(batch, poisoned, stats)
        stats.bad = len(bad)
        first, last = _bounds(batch)
        log_id = self.log.log_id
        homes = self._homes
        split: dict[str, list[int]] = {}
        with self.store.transaction() as tx:
            if bad:
                tx.quarantine(log_id, bad)
            if moved:
                split = tx.note_partitions(log_id, moved)
            # Read inside the transaction: another process of the same consumer group may
            # have moved them since we last looked (a rebalance). One read for every
            # projection, and one statement marking where each event was first met (for
            # every projection): on PostgreSQL each is a round trip, paid while holding
            # the writers' lock.
            positions = tx.positions(log_id)
            copies = _marks(tx, items) if self.dedupe and items else None
            # the items less the later copies, per kind of projection (made once)
            firsts: dict[bool, tuple[list[Item], list[str]]] = {}
            for projection in self.projections:
                done = positions.get(projection.name, {})
                topics = projection.topics
                per_partition = projection.registries_per_partition
                later: set[int] = set()
                legacy: dict[int, str] = {}
                if copies is not None:
                    later, legacy = copies.of(per_partition)
                if legacy or not all(o > done.get(p, -1) for p, o in first.items()):
                    # marks of a store made before marks, or part of the batch applied
                    # already (a redelivery): item by item
                    mine, duplicates = _select(tx, projection, items, etypes, done,
                                               later, legacy)
                else:
                    # the usual case: filter by type, less the later copies, in C loops
                    source, kinds = items, etypes
                    duplicates = 0
                    if later:
                        if per_partition not in firsts:
                            keep = bytearray(b"\x01") * len(items)
                            for n in later:
                                keep[n] = 0
                            firsts[per_partition] = (list(compress(items, keep)),
                                                     list(compress(etypes, keep)))
                        source, kinds = firsts[per_partition]
                        duplicates = (len(later) if not topics
                                      else sum(etypes[n] in topics for n in later))
                    mine = (source if not topics
                            else list(compress(source, map(topics.__contains__, kinds))))
                stats.duplicates += duplicates
                if mine:
                    projection.apply(tx, mine)
                    stats.applied += len(mine)
                new = dict(done)
                for partition, offset in last.items():
                    if offset > new.get(partition, -1):
                        new[partition] = offset
                if new != done:
                    tx.track(projection.name, log_id, new)
        if len(homes) > HOMES_CACHE:
            homes.clear()
        homes.update(moved)
        for person, parts in split.items():
            # An alert, never silence: the views of this person are wrong (events applied
            # out of order across partitions). ``pdl status`` lists them too.
            logger.warning("ALERT: the events of %s are in partitions %s of %s: its producer "
                        "does not key by pseudonym with murmur2; this person's views may be "
                        "wrong (see docs/robustness.md)", person,
                        ", ".join(map(str, parts)), log_id)
        stats.split += len(split)
        if self.on_bad_record is not None:
            for record, reason in bad:
                self.on_bad_record(record, reason)
        return stats

    def rebuild(self, progress: Callable[[int], None] | None = None,
                until: datetime | None = None, *, batch_size: int | None = None,
                partitions: Iterable[int] | None = None, indexes: bool = True) -> RunStats:
        """Drop every view of this runner and replay the log from position zero, IN PLACE,
        in transactions of ``batch_size`` records (default: the runner's); only
        ``partitions`` if given (a share of a partition-split rebuild), and without the
        query indexes if ``indexes`` is False (a share, merged elsewhere).

        In place means readers see the views empty, then filling: use it on a store
        nobody reads yet (a scratch store, an in-memory replay). Views people read are
        rebuilt aside and swapped in by ``consumers.parallel.parallel_rebuild``.
        """
        with self.store.transaction() as tx:
            for p in self.projections:
                # query indexes come after the replay; one killed before then gets them
                # back from the next runner's create()
                p.reset(tx, indexes=False)
            tx.forget_marks_if_unused()
        kept = self.batch_size
        if batch_size is not None:
            self.batch_size = batch_size
        try:
            stats = self.run(progress=progress, until=until, partitions=partitions)
        finally:
            self.batch_size = kept
        if indexes:
            with self.store.transaction() as tx:
                for p in self.projections:
                    p.create_indexes(tx)
        return stats

    def status(self) -> list[dict[str, Any]]:
        """Per projection: its position, its lag behind the end of the log, and the records
        of the log quarantined in this view store (every projection skips those)."""
        end = self.log.end_position()
        quarantined = self.store.quarantine_counts().get(self.log.log_id, 0)
        split, people = self.store.split_people(self.log.log_id)
        shown = [{"pseudonym": p, "partitions": parts} for p, parts in people.items()]
        out = []
        for name, pos in self.positions().items():
            lag = sum(max(0, o - pos.get(p, -1)) for p, o in end.items())
            out.append({"projection": name, "log": self.log.log_id, "position": pos,
                        "end": end, "lag": lag, "quarantined": quarantined,
                        "split_people": split, "split_examples": shown})
        return out


@dataclass(slots=True)
class _Copies:
    """Which items of a batch are not their event's first copy (``_marks``), by their
    index in the batch's items: for a projection that reads the event id alone
    (``later``), and for one that reads an event about no one per partition
    (``later_here``); and for each, the items whose key was marked by a store made
    before marks (``LEGACY``), with the key."""

    later: set[int]
    later_here: set[int]
    legacy: dict[int, str]
    legacy_here: dict[int, str]

    def of(self, per_partition: bool) -> tuple[set[int], dict[int, str]]:
        """The later copies and the legacy keys for one kind of projection."""
        if per_partition:
            return self.later_here, self.legacy_here
        return self.later, self.legacy


#: Which projections a key decides for: a person's event id decides for all; for an
#: event about no one, its id for those reading it once, ``id@partition`` for those
#: reading it per partition (``registries_per_partition``).
_ALL, _ONCE, _PER_PARTITION = 0, 1, 2


def _marks(tx: ViewTransaction, items: Sequence[Item]) -> _Copies | None:
    """Mark where each event of the batch was first met (``ViewTransaction.mark``): its
    id, and for an event about no one also ``id@partition`` (what a projection with
    ``registries_per_partition`` applies once per partition). Returns None if every item
    is its event's first copy (the usual case: one statement, nothing more to do)."""
    rows: dict[str, Mark] = {}
    shared: dict[str, Mark] = {}  # events about no one: few, often met in another partition
    firsts: dict[str, tuple[int, int]] = {}  # where a key of ``shared`` was met first
    repeats: list[tuple[str, int, int]] = []  # a key met again in the batch
    for n, (record, event, _) in enumerate(items):
        key = event.id or ""
        if event.subject:
            if key in rows:
                repeats.append((key, n, _ALL))
            else:
                rows[key] = (key, record[0], record[1], None)
            continue
        here = f"{key}@{record.partition}"
        for k, view, kind in ((key, _ONCE, event.type), (here, _PER_PARTITION, None)):
            if k in shared or k in rows:
                repeats.append((k, n, view))
            else:
                # the type of an event about no one counts the applications a
                # partition-split rebuild repeats (``repeated_applications``)
                shared[k] = (k, record.partition, record.offset, kind)
                firsts[k] = (n, view)
    elsewhere = tx.mark(list(rows.values()), list(shared.values()))
    if not repeats and not elsewhere:
        return None
    for key in elsewhere:
        if key in rows:  # a person's event marked elsewhere (rare): found again
            n = _first_index(items, key)
            if key not in firsts or firsts[key][0] < n:
                firsts[key] = (n, _ALL)
    copies = _Copies(set(), set(), {}, {})
    first_of = {**rows, **shared}
    for key, n, view in [*repeats, *((k, *firsts[k]) for k in elsewhere)]:
        mark = elsewhere.get(key)
        if mark is None:
            _, partition, offset, _ = first_of[key]
            mark = (partition, offset)
        record = items[n].record
        if mark == LEGACY:
            if view != _PER_PARTITION:
                copies.legacy[n] = key
            if view != _ONCE:
                copies.legacy_here[n] = key
        elif mark[1] != record.offset or mark[0] != record.partition:
            if view != _PER_PARTITION:
                copies.later.add(n)
            if view != _ONCE:
                copies.later_here.add(n)
    return copies


def _first_index(items: Sequence[Item], key: str) -> int:
    """The index of the first item about a person whose event id is ``key``."""
    return next(n for n, i in enumerate(items) if i.event.subject and (i.event.id or "") == key)


def _select(tx: ViewTransaction, projection: Projection, items: list[Item], etypes: list[str],
            done: Position, later: set[int], legacy_keys: dict[int, str],
            ) -> tuple[list[Item], int]:
    """The items the projection applies, item by item, and how many copies it skips:
    those of its types past its position ``done`` that are their event's first copy, the
    one its mark names (any other is a retried publish's, or the copy of an event about
    no one in another partition, or one met again after a redelivery). A projection reset
    meets every first copy again and applies it; one whose position is past a mark
    applied that copy before and is not given it again.

    Events marked ``LEGACY`` (applied in a store made before marks) are decided by the
    projection's own applied ids, as they were then."""
    topics = projection.topics
    wanted = [n for n, i in enumerate(items)
              if i.record.offset > done.get(i.record.partition, -1)
              and (not topics or etypes[n] in topics)]
    kept = [n for n in wanted if n not in later]
    legacy = [(at, legacy_keys[n]) for at, n in enumerate(kept) if n in legacy_keys]
    if legacy:
        fresh = tx.first_time(projection.name, [key for _, key in legacy])
        for (at, _), new in reversed(list(zip(legacy, fresh, strict=True))):
            if not new:
                del kept[at]
    return [items[n] for n in kept], len(wanted) - len(kept)


def _reason(exc: Exception) -> str:
    from schemas import EventInvalid

    if isinstance(exc, EventInvalid):
        return str(exc)
    if hasattr(exc, "errors"):
        try:
            from schemas.codec import field_errors

            return "; ".join(map(str, field_errors(exc)))  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001
            pass
    return f"{type(exc).__name__}: {exc}"
