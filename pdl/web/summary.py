"""The dashboard's costly parts, cached per view position: the findings (and by clause)
at a minute, the activity chart's counts, the register's groups.

Counting the findings means evaluating the timed rules (retention, closure, request and
incident clocks) over the views at a moment, which takes seconds on a large log. The
overview judges them at the current minute (``now`` floored to the minute, shown on the
page) and keeps the answer with the findings view's log position and the number of stored
findings rows. A cached answer is reused while all of these hold, so it always equals a
fresh ``findings_summary(service.findings(views, as_of=minute))``:

- the minute is the same, and so are the clock thresholds (``LEDGER_*`` settings);
- every record past the cached position is an audit record (``ledger.queried``): the
  findings projection keeps no state from those, so the timed rules' answer is unchanged;
  the only findings they can make are stored rows (6.2.1b: read without a reason, or by
  someone not on the staff list), which are read by their log position and added, and
- the ``findings`` table then has exactly the rows counted plus those added.

Anything else (a new minute, any other event, a rebuild moving the position back, a stored
finding changed otherwise) evaluates the findings afresh. So that a new minute does not
make someone wait, the next minute is judged ahead in the background from the 40th second
of a minute someone asked for (on a second connection's read snapshot): the first overview
of that minute then finds its answer ready, and reuses it under the same conditions.
Every page asks under the service's lock, so position and answer cannot drift apart.

Under continuous ingestion every event other than an audit record moves the position, so
no answer can be reused. The overview then asks ``judgement`` (stale-while-revalidate):
the cached answer when it is current as above; otherwise the latest answer judged (at an
earlier position, or an earlier minute), returned marked as not current with the position
and minute it was judged at, while one background thread judges afresh on a read snapshot
of a second connection (the SQLite file or the PostgreSQL database; views in memory judge
while the request waits). Once ingestion stops, the next judgement is current again and
equal to a fresh one.

``AuditStableCache`` keeps any answer computed from some views (the activity chart reads
the data map and the disclosures) while those views have read only audit records since.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import subprocess
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

from consumers.findings import FINDINGS_TABLE, Finding
from consumers.findings.thresholds import clock_values
from consumers.findings.store import REMEDIES_TABLE
from consumers.rows import from_us, to_us
from consumers.views import SQLiteViewStore, ViewStore
from ledger.persistence import Position
from ledger.settings import Settings
from pdl.service import LEDGER_QUERIED, QueryService
from pdl.web.kept import KeptAnswer, views_identity

T = TypeVar("T")
LOG = logging.getLogger("pdl.web")

#: The findings projection's name (its tracked position).
FINDINGS = "findings"
#: Beyond this many new records, evaluating afresh is cheaper than reading them.
MAX_SCAN = 20_000
#: A judgement aside taking longer is given up (the next request judges while it waits).
JUDGING_TIMEOUT_S = 600
#: The judging process keeps its answer for the next server at most this often: under
#: ingestion judgements follow each other, and the file (megabytes at 1M events) need not.
KEEP_EVERY_S = 30


def minute_of(now: datetime) -> datetime:
    """``now`` floored to its minute: the moment the overview judges the clocks at."""
    return now.replace(second=0, microsecond=0)


@dataclass
class _Entry:
    log_id: str
    minute: datetime
    clocks: tuple[tuple[str, int], ...]
    position: Position
    stored: int
    #: every finding at ``minute``, as ``QueryService.findings`` lists them (in order)
    found: list[dict[str, Any]]
    #: clause -> (findings, still open, set of pseudonyms)
    clauses: dict[str, tuple[int, int, set[str]]]
    #: when the clock rules were judged (wall time)
    judged: datetime

    def rows(self) -> list[dict[str, Any]]:
        """As ``pdl.service.findings_summary`` counts them."""
        return [{"clause": c, "findings": n, "open": still_open, "people": len(people)}
                for c, (n, still_open, people) in sorted(self.clauses.items())]

    def count(self, found: list[dict[str, Any]]) -> None:
        for f in found:
            n, still_open, people = self.clauses.get(f["clause"], (0, 0, set()))
            if f["pseudonym"]:
                people = people | {f["pseudonym"]}
            self.clauses[f["clause"]] = (n + 1, still_open + (f.get("status", "open") == "open"),
                                         people)

    def order(self) -> tuple[datetime, int]:
        """Later answers come after: (minute, records)."""
        return self.minute, records(self.position)

    def to_json(self) -> dict[str, Any]:
        """What ``from_json`` reads back (``pdl.web.kept``)."""
        return {"log_id": self.log_id, "minute": self.minute.isoformat(),
                "clocks": [list(c) for c in self.clocks],
                "position": {str(p): o for p, o in self.position.items()},
                "stored": self.stored, "found": self.found, "judged": self.judged.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Entry:
        """An entry ``to_json`` wrote (KeyError, TypeError, ValueError if it is not one)."""
        found = list(data["found"])
        entry = cls(str(data["log_id"]), datetime.fromisoformat(data["minute"]),
                    tuple((str(k), int(v)) for k, v in data["clocks"]),
                    {int(p): int(o) for p, o in data["position"].items()},
                    int(data["stored"]), found, {}, datetime.fromisoformat(data["judged"]))
        entry.count(found)
        return entry

    def extended(self, position: Position, stored: int, added: list[dict[str, Any]]
                 ) -> _Entry:
        """This entry at a later ``position``, with the stored findings ``added``."""
        entry = _Entry(self.log_id, self.minute, self.clocks, position, stored, self.found,
                       dict(self.clauses), self.judged)
        if added:
            entry.found = sorted([*self.found, *added], key=_order)
            entry.count(added)
        return entry


def _order(f: dict[str, Any]) -> tuple[Any, ...]:
    """``list_findings``'s order, on the dicts."""
    return (datetime.fromisoformat(f["time"]), f["partition"], f["offset"], f["clause"],
            f["pseudonym"] or "")


def records(position: Position) -> int:
    """How many records a position stands for (offsets are 0-based, per partition)."""
    return sum(offset + 1 for offset in position.values())


def not_behind(position: Position, other: Position) -> bool:
    """Whether ``position`` has read at least what ``other`` has, in every partition."""
    return all(position.get(p, -1) >= o for p, o in other.items())


class Revalidator:
    """Runs one background job at a time (a fresh answer judged aside): ``start`` does
    nothing while one is under way."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self, target: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=target, args=args, name=self.name,
                                                daemon=True)
                self._thread.start()

    def busy(self) -> bool:
        """Whether a job is under way."""
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the job under way (if any); whether none is left."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True


@dataclass(frozen=True)
class Judgement:
    """A findings summary by clause and what it was judged on: the findings view's log
    position and the minute of the clock rules. ``current`` only when it equals a fresh
    judgement of the views as they are now at the minute asked; otherwise it is the latest
    one judged before, and ``behind`` counts the records the view has read since."""

    rows: list[dict[str, Any]]
    minute: datetime
    position: Position
    judged: datetime
    current: bool
    behind: int
    #: every finding it counts, as ``QueryService.findings`` lists them (shared: do not
    #: change it)
    found: list[dict[str, Any]]

    @property
    def records(self) -> int:
        """The log position it was judged at, as a count of records."""
        return records(self.position)


class FindingsSummaryCache:
    """The findings at a minute, and by clause (findings, people), reused while the views
    have only read audit records since (see the module's docstring for the exact
    conditions). The overview, the findings page and a person's page read them here.

    ``prejudge``: once a minute has been asked for, the next minute is judged from its
    second ``PREJUDGE_AFTER_S`` on, in a background thread, on a read snapshot of the views
    (a second connection to the SQLite file or PostgreSQL database; none for views in
    memory), so the first overview of the next minute finds its answer ready, checked like
    any other.

    ``keep``: a file where the latest answer is kept for the next server
    (``pdl.web.kept``), whose first ``judgement`` shows it as not current (``warm``).
    """

    PREJUDGE_AFTER_S = 40

    def __init__(self, prejudge: bool = True, keep: Path | None = None) -> None:
        self._entries: dict[datetime, _Entry] = {}
        self._lock = threading.Lock()
        self._prejudging: set[datetime] = set()
        self._timers: list[threading.Timer] = []
        self.prejudge = prejudge
        #: How many answers were computed, reused, prejudged (for tests and the bench).
        self.computed = 0
        self.reused = 0
        self.prejudged = 0
        #: stale answers served, and fresh ones judged in the background meanwhile
        self.stale = 0
        self.revalidated = 0
        #: the latest answer judged (at a minute asked for, not one judged ahead)
        self._latest: _Entry | None = None
        self._revalidating = Revalidator("pdl-web-revalidate")
        #: the last judgement aside failed: the next request judges while it waits, so a
        #: broken background never keeps the page stale
        self._aside_failed = False
        #: False: never show an earlier answer, judge while the caller waits (the bench's
        #: baseline, as before stale-while-revalidate)
        self.revalidate = True
        #: the latest answer judged, kept across restarts (``pdl.web.kept``); read back
        #: once, as the latest answer (shown as not current)
        self._kept = KeptAnswer(keep) if keep is not None else None
        self._restored = False
        self.restored = 0

    def warm(self, service: QueryService, now: datetime | None = None) -> None:
        """At a server's start: read the answer kept by the last one; if there is none,
        judge the current minute aside now, so the first overview need not wait for all
        of it (``judgement`` waits for this judgement rather than start its own)."""
        self._restore(service)
        with self._lock:
            latest = self._latest
        if latest is None and can_read_aside(service):
            self._revalidating.start(self._refresh, service,
                                     minute_of(now or datetime.now(UTC)))

    def _restore(self, service: QueryService) -> None:
        """Read back the kept answer (once) as the latest, if it is of these log and views
        and nothing later was judged here."""
        if self._kept is None or self._restored:
            return
        self._restored = True
        data = self._kept.load(_kept_of(service))
        if data is None:
            return
        try:
            entry = _Entry.from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError):
            return
        with self._lock:
            if self._latest is None and entry.log_id == service.ledger.log.log_id:
                self._latest = entry
                self.restored += 1

    def _keep(self, service: QueryService, entry: _Entry) -> None:
        """Keep ``entry`` for the next server (in this thread: call it off a request)."""
        if self._kept is not None:
            self._kept.save(_kept_of(service), entry.to_json(), entry.order())

    def judgement(self, service: QueryService, views: ViewStore, now: datetime
                  ) -> Judgement:
        """Stale-while-revalidate: the summary as ``summary`` gives it when the cached one
        is current; otherwise, if an earlier one exists and the views can be judged in the
        background, that one marked as not current (and a fresh one judged in the
        background); otherwise judged while the caller waits."""
        self._restore(service)
        minute, clocks, position, stored = self._inputs(service, views, now)
        entry = self._reused(service, views, now, minute, clocks, position, stored)
        if entry is not None:
            return self._judgement(entry, position, current=True)
        latest = self._earlier(service, minute, clocks, position)
        if latest is None and self._revalidating.busy():
            # nothing to show yet, but a judgement aside is under way (the one started
            # with the server): wait for it rather than judge the same again
            self._revalidating.wait(JUDGING_TIMEOUT_S)
            entry = self._reused(service, views, now, minute, clocks, position, stored)
            if entry is not None:
                return self._judgement(entry, position, current=True)
            latest = self._earlier(service, minute, clocks, position)
        if (latest is not None and self.revalidate and not self._aside_failed
                and self._revalidate(service, minute)):
            with self._lock:
                self.stale += 1
            return self._judgement(latest, position, current=False)
        entry = self._judged(service, views, now, minute, clocks)
        return self._judgement(entry, position, current=True)

    def _earlier(self, service: QueryService, minute: datetime,
                 clocks: tuple[tuple[str, int], ...], position: Position) -> _Entry | None:
        """The latest answer judged that may be shown, labelled, at ``minute`` and
        ``position``: same log and thresholds, a minute reached, a position passed."""
        log_id = service.ledger.log.log_id
        with self._lock:
            candidates = [e for e in (self._latest, self._entries.get(minute))
                          if e is not None and e.log_id == log_id and e.clocks == clocks
                          and e.minute <= minute and not_behind(position, e.position)]
        return max(candidates, key=lambda e: (records(e.position), e.minute), default=None)

    @staticmethod
    def _judgement(entry: _Entry, position: Position, current: bool) -> Judgement:
        return Judgement(entry.rows(), entry.minute, dict(entry.position), entry.judged,
                         current, 0 if current else records(position) - records(entry.position),
                         entry.found)

    def _revalidate(self, service: QueryService, minute: datetime) -> bool:
        """Judge ``minute`` afresh in the background (one thread at a time); False if the
        views cannot be read beside the service's connection."""
        if not can_read_aside(service):
            return False
        self._revalidating.start(self._refresh, service, minute)
        return True

    def _refresh(self, service: QueryService, minute: datetime) -> None:
        entry = self._judge_aside(service, minute, self._kept)
        if entry is None:
            self._aside_failed = True
            return
        with self._lock:
            kept = self._entries.get(minute)
            if kept is None or not not_behind(kept.position, entry.position):
                self._entries[minute] = entry
            self._keep_latest(entry)
            self.revalidated += 1

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background judgement under way (if any); whether none is left."""
        return self._revalidating.wait(timeout)

    def _keep_latest(self, entry: _Entry) -> None:
        """(Holding the lock.) Keep ``entry`` as the latest answer if it is."""
        latest = self._latest
        if (latest is None or latest.log_id != entry.log_id or latest.clocks != entry.clocks
                or (entry.minute, records(entry.position))
                >= (latest.minute, records(latest.position))):
            self._latest = entry

    def summary(self, service: QueryService, views: ViewStore, now: datetime
                ) -> list[dict[str, Any]]:
        """Per clause: findings and people, the timed rules judged at ``minute_of(now)``.
        ``views`` must be the service's current views, caught up for ``findings``."""
        return self._entry(service, views, now).rows()

    def findings(self, service: QueryService, views: ViewStore, now: datetime
                 ) -> list[dict[str, Any]]:
        """Every finding, as ``service.findings(views, as_of=minute_of(now))`` lists them
        (the list is shared: do not change it)."""
        return self._entry(service, views, now).found

    def _entry(self, service: QueryService, views: ViewStore, now: datetime) -> _Entry:
        minute, clocks, position, stored = self._inputs(service, views, now)
        entry = self._reused(service, views, now, minute, clocks, position, stored)
        return entry if entry is not None else self._judged(service, views, now, minute, clocks)

    @staticmethod
    def _inputs(service: QueryService, views: ViewStore, now: datetime
                ) -> tuple[datetime, tuple[tuple[str, int], ...], Position, int]:
        position = views.position(FINDINGS, service.ledger.log.log_id)
        stored = int(views.query(f"SELECT COUNT(*) FROM {FINDINGS_TABLE}")[0][0])
        return minute_of(now), tuple(sorted(clock_values(Settings()).items())), position, stored

    def _reused(self, service: QueryService, views: ViewStore, now: datetime,
                minute: datetime, clocks: tuple[tuple[str, int], ...], position: Position,
                stored: int) -> _Entry | None:
        """The cached answer for ``minute``, brought to ``position``, if it still holds."""
        log = service.ledger.log
        with self._lock:
            for old in [m for m in self._entries if m < minute]:
                del self._entries[old]
            entry = self._entries.get(minute)
            if (entry is not None and entry.log_id == log.log_id and entry.clocks == clocks
                    and only_audit_records(service, entry.position, position)):
                added = stored_between(views, entry.position, position, minute)
                if entry.stored + len(added) == stored:
                    entry = entry.extended(position, stored, added)
                    self._entries[minute] = entry
                    self._keep_latest(entry)
                    self.reused += 1
                    self._maybe_prejudge(service, now)
                    return entry
        return None

    def _judged(self, service: QueryService, views: ViewStore, now: datetime,
                minute: datetime, clocks: tuple[tuple[str, int], ...]) -> _Entry:
        """Judged afresh while the caller waits."""
        entry = judge(views, service.ledger.log.log_id, minute, clocks)
        self._aside_failed = False
        with self._lock:
            self._entries[minute] = entry
            self._keep_latest(entry)
            self.computed += 1
            self._maybe_prejudge(service, now)
        if self._kept is not None:  # written off the request
            threading.Thread(target=self._keep, args=(service, entry), daemon=True,
                             name="pdl-web-keep").start()
        return entry

    def _maybe_prejudge(self, service: QueryService, now: datetime) -> None:
        """(Holding the lock.) Judge the next minute in the background, once, from the
        current minute's second ``PREJUDGE_AFTER_S`` on."""
        following = minute_of(now) + timedelta(minutes=1)
        if not self.prejudge or following in self._entries or following in self._prejudging:
            return
        self._prejudging.add(following)
        timer = threading.Timer(max(0, self.PREJUDGE_AFTER_S - now.second), self._prejudge,
                                args=(service, following))
        timer.name, timer.daemon = "pdl-web-prejudge", True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def close(self) -> None:
        """Cancel the judging ahead not started yet."""
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers = []

    def _prejudge(self, service: QueryService, minute: datetime) -> None:
        try:
            entry = self._judge_aside(service, minute)
            if entry is not None:
                with self._lock:
                    self._entries.setdefault(minute, entry)
                    self.prejudged += 1
        finally:
            with self._lock:
                self._prejudging.discard(minute)

    @staticmethod
    def _judge_aside(service: QueryService, minute: datetime,
                     kept: KeptAnswer | None = None) -> _Entry | None:
        """``minute`` judged in a process of its own (``pdl.web.judging``) on a read
        snapshot of its own connection to the views (None if the views are in memory, or it
        failed: a request then judges it itself). That process also writes the answer to
        ``kept`` (its JSON costs this process nothing)."""
        opener = side_opener(service)
        if opener is None:
            return None
        settings = Settings()
        clocks = tuple(sorted(clock_values(settings).items()))
        keep = None if kept is None else (kept.path, _kept_of(service), KEEP_EVERY_S)
        arguments = (opener, service.ledger.log.log_id, minute, clocks, settings, keep)
        # the child imports the same code as this process
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            done = subprocess.run([sys.executable, "-m", "pdl.web.judging"],
                                  input=pickle.dumps(arguments), capture_output=True,
                                  env=env, timeout=JUDGING_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            LOG.warning("judging the findings summary aside failed: %s", type(exc).__name__)
            return None
        if done.returncode != 0:
            # the error's last line (its type and message: a store's path, SQL, no values)
            said = done.stderr.decode(errors="replace").strip().splitlines()
            LOG.warning("judging the findings summary aside failed: exit code %d: %s",
                        done.returncode, said[-1][:300] if said else "")
            return None
        entry: _Entry = pickle.loads(done.stdout)
        return entry


def judge(views: ViewStore, log_id: str, minute: datetime,
          clocks: tuple[tuple[str, int], ...], settings: Settings | None = None) -> _Entry:
    """The findings by clause at ``minute``, with the position and stored rows they saw."""
    position = views.position(FINDINGS, log_id)
    stored = int(views.query(f"SELECT COUNT(*) FROM {FINDINGS_TABLE}")[0][0])
    found = QueryService.findings(views, as_of=minute, settings=settings or Settings())
    entry = _Entry(log_id, minute, clocks, position, stored, found, {},
                   datetime.now(minute.tzinfo))
    entry.count(found)
    return entry


def side_opener(service: QueryService) -> Callable[[], ViewStore] | None:
    """What opens a second connection to the service's views, to read them beside it
    (picklable: the judging process calls it too): the same SQLite file, or the same
    PostgreSQL database and schema. None for views in memory."""
    views = service.views
    if isinstance(views, SQLiteViewStore):
        if views.path == ":memory:":
            return None
        return functools.partial(SQLiteViewStore, views.path, cache_mb=views.cache_mb)
    # PostgreSQL views exist only if their module (and psycopg) was imported
    postgres = sys.modules.get("consumers.postgres")
    if postgres is not None and isinstance(views, postgres.PostgresViewStore):
        return functools.partial(postgres.PostgresViewStore, views.url, schema=views.schema)
    return None


def _kept_of(service: QueryService) -> dict[str, Any]:
    """What a kept answer was judged on (``pdl.web.kept``)."""
    return {"log_id": service.ledger.log.log_id, "views": views_identity(service.views)}


def can_read_aside(service: QueryService) -> bool:
    """Whether ``side_views`` can open a second connection to the service's views."""
    return side_opener(service) is not None


def side_views(service: QueryService) -> ViewStore | None:
    """A second connection to the service's views (None for views in memory)."""
    opener = side_opener(service)
    return None if opener is None else opener()


def stored_between(views: ViewStore, before: Position, after: Position, minute: datetime
                   ) -> list[dict[str, Any]]:
    """The stored findings of the records past ``before`` up to ``after``, as
    ``QueryService.findings(as_of=minute)`` gives them (remedied if so by ``minute``)."""
    now = to_us(minute)
    out: list[dict[str, Any]] = []
    for partition, offset in after.items():
        start = before.get(partition, -1)
        if offset > start:
            out += [Finding(c, p, e, int(part), int(off), from_us(t), x,
                            *((by, from_us(fixed)) if by is not None and fixed <= now else ())
                            ).as_dict()
                    for c, p, e, part, off, t, x, by, fixed in views.query(
                        f'SELECT f.clause, f.pseudonym, f.event_id, f.partition, f."offset", '
                        f"f.time, f.explanation, r.remedy_event_id, r.time "
                        f"FROM {FINDINGS_TABLE} f LEFT JOIN {REMEDIES_TABLE} r "
                        "ON r.event_id = f.event_id AND r.clause = f.clause "
                        'WHERE f.partition = ? AND f."offset" > ? AND f."offset" <= ?',
                        (partition, start, offset))]
    return out


def only_audit_records(service: QueryService, before: Position, after: Position) -> bool:
    """Whether every record past ``before`` up to ``after`` is an audit record (False if
    the position went back, or too many records came in to read them)."""
    if any(after.get(p, -1) < o for p, o in before.items()):
        return False
    gaps = {p: o - before.get(p, -1) for p, o in after.items() if o > before.get(p, -1)}
    if sum(gaps.values()) > MAX_SCAN:
        return False
    log = service.ledger.log
    for partition, gap in gaps.items():
        for record in log.read({partition: before.get(partition, -1)}, limit=gap,
                               partitions=[partition]):
            if record.offset > after[partition]:
                break
            if record.event_type != LEDGER_QUERIED:
                return False
    return True


@dataclass(frozen=True)
class Stamped(Generic[T]):
    """An answer and the positions of the views it was computed from; ``current`` unless it
    is an earlier answer shown while a fresh one is computed (``behind``: records the first
    view has read since)."""

    value: T
    positions: dict[str, Position]
    current: bool
    behind: int

    @property
    def records(self) -> int:
        """The first view's log position it was computed at, as a count of records."""
        return records(next(iter(self.positions.values()), {}))


class AuditStableCache(Generic[T]):
    """One answer computed from the views of ``projections``, reused while every record
    those views have read since it was computed is an audit record (which none of them
    keeps: ``consumers.clock`` and the others skip ``ledger.queried``).

    ``latest`` adds stale-while-revalidate: when the answer no longer holds, the last one
    is returned marked as not current while a fresh one is computed in the background.
    With ``keep`` (a file, and ``decode`` turning its JSON back into an answer), the latest
    answer is kept there for the next server, whose first ``latest`` shows it as not
    current (``pdl.web.kept``)."""

    def __init__(self, projections: Sequence[str], keep: Path | None = None,
                 decode: Callable[[Any], T] | None = None) -> None:
        self.projections = tuple(projections)
        self._lock = threading.Lock()
        self._entry: tuple[str, dict[str, Position], T] | None = None
        self._kept = KeptAnswer(keep) if keep is not None and decode is not None else None
        self._decode = decode
        #: the answer the last server kept: shown only as not current, never reused
        self._restored: tuple[str, dict[str, Position], T] | None = None
        self._restore_tried = False
        self.restored = 0
        self._revalidating = Revalidator("pdl-web-revalidate-chart")
        #: False: never show an earlier answer (as ``FindingsSummaryCache.revalidate``)
        self.revalidate = True
        self._aside_failed = False
        self.computed = 0
        self.reused = 0
        self.stale = 0
        self.revalidated = 0

    def get(self, service: QueryService, views: ViewStore, compute: Callable[[], T]) -> T:
        """The cached answer if still valid, else ``compute()`` (kept for next time).
        ``views`` must be the service's current views, caught up for ``projections``."""
        positions, value = self._reused(service, views)
        if value is not None:
            return value[0]
        value = (compute(),)
        self._keep(service.ledger.log.log_id, positions, value[0], computed=True)
        return value[0]

    def latest(self, service: QueryService, views: ViewStore,
               compute: Callable[[ViewStore], T]) -> Stamped[T]:
        """As ``get``, but an answer no longer valid is returned marked as not current
        (if the views can be read aside: a SQLite file, PostgreSQL) while ``compute`` runs in the background
        on a read snapshot of a second connection."""
        self._restore(service)
        positions, value = self._reused(service, views)
        if value is not None:
            return Stamped(value[0], positions, True, 0)
        log_id = service.ledger.log.log_id
        with self._lock:
            entry = self._entry if self._entry is not None else self._restored
        if (entry is not None and entry[0] == log_id and self.revalidate
                and not self._aside_failed and can_read_aside(service)
                and all(not_behind(positions[n], entry[1][n]) for n in self.projections)):
            self._revalidating.start(self._refresh, service, compute)
            with self._lock:
                self.stale += 1
            first = self.projections[0]
            return Stamped(entry[2], entry[1], False,
                           records(positions[first]) - records(entry[1][first]))
        fresh = compute(views)
        self._aside_failed = False
        self._keep(log_id, positions, fresh, computed=True)
        self._save(service, positions, fresh)
        return Stamped(fresh, positions, True, 0)

    def _restore(self, service: QueryService) -> None:
        """Read back (once) the answer the last server kept, if of these log and views."""
        if self._kept is None or self._decode is None or self._restore_tried:
            return
        self._restore_tried = True
        data = self._kept.load(_kept_of(service))
        if data is None:
            return
        try:
            positions = {n: {int(p): int(o) for p, o in data["positions"][n].items()}
                         for n in self.projections}
            value = self._decode(data["value"])
        except (KeyError, TypeError, ValueError, AttributeError):
            return
        with self._lock:
            if self._entry is None:
                self._restored = (service.ledger.log.log_id, positions, value)
                self.restored += 1

    def _save(self, service: QueryService, positions: dict[str, Position], value: T) -> None:
        """Keep the answer for the next server (small: written where it was computed)."""
        if self._kept is not None:
            self._kept.save(_kept_of(service), {
                "positions": {n: {str(p): o for p, o in positions[n].items()}
                              for n in self.projections}, "value": value},
                tuple(records(positions[n]) for n in self.projections))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background computation under way (if any); whether none is left."""
        return self._revalidating.wait(timeout)

    def _reused(self, service: QueryService, views: ViewStore
                ) -> tuple[dict[str, Position], tuple[T] | None]:
        log = service.ledger.log
        positions = {n: views.position(n, log.log_id) for n in self.projections}
        with self._lock:
            entry = self._entry
            if entry is not None and entry[0] == log.log_id and all(
                    only_audit_records(service, entry[1][n], positions[n])
                    for n in self.projections):
                self._entry = (log.log_id, positions, entry[2])
                self.reused += 1
                return positions, (entry[2],)
        return positions, None

    def _keep(self, log_id: str, positions: dict[str, Position], value: T, *,
              computed: bool) -> None:
        with self._lock:
            entry = self._entry
            # an answer computed aside does not replace one computed later in the log
            if (computed or entry is None or entry[0] != log_id
                    or not all(not_behind(entry[1][n], positions[n]) for n in self.projections)):
                self._entry = (log_id, positions, value)
            if computed:
                self.computed += 1
            else:
                self.revalidated += 1

    def _refresh(self, service: QueryService, compute: Callable[[ViewStore], T]) -> None:
        store = None
        log_id = service.ledger.log.log_id
        try:
            store = side_views(service)
            if store is None:
                return
            with store.snapshot() as views:
                positions = {n: views.position(n, log_id) for n in self.projections}
                value = compute(views)
            self._keep(log_id, positions, value, computed=False)
            self._save(service, positions, value)
        except Exception as exc:  # noqa: BLE001 - whatever failed aside, a request computes
            self._aside_failed = True
            LOG.warning("computing a dashboard chart aside failed: %s: %s",
                        type(exc).__name__, exc)
        finally:
            if store is not None:
                store.close()


class KeyedAuditStableCache(Generic[T]):
    """An ``AuditStableCache`` per key (a query's parameters), the ``size`` most recently
    used kept."""

    def __init__(self, projections: Sequence[str], size: int = 32) -> None:
        self.projections = tuple(projections)
        self.size = size
        self._lock = threading.Lock()
        self._caches: OrderedDict[Hashable, AuditStableCache[T]] = OrderedDict()

    def get(self, key: Hashable, service: QueryService, views: ViewStore,
            compute: Callable[[], T]) -> T:
        with self._lock:
            cache = self._caches.pop(key, None) or AuditStableCache[T](self.projections)
            self._caches[key] = cache
            while len(self._caches) > self.size:
                self._caches.popitem(last=False)
        return cache.get(service, views, compute)
