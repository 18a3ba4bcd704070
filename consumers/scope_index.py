"""An in-memory copy of the holdings view, for breach-scope answers in milliseconds.

``exposed`` in SQL reads one index entry per exposed segment and joins each to
``scope_people`` for reachability: about 2–5 µs per person, so a window exposing 10,000
people takes tens of milliseconds. A long-lived process (the HTTP API) can instead keep the
segments in memory as numpy arrays, sorted the way the SQL indexes are, and answer the same
question with a few vectorised passes: no Python object per exposed person, even when
everyone is listed (``consumers.queries.People``: the list as columns, gathered from
``_names`` as an object array, and written to JSON from them).

People are numbered. ``_names[i]`` is person i's pseudonym, ``_reach[i]`` their
reachability; segments hold the number (``int32``), not the string. Numbers below
``_ordered`` follow pseudonym order, so the sorted numbers of an answer are its people in
pseudonym order, and a page is a slice. People who arrive in a catch-up are numbered after
them; once they are more than a few thousand (``_renumber_due``) everyone is renumbered.

The copy follows the view exactly, never the log: before each answer one indexed read
tells whether anything moved (the view's generation, the top ``holdings_journal`` seq, the
top ``holdings_erased`` rowid). Nothing moved: the answer comes from memory, with no other
read. Something did: in one read snapshot of the view store it reads

- the view's generation (a new one after a rebuild or a parallel rebuild's swap: reload);
- the ``holdings_journal`` rows written since its last look: every held segment created,
  changed or gone, and every person whose reachability may have changed;
- the ``holdings_erased`` rows past the last rowid it read (that table only grows).

So an answer from the index is the answer ``exposed`` gives in SQL on the same state of
the view; tests run the scope suite both ways and compare them on random histories. A
copy further behind than the journal keeps (``JOURNAL_KEEP`` rows) loads the whole view
again, as does the first question. The same holds on SQLite and on PostgreSQL (both give
the journal's ``seq`` and ``holdings_erased``'s ``rowid`` in commit order).

Memory: 36 bytes per held segment (time, person, mask, the person's chain: see
``_Held``), 28 per ended one, plus one string, one dict entry and one byte per person:
74 MB of arrays for the holdings of a 10M-event log (1.46M held and 1.59M ended
segments, 240k people; +182 MB resident while loading, the page cache included); see
``bench/replay.py --scope-only``.
"""

from __future__ import annotations

import gc
import threading
from array import array
from collections.abc import Iterable
from typing import Any

import numpy as np

from consumers.rows import chunks, marks
from consumers.scope import _INDEXES, SPAN_BOUNDS, Exposure, Hits, plain_name
from consumers.views import ViewStore

_ALL = -1  # every bit: "no category filter"
#: Span classes of ended segments, finer than the SQL index's (``SPAN_BOUNDS``): a ratio
#: of sqrt(2) between bounds, so a window reads at most ~30 % more entries than it keeps.
#: Every fourth bound is one of ``SPAN_BOUNDS`` (1 h * 4**k).
BOUNDS: tuple[int, ...] = tuple(round(3_600_000_000 * 2 ** (j / 2))
                                for j in range(4 * len(SPAN_BOUNDS) - 3))
assert BOUNDS[::4] == SPAN_BOUNDS
_BOUNDS = np.array(BOUNDS, dtype=np.int64)
#: Past this many people changed since the last look, reading the whole view is cheaper.
_RELOAD_PEOPLE = 50_000
#: Likewise past this many journal rows.
_RELOAD_ROWS = 100_000
#: Past this many segments a load moves its objects out of the cyclic GC's reach.
_FREEZE_SEGMENTS = 200_000
#: People numbered out of pseudonym order tolerated before renumbering everyone: at least
#: this many, or this fraction of everyone (a renumbering sorts every pseudonym).
_UNORDERED_MIN, _UNORDERED_SHARE = 2_000, 0.02
#: A person's segments in one store are OR-ed together in at most this many vectorised
#: passes (one per segment of the person with the most); the rest in one slower pass.
_MERGE_PASSES = 6

_I64 = np.int64
_I32 = np.int32


class _Held:
    """The segments one store holds now, sorted by ``collected_at``: aligned arrays.

    Besides each segment's own mask, ``cum`` holds the OR of its person's segments in this
    store collected up to it, and ``nxt`` when that person's next one was collected (the
    largest int64: none). A window ending at T then exposes, of the segments collected at
    or before T, exactly those with ``nxt > T``: one per person, with ``cum`` as every
    category of theirs held there. No merging per person at answer time.

    A segment that goes is left in place with mask 0 (its person's ``cum`` does without
    it) until a quarter of the entries are such; then the arrays are compacted.
    """

    __slots__ = ("cum", "dead", "masks", "nxt", "pids", "times")

    def __init__(self, times: np.ndarray | None = None, pids: np.ndarray | None = None,
                 masks: np.ndarray | None = None) -> None:
        self.times = np.zeros(0, _I64) if times is None else times
        self.pids = np.zeros(0, _I32) if pids is None else pids
        self.masks = np.zeros(0, _I64) if masks is None else masks
        self.dead = int(np.count_nonzero(self.masks == 0))
        self.cum, self.nxt = _chains(self.times, self.pids, self.masks)

    def _find(self, person: int, since: int) -> int:
        times = self.times
        lo = int(times.searchsorted(since, "left"))
        hi = int(times.searchsorted(since, "right"))
        if lo == hi:
            return -1
        found = np.flatnonzero(self.pids[lo:hi] == person)
        return lo + int(found[0]) if len(found) else -1

    def update(self, rows: dict[tuple[int, int], int]) -> None:
        """Set the mask of each (person, collected_at) segment; 0: it went."""
        new: list[tuple[int, int, int]] = []
        masks = self.masks
        for (person, since), mask in rows.items():
            i = self._find(person, since)
            if i < 0:
                if mask:
                    new.append((since, person, mask))
                continue
            was = int(masks[i])
            if was and not mask:
                self.dead += 1
            elif not was and mask:
                self.dead -= 1
            masks[i] = mask
        if new:
            new.sort()
            times = np.fromiter((t for t, _, _ in new), _I64, len(new))
            at = self.times.searchsorted(times, "right")
            self.times = np.insert(self.times, at, times)
            self.pids = np.insert(self.pids, at,
                                  np.fromiter((p for _, p, _ in new), _I32, len(new)))
            self.masks = np.insert(self.masks, at,
                                   np.fromiter((m for _, _, m in new), _I64, len(new)))
            self.cum = np.insert(self.cum, at, 0)
            self.nxt = np.insert(self.nxt, at, 0)
        if self.dead > 1000 and self.dead * 4 > len(self.times):
            keep = self.masks != 0
            self.times, self.pids, self.masks = (
                self.times[keep], self.pids[keep], self.masks[keep])
            self.dead = 0
            self.cum, self.nxt = _chains(self.times, self.pids, self.masks)
            return
        # only the chains of the people changed
        people = np.fromiter({person for person, _ in rows}, _I32, -1)
        at = np.flatnonzero(np.isin(self.pids, people))
        self.cum[at], self.nxt[at] = _chains(self.times[at], self.pids[at], self.masks[at])

    def exposed(self, end: int) -> tuple[np.ndarray, np.ndarray]:
        """(people, the categories of each held) for a window ending at ``end``: each
        person once."""
        hi = int(self.times.searchsorted(end, "right"))  # collected at or before end
        last = self.nxt[:hi] > end  # ... and the person's last such segment
        return self.pids[:hi][last], self.cum[:hi][last]


def _chains(times: np.ndarray, pids: np.ndarray,
            masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_Held``'s ``cum`` and ``nxt`` of segments sorted by time (see there)."""
    n = len(times)
    order = np.argsort(pids, kind="stable")  # each person's segments, in time order
    people = pids[order]
    cum = masks[order]
    step = 1
    while step < n:  # an OR-scan within each person's run: log2(longest run) steps
        same = people[step:] == people[:-step]
        if not same.any():
            break
        cum[step:] |= np.where(same, cum[:-step], 0)
        step *= 2
    nxt = np.full(n, np.iinfo(_I64).max, _I64)
    if n > 1:
        ordered_times = times[order]
        follows = people[1:] == people[:-1]
        nxt[:-1][follows] = ordered_times[1:][follows]
    out_cum = np.empty(n, _I64)
    out_nxt = np.empty(n, _I64)
    out_cum[order] = cum
    out_nxt[order] = nxt
    return out_cum, out_nxt


class _Ended:
    """The ended segments of one store and one span class, sorted by ``erased_at``."""

    __slots__ = ("ends", "masks", "pids", "starts")

    def __init__(self, ends: np.ndarray, starts: np.ndarray, pids: np.ndarray,
                 masks: np.ndarray) -> None:
        self.ends, self.starts, self.pids, self.masks = ends, starts, pids, masks

    def add(self, ends: np.ndarray, starts: np.ndarray, pids: np.ndarray,
            masks: np.ndarray) -> None:
        self.ends = np.concatenate((self.ends, ends))
        self.starts = np.concatenate((self.starts, starts))
        self.pids = np.concatenate((self.pids, pids))
        self.masks = np.concatenate((self.masks, masks))
        if len(ends) and len(self.ends) > len(ends) and ends.min() < self.ends[-len(ends) - 1]:
            order = np.argsort(self.ends, kind="stable")
            self.ends, self.starts = self.ends[order], self.starts[order]
            self.pids, self.masks = self.pids[order], self.masks[order]


def _ended_classes(ends: np.ndarray, starts: np.ndarray, pids: np.ndarray,
                   masks: np.ndarray) -> dict[int, tuple[np.ndarray, ...]]:
    """Ended segments split by span class (see ``BOUNDS``), each sorted by ``erased_at``."""
    classes = np.searchsorted(_BOUNDS, ends - starts, "left")
    out: dict[int, tuple[np.ndarray, ...]] = {}
    for k in np.unique(classes).tolist():
        sel = np.flatnonzero(classes == k)
        order = sel[np.argsort(ends[sel], kind="stable")]
        out[k] = (ends[order], starts[order], pids[order], masks[order])
    return out


def _reach(shredded_at: int | None, contact_stores: int) -> int:
    """What ``scope._REACH`` says of a ``scope_people`` row (a person with none: 2)."""
    if shredded_at is not None:
        return 1
    return 2 if not contact_stores else 0


class ScopeIndex:
    """The holdings view of one view store, in memory, kept level with it (see module doc).

    Attach it to the store (``attach``) and every ``consumers.scope.exposed`` and
    ``consumers.scope.hits`` on that store, so every scope query, is answered from it.
    One answer at a time (a lock); it reads through the store's own connection, so callers
    serialise their use of the store as ``pdl.service.QueryService`` does.
    """

    def __init__(self, store: ViewStore):
        self.store = store
        self._lock = threading.Lock()
        self._generation: str | None = None
        self._seq = -1  # journal rows read; -1: nothing loaded yet
        self._rowid = 0  # holdings_erased rows read
        self._seen: tuple[Any, ...] | None = None  # the view's mark at the last catch-up
        self._clear()
        #: Whole-view loads, journal catch-ups and renumberings so far (tests, the bench).
        self.loads = 0
        self.catch_ups = 0
        self.renumbered = 0

    def _clear(self) -> None:
        self._held: dict[str, _Held] = {}
        self._ended: dict[str, dict[int, _Ended]] = {}
        # Replaced, never changed in place, by a renumbering: an answer handed out keeps
        # the numbering it was computed in (people are only ever appended to it).
        self._names: list[str] = []
        self._ids: dict[str, int] = {}
        self._ordered = 0
        # ``_names`` as an object array (answers gather a page's names from it in one
        # numpy call), extended when asked for after people arrived; and whether every
        # name goes into JSON as it is (``plain_name``)
        self._name_array: np.ndarray = np.zeros(0, object)
        self._plain = True
        #: reachability by person number (see ``_reach``): 2 until a row says otherwise
        self._reach = np.full(1024, 2, np.int8)
        # zeroed scratch space, one slot per person, for merging masks per person
        self._scratch = np.zeros(1024, _I64)
        self._union = np.zeros(1024, _I64)

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

    # --- people ---------------------------------------------------------------------------

    def _id(self, pseudonym: str) -> int:
        i = self._ids.get(pseudonym)
        if i is None:
            i = self._ids[pseudonym] = len(self._names)
            self._names.append(pseudonym)
            if self._plain and not plain_name(pseudonym):
                self._plain = False
            if i >= len(self._reach):
                self._grow(2 * i)
        return i

    def _names_as_array(self) -> np.ndarray:
        """``_names`` as an object array (a new one when people arrived: an answer handed
        out keeps the one it was given)."""
        names, array_ = self._names, self._name_array
        if len(array_) < len(names):
            array_ = self._name_array = np.concatenate((array_, np.fromiter(
                names[len(array_):], object, len(names) - len(array_))))
        return array_

    def _grow(self, size: int) -> None:
        reach = np.full(size, 2, np.int8)
        reach[: len(self._reach)] = self._reach
        self._reach = reach
        self._scratch = np.zeros(size, _I64)
        self._union = np.zeros(size, _I64)

    def _renumber_due(self) -> bool:
        unordered = len(self._names) - self._ordered
        return unordered > max(_UNORDERED_MIN, _UNORDERED_SHARE * len(self._names))

    def _renumber(self) -> None:
        """Number everyone in pseudonym order again (see the module doc)."""
        names = self._names
        n = len(names)
        if self._ordered == n:
            return
        order = sorted(range(n), key=names.__getitem__)
        new_of_old = np.empty(max(n, 1), _I32)
        new_of_old[order] = np.arange(n, dtype=_I32)
        for held in self._held.values():
            held.pids = new_of_old[held.pids]
        for classes in self._ended.values():
            for part in classes.values():
                part.pids = new_of_old[part.pids]
        # Fresh copies, made in pseudonym order, lie in memory in that order: writing a
        # long list (``People.to_json``) then reads them in sequence (a third faster at
        # 181k people than strings scattered as the rows that brought them were read).
        self._names = [names[i].encode().decode() for i in order]
        self._ids = {p: i for i, p in enumerate(self._names)}
        self._name_array = np.fromiter(self._names, object, n)
        reach = np.full(len(self._reach), 2, np.int8)
        reach[:n] = self._reach[np.array(order, dtype=np.intp)]
        self._reach = reach
        self._ordered = n
        self.renumbered += 1

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
        if self._renumber_due():
            self._renumber()

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
        ident = self._id
        changes: dict[str, dict[tuple[int, int], int]] = {}
        for person, store, since, mask in journal:
            if store is not None:  # the last row of a segment says what it is now
                changes.setdefault(store, {})[(ident(person), since)] = mask
        for store, segments in changes.items():
            held = self._held.get(store)
            if held is None:
                held = self._held[store] = _Held()
            held.update(segments)
        for chunk in chunks(sorted(people)):
            found = {p: (shredded, n) for p, shredded, n in view.query(
                "SELECT pseudonym, shredded_at, contact_stores FROM scope_people "
                f"WHERE pseudonym IN ({marks(len(chunk))})", chunk)}
            for p in chunk:
                shredded, n = found.get(p, (None, 0))
                self._reach[ident(p)] = _reach(shredded, n)
        self._add_ended(view)
        self._seq = high
        self.catch_ups += 1

    @staticmethod
    def _max_rowid(view: ViewStore) -> int:
        return int(view.query("SELECT coalesce(max(rowid), 0) FROM holdings_erased")[0][0])

    def _add_ended(self, view: ViewStore) -> None:
        ident = self._id
        top = self._rowid
        rows: dict[str, list[tuple[int, int, int, int]]] = {}
        for rowid, store, since, until, person, mask in view.query(
                "SELECT rowid, store, collected_at, erased_at, pseudonym, categories "
                "FROM holdings_erased WHERE rowid > ? ORDER BY rowid", (self._rowid,)):
            rows.setdefault(store, []).append((until, since, ident(person), mask))
            top = rowid
        for store, segments in rows.items():
            self._add_ended_of(store, *_columns(segments))
        self._rowid = top

    def _add_ended_of(self, store: str, ends: np.ndarray, starts: np.ndarray,
                      pids: np.ndarray, masks: np.ndarray) -> None:
        classes = self._ended.setdefault(store, {})
        for k, part in _ended_classes(ends, starts, pids, masks).items():
            if k in classes:
                classes[k].add(*part)
            else:
                classes[k] = _Ended(*part)

    def _load(self, view: ViewStore, generation: str | None, seq: int) -> None:
        self._clear()
        ident = self._id
        # Rows go into typed arrays as they come (8 bytes a value, not a Python object).
        held: dict[str, tuple[array, ...]] = {}
        for store, since, person, mask in view.rows(
                "SELECT store, collected_at, pseudonym, categories FROM holdings"):
            cols = held.get(store)
            if cols is None:
                cols = held[store] = (array("q"), array("q"), array("q"))
            cols[0].append(since)
            cols[1].append(ident(person))
            cols[2].append(mask)
        for store, (times, pids, masks) in held.items():
            t = np.frombuffer(times, _I64)
            order = np.argsort(t, kind="stable")
            self._held[store] = _Held(t[order], np.frombuffer(pids, _I64)[order].astype(_I32),
                                      np.frombuffer(masks, _I64)[order])
        del held
        ended: dict[str, tuple[array, ...]] = {}
        for store, until, since, person, mask in view.rows(
                "SELECT store, erased_at, collected_at, pseudonym, categories "
                "FROM holdings_erased"):
            cols = ended.get(store)
            if cols is None:
                cols = ended[store] = (array("q"), array("q"), array("q"), array("q"))
            cols[0].append(until)
            cols[1].append(since)
            cols[2].append(ident(person))
            cols[3].append(mask)
        for store, (ends, starts, pids, masks) in ended.items():
            self._add_ended_of(store, np.frombuffer(ends, _I64), np.frombuffer(starts, _I64),
                               np.frombuffer(pids, _I64).astype(_I32),
                               np.frombuffer(masks, _I64))
        del ended
        self._rowid = self._max_rowid(view)
        for person, shredded, n in view.rows(
                "SELECT pseudonym, shredded_at, contact_stores FROM scope_people"):
            i = ident(person)  # first, as it may grow the array
            self._reach[i] = _reach(shredded, n)
        self._generation, self._seq = generation, seq
        self._ordered = 0
        self._renumber()
        self.loads += 1
        # The names, their dict and the rows read make millions of objects; every full
        # collection of the cyclic GC would walk them (~50 ms at 3M segments: the p99 of a
        # scope answer). Nothing in them forms cycles: once big enough to matter, collect
        # what is garbage now and move what is left out of the collector's reach (freezing
        # garbage would keep it for good).
        if self.segments() > _FREEZE_SEGMENTS:
            gc.collect()
            gc.freeze()

    # --- answering --------------------------------------------------------------------------

    def hits(self, stores: Iterable[str], window_start: int, window_end: int,
             categories: int | None = None) -> Hits:
        """``consumers.scope.hits``, from memory, after catching up with the view."""
        cats = _ALL if categories is None else categories
        with self._lock:
            self._refresh()
            per_store: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for name in dict.fromkeys(stores):
                per_store[name] = self._exposed_in(name, window_start, window_end, cats)
            if len(per_store) == 1:
                ids, union = next(iter(per_store.values()))
            elif not per_store:
                ids, union = np.zeros(0, _I64), np.zeros(0, _I64)
            else:
                ids, union = self._union_of(list(per_store.values()))
            return Hits(ids, union, self._reach[ids], per_store, self._names, self._ordered,
                        self._ids, self._names_as_array(), self._plain)

    def exposed(self, stores: Iterable[str], window_start: int, window_end: int,
                categories: int | None = None) -> Exposure:
        """``consumers.scope.exposed``, from memory, after catching up with the view."""
        return self.hits(stores, window_start, window_end, categories).exposure()

    def _exposed_in(self, name: str, start: int, end: int,
                    cats: int) -> tuple[np.ndarray, np.ndarray]:
        """(person numbers ascending, the categories exposed of each) in one store."""
        held = self._held.get(name)
        if held is not None:
            hp, hm = held.exposed(end)
        else:
            hp, hm = np.zeros(0, _I32), np.zeros(0, _I64)
        people: list[np.ndarray] = []
        masks: list[np.ndarray] = []
        for k, part in self._ended.get(name, {}).items():
            ends = part.ends
            lo = int(ends.searchsorted(start, "left"))  # erased at or after start
            hi = int(ends.searchsorted(end + BOUNDS[k], "right")) if k < len(BOUNDS) else len(ends)
            if lo >= hi:
                continue
            keep = part.starts[lo:hi] <= end  # collected at or before end
            people.append(part.pids[lo:hi][keep])
            masks.append(part.masks[lo:hi][keep])
        ep = np.concatenate(people) if people else np.zeros(0, _I32)
        em = np.concatenate(masks) if masks else np.zeros(0, _I64)
        if cats != _ALL:
            hm, em = hm & cats, em & cats
        # segments gone (0), or holding none of the categories asked for
        if not hm.all():
            nonzero = hm != 0
            hp, hm = hp[nonzero], hm[nonzero]
        if not em.all():
            nonzero = em != 0
            ep, em = ep[nonzero], em[nonzero]
        return self._merge(hp, hm, ep, em)

    def _merge(self, hp: np.ndarray, hm: np.ndarray, ep: np.ndarray,
               em: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """OR together each person's masks, in the scratch slots: the held ones are one
        per person already; of the ended ones, ``s[p] |= m`` keeps one per person per
        pass, and passes repeat on what is not covered yet (k segments: k passes)."""
        s = self._scratch
        n = len(hp) + len(ep)
        ids = _distinct(np.concatenate((hp, ep))) if n * 16 < len(self._names) else None
        s[hp] = hm
        p, m = ep, em
        for _ in range(_MERGE_PASSES):
            if not len(p):
                break
            s[p] |= m
            short = (s[p] & m) != m
            if not short.any():
                break
            p, m = p[short], m[short]
        else:
            np.bitwise_or.at(s, p, m)
        if ids is None:
            ids = np.flatnonzero(s)
        masks = s[ids]
        s[ids] = 0
        return ids.astype(_I64, copy=False), masks

    def _union_of(self, parts: list[tuple[np.ndarray, np.ndarray]]
                  ) -> tuple[np.ndarray, np.ndarray]:
        u = self._union
        for ids, masks in parts:
            u[ids] |= masks  # each store's numbers are distinct: no pass lost
        ids = _distinct(np.concatenate([ids for ids, _ in parts]))
        union = u[ids]
        u[ids] = 0
        return ids, union

    def segments(self) -> int:
        """Held and ended segments in memory (gone ones not yet compacted included)."""
        return (sum(len(h.times) for h in self._held.values())
                + sum(len(e.ends) for cl in self._ended.values() for e in cl.values()))

    def stats(self) -> dict[str, Any]:
        """Sizes, for the bench and ``pdl status``-like reports."""
        with self._lock:
            arrays = [a for h in self._held.values() for a in (h.times, h.pids, h.masks)]
            arrays += [a for cl in self._ended.values() for e in cl.values()
                       for a in (e.ends, e.starts, e.pids, e.masks)]
            return {
                "held": sum(len(h.times) - h.dead for h in self._held.values()),
                "ended": sum(len(e.ends) for cl in self._ended.values() for e in cl.values()),
                "people": len(self._names),
                "array_bytes": sum(a.nbytes for a in arrays) + self._reach.nbytes
                + self._scratch.nbytes + self._union.nbytes,
                "loads": self.loads,
                "catch_ups": self.catch_ups,
                "renumbered": self.renumbered,
            }


def _distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values, ascending (``np.unique`` without its slower general path)."""
    values = np.sort(values)
    if len(values) > 1:
        values = values[np.concatenate(([True], values[1:] != values[:-1]))]
    return values


def _columns(rows: list[tuple[int, int, int, int]]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of (int64, int64, person number, mask) as four arrays."""
    table = np.array(rows, dtype=_I64).reshape(-1, 4)
    return (table[:, 0].copy(), table[:, 1].copy(), table[:, 2].astype(_I32),
            table[:, 3].copy())
