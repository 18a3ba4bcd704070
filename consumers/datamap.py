"""The data map: for each person, what the company holds, where, why, and who got it.

Per person (by pseudonym): the categories collected and from which source, for which
purposes and on which legal ground or consent they were collected and used, the stores
holding them (location, backup or primary, retention, and per category whether it was
erased or anonymised there), the recipients they went to, the consents and subscription
choices in force, and the account's registration, closure and crypto-shredding.

Categories are masks (see ``consumers.rows``), so each table has one row per person and
store, source, purpose or recipient, not per category. Every write is an upsert, so no
event needs a read before its write; an event that adds nothing the projection already
wrote (the same use again) is skipped through its ``WriteCache``. Each occurrence stays
in the log and in ``pdl export``; the map keeps when each purpose, source and recipient
was first seen, and per store when data was last collected (for its retention).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from sys import intern
from typing import Any

from consumers.projection import Item
from consumers.rows import (
    DEFAULT_CACHE_ENTRIES,
    VALUE,
    KeyedWrites,
    MaskedProjection,
    WriteCache,
    cover_mask,
    mask_of,
    recent,
    to_us,
)
from consumers.views import ViewTransaction
from schemas import Event
from schemas.events import (
    ConsentGranted,
    ConsentWithdrawn,
    DataCollected,
    DataErased,
    DataShared,
    DataUsed,
    SubjectClosed,
    SubjectRegistered,
    SubscriptionChanged,
)
from schemas.taxonomy import ErasureMethod

SHREDDED = ErasureMethod.CRYPTO_SHREDDED.value
ANONYMISED = ErasureMethod.ANONYMISED.value

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS dm_subjects (
        pseudonym             TEXT PRIMARY KEY,
        kind                  TEXT,
        registered_at         BIGINT,
        closed_at             BIGINT,
        close_reason          TEXT,
        legal_hold_until      BIGINT,
        legal_hold_categories TEXT,
        shredded_at           BIGINT
    )""",
    # Per (person, source, collection purpose): the categories collected, those collected
    # to be stored (not only compared) and those collected as optional.
    """CREATE TABLE IF NOT EXISTS dm_collections (
        pseudonym     TEXT NOT NULL,
        source_kind   TEXT NOT NULL,
        source_party  TEXT NOT NULL,
        purpose       TEXT NOT NULL,
        categories    BIGINT NOT NULL,
        stored        BIGINT NOT NULL,
        optional      BIGINT NOT NULL,
        legal_ground  TEXT,
        consent_id    TEXT,
        first_at      BIGINT NOT NULL,
        PRIMARY KEY (pseudonym, source_kind, source_party, purpose)
    )""",
    # Per (person, store): categories held, erased and anonymised there; held_since is when
    # the data now held started to be held (its oldest copy: the retention clock).
    """CREATE TABLE IF NOT EXISTS dm_stores (
        pseudonym          TEXT NOT NULL,
        store              TEXT NOT NULL,
        location           TEXT NOT NULL,
        backup             INTEGER NOT NULL,
        held               BIGINT NOT NULL,
        erased             BIGINT NOT NULL,
        anonymised         BIGINT NOT NULL,
        first_collected_at BIGINT NOT NULL,
        held_since         BIGINT,
        retention_days     INTEGER,
        erased_at          BIGINT,
        PRIMARY KEY (pseudonym, store)
    )""",
    """CREATE TABLE IF NOT EXISTS dm_uses (
        pseudonym    TEXT NOT NULL,
        purpose      TEXT NOT NULL,
        legal_ground TEXT NOT NULL,
        consent_id   TEXT NOT NULL,
        categories   BIGINT NOT NULL,
        first_at     BIGINT NOT NULL,
        PRIMARY KEY (pseudonym, purpose, legal_ground, consent_id)
    )""",
    """CREATE TABLE IF NOT EXISTS dm_recipients (
        pseudonym  TEXT NOT NULL,
        recipient  TEXT NOT NULL,
        categories BIGINT NOT NULL,
        first_at   BIGINT NOT NULL,
        PRIMARY KEY (pseudonym, recipient)
    )""",
    """CREATE TABLE IF NOT EXISTS dm_consents (
        pseudonym            TEXT NOT NULL,
        consent_id           TEXT NOT NULL,
        purpose              TEXT NOT NULL,
        policy_version       TEXT,
        categories           TEXT,
        cross_border_country TEXT,
        granted_at           BIGINT,
        withdrawn_at         BIGINT,
        PRIMARY KEY (pseudonym, consent_id)
    )""",
    """CREATE TABLE IF NOT EXISTS dm_subscriptions (
        pseudonym  TEXT NOT NULL,
        kind       TEXT NOT NULL,
        subscribed INTEGER NOT NULL,
        changed_at BIGINT NOT NULL,
        PRIMARY KEY (pseudonym, kind)
    )""",
)
TABLES = ("dm_subjects", "dm_collections", "dm_stores", "dm_uses", "dm_recipients",
          "dm_consents", "dm_subscriptions")


def _max(table: str, col: str) -> str:
    return (f"{col} = CASE WHEN excluded.{col} > {table}.{col} "
            f"THEN excluded.{col} ELSE {table}.{col} END")


def _min(table: str, col: str) -> str:
    return (f"{col} = CASE WHEN excluded.{col} < {table}.{col} "
            f"THEN excluded.{col} ELSE {table}.{col} END")


# Registration, closure and shredding each set their own columns of one row, so a single
# statement (coalescing) keeps them in log order within a batch's executemany.
UPSERT_SUBJECT = """
INSERT INTO dm_subjects (pseudonym, kind, registered_at, closed_at, close_reason,
                         legal_hold_until, legal_hold_categories, shredded_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (pseudonym) DO UPDATE SET
    kind = coalesce(excluded.kind, dm_subjects.kind),
    registered_at = coalesce(dm_subjects.registered_at, excluded.registered_at),
    closed_at = coalesce(excluded.closed_at, dm_subjects.closed_at),
    close_reason = coalesce(excluded.close_reason, dm_subjects.close_reason),
    legal_hold_until = coalesce(excluded.legal_hold_until, dm_subjects.legal_hold_until),
    legal_hold_categories = coalesce(excluded.legal_hold_categories,
                                     dm_subjects.legal_hold_categories),
    shredded_at = coalesce(dm_subjects.shredded_at, excluded.shredded_at)
"""
UPSERT_COLLECTION = f"""
INSERT INTO dm_collections (pseudonym, source_kind, source_party, purpose, categories,
    stored, optional, legal_ground, consent_id, first_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (pseudonym, source_kind, source_party, purpose) DO UPDATE SET
    categories = dm_collections.categories | excluded.categories,
    stored = dm_collections.stored | excluded.stored,
    optional = dm_collections.optional | excluded.optional,
    legal_ground = coalesce(excluded.legal_ground, dm_collections.legal_ground),
    consent_id = coalesce(excluded.consent_id, dm_collections.consent_id),
    {_min("dm_collections", "first_at")}
"""
# Collecting puts categories back on hold in a store where they had been erased.
UPSERT_STORE = f"""
INSERT INTO dm_stores (pseudonym, store, location, backup, held, erased, anonymised,
    first_collected_at, held_since, retention_days)
VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?, ?)
ON CONFLICT (pseudonym, store) DO UPDATE SET
    location = excluded.location,
    backup = CASE WHEN excluded.backup < dm_stores.backup
                  THEN excluded.backup ELSE dm_stores.backup END,
    held = dm_stores.held | excluded.held,
    erased = dm_stores.erased & ~excluded.held,
    anonymised = dm_stores.anonymised & ~excluded.held,
    {_min("dm_stores", "first_collected_at")},
    held_since = CASE WHEN dm_stores.held = 0 OR excluded.held_since < dm_stores.held_since
                      THEN excluded.held_since ELSE dm_stores.held_since END,
    retention_days = excluded.retention_days
"""
# Parameters: mask if erased else 0, mask if anonymised else 0, mask, mask, time, person,
# store, mask.
ERASE_STORE = """
UPDATE dm_stores SET
    erased = erased | (held & ?), anonymised = anonymised | (held & ?),
    held = held & ~?, held_since = CASE WHEN held & ~? = 0 THEN NULL ELSE held_since END,
    erased_at = ?
WHERE pseudonym = ? AND store = ? AND (held & ?) != 0
"""
UPSERT_USE = f"""
INSERT INTO dm_uses (pseudonym, purpose, legal_ground, consent_id, categories, first_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (pseudonym, purpose, legal_ground, consent_id) DO UPDATE SET
    categories = dm_uses.categories | excluded.categories,
    {_min("dm_uses", "first_at")}
"""
UPSERT_RECIPIENT = f"""
INSERT INTO dm_recipients (pseudonym, recipient, categories, first_at) VALUES (?, ?, ?, ?)
ON CONFLICT (pseudonym, recipient) DO UPDATE SET
    categories = dm_recipients.categories | excluded.categories,
    {_min("dm_recipients", "first_at")}
"""
# A grant (granted_at set) re-opens a consent; a withdrawal (granted_at null) closes it.
UPSERT_CONSENT = """
INSERT INTO dm_consents (pseudonym, consent_id, purpose, policy_version, categories,
    cross_border_country, granted_at, withdrawn_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (pseudonym, consent_id) DO UPDATE SET
    purpose = excluded.purpose,
    policy_version = coalesce(excluded.policy_version, dm_consents.policy_version),
    categories = coalesce(excluded.categories, dm_consents.categories),
    cross_border_country = coalesce(excluded.cross_border_country,
                                    dm_consents.cross_border_country),
    granted_at = coalesce(excluded.granted_at, dm_consents.granted_at),
    withdrawn_at = CASE WHEN excluded.granted_at IS NOT NULL THEN NULL
                        ELSE excluded.withdrawn_at END
"""
UPSERT_SUBSCRIPTION = """
INSERT INTO dm_subscriptions (pseudonym, kind, subscribed, changed_at) VALUES (?, ?, ?, ?)
ON CONFLICT (pseudonym, kind) DO UPDATE SET
    subscribed = excluded.subscribed, changed_at = excluded.changed_at
"""


def _news(seen: dict[Any, Any], key: Any, mask: int, t: int) -> bool:
    """Record (categories, first time) for ``key``; False if that adds nothing known."""
    known = recent(seen, key)
    if known is None:
        seen[key] = [mask, t]
        return True
    if mask & ~known[0] == 0 and t >= known[1]:
        return False
    known[0] |= mask
    known[1] = min(known[1], t)
    return True


def _merge_store(old: list[Any], new: list[Any]) -> None:
    old[2] = new[2]
    old[3] = min(old[3], new[3])
    old[4] |= new[4]
    old[5] = min(old[5], new[5])
    old[6] = min(old[6], new[6])
    old[7] = new[7]


class _Batch:
    """The rows one batch writes, per table, and what the projection already wrote.

    ``seen`` (the ``WriteCache``) holds, per key, what this process wrote there: never more
    than the view holds. For ``dm_stores`` rows it holds the categories held and the
    row's other values; when ``complete`` (the view was empty when the cache started) it
    is exactly the view, so a missing key means no row.
    """

    __slots__ = ("collections", "complete", "consents", "recipients", "seen", "stores",
                 "subjects", "subscriptions", "uses")

    def __init__(self, seen: dict[Any, Any], complete: bool) -> None:
        self.seen = seen
        self.complete = complete
        self.subjects: list[tuple[Any, ...]] = []
        self.collections: list[tuple[Any, ...]] = []
        self.stores = KeyedWrites()  # a collection and an erasure of one row keep their order
        self.uses: list[tuple[Any, ...]] = []
        self.recipients: list[tuple[Any, ...]] = []
        self.consents: list[tuple[Any, ...]] = []
        self.subscriptions: list[tuple[Any, ...]] = []

    def write(self, tx: ViewTransaction) -> None:
        for sql, rows in ((UPSERT_SUBJECT, self.subjects), (UPSERT_CONSENT, self.consents),
                          (UPSERT_SUBSCRIPTION, self.subscriptions),
                          (UPSERT_COLLECTION, self.collections), (UPSERT_USE, self.uses),
                          (UPSERT_RECIPIENT, self.recipients)):
            if rows:
                tx.executemany(sql, rows)
        self.stores.flush(tx)


def _registered(b: _Batch, p: str, t: int, d: SubjectRegistered) -> None:
    b.subjects.append((p, d.subject_kind.value, t, None, None, None, None, None))


def _closed(b: _Batch, p: str, t: int, d: SubjectClosed) -> None:
    hold_until = to_us(d.legal_hold_until) if d.legal_hold_until else None
    hold = json.dumps(d.legal_hold_categories) if d.legal_hold_categories else None
    b.subjects.append((p, None, None, t, d.reason, hold_until, hold, None))


def _collected(b: _Batch, p: str, t: int, d: DataCollected) -> None:
    src = d.source
    kind = VALUE[src.kind]
    party = src.party or ""
    mask = mask_of(d.categories)
    stored = d.retention_days != 0
    ground = VALUE[d.legal_ground] if d.legal_ground else None
    row = (p, kind, party, d.purpose, mask, mask if stored else 0, mask if d.optional else 0,
           ground, d.consent_id, t)
    key = ("c", p, kind, party, d.purpose)
    known = recent(b.seen, key)
    # what the row holds after the upsert: write only if that differs from what we wrote
    merged = row if known is None else (
        *row[:4], known[4] | row[4], known[5] | row[5], known[6] | row[6],
        ground or known[7], d.consent_id or known[8], min(known[9], t))
    if merged != known:
        b.collections.append(row)
        b.seen[key] = merged
    if not stored:
        return  # compared and discarded (2.1.1(2)a): held nowhere
    location, days = d.store_location, d.retention_days
    _hold(b, p, d.store, location, 0, mask, t, days)
    for backup in d.backups:
        _hold(b, p, backup, location, 1, mask, t, days)


def _hold(b: _Batch, p: str, store: str, location: str, backup: int, mask: int, t: int,
          days: int | None) -> None:
    key = ("s", p, store)
    known = recent(b.seen, key)  # [held, location, backup, retention days, held since]
    if (known is not None and mask & ~known[0] == 0 and known[1] == location
            and known[2] <= backup and known[3] == days and known[4] <= t):
        return  # held there already, from no later than t, on the same terms
    if known is None:
        b.seen[key] = [mask, location, backup, days, t]
    else:
        known[4] = t if known[0] == 0 else min(known[4], t)
        known[0] |= mask
        known[1], known[2], known[3] = location, min(known[2], backup), days
    b.stores.add((p, store), UPSERT_STORE, [p, store, location, backup, mask, t, t, days],
                 _merge_store)


def _used(b: _Batch, p: str, t: int, d: DataUsed) -> None:
    ground = VALUE[d.legal_ground] if d.legal_ground else ""
    consent = d.consent_id or ""
    mask = mask_of(d.categories)
    if _news(b.seen, ("u", p, d.purpose, ground, consent), mask, t):
        b.uses.append((p, d.purpose, ground, consent, mask, t))


def _shared(b: _Batch, p: str, t: int, d: DataShared) -> None:
    mask = mask_of(d.categories)
    if _news(b.seen, ("r", p, d.recipient), mask, t):
        b.recipients.append((p, d.recipient, mask, t))


def _erased(b: _Batch, p: str, t: int, d: DataErased) -> None:
    method = VALUE[d.method]
    if method == SHREDDED:
        b.subjects.append((p, None, None, None, None, None, None, t))
    mask = cover_mask(d.categories)
    erase, anonymise = (0, mask) if method == ANONYMISED else (mask, 0)
    for store in d.stores:
        known = recent(b.seen, ("s", p, store))
        if known is None:
            if b.complete:
                continue  # nothing was ever held there
        elif known[0] & mask:
            known[0] &= ~mask
        elif b.complete:
            continue  # none of these categories is held there
        b.stores.add((p, store), ERASE_STORE,
                     (erase, anonymise, mask, mask, t, p, store, mask))


def _granted(b: _Batch, p: str, t: int, d: ConsentGranted) -> None:
    country = d.cross_border.destination_country if d.cross_border else None
    cats = json.dumps(d.categories) if d.categories else None
    b.consents.append((p, d.consent_id, d.purpose, d.policy_version, cats, country, t, None))


def _withdrawn(b: _Batch, p: str, t: int, d: ConsentWithdrawn) -> None:
    b.consents.append((p, d.consent_id, d.purpose, None, None, None, None, t))


def _subscription(b: _Batch, p: str, t: int, d: SubscriptionChanged) -> None:
    b.subscriptions.append((p, d.kind, int(d.subscribed), t))


Handler = Callable[[_Batch, str, int, Any], None]
HANDLERS: dict[str, Handler] = {
    SubjectRegistered.TYPE: _registered,
    SubjectClosed.TYPE: _closed,
    DataCollected.TYPE: _collected,
    DataUsed.TYPE: _used,
    DataShared.TYPE: _shared,
    DataErased.TYPE: _erased,
    ConsentGranted.TYPE: _granted,
    ConsentWithdrawn.TYPE: _withdrawn,
    SubscriptionChanged.TYPE: _subscription,
}


class DataMapProjection(MaskedProjection):
    """Per person: categories, sources, purposes and grounds, stores, recipients, choices."""

    name = "datamap"
    topics = frozenset(HANDLERS)
    schema = SCHEMA
    tables = TABLES
    cost = 3.0

    def __init__(self, cache_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        self.cache = WriteCache(self.name, cache_entries)

    def apply(self, tx: ViewTransaction, items: Sequence[Item]) -> None:
        seen = self.cache.begin(tx, items)
        if self.cache.restarted:
            self.cache.complete = not tx.query("SELECT 1 FROM dm_stores LIMIT 1")
        batch = _Batch(seen, self.cache.complete)
        handlers = HANDLERS
        for item in items:
            event: Event = item.event
            subject = event.subject
            if subject is not None:
                # one string per person in the cache's keys, not one per event
                handlers[event.type](batch, intern(subject), item.at, event.data)
        batch.write(tx)
