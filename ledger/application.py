"""The ledger application: validate, pseudonymise, seal and append; read back; erase.

This is the only place where clear personal values and the log meet. They arrive in a
wire event's ``data.personal`` map and leave this module sealed; nothing here logs them.
"""

from __future__ import annotations

import gc
import marshal
import multiprocessing
import os
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from schemas import Event, EventInvalid, decode, encode_sealed, parse_wire, parse_wire_lines
from schemas.events import DataErased, LedgerQueried
from schemas.taxonomy import ErasureMethod

from ledger.errors import Forbidden, InvalidInput, NotFound, SubjectErased, TamperedLogError
from ledger.factory import create_log, open_vault
from ledger.files import private_dir
from ledger.persistence import AppendResult, EventLog, LogRecord, NewRecord
from ledger.sealing import Pseudonymiser, Sealer
from ledger.settings import Settings

LineError = tuple[int, str, str]  # (line number, field, reason)
#: The store an erasure by crypto-shredding names: the vault that held the person's key.
ERASURE_STORE = "ledger-key-vault"
MAX_REPORTED_ERRORS = 100


@dataclass
class PublishSummary:
    """What a publish did: counts, and per-event results if asked for."""

    lines: int = 0
    appended: int = 0
    duplicates: int = 0
    batches: int = 0
    results: list[AppendResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {
            "lines": self.lines,
            "appended": self.appended,
            "duplicates": self.duplicates,
            "batches": self.batches,
        }


@dataclass(frozen=True)
class Publisher:
    """Who publishes through an edge of the ledger (the HTTP API), as authenticated there.

    Its ``name`` is recorded with each event it publishes (the ``publisher`` attribute,
    never taken from the producer), and it may publish only for its registered ``sources``.
    """

    name: str
    sources: frozenset[str]

    def check(self, events: Sequence[Event], lines: Sequence[int] | None = None) -> None:
        """Raise ``Forbidden`` naming the first event whose source is not registered."""
        for index, event in enumerate(events):
            if event.source not in self.sources:
                line = lines[index] if lines else index + 1
                raise Forbidden(
                    f"line {line}: source {event.source!r} is not registered to publisher "
                    f"{self.name!r}; nothing was appended")


@dataclass(frozen=True)
class Erasure:
    """What ``Ledger.erase`` did: where the erasure is recorded, and whether it was
    recorded before this call (nothing appended then)."""

    pseudonym: str
    result: AppendResult
    already: bool

    @property
    def event_id(self) -> str:
        """The id of the ``data.erased`` event that records the erasure."""
        return self.result.event_id

    @property
    def partition(self) -> int:
        return self.result.partition

    @property
    def offset(self) -> int:
        return self.result.offset


class Sealing:
    """Pseudonymiser, key vault and sealer of one process: turns wire events into records."""

    def __init__(self, settings: Settings):
        master = settings.require_master_key()
        self.vault = open_vault(settings, master)
        # after a master-key rotation the vault keeps the pseudonym key (unchanged)
        self.pseudonymise = Pseudonymiser(master, self.vault.pseudonym_key())
        self.sealer = Sealer(self.vault)

    def close(self) -> None:
        self.vault.close()

    def seal(self, events: Sequence[Event], lines: Sequence[int] | None = None,
             publisher: Publisher | None = None) -> list[NewRecord]:
        """Pseudonymise and seal validated wire events into records for the log.

        Raises ``InvalidInput`` (naming ``lines[i]``) if a person whose key was destroyed
        comes with personal values: they can never be sealed again. With a ``publisher``
        its name is recorded in each record.
        """
        pseudonyms = self.pseudonymise.many([e.subject for e in events])
        needs_key = [p for p, e in zip(pseudonyms, events) if e.data.personal and p]
        by = publisher.name if publisher is not None else None
        keys = self.vault.keys_for(needs_key) if needs_key else {}
        nonces = os.urandom(12 * len(needs_key))  # one draw for the batch, 12 bytes a token
        seal = self.sealer.seal
        records: list[NewRecord] = []
        errors: list[LineError] = []
        sealed = 0
        for index, (event, pseudonym) in enumerate(zip(events, pseudonyms)):
            event_id = event.id
            assert event_id is not None
            token = None
            personal = event.data.personal
            if personal and pseudonym:
                key = keys.get(pseudonym)
                if key is None:
                    errors.append(
                        (lines[index] if lines else index + 1, "subject",
                         "this person was erased (key destroyed); personal values cannot be sealed")
                    )
                    continue
                token = seal(key, pseudonym, event_id, personal,
                             nonces[sealed : sealed + 12])
                sealed += 12
            records.append(NewRecord(event_id, event.type, pseudonym,
                                     encode_sealed(event, pseudonym, token, by)))
        if errors:
            raise InvalidInput(f"{len(errors)} event(s) refused; nothing was appended", errors)
        return records

    def prepare(self, chunk: Chunk, *, seal: bool = True,
                publisher: Publisher | None = None) -> Prepared:
        """Validate (and seal, unless ``seal`` is False) one chunk of numbered lines.

        Raises ``Forbidden`` if a valid event names a source ``publisher`` may not use.
        """
        events: list[Event] = []
        numbers: list[int] = []
        errors: list[LineError] = []
        bad = 0
        parsed = parse_wire_lines([line for _, line in chunk])
        for (number, _), item in zip(chunk, parsed):
            if isinstance(item, EventInvalid):
                bad += 1
                errors.extend((number, e.field, e.reason) for e in item.errors)
            else:
                events.append(item)
                numbers.append(number)
        if publisher is not None:
            publisher.check(events, numbers)
        if errors or not seal:
            return [], errors, bad
        try:
            return self.seal(events, numbers, publisher), [], 0
        except InvalidInput as exc:
            return [], exc.errors, len(exc.errors)


Chunk = list[tuple[int, bytes | str]]
Prepared = tuple[list[NewRecord], list[LineError], int]

_worker: Sealing | None = None


def _worker_init(settings: Settings) -> None:
    global _worker
    _worker = Sealing(settings)


def _worker_prepare(chunk: Chunk, seal: bool, publisher: Publisher | None) -> Prepared:
    assert _worker is not None
    return _worker.prepare(chunk, seal=seal, publisher=publisher)


def _chunks(lines: Iterable[str | bytes], size: int,
            counted: list[int] | None = None) -> Iterator[Chunk]:
    """Numbered non-blank lines in chunks of ``size``; at the end, the number of lines read
    (blank ones too) is appended to ``counted``."""
    chunk: Chunk = []
    number = 0
    for number, line in enumerate(lines, 1):  # noqa: B007 - number is read after
        if not line or line.isspace():  # blank (isspace: no stripped copy of every line)
            continue
        chunk.append((number, line))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
    if counted is not None:
        counted.append(number)


class _Waiting:
    """One caller's records waiting for a group append, and what came of them."""

    __slots__ = ("done", "error", "records", "results", "woken")

    def __init__(self, records: Sequence[NewRecord]):
        self.records = records
        self.results: list[AppendResult] = []
        self.error: BaseException | None = None
        self.done = False
        # Made (held) only by a caller that must wait; released to wake it. A bare lock,
        # not an Event: waking a group's callers is on the leader's path, once per caller.
        self.woken: threading.Lock | None = None

    def outcome(self) -> list[AppendResult]:
        if self.error is not None:
            raise self.error
        return self.results


class GroupCommit:
    """Appends of threads publishing at the same time, merged into one append of the log.

    A caller arriving while no append is in flight leads: it appends its records and those
    of every caller that queued meanwhile as ONE batch (one transaction and one fsync on
    SQLite, one transaction on Kafka), hands each caller the results of its own records,
    and passes the lead to the first caller that queued during that append. A caller's
    batch stays all or nothing (the merged append is one transaction: if it fails, every
    caller of the group gets the error and none of their records is stored), duplicates
    are reported per record as the log reports them, and a lone caller pays nothing extra.
    Durable publishes of single events from many threads (a service answering requests)
    thus share their fsyncs instead of queueing for one each.
    """

    def __init__(self, log: EventLog):
        self.log = log
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        self._leading = False
        #: appends made, and records they carried (``records / appends`` = mean group size)
        self.appends = 0
        self.records = 0

    def append(self, records: Sequence[NewRecord]) -> list[AppendResult]:
        me = _Waiting(records)
        with self._lock:
            lead = not self._leading
            self._leading = True
            if not lead:
                me.woken = threading.Lock()
                me.woken.acquire()
            self._queue.append(me)
        if me.woken is not None:
            me.woken.acquire()  # released for my results, or for the lead
            if me.done:
                return me.outcome()
        with self._lock:
            group, self._queue = self._queue, []
        try:
            merged = group[0].records if len(group) == 1 else [
                r for w in group for r in w.records]
            results = self.log.append(merged)
            start = 0
            for w in group:
                w.results = results[start : start + len(w.records)]
                start += len(w.records)
            self.appends += 1
            self.records += len(merged)
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the group
            for w in group:
                w.error = exc
        finally:
            with self._lock:
                for w in group:
                    w.done = True
                following = self._queue[0] if self._queue else None
                self._leading = following is not None
            for w in group:
                if w.woken is not None:
                    w.woken.release()
            if following is not None:
                assert following.woken is not None
                following.woken.release()  # not done: it leads the next append
        return me.outcome()


class Ledger:
    """Publishes events to the log and reads them back, sealing and unsealing personal values.

    Safe to share between threads: concurrent ``publish`` calls are merged into one append
    (see ``GroupCommit``); the log, the key vault and the pseudonymiser guard their own state.
    """

    def __init__(self, settings: Settings, log: EventLog | None = None):
        self.settings = settings
        private_dir(settings.data_dir)
        self.sealing = Sealing(settings)
        self.pseudonymise = self.sealing.pseudonymise
        self.vault = self.sealing.vault
        self.sealer = self.sealing.sealer
        self.log = log if log is not None else create_log(settings)
        self.commits = GroupCommit(self.log)

    @classmethod
    def from_env(cls) -> Ledger:
        return cls(Settings.from_env())

    def close(self) -> None:
        self.log.close()
        self.sealing.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- publishing ---------------------------------------------------------------------

    def seal(self, events: Sequence[Event]) -> list[NewRecord]:
        return self.sealing.seal(events)

    def publish(self, events: Iterable[Event | Mapping[str, Any]]) -> list[AppendResult]:
        """Validate, seal and append one atomic batch. Raises ``InvalidInput``; appends nothing then."""
        parsed: list[Event] = []
        errors: list[LineError] = []
        for n, item in enumerate(events, 1):
            try:
                parsed.append(item if isinstance(item, Event) else parse_wire(dict(item)))
            except EventInvalid as exc:
                errors.extend((n, e.field, e.reason) for e in exc.errors)
        if errors:
            raise InvalidInput(f"{len(errors)} problem(s) in the batch; nothing was appended", errors)
        return self.commits.append(self.sealing.seal(parsed))

    def publish_lines(
        self,
        lines: Iterable[str | bytes],
        *,
        batch_size: int = 1000,
        progress: Callable[[int], None] | None = None,
        keep_results: bool = False,
        workers: int = 1,
        publisher: Publisher | None = None,
    ) -> PublishSummary:
        """Publish JSON Lines, all or nothing with respect to validation.

        Phase 1 validates and seals every line into batches of ``batch_size``, kept in a
        spool (memory, then a temp file), on ``workers`` processes when more than one.
        Only if every line is valid does phase 2 append the batches, each atomically. Any
        bad line refuses the whole input: ``InvalidInput`` lists each bad line and nothing
        is appended. A crash in phase 2 leaves whole batches only; publishing the same
        input again completes it without duplicates (ids are kept or derived from content).
        With a ``publisher`` (an authenticated caller of the HTTP API) an event naming a
        source not registered to it raises ``Forbidden``, nothing appended, and every
        stored event records the publisher's name.
        """
        with _few_collections():
            return self._publish_lines(lines, batch_size, progress, keep_results, workers,
                                       publisher)

    def _publish_lines(self, lines: Iterable[str | bytes], batch_size: int,
                       progress: Callable[[int], None] | None, keep_results: bool,
                       workers: int, publisher: Publisher | None) -> PublishSummary:
        errors: list[LineError] = []
        bad_lines = 0
        spool = _Spool()

        def take(prepared: Prepared) -> None:
            nonlocal bad_lines
            records, errs, bad = prepared
            bad_lines += bad
            if errs:
                room = MAX_REPORTED_ERRORS - len(errors)
                errors.extend(errs[: max(room, 0)])
            elif not errors:
                spool.add(records)

        try:
            counted: list[int] = []
            chunks = _chunks(lines, batch_size, counted)
            if workers > 1:
                self._prepare_parallel(chunks, workers, take, lambda: not errors, publisher)
            else:
                for chunk in chunks:
                    take(self.sealing.prepare(chunk, seal=not errors, publisher=publisher))
            count = counted[0]
            if errors or bad_lines:
                raise InvalidInput(
                    f"{bad_lines} of {count} line(s) refused; nothing was appended", errors
                )
            summary = PublishSummary(lines=count)
            for records in spool:
                summary.batches += 1
                if keep_results:
                    results = self.log.append(records)
                    summary.results.extend(results)
                    dups = sum(r.duplicate for r in results)
                    stored = len(results) - dups
                else:
                    stored, dups = self.log.append_counted(records)
                summary.duplicates += dups
                summary.appended += stored
                if progress is not None:
                    progress(len(records))
            return summary
        finally:
            spool.close()

    def _prepare_parallel(self, chunks: Iterator[Chunk], workers: int,
                          take: Callable[[Prepared], None], sealing: Callable[[], bool],
                          publisher: Publisher | None) -> None:
        # fork: workers start in milliseconds and inherit the loaded schemas. They open
        # their own vault connection and never touch the parent's connections.
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                                 initargs=(self.settings,)) as pool:
            pending: deque[Future[Prepared]] = deque()
            for chunk in chunks:
                pending.append(pool.submit(_worker_prepare, chunk, sealing(), publisher))
                if len(pending) >= 2 * workers:  # bounded: memory stays flat
                    take(pending.popleft().result())
            while pending:
                take(pending.popleft().result())

    def publish_file(self, path: str | Path, **kwargs: Any) -> PublishSummary:
        """Publish a JSON Lines file, or ``-`` for standard input (spooled to a temp file)."""
        if str(path) == "-":
            import sys

            with tempfile.TemporaryFile("w+b") as spool:
                for chunk in iter(lambda: sys.stdin.buffer.read(1 << 20), b""):
                    spool.write(chunk)
                return self.publish_lines(_Lines(spool), **kwargs)
        p = Path(path)
        if not p.exists():
            raise NotFound(f"no such file: {p}")
        with p.open("rb") as fh:
            return self.publish_lines(_Lines(fh), **kwargs)

    # --- reading ------------------------------------------------------------------------

    def events(
        self,
        after: Mapping[int, int] | None = None,
        *,
        until: datetime | None = None,
        subject: str | None = None,
        limit: int | None = None,
    ) -> Iterator[tuple[LogRecord, Event]]:
        """Decoded events in log order; ``subject`` is a real identifier (pseudonymised here)."""
        wanted = self.pseudonymise(subject) if subject else None
        about_no_one: set[str] = set()  # on Kafka such events sit on every partition
        if wanted is not None and after is None and limit is None:
            # one person's records: the log may filter them before they reach Python
            for record in self.log.read_about(wanted, until=until):
                yield record, decode(record.payload)
            return
        for record in self.log.read(after, until=until, limit=limit):
            if wanted is not None and record.subject != wanted:
                continue
            if record.subject is None and record.event_id:
                if record.event_id in about_no_one:
                    continue
                about_no_one.add(record.event_id)
            yield record, decode(record.payload)

    def unseal(self, event: Event) -> dict[str, str] | None:
        """The clear personal values of a stored event; ``None`` if it has none or was erased."""
        if not event.sealed or not event.subject or event.id is None:
            return None
        try:
            return self.sealer.open(event.subject, event.id, event.sealed)
        except SubjectErased:
            return None

    def export(self, subject_id: str) -> dict[str, Any]:
        """Everything the log holds about one person, unsealed (an access request, 7.1)."""
        pseudonym = self.pseudonymise(subject_id)
        out: list[dict[str, Any]] = []
        for record, event in self.events(subject=subject_id):
            item = event.model_dump(mode="json", exclude_none=True, exclude={"sealed"})
            item["subject"] = subject_id
            item["position"] = {"partition": record.partition, "offset": record.offset}
            item["recorded_at"] = record.recorded_at.isoformat()
            if event.sealed:
                values = self.unseal(event)
                item["personal"] = values if values is not None else "(erased: key destroyed)"
            out.append(item)
        return {
            "subject": subject_id,
            "pseudonym": pseudonym,
            "key": self.vault.state(pseudonym),
            "events": out,
        }

    # --- erasure and audit --------------------------------------------------------------

    def erase(self, subject_id: str, *, reason: str = "request", request_id: str | None = None,
              source: str = "pdl/erase", record_anyway: bool = False) -> Erasure:
        """Crypto-shred a person: destroy their data key, then record the erasure.

        Raises ``NotFound`` for an identifier the ledger never saw (no key, no event),
        unless ``record_anyway`` (an erasure request for someone it may hear of later: the
        key is destroyed before it exists, so nothing can ever be sealed for them). A
        person already erased is not erased again: nothing is appended (an erasure whose
        record a crash lost is recorded now).
        """
        pseudonym = self.pseudonymise(subject_id)
        state = self.vault.state(pseudonym)
        if state == "destroyed":
            recorded = self._erasure_recorded(pseudonym)
            if recorded is not None:
                return Erasure(pseudonym, recorded, already=True)
        elif state == "unknown" and not record_anyway and self._first_record(pseudonym) is None:
            raise NotFound("the ledger never saw this person (no key, no event); nothing was "
                           "erased. Check the identifier, or give --record-anyway to record "
                           "an erasure request for it")
        self.vault.destroy(pseudonym)
        event = parse_wire(
            {
                "source": source,
                "type": DataErased.TYPE,
                "time": datetime.now(timezone.utc).isoformat(),
                "subject": subject_id,
                "data": {
                    "categories": ["user"],
                    "stores": [ERASURE_STORE],
                    "method": ErasureMethod.CRYPTO_SHREDDED.value,
                    "reason": reason,
                    "request_id": request_id,
                },
            }
        )
        return Erasure(pseudonym, self.commits.append(self.seal([event]))[0], already=False)

    def _first_record(self, pseudonym: str) -> LogRecord | None:
        return next(iter(self.log.read_about(pseudonym)), None)

    def _erasure_recorded(self, pseudonym: str) -> AppendResult | None:
        """Where the log records this person's crypto-shredding, if it does."""
        for record in self.log.read_about(pseudonym):
            if record.event_type and record.event_type != DataErased.TYPE:
                continue
            try:
                event = decode(record.payload)
            except Exception:  # noqa: BLE001 - a record that does not decode records nothing
                continue
            data = event.data
            if (isinstance(data, DataErased) and ERASURE_STORE in data.stores
                    and data.method is ErasureMethod.CRYPTO_SHREDDED):
                return AppendResult(event.id or "", record.partition, record.offset, True)
        return None

    def audit(self, query: str, arguments: Mapping[str, str] | None = None, *,
              actor: str | None = None, role: str | None = None,
              people: Sequence[str] = (), reason: str | None = None,
              clear: bool = False) -> AppendResult:
        """Record that somebody queried the ledger (6.2.1b): who (``actor``, default the
        configured one, and ``role``), about whom (``people``: pseudonyms), the query, and
        why. Arguments hold no clear values. Many people are recorded in several events of
        at most 1000 people each, appended in one batch. Returns where the first landed (its
        id links a rights request to the export it audits)."""
        people = list(dict.fromkeys(people))
        chunks = [people[i:i + 1000] for i in range(0, len(people), 1000)] or [[]]
        now = datetime.now(timezone.utc).isoformat()
        events = [
            parse_wire({
                "source": "pdl/query",
                "type": LedgerQueried.TYPE,
                "time": now,
                "data": {"actor": actor or self.settings.actor, "role": role, "query": query,
                         "arguments": dict(arguments or {}), "people": chunk,
                         "reason": reason, "clear": clear},
            })
            for chunk in chunks
        ]
        return self.commits.append(self.seal(events))[0]

    def verify(self, progress: Callable[[int], None] | None = None) -> int:
        """Check the log against its Merkle trees and signed checkpoints (with the verifier
        key of the settings, if any; no trust state) and that every record decodes; return
        the number of records checked. Raises ``TamperedLogError`` naming the problems.
        ``pdl verify`` (``ledger.verification``) is the full check, with trust state. A
        Kafka topic no sealing consumer has sealed yet: every record decoded, no more."""
        from ledger.verification import verify_log

        if not self.log.can_verify and not self.settings.tree_file.exists():
            checked = 0
            for record in self.log.read():
                decode(record.payload)
                checked += 1
            return checked
        report = verify_log(self.log, self.settings, trust=None, progress=progress)
        if not report.ok:
            problems = "; ".join(p for t in report.trees for p in t.problems)
            raise TamperedLogError(f"the log does not verify: {problems}")
        return report.records


@contextmanager
def _few_collections() -> Iterator[None]:
    """Fewer cyclic-GC passes while publishing.

    Publishing allocates many short-lived, acyclic objects (parsed events), and each
    generation-0 pass also walks the long-lived spool; measured at about 12 % of publish
    time with the default threshold. Objects alive now are frozen out of the collector's
    view for the duration; the previous settings are restored after.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], 20_000), threshold[1], threshold[2])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


_new_tuple = tuple.__new__  # NewRecord from a row tuple without a Python-level __new__ call


class _Spool:
    """Sealed batches waiting for the whole input to validate: in memory, then a temp file."""

    IN_MEMORY_BATCHES = 20

    def __init__(self) -> None:
        self._memory: list[list[NewRecord]] = []
        self._file: IO[bytes] | None = None
        self._spilled = 0

    def add(self, records: list[NewRecord]) -> None:
        if not records:
            return
        if len(self._memory) < self.IN_MEMORY_BATCHES:
            self._memory.append(records)
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile()
        # Columns of plain values, marshalled into one length-prefixed blob: about twice as
        # fast as pickling the NewRecord tuples (marshal.load from a file reads per object).
        blob = marshal.dumps(tuple(zip(*records)))
        self._file.write(len(blob).to_bytes(8, "little"))
        self._file.write(blob)
        self._spilled += 1

    def __iter__(self) -> Iterator[list[NewRecord]]:
        while self._memory:
            yield self._memory.pop(0)
        if self._file is not None:
            self._file.seek(0)
            for _ in range(self._spilled):
                size = int.from_bytes(self._file.read(8), "little")
                columns = marshal.loads(self._file.read(size))  # noqa: S302 - our own temp file
                yield [_new_tuple(NewRecord, row) for row in zip(*columns)]

    def close(self) -> None:
        self._memory.clear()
        if self._file is not None:
            self._file.close()


class _Lines:
    """A file of lines that can be iterated more than once (validate pass, then append pass)."""

    def __init__(self, fh: IO[bytes]):
        self._fh = fh

    def __iter__(self) -> Iterator[bytes]:
        self._fh.seek(0)
        return iter(self._fh)
