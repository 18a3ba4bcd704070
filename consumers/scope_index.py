"""An in-memory copy of the holdings view, for breach-scope answers in milliseconds.

``exposed`` in SQL reads one index entry per exposed segment and joins each to
``scope_people`` for reachability: about 2–5 µs per person, so a window exposing 10,000
people takes tens of milliseconds. A long-lived process (the HTTP API) can instead keep the
segments in memory, sorted the way the SQL indexes are, and answer the same question at
about 0.2 µs per segment.

The copy follows the view exactly, never the log: before each answer it reads, in one
read snapshot of the view store,

- the view's generation (a new one after a rebuild or a parallel rebuild's swap: reload);
- the ``holdings_journal`` rows written since its last look: every held segment created,
  changed or gone, and every person whose reachability may have changed;
- the ``holdings_erased`` rows past the last rowid it read (that table only grows).

So an answer from the index is the answer ``exposed`` gives in SQL on the same state of
the view; tests run the scope suite both ways and compare them on random histories. A
copy further behind than the journal keeps (``JOURNAL_KEEP`` rows) loads the whole view
again, as does the first question.

Memory: about 30 bytes per segment plus one string per person, e.g. ~130 MB for the
holdings of a 10M-event log (1.6M held and 1.6M ended segments, 210k people).
"""

from __future__ import annotations

import gc
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from itertools import compress, filterfalse, islice
from typing import Any

from consumers.rows import chunks, marks
from consumers.scope import _INDEXES, SPAN_BOUNDS, SPAN_CLASS, Exposure
from consumers.views import ViewStore

_ALL = -1  # every bit: "no category filter"
#: Span classes of ended segments, finer than the SQL index's (``SPAN_BOUNDS``): a ratio
#: of sqrt(2) between bounds, so a window reads at most ~30 % more entries than it keeps.
#: Every fourth bound is one of ``SPAN_BOUNDS`` (1 h * 4**k), so each SQL class is four of
#: these and rows read in the SQL index's order fall into them already sorted.
BOUNDS: tuple[int, ...] = tuple(round(3_600_000_000 * 2 ** (j / 2))
                                for j in range(4 * len(SPAN_BOUNDS) - 3))
assert BOUNDS[::4] == SPAN_BOUNDS
#: Past this many people changed since the last look, reading the whole view is cheaper.
_RELOAD_PEOPLE = 50_000
#: Likewise past this many journal rows (each an insertion into a sorted array).
_RELOAD_ROWS = 100_000
#: Past this many segments a load moves its objects out of the cyclic GC's reach.
_FREEZE_SEGMENTS = 200_000


class _Held:
    """The segments one store holds now, sorted by ``collected_at``.

    A segment that goes is left in place with mask 0 (skipped by every answer, which
    keeps only non-zero masks) until a quarter of the entries are such; then the arrays
    are compacted.
    """

    __slots__ = ("dead", "masks", "people", "times")

    def __init__(self) -> None:
        self.times = array("q")
        self.people: list[str] = []
        self.masks = array("q")
        self.dead = 0

    def _find(self, person: str, since: int) -> int:
        i = bisect_left(self.times, since)
        times, people = self.times, self.people
        n = len(times)
        while i < n and times[i] == since:
            if people[i] == person:
                return i
            i += 1
        return -1

    def set(self, person: str, since: int, mask: int) -> None:
        i = self._find(person, since)
        if i < 0:
            if not mask:
                return
            i = bisect_right(self.times, since)
            self.times.insert(i, since)
            self.people.insert(i, person)
            self.masks.insert(i, mask)
            return
        if self.masks[i] and not mask:
            self.dead += 1
        elif not self.masks[i] and mask:
            self.dead -= 1
        self.masks[i] = mask
        if self.dead > 1000 and self.dead * 4 > len(self.times):
            self._compact()

    def _compact(self) -> None:
        keep = [i for i, m in enumerate(self.masks) if m]
        self.times = array("q", (self.times[i] for i in keep))
        self.people = [self.people[i] for i in keep]
        self.masks = array("q", (self.masks[i] for i in keep))
        self.dead = 0


class _Ended:
    """The ended segments of one store and one span class, sorted by ``erased_at``."""

    __slots__ = ("ends", "masks", "people", "starts")

    def __init__(self) -> None:
        self.ends = array("q")
        self.starts = array("q")
        self.people: list[str] = []
        self.masks = array("q")

    def add(self, erased_at: int, collected_at: int, person: str, mask: int) -> None:
        if not self.ends or erased_at >= self.ends[-1]:
            self.ends.append(erased_at)
            self.starts.append(collected_at)
            self.people.append(person)
            self.masks.append(mask)
            return
        i = bisect_right(self.ends, erased_at)
        self.ends.insert(i, erased_at)
        self.starts.insert(i, collected_at)
        self.people.insert(i, person)
        self.masks.insert(i, mask)


def _span_class(span: int) -> int:
    """The class of a segment that lasted ``span`` µs: the first bound it fits under."""
    return bisect_left(BOUNDS, span)


def _reach(shredded_at: int | None, contact_stores: int) -> int:
    """What ``scope._REACH`` says of a ``scope_people`` row (a person with none: 2)."""
    if shredded_at is not None:
        return 1
    return 2 if not contact_stores else 0


class ScopeIndex:
    """The holdings view of one view store, in memory, kept level with it (see module doc).

    Attach it to the store (``attach``) and every ``consumers.scope.exposed`` on that
    store, so every scope query, is answered from it. One answer at a time (a lock); it
    reads through the store's own connection, so callers serialise their use of the store
    as ``pdl.service.QueryService`` does.
    """

    def __init__(self, store: ViewStore):
        self.store = store
        self._lock = threading.Lock()
        self._generation: str | None = None
        self._seq = -1  # journal rows read; -1: nothing loaded yet
        self._rowid = 0  # holdings_erased rows read
        self._seen: tuple[Any, ...] | None = None  # the view's mark at the last catch-up
        self._held: dict[str, _Held] = {}
        self._ended: dict[str, list[_Ended]] = {}
        #: reachability (see ``_reach``): 0 for these, 1 for the shredded, 2 for the rest
        self._reachable: set[str] = set()
        self._shredded: set[str] = set()
        self._names: dict[str, str] = {}  # one string object per pseudonym
        #: Whole-view loads and journal catch-ups so far (for tests and the bench).
        self.loads = 0
        self.catch_ups = 0

    @classmethod
    def attach(cls, store: ViewStore) -> ScopeIndex:
        """The index answering for ``store``, created on first use (loaded lazily)."""
        index = _INDEXES.get(store)
        if not isinstance(index, ScopeIndex):
            index = cls(store)
            _INDEXES[store] = index
        return index

    @staticmethod
    def detach(store: ViewStore) -> None:
        _INDEXES.pop(store, None)

    # --- following the view ---------------------------------------------------------------

    def refresh(self) -> None:
        """Catch up with the view store (see the module doc)."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        # One indexed read tells whether anything moved since the last catch-up: every
        # change to the held segments and people adds a journal row, an ended segment a
        # holdings_erased row, a rebuild a new generation. Unchanged: nothing to read.
        if self._seq >= 0 and self._mark(self.store) == self._seen:
            return
        with self.store.snapshot() as view:
            mark = self._mark(view)
            self._catch_up(view)
            self._seen = mark

    @staticmethod
    def _mark(view: ViewStore) -> tuple[Any, ...]:
        return tuple(view.query(
            "SELECT (SELECT generation FROM holdings_generation LIMIT 1), "
            "(SELECT max(seq) FROM holdings_journal), "
            "(SELECT coalesce(max(rowid), 0) FROM holdings_erased)")[0])

    def _catch_up(self, view: ViewStore) -> None:
        rows = view.query("SELECT generation FROM holdings_generation")
        generation = rows[0][0] if rows else None
        low, high = view.query("SELECT min(seq), max(seq) FROM holdings_journal")[0]
        if (self._seq < 0 or generation != self._generation
                or (low is not None and low > self._seq + 1)):
            self._load(view, generation, high or 0)
            return
        if high is None or high <= self._seq:
            if self._rowid < self._max_rowid(view):
                self._add_ended(view)
            return
        journal = view.query(
            "SELECT pseudonym, store, collected_at, categories FROM holdings_journal "
            "WHERE seq > ? ORDER BY seq", (self._seq,))
        people = {row[0] for row in journal if row[1] is None}
        if len(people) > _RELOAD_PEOPLE or len(journal) > _RELOAD_ROWS:
            self._load(view, generation, high)
            return
        name = self._name
        for person, store, since, mask in journal:
            if store is not None:
                held = self._held.get(store)
                if held is None:
                    held = self._held[store] = _Held()
                held.set(name(person), since, mask)
        for chunk in chunks(sorted(people)):
            found = {p: (shredded, n) for p, shredded, n in view.query(
                "SELECT pseudonym, shredded_at, contact_stores FROM scope_people "
                f"WHERE pseudonym IN ({marks(len(chunk))})", chunk)}
            for p in chunk:
                shredded, n = found.get(p, (None, 0))
                self._set_reach(name(p), _reach(shredded, n))
        self._add_ended(view)
        self._seq = high
        self.catch_ups += 1

    def _set_reach(self, person: str, reach: int) -> None:
        self._reachable.discard(person)
        self._shredded.discard(person)
        if reach == 0:
            self._reachable.add(person)
        elif reach == 1:
            self._shredded.add(person)

    def _name(self, pseudonym: str) -> str:
        return self._names.setdefault(pseudonym, pseudonym)

    @staticmethod
    def _max_rowid(view: ViewStore) -> int:
        return int(view.query("SELECT coalesce(max(rowid), 0) FROM holdings_erased")[0][0])

    def _add_ended(self, view: ViewStore) -> None:
        name, ended = self._name, self._ended
        top = self._rowid
        for rowid, store, since, until, person, mask in view.query(
                "SELECT rowid, store, collected_at, erased_at, pseudonym, categories "
                "FROM holdings_erased WHERE rowid > ? ORDER BY rowid", (self._rowid,)):
            classes = ended.get(store)
            if classes is None:
                classes = ended[store] = [_Ended() for _ in range(len(BOUNDS) + 1)]
            classes[_span_class(until - since)].add(until, since, name(person), mask)
            top = rowid
        self._rowid = top

    def _load(self, view: ViewStore, generation: str | None, seq: int) -> None:
        self._held, self._ended, self._names = {}, {}, {}
        self._reachable, self._shredded = set(), set()
        name = self._name
        held: _Held | None = None
        current = None
        for store, since, person, mask in view.rows(
                "SELECT store, collected_at, pseudonym, categories FROM holdings "
                "ORDER BY store, collected_at"):
            if store != current:
                current, held = store, self._held.setdefault(store, _Held())
            assert held is not None
            held.times.append(since)
            held.people.append(name(person))
            held.masks.append(mask)
        current, classes = None, []
        # The SQL index's order: by store, its span class, erased_at (see BOUNDS).
        for store, until, since, person, mask in view.rows(
                "SELECT store, erased_at, collected_at, pseudonym, categories "
                f"FROM holdings_erased ORDER BY store, {SPAN_CLASS}, erased_at"):
            if store != current:
                current = store
                classes = self._ended[store] = [_Ended() for _ in range(len(BOUNDS) + 1)]
            part = classes[bisect_left(BOUNDS, until - since)]
            part.ends.append(until)
            part.starts.append(since)
            part.people.append(name(person))
            part.masks.append(mask)
        self._rowid = self._max_rowid(view)
        for person, shredded, n in view.rows(
                "SELECT pseudonym, shredded_at, contact_stores FROM scope_people"):
            self._set_reach(name(person), _reach(shredded, n))
        self._generation, self._seq = generation, seq
        self.loads += 1
        # The arrays' lists hold millions of references; every full collection of the
        # cyclic GC would walk them (~50 ms on the bench machine at 3M segments: the p99 of
        # a scope answer). Nothing in them forms cycles: once big enough to matter, collect
        # what is garbage now and move what is left out of the collector's reach (freezing
        # garbage would keep it for good).
        if self.segments() > _FREEZE_SEGMENTS:
            gc.collect()
            gc.freeze()

    # --- answering --------------------------------------------------------------------------

    def exposed(self, stores: Iterable[str], window_start: int, window_end: int,
                categories: int | None = None) -> Exposure:
        """``consumers.scope.exposed``, from memory, after catching up with the view."""
        cats = _ALL if categories is None else categories
        with self._lock:
            self._refresh()
            per_store: dict[str, dict[str, int]] = {}
            unreachable: dict[str, int] = {}
            shredded, reachable = self._shredded, self._reachable
            for name in dict.fromkeys(stores):
                masks = self._exposed_in(name, window_start, window_end, cats)
                # filtered in C: only the (few) unreachable are looked at one by one
                for p in filterfalse(reachable.__contains__, masks):
                    unreachable[p] = 1 if p in shredded else 2
                per_store[name] = masks
            return Exposure(per_store, unreachable)

    def _exposed_in(self, name: str, start: int, end: int, cats: int) -> dict[str, int]:
        # Gather every (person, mask) exposed with C-level slicing and filtering, then
        # merge: dict(zip()) keeps each person's last mask; OR the rest in if anyone
        # appears twice. Masks of 0 (segments gone, or no category asked for) are dropped.
        people: list[str] = []
        masks: list[int] = []
        held = self._held.get(name)
        if held is not None:
            hi = bisect_right(held.times, end)
            people.extend(islice(held.people, hi))
            masks.extend(islice(held.masks, hi))
        for k, part in enumerate(self._ended.get(name, ())):
            ends = part.ends
            if not ends:
                continue
            lo = bisect_left(ends, start)
            hi = bisect_right(ends, end + BOUNDS[k]) if k < len(BOUNDS) else len(ends)
            if lo >= hi:
                continue
            keep = list(map(end.__ge__, part.starts[lo:hi]))  # collected at or before end
            people.extend(compress(part.people[lo:hi], keep))
            masks.extend(compress(part.masks[lo:hi], keep))
        if cats != _ALL:
            masks = list(map(cats.__and__, masks))
        if 0 in masks:
            keep = list(map(bool, masks))
            people = list(compress(people, keep))
            masks = list(compress(masks, keep))
        merged = dict(zip(people, masks))
        if len(merged) < len(people):
            for p, m in zip(people, masks):
                x = merged[p]
                if x | m != x:
                    merged[p] = x | m
        return merged

    def segments(self) -> int:
        """Held and ended segments in memory (gone ones not yet compacted included)."""
        return (sum(len(h.times) for h in self._held.values())
                + sum(len(e.ends) for cl in self._ended.values() for e in cl))

    def stats(self) -> dict[str, Any]:
        """Sizes, for the bench and ``pdl status``-like reports."""
        with self._lock:
            return {
                "held": sum(len(h.times) - h.dead for h in self._held.values()),
                "ended": sum(len(e.ends) for cl in self._ended.values() for e in cl),
                "people": len(self._names),
                "loads": self.loads,
                "catch_ups": self.catch_ups,
            }
