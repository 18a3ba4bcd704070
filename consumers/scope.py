"""Holdings: which person's data sat in which store when, for breach scope (policy 6.2.1).

A *holding* is one interval during which a store kept one category of one person: from
the collection that put it there to the erasure (or anonymisation) that took it out.
Collecting it again while held extends nothing; collecting it after an erasure opens a
new interval. Transient collections (retention 0, e.g. a face compared and discarded)
are held nowhere. Backups are stores of their own.

A row is a *segment*: the categories (a mask) of one person in one store that share the
same interval. Segments still held live in ``holdings``, ended ones in
``holdings_erased``. Each batch loads the held segments of the (person, store) pairs it
touches, applies its events to them in log order in memory, and writes back only what
changed.

An incident names stores and a window. A holding is exposed if it overlaps the window,
edges included: collected at or before the window's end, and not erased before its start.
When in doubt the person is notified, so an erasure at the very instant the window opens
still counts as exposed.

Besides the holdings this projection keeps, per person, closure and crypto-shredding
(to tell whether an affected person can still be contacted), and the incidents recorded in
the log with the people notified of each.
"""

from __future__ import annotations

import json
import secrets
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from sys import intern
from typing import Any, NamedTuple, Protocol
from weakref import WeakKeyDictionary

import numpy as np

from consumers.projection import Item
from consumers.rows import (
    CONTACT_MASK,
    DEFAULT_CACHE_ENTRIES,
    VALUE,
    MaskedProjection,
    WriteCache,
    chunks,
    cover_mask,
    marks,
    mask_of,
    recent,
    to_us,
)
from consumers.views import ViewStore, ViewTransaction
from schemas.events import (
    DataCollected,
    DataErased,
    IncidentClosed,
    IncidentOpened,
    IncidentReported,
    IncidentSubjectNotified,
    SubjectClosed,
)
from schemas.taxonomy import ErasureMethod

SHREDDED = ErasureMethod.CRYPTO_SHREDDED.value

#: Upper bounds (µs) of the span classes of ended segments: 1 hour times powers of 4, up to
#: ~7.5 years; longer spans are the last, unbounded class. A segment of class k that ended
#: at or after a window's start and began at or before its end ended at most SPAN_BOUNDS[k]
#: after the window's end, so an index on (store, class, erased_at) bounds every range read
#: by the window instead of reading every segment erased since its start.
SPAN_BOUNDS: tuple[int, ...] = tuple(3_600_000_000 * 4**k for k in range(9))
SPAN_CLASS = ("CASE " + " ".join(f"WHEN erased_at - collected_at <= {bound} THEN {k}"
                                 for k, bound in enumerate(SPAN_BOUNDS))
              + f" ELSE {len(SPAN_BOUNDS)} END")

SCHEMA = (
    # Segments held now: the categories of a person held in a store since collected_at.
    """CREATE TABLE IF NOT EXISTS holdings (
        pseudonym    TEXT NOT NULL,
        store        TEXT NOT NULL,
        collected_at BIGINT NOT NULL,
        categories   BIGINT NOT NULL,
        PRIMARY KEY (pseudonym, store, collected_at)
    )""",
    # Segments that ended: erased (or anonymised, or shredded) at erased_at.
    """CREATE TABLE IF NOT EXISTS holdings_erased (
        pseudonym    TEXT NOT NULL,
        store        TEXT NOT NULL,
        collected_at BIGINT NOT NULL,
        erased_at    BIGINT NOT NULL,
        method       TEXT NOT NULL,
        categories   BIGINT NOT NULL
    )""",
    "DROP INDEX IF EXISTS holdings_erased_by_store",  # replaced by holdings_erased_by_span
    # Per person: closure, shredding, and in how many stores contact data is held now.
    """CREATE TABLE IF NOT EXISTS scope_people (
        pseudonym      TEXT PRIMARY KEY,
        closed_at      BIGINT,
        shredded_at    BIGINT,
        contact_stores INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS incidents (
        incident_id  TEXT PRIMARY KEY,
        description  TEXT NOT NULL,
        stores       TEXT NOT NULL,
        window_start BIGINT NOT NULL,
        window_end   BIGINT NOT NULL,
        categories   TEXT NOT NULL,
        opened_at    BIGINT NOT NULL,
        reported_at  BIGINT,
        authority    TEXT,
        closed_at    BIGINT
    )""",
    """CREATE TABLE IF NOT EXISTS incident_notices (
        incident_id TEXT NOT NULL,
        pseudonym   TEXT NOT NULL,
        channel     TEXT NOT NULL,
        time        BIGINT NOT NULL,
        PRIMARY KEY (incident_id, pseudonym, channel)
    )""",
    # Every change to `holdings` and `scope_people`, in commit order, so an in-memory copy
    # (consumers.scope_index) can follow the view without reading it again. A held
    # segment's row: its categories now (0: gone). store NULL: the person's scope_people
    # row changed. The newest JOURNAL_KEEP rows are kept; `holdings_erased` needs no
    # journal: it only grows, in rowid order.
    """CREATE TABLE IF NOT EXISTS holdings_journal (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        pseudonym    TEXT NOT NULL,
        store        TEXT,
        collected_at BIGINT,
        categories   BIGINT
    )""",
    # One random token per build of the view: a copy that finds another one reloads.
    """CREATE TABLE IF NOT EXISTS holdings_generation (generation TEXT NOT NULL)""",
)
TABLES = ("holdings", "holdings_erased", "scope_people", "incidents", "incident_notices",
          "holdings_journal")
#: Journal rows kept; a copy further behind than this reloads the whole view.
JOURNAL_KEEP = 200_000
# Read by the scope query only (never by ``apply``): a rebuild creates them after its replay.
INDEXES = (
    # Scope reads one range of each index per store; both cover the columns it needs.
    """CREATE INDEX IF NOT EXISTS holdings_by_store
        ON holdings (store, collected_at, pseudonym, categories)""",
    # Ended segments are found by span class (see SPAN_BOUNDS): within one class a window
    # reads only the segments erased between its start and its end plus the class's span.
    f"""CREATE INDEX IF NOT EXISTS holdings_erased_by_span
        ON holdings_erased (store, ({SPAN_CLASS}), erased_at, collected_at, pseudonym,
                            categories)""",
)

# The ORDER BY steers the planner to the primary key (person, store) rather than to a
# scan of the store's whole range of holdings_by_store.
LOAD_HELD = ("SELECT pseudonym, collected_at, categories FROM holdings "
             "WHERE store = ? AND pseudonym IN ({marks}) ORDER BY pseudonym, store")
DELETE_HELD = "DELETE FROM holdings WHERE pseudonym = ? AND store = ? AND collected_at = ?"
UPDATE_HELD = ("UPDATE holdings SET categories = ? "
               "WHERE pseudonym = ? AND store = ? AND collected_at = ?")
INSERT_HELD = ("INSERT INTO holdings (pseudonym, store, collected_at, categories) "
               "VALUES (?, ?, ?, ?)")
INSERT_ERASED = """
INSERT INTO holdings_erased (pseudonym, store, collected_at, erased_at, method, categories)
VALUES (?, ?, ?, ?, ?, ?)
"""
UPSERT_PERSON = """
INSERT INTO scope_people (pseudonym, closed_at, shredded_at, contact_stores) VALUES (?, ?, ?, ?)
ON CONFLICT (pseudonym) DO UPDATE SET
    closed_at = coalesce(scope_people.closed_at, excluded.closed_at),
    shredded_at = coalesce(scope_people.shredded_at, excluded.shredded_at),
    contact_stores = scope_people.contact_stores + excluded.contact_stores
"""
FORGET_PERSON = """
DELETE FROM scope_people
WHERE pseudonym = ? AND closed_at IS NULL AND shredded_at IS NULL AND contact_stores = 0
"""
# Opened, reported and closed set their own columns, so one statement keeps log order.
UPSERT_INCIDENT = """
INSERT INTO incidents (incident_id, description, stores, window_start, window_end, categories,
    opened_at, reported_at, authority, closed_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (incident_id) DO UPDATE SET
    description = CASE WHEN excluded.opened_at > 0 THEN excluded.description
                       ELSE incidents.description END,
    stores = CASE WHEN excluded.opened_at > 0 THEN excluded.stores ELSE incidents.stores END,
    window_start = CASE WHEN excluded.opened_at > 0 THEN excluded.window_start
                        ELSE incidents.window_start END,
    window_end = CASE WHEN excluded.opened_at > 0 THEN excluded.window_end
                      ELSE incidents.window_end END,
    categories = CASE WHEN excluded.opened_at > 0 THEN excluded.categories
                      ELSE incidents.categories END,
    opened_at = CASE WHEN excluded.opened_at > 0 THEN excluded.opened_at
                     ELSE incidents.opened_at END,
    reported_at = coalesce(incidents.reported_at, excluded.reported_at),
    authority = coalesce(incidents.authority, excluded.authority),
    closed_at = coalesce(excluded.closed_at, incidents.closed_at)
"""
JOURNAL = ("INSERT INTO holdings_journal (pseudonym, store, collected_at, categories) "
           "VALUES (?, ?, ?, ?)")
PRUNE_JOURNAL = ("DELETE FROM holdings_journal "
                 "WHERE seq <= (SELECT max(seq) FROM holdings_journal) - ?")
NEW_GENERATION = ("INSERT INTO holdings_generation (generation) SELECT ? "
                  "WHERE NOT EXISTS (SELECT 1 FROM holdings_generation)")
INSERT_NOTICE = """
INSERT INTO incident_notices (incident_id, pseudonym, channel, time) VALUES (?, ?, ?, ?)
ON CONFLICT (incident_id, pseudonym, channel) DO NOTHING
"""

Key = tuple[str, str]  # (pseudonym, store)


class _Segments:
    """The held segments one batch touches, changed in log order in memory.

    ``held`` is the projection's cache (see ``WriteCache``): the exact held segments of
    every (person, store) in it. Pairs the batch touches and the cache lacks are loaded,
    unless the cache is ``complete`` (it started on an empty view: a rebuild).
    """

    def __init__(self, tx: ViewTransaction, held: dict[Key, dict[int, int]],
                 keys: Iterable[Key], complete: bool):
        #: (person, store) -> {collected_at: categories held since then}
        self.held = held
        #: segments as they were, for the pairs changed since (to write only the difference)
        self.loaded: dict[Key, dict[int, int]] = {}
        self.erased: list[tuple[str, str, int, int, str, int]] = []
        by_store: dict[str, list[str]] = {}
        for key in keys:
            if recent(held, key) is None:
                held[key] = {}
                if not complete:
                    by_store.setdefault(key[1], []).append(key[0])
        for store, people in by_store.items():
            for chunk in chunks(people):
                for p, since, mask in tx.query(LOAD_HELD.format(marks=marks(len(chunk))),
                                               (store, *chunk)):
                    held[(p, store)][since] = mask

    def _changing(self, key: Key, segments: dict[int, int]) -> None:
        if key not in self.loaded:
            self.loaded[key] = dict(segments)

    def collect(self, key: Key, mask: int, t: int) -> None:
        segments = self.held[key]
        earlier = later = 0
        for since, held in segments.items():
            if since <= t:
                earlier |= held
            else:
                later |= held
        new = mask & ~earlier
        if not new:
            return  # held already since t or before
        self._changing(key, segments)
        if new & later:
            # Held only from a later time (events out of time order): held from t now.
            for since in [s for s in segments if s > t]:
                rest = segments[since] & ~new
                if rest:
                    segments[since] = rest
                else:
                    del segments[since]
        segments[t] = segments.get(t, 0) | new

    def erase(self, key: Key, mask: int, t: int, method: str) -> None:
        segments = self.held.get(key)
        if not segments:
            return
        for since, held in list(segments.items()):
            hit = held & mask
            if not hit:
                continue
            self._changing(key, segments)
            self.erased.append((key[0], key[1], since, t, method, hit))
            rest = held & ~mask
            if rest:
                segments[since] = rest
            else:
                del segments[since]

    def write(self, tx: ViewTransaction, people: list[tuple[Any, ...]],
              journal: list[tuple[Any, ...]]) -> None:
        """Write the changes; add to ``people`` the changes in stores holding contact data,
        and to ``journal`` every held segment changed (see ``holdings_journal``)."""
        gone: list[tuple[str, str, int]] = []
        changed: list[tuple[int, str, str, int]] = []
        new: list[tuple[str, str, int, int]] = []
        for key, before in self.loaded.items():
            after = self.held[key]
            for since, mask in before.items():
                now = after.get(since)
                if now is None:
                    gone.append((*key, since))
                    journal.append((*key, since, 0))
                elif now != mask:
                    changed.append((now, *key, since))
                    journal.append((*key, since, now))
            for since, mask in after.items():
                if since not in before:
                    new.append((*key, since, mask))
                    journal.append((*key, since, mask))
            had = any(mask & CONTACT_MASK for mask in before.values())
            has = any(mask & CONTACT_MASK for mask in after.values())
            if had != has:
                people.append((key[0], None, None, 1 if has else -1))
        if gone:
            tx.executemany(DELETE_HELD, gone)
        if changed:
            tx.executemany(UPDATE_HELD, changed)
        if new:
            tx.executemany(INSERT_HELD, new)
        if self.erased:
            tx.executemany(INSERT_ERASED, self.erased)


#: What ``HoldingsProjection.apply`` does with an event, by its data's type.
_COLLECT, _ERASE, _CLOSE, _OPEN, _REPORT, _END, _NOTIFY = range(7)
_OTHERS: dict[type[Any], int] = {
    SubjectClosed: _CLOSE, IncidentOpened: _OPEN, IncidentReported: _REPORT,
    IncidentClosed: _END, IncidentSubjectNotified: _NOTIFY,
}


class HoldingsProjection(MaskedProjection):
    """Holding segments per (person, store), closures, shredding and incidents."""

    name = "holdings"
    topics = frozenset({
        DataCollected.TYPE, DataErased.TYPE, SubjectClosed.TYPE, IncidentOpened.TYPE,
        IncidentReported.TYPE, IncidentSubjectNotified.TYPE, IncidentClosed.TYPE,
    })
    schema = SCHEMA
    indexes = INDEXES
    tables = TABLES
    volatile = ("holdings_journal",)
    cost = 2.0

    def __init__(self, cache_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        self.cache = WriteCache(self.name, cache_entries)

    def create(self, tx: ViewTransaction, *, indexes: bool = True) -> None:
        super().create(tx, indexes=indexes)
        tx.execute(NEW_GENERATION, (secrets.token_hex(8),))

    def drop(self, tx: ViewTransaction) -> None:
        # Not in ``tables``: a parallel rebuild's swap copies those, and must not copy
        # this; drop + create gives the new view a generation of its own.
        super().drop(tx)
        tx.execute("DROP TABLE IF EXISTS holdings_generation")

    def apply(self, tx: ViewTransaction, items: Sequence[Item]) -> None:
        # One pass reads each event once: the (person, store) pairs to load, and what to
        # do, in log order; the second does it once they are loaded. (Exact types: the
        # events read here have no subclasses, and isinstance on pydantic's metaclass
        # costs more when it fails.)
        touched: set[Key] = set()
        touch = touched.add
        ops: list[tuple[int, Any, str | None, int]] = []
        for item in items:
            event = item.event
            data, p = event.data, event.subject
            kind = type(data)
            if kind is DataCollected:
                if p is None:
                    continue
                p = intern(p)  # one string per person in the cache's keys
                touch((p, data.store))
                for backup in data.backups:
                    touch((p, backup))
                if data.retention_days != 0:  # else compared and discarded: held nowhere
                    ops.append((_COLLECT, data, p, item.at))
            elif kind is DataErased:
                if p is None:
                    continue
                p = intern(p)
                for store in data.stores:
                    touch((p, store))
                ops.append((_ERASE, data, p, item.at))
            elif kind in _OTHERS:
                ops.append((_OTHERS[kind], data, p, item.at))
        held = self.cache.begin(tx, items)
        if self.cache.restarted:
            self.cache.complete = not tx.query("SELECT 1 FROM holdings LIMIT 1")
        segments = _Segments(tx, held, touched, self.cache.complete)
        people: list[tuple[Any, ...]] = []
        incidents: list[tuple[Any, ...]] = []
        notices: list[tuple[Any, ...]] = []
        collect, erase = segments.collect, segments.erase
        for op, data, p, t in ops:
            if op == _COLLECT:
                mask = mask_of(data.categories)
                collect((p, data.store), mask, t)
                for backup in data.backups:
                    collect((p, backup), mask, t)
            elif op == _ERASE:
                method = VALUE[data.method]
                if method == SHREDDED:
                    people.append((p, None, t, 0))
                mask = cover_mask(data.categories)
                for store in data.stores:
                    erase((p, store), mask, t, method)
            elif op == _CLOSE:
                if p is not None:
                    people.append((p, t, None, 0))
            elif op == _OPEN:
                incidents.append((
                    data.incident_id, data.description, json.dumps(data.stores),
                    to_us(data.window_start), to_us(data.window_end),
                    json.dumps(data.categories), t, None, None, None,
                ))
            elif op == _REPORT:
                incidents.append((data.incident_id, "", "[]", 0, 0, "[]", 0, t,
                                  data.authority, None))
            elif op == _END:
                incidents.append((data.incident_id, "", "[]", 0, 0, "[]", 0, None, None, t))
            elif op == _NOTIFY and p is not None:
                notices.append((data.incident_id, p, data.channel, t))
        journal: list[tuple[Any, ...]] = []
        segments.write(tx, people, journal)
        if people:
            tx.executemany(UPSERT_PERSON, people)
            # a row that says nothing any more goes, as if it had never been written
            tx.executemany(FORGET_PERSON, {(p[0],) for p in people if p[3] < 0})
            journal.extend((p, None, None, None) for p in dict.fromkeys(p[0] for p in people))
        if journal:
            tx.executemany(JOURNAL, journal)
            tx.execute(PRUNE_JOURNAL, (JOURNAL_KEEP,))
        if incidents:
            tx.executemany(UPSERT_INCIDENT, incidents)
        if notices:
            tx.executemany(INSERT_NOTICE, notices)


# --- the scope query ---------------------------------------------------------------------

#: 0 reachable, 1 data key destroyed, 2 no contact data held any more (or no row at all).
_REACH = ("CASE WHEN p.shredded_at IS NOT NULL THEN 1 "
          "WHEN coalesce(p.contact_stores, 0) = 0 THEN 2 ELSE 0 END")
_HELD = (f"SELECT h.pseudonym, h.categories, {_REACH} "
         "FROM holdings h LEFT JOIN scope_people p ON p.pseudonym = h.pseudonym "
         "WHERE h.store = ? AND h.collected_at <= ?{extra}")
_ENDED = (f"SELECT h.pseudonym, h.categories, {_REACH} "
          "FROM holdings_erased h LEFT JOIN scope_people p ON p.pseudonym = h.pseudonym "
          f"WHERE h.store = ? AND ({SPAN_CLASS}) = ? AND h.erased_at >= ?{{upper}} "
          "AND h.collected_at <= ?{extra}")


def _exposed_sql(categories: bool) -> str:
    extra = " AND (h.categories & ?) != 0" if categories else ""
    parts = [_HELD.format(extra=extra)]
    parts += [_ENDED.format(upper=" AND h.erased_at <= ?", extra=extra)] * len(SPAN_BOUNDS)
    parts.append(_ENDED.format(upper="", extra=extra))
    return "\nUNION ALL\n".join(parts)


_EXPOSED_ALL = _exposed_sql(False)
_EXPOSED_OF = _exposed_sql(True)


def _exposed_params(name: str, start: int, end: int, categories: int | None) -> list[Any]:
    cats = [] if categories is None else [categories]
    params: list[Any] = [name, end, *cats]
    for k, bound in enumerate(SPAN_BOUNDS):
        params += [name, k, start, end + bound, end, *cats]
    params += [name, len(SPAN_BOUNDS), start, end, *cats]
    return params


class Exposure(NamedTuple):
    """What a window exposed in some stores, per pseudonym.

    ``per_store`` maps each store to {pseudonym: categories exposed there (a mask)};
    ``unreachable`` maps the people who cannot be told to why: 1 their data key was
    destroyed, 2 no contact data of theirs is held any more.
    """

    per_store: dict[str, dict[str, int]]
    unreachable: dict[str, int]

    def people(self) -> dict[str, int]:
        """{pseudonym: every category exposed in any of the stores}."""
        stores = list(self.per_store.values())
        if len(stores) == 1:
            return stores[0]
        union: dict[str, int] = {}
        get = union.get
        for masks in stores:
            for p, mask in masks.items():
                union[p] = get(p, 0) | mask
        return union


class Hits(NamedTuple):
    """An ``Exposure`` as arrays, for answers naming many people (``queries.scope``).

    People are numbers: ``names[i]`` is person i's pseudonym, ``id_of`` the reverse, and
    numbers below ``ordered`` follow pseudonym order (those above it do not: people an
    index met after it last numbered everyone). ``ids`` ascend; ``union`` (every category
    exposed in any of the stores, a mask) and ``reach`` (0 reachable, 1 data key
    destroyed, 2 no contact data held) align with them. ``per_store`` maps each store to
    (its people's numbers ascending, the categories exposed there). ``name_array``, when
    given, is ``names`` as a numpy object array (gathered by number without a Python loop),
    and ``plain`` whether every name is written in JSON as it is, between quotes (see
    ``plain_name``; None: not known, checked when needed).
    """

    ids: np.ndarray
    union: np.ndarray
    reach: np.ndarray
    per_store: dict[str, tuple[np.ndarray, np.ndarray]]
    names: Sequence[str]
    ordered: int
    id_of: Mapping[str, int]
    name_array: np.ndarray | None = None
    plain: bool | None = None

    def has(self, pseudonym: str) -> bool:
        """Whether ``pseudonym`` is among the people exposed."""
        i = self.id_of.get(pseudonym)
        if i is None:
            return False
        j = int(self.ids.searchsorted(i))
        return j < len(self.ids) and int(self.ids[j]) == i

    def page(self, after: str | None, count: int | None) -> np.ndarray:
        """Positions in ``ids`` of the first ``count`` people (every one: None) whose
        pseudonym sorts after ``after`` (from the first: None), in pseudonym order."""
        ids, names = self.ids, self.names
        split = int(ids.searchsorted(self.ordered))  # ids[:split] are in pseudonym order
        lo = 0 if after is None else int(ids.searchsorted(
            bisect_right(names, after, 0, self.ordered)))
        hi = split if count is None else min(split, lo + count)
        if split == len(ids):
            return np.arange(lo, max(lo, hi), dtype=np.intp)
        rest = [(names[i], k) for k, i in enumerate(ids[split:].tolist(), split)
                if after is None or names[i] > after]
        merged = sorted([(names[i], k) for k, i in enumerate(ids[lo:hi].tolist(), lo)] + rest)
        return np.array([k for _, k in merged[:count]], dtype=np.intp)

    def exposure(self) -> Exposure:
        """The same answer as dicts keyed by pseudonym."""
        names = self.names
        per_store = {store: dict(zip([names[i] for i in ids.tolist()], masks.tolist(),
                                     strict=True))
                     for store, (ids, masks) in self.per_store.items()}
        away = np.flatnonzero(self.reach)
        unreachable = dict(zip([names[i] for i in self.ids[away].tolist()],
                               self.reach[away].tolist(), strict=True))
        return Exposure(per_store, unreachable)


def plain_name(text: str) -> bool:
    """Whether JSON writes ``text`` as it is between quotes (``ensure_ascii=False``): no
    quote, backslash or control character. Pseudonyms always are."""
    return text.isprintable() and '"' not in text and "\\" not in text


def hits_of(exposure: Exposure) -> Hits:
    """``exposure`` as ``Hits``, its people numbered in pseudonym order."""
    people = exposure.people()
    names = sorted(people)
    id_of = {p: i for i, p in enumerate(names)}
    n = len(names)
    per_store: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for store, masks in exposure.per_store.items():
        pairs = sorted((id_of[p], m) for p, m in masks.items())
        per_store[store] = (np.fromiter((i for i, _ in pairs), np.int64, len(pairs)),
                            np.fromiter((m for _, m in pairs), np.int64, len(pairs)))
    away = exposure.unreachable
    return Hits(np.arange(n, dtype=np.int64),
                np.fromiter((people[p] for p in names), np.int64, n),
                np.fromiter((away.get(p, 0) for p in names), np.int8, n),
                per_store, names, n, id_of)


class ExposureIndex(Protocol):
    """Answers ``exposed`` for one view store (``consumers.scope_index.ScopeIndex``)."""

    def exposed(self, stores: Iterable[str], window_start: int, window_end: int,
                categories: int | None = None) -> Exposure: ...

    def hits(self, stores: Iterable[str], window_start: int, window_end: int,
             categories: int | None = None) -> Hits: ...


#: view store -> the index attached to it (``ScopeIndex.attach``)
_INDEXES: WeakKeyDictionary[ViewStore, ExposureIndex] = WeakKeyDictionary()


def exposed(
    store: ViewStore, stores: Iterable[str], window_start: int, window_end: int,
    categories: int | None = None,
) -> Exposure:
    """What of whose ``stores`` held at some instant of the window.

    The window's edges count: collected at or before its end, erased at or after its start.
    ``categories`` (a mask) keeps only segments holding one of them, and only those bits.
    Costs about one index entry read per segment exposed, whatever the log's size; with a
    ``ScopeIndex`` attached to ``store`` (long-lived processes), answered from memory.
    """
    index = _INDEXES.get(store)
    if index is not None:
        return index.exposed(stores, window_start, window_end, categories)
    return exposed_sql(store, stores, window_start, window_end, categories)


def hits(
    store: ViewStore, stores: Iterable[str], window_start: int, window_end: int,
    categories: int | None = None,
) -> Hits:
    """``exposed`` as arrays (see ``Hits``): from the attached ``ScopeIndex`` if any,
    without a Python object per person; else from SQL."""
    index = _INDEXES.get(store)
    if index is not None:
        return index.hits(stores, window_start, window_end, categories)
    return hits_of(exposed_sql(store, stores, window_start, window_end, categories))


def exposed_sql(
    store: ViewStore, stores: Iterable[str], window_start: int, window_end: int,
    categories: int | None = None,
) -> Exposure:
    """``exposed`` read from the view store, index or not."""
    per_store: dict[str, dict[str, int]] = {}
    unreachable: dict[str, int] = {}
    sql = _EXPOSED_ALL if categories is None else _EXPOSED_OF
    for name in dict.fromkeys(stores):
        masks: dict[str, int] = {}
        get = masks.get
        for pseudonym, mask, reach in store.query(
                sql, _exposed_params(name, window_start, window_end, categories)):
            masks[pseudonym] = get(pseudonym, 0) | mask
            if reach:
                unreachable[pseudonym] = reach
        if categories is not None:
            masks = {p: m & categories for p, m in masks.items()}
        per_store[name] = masks
    return Exposure(per_store, unreachable)
