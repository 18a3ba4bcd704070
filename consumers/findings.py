"""Compliance findings: every event that breaks a promise of the privacy policy.

``FindingsProjection`` reads the log in order, keeps what each rule needs to know about a
person (subscriptions, consents, closure, holdings, requests ...) in ``findings_*`` state
tables, and writes one row per finding into ``findings``. Rules that depend on the clock
(retention deadlines 6.3a and 2.1.1(1)d, request deadlines 7.1, incident duties 6.2.1a)
cannot be stored as rows when the event happens; ``list_findings`` evaluates them from the
state tables at the moment asked for.

A finding names the clause of ``COMMITMENTS.md``, the person's pseudonym, the offending
event's id and log position, its time, and a one-line explanation made only of taxonomy
keys, clause ids, store and recipient ids and counts: never a personal value.

Each batch reads the state of the people and recipients it mentions (one query per kind,
not per event), changes it in log order and writes it back with ``executemany``. Nothing
depends on batch boundaries or the clock, so applying the log in any batch sizes gives the
same rows as one rebuild.

Rules and their clauses: 1.3, 2.1.1(1)a, 2.1.1(1)c, 2.1.1(1)d, 2.1.1(2)a, 2.1.1(2)b,
2.1.1(3)b, 2.1.1(4), 2.1.2-note, 2.1.3, 3.2a, 3.2b, 3.3, 3.4b, 3.5, 4.1, 4.2, 5.0, 5.1, 5.3,
6.2.1a, 6.3a, 6.3b, 6.3c, 6.3d, 7.1, 7.3, 7.6, 8, 9.2 (``CLAUSES``). "After" compares event
times; a change in state takes effect for events at or after its own time.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from consumers.projection import Item, Projection
from consumers.rows import (
    DEFAULT_CACHE_ENTRIES,
    WriteCache,
    create_meta,
    drop_meta,
    from_us,
    recent,
    to_us,
)
from consumers.views import ViewStore, ViewTransaction
from ledger.settings import Settings
from schemas import events as ev
from schemas import taxonomy as tx

#: Days a rights request may stay open when it names no due date (7.1).
DEFAULT_DEADLINE_DAYS: Final = Settings.request_deadline_days
#: Days after a retention deadline (or the end of a legal hold) by which an erasure is on
#: time: erasure jobs run nightly, so data is gone the night after its deadline.
ERASURE_GRACE_DAYS: Final = 2
#: Hours within which a breach must be reported and people notified (6.2.1a).
INCIDENT_REPORT_HOURS: Final = 72

#: What each clause's finding means, for people reading a summary.
CLAUSES: Final[dict[str, str]] = {
    "1.3": "customer content recorded in the ledger",
    "2.1.1(1)a": "password collected or stored unprotected",
    "2.1.1(1)c": "service denied after optional data was refused",
    "2.1.1(1)d": "data still held after account closure and legal retention",
    "2.1.1(2)a": "face / biometric data stored",
    "2.1.1(2)b": "real-name verification data used or shared for another purpose",
    "2.1.1(3)b": "payment data shared with a party that is not a payment / invoice processor",
    "2.1.1(4)": "promotion data collected without prior consent",
    "2.1.2-note": "device / log data linked to an account without authorisation",
    "2.1.3": "third-party data unverified or used beyond its authorised scope",
    "3.2a": "non-anonymised analytics without consent",
    "3.2b": "profiling without consent",
    "3.3": "marketing after opt-out",
    "3.4b": "use for an undeclared purpose without consent",
    "3.5": "use claiming a ground that is not one of 3.5.1-3.5.10",
    "4.1": "cookie holding an unprotected password",
    "4.2": "tracking after unsubscribing",
    "5.0": "disclosure with neither a clause nor consent",
    "5.1": "disclosure beyond what the recipient is registered for",
    "5.3": "disclosure claiming clause 5.3 without a 5.3 legal ground",
    "6.2.1a": "breach not reported, or affected person not notified",
    "6.3a": "data held past its retention, or an erasure that skipped a store",
    "6.3b": "commercial use after account closure",
    "6.3c": "data stored outside China without a cross-border record",
    "6.3d": "cross-border transfer without consent or without the required notice",
    "7.1": "rights request not answered by its due date",
    "7.3": "message of a kind the person unsubscribed from",
    "7.6": "use or disclosure after account closure beyond the legal hold",
    "8": "consent from a superseded policy version relied on after a material change",
    "9.2": "request fulfilled without verifying the requester's identity",
}


@dataclass(frozen=True)
class Finding:
    """One broken promise: which clause, whose data, which event, when, and why."""

    clause: str
    pseudonym: str | None
    event_id: str
    partition: int
    offset: int
    time: datetime
    explanation: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (time in ISO 8601)."""
        return {
            "clause": self.clause,
            "pseudonym": self.pseudonym,
            "event_id": self.event_id,
            "partition": self.partition,
            "offset": self.offset,
            "time": self.time.isoformat(),
            "explanation": self.explanation,
        }


# --- vocabulary, precomputed over the closed taxonomy ------------------------------------


def _touching(group: Iterable[str]) -> frozenset[str]:
    """Category keys that are a member of ``group``, a part of one, or contain one."""
    members = tuple(group)
    return frozenset(
        c for c in tx.CATEGORIES if any(tx.covers(g, c) or tx.covers(c, g) for g in members)
    )


def _uses_under(group: Iterable[str]) -> frozenset[str]:
    """Use keys equal to or below a member of ``group``."""
    members = tuple(group)
    return frozenset(u for u in tx.USES if any(tx.covers(g, u) for g in members))


VERIFICATION_TOUCH: Final = _touching(tx.VERIFICATION_ONLY)
PAYMENT_TOUCH: Final = _touching(tx.PAYMENT_CATEGORIES)
BIOMETRIC_TOUCH: Final = _touching(tx.BIOMETRIC_CATEGORIES)
PASSWORD_TOUCH: Final = _touching(tx.PASSWORD_CATEGORIES)
MARKETING: Final = _uses_under(tx.MARKETING_USES)
TRACKING: Final = _uses_under(tx.TRACKING_USES)
PROFILING: Final = _uses_under(tx.PROFILING_USES)
# Web beacons sit under analytics.reporting but are tracking (4.2), not product analytics.
ANALYTICS: Final = _uses_under(tx.ANALYTICS_USES) - TRACKING
COMMERCIAL: Final = _uses_under(tx.COMMERCIAL_USES)
VERIFICATION: Final = _uses_under(tx.VERIFICATION_USES)
PROMOTION: Final = _uses_under({"marketing.promotion"})
LEGAL_OBLIGATION: Final = _uses_under({"essential.legal_obligation"})
UNDECLARED: Final = frozenset(u.key for u in tx.USES.values() if not u.declared)
USE_GROUNDS: Final = frozenset(g.value for g in tx.USE_GROUNDS)
DISCLOSURE_GROUNDS: Final = frozenset(g.value for g in tx.DISCLOSURE_GROUNDS)
PROCESSOR_ROLES: Final = frozenset(
    {tx.RecipientRole.PAYMENT_PROCESSOR.value, tx.RecipientRole.INVOICE_PROCESSOR.value}
)
#: The mailing a web beacon rides in when a tracking use names no message kind (4.2).
TRACKING_CARRIER: Final = "marketing.communications.email"
#: Per event data model, its fields that hold category lists (1.3 looks at all of them).
CATEGORY_FIELDS: Final[dict[type[ev.EventData], tuple[str, ...]]] = {
    model: tuple(f for f in ("categories", "missing_categories", "legal_hold_categories",
                             "allowed_categories") if f in model.model_fields)
    for model in ev.DATA_MODELS
}
# customer data and its parts; not the categories containing it ("user", a whole-person
# erasure, is not a record of customer data)
OUT_OF_SCOPE: Final = frozenset(c for c in tx.CATEGORIES
                                if any(tx.covers(g, c) for g in tx.OUT_OF_SCOPE_CATEGORIES))


# --- helpers -----------------------------------------------------------------------------

_DAY: Final = 86_400_000_000  # microseconds


@functools.lru_cache(maxsize=1024)
def _covered_by(keys: tuple[str, ...]) -> frozenset[str]:
    """Every category key equal to or below one of ``keys``."""
    return frozenset(c for c in tx.CATEGORIES if any(tx.covers(k, c) for k in keys))


def _names(keys: Iterable[str]) -> str:
    return ", ".join(sorted(set(keys)))


def _overlaps(a: str, b: str) -> bool:
    return tx.covers(a, b) or tx.covers(b, a)


# --- tables ------------------------------------------------------------------------------

FINDINGS_TABLE: Final = "findings"
SUBJECTS_TABLE: Final = "findings_subjects"
HOLDINGS_TABLE: Final = "findings_holdings"
CLOSURES_TABLE: Final = "findings_closures"
REQUESTS_TABLE: Final = "findings_requests"
RECIPIENTS_TABLE: Final = "findings_recipients"
POLICIES_TABLE: Final = "findings_policies"
INCIDENTS_TABLE: Final = "findings_incidents"
NOTICES_TABLE: Final = "findings_incident_notices"

SCHEMA: Final[tuple[str, ...]] = (
    f"""CREATE TABLE IF NOT EXISTS {FINDINGS_TABLE} (
        clause      TEXT NOT NULL,
        pseudonym   TEXT,
        event_id    TEXT NOT NULL,
        partition   INTEGER NOT NULL,
        "offset"    INTEGER NOT NULL,
        time        BIGINT NOT NULL,
        explanation TEXT NOT NULL
    )""",
    # Per person, what the event-time rules need: one JSON document, read and written once
    # per batch that mentions the person.
    f"""CREATE TABLE IF NOT EXISTS {SUBJECTS_TABLE} (
        pseudonym TEXT PRIMARY KEY,
        state     TEXT NOT NULL
    )""",
    # One row per collection of data kept (retention != 0). ``cells`` is a JSON list of
    # [category, store, erased_at or null], backups being stores; ``open`` counts the cells
    # not erased and ``last_erased`` is the latest erasure, so queries can skip rows in SQL.
    f"""CREATE TABLE IF NOT EXISTS {HOLDINGS_TABLE} (
        event_id    TEXT PRIMARY KEY,
        pseudonym   TEXT NOT NULL,
        partition   INTEGER NOT NULL,
        "offset"    INTEGER NOT NULL,
        time        BIGINT NOT NULL,
        deadline    BIGINT,
        open        INTEGER NOT NULL,
        last_erased BIGINT,
        cells       TEXT NOT NULL
    )""",
    f"""CREATE INDEX IF NOT EXISTS {HOLDINGS_TABLE}_open ON {HOLDINGS_TABLE} (pseudonym)
        WHERE open > 0""",
    f"""CREATE TABLE IF NOT EXISTS {CLOSURES_TABLE} (
        pseudonym  TEXT PRIMARY KEY,
        time       BIGINT NOT NULL,
        held       TEXT NOT NULL,
        hold_until BIGINT
    )""",
    f"""CREATE TABLE IF NOT EXISTS {REQUESTS_TABLE} (
        pseudonym   TEXT NOT NULL,
        request_id  TEXT NOT NULL,
        event_id    TEXT,
        partition   INTEGER,
        "offset"    INTEGER,
        kind        TEXT,
        received_at BIGINT,
        due         BIGINT,
        answered_at BIGINT,
        PRIMARY KEY (pseudonym, request_id)
    )""",
    f"""CREATE TABLE IF NOT EXISTS {RECIPIENTS_TABLE} (
        recipient TEXT PRIMARY KEY,
        state     TEXT NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS {POLICIES_TABLE} (
        version      TEXT PRIMARY KEY,
        effective_at BIGINT NOT NULL,
        material     INTEGER NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS {INCIDENTS_TABLE} (
        incident_id  TEXT PRIMARY KEY,
        event_id     TEXT,
        partition    INTEGER,
        "offset"     INTEGER,
        opened_at    BIGINT,
        stores       TEXT,
        categories   TEXT,
        window_start BIGINT,
        window_end   BIGINT,
        reported_at  BIGINT,
        closed_at    BIGINT
    )""",
    f"""CREATE TABLE IF NOT EXISTS {NOTICES_TABLE} (
        incident_id TEXT NOT NULL,
        pseudonym   TEXT NOT NULL,
        PRIMARY KEY (incident_id, pseudonym)
    )""",
)

TABLES: Final = (FINDINGS_TABLE, SUBJECTS_TABLE, HOLDINGS_TABLE, CLOSURES_TABLE, REQUESTS_TABLE,
                 RECIPIENTS_TABLE, POLICIES_TABLE, INCIDENTS_TABLE, NOTICES_TABLE)

_CHUNK: Final = 500  # bound on "IN (?, ...)" lists


def _chunks(keys: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(keys), _CHUNK):
        yield keys[i : i + _CHUNK]


def _marks(n: int) -> str:
    return ",".join("?" * n)


# --- per-batch state ---------------------------------------------------------------------

FindingRow = tuple[str, str | None, str, int, int, int, str]


@dataclass(slots=True)
class _Holding:
    """A collection's data kept, in memory while a batch collects or erases it.

    Its ``cells`` stay JSON ``text`` until an erasure names one of its stores: most
    erasures concern few of a person's holdings, and a new holding's text is a shape that
    collections share.
    """

    event_id: str
    pseudonym: str
    partition: int
    offset: int
    time: int
    deadline: int | None
    unerased: int  # cells not erased, while ``cells`` is not parsed
    text: str
    cells: list[list[Any]] | None = None  # [category, store, erased_at or None]
    stores: frozenset[str] | None = None  # known once parsed, or from the shape
    shape: tuple[tuple[str, str], ...] = ()  # (category, store) of a holding made here
    new: bool = False
    changed: bool = False

    def parsed(self) -> list[list[Any]]:
        if self.cells is None:
            if self.shape:
                self.cells = [[c, s, None] for c, s in self.shape]
            else:
                self.cells = json.loads(self.text)
                self.stores = frozenset(c[1] for c in self.cells)
        return self.cells

    def row(self) -> tuple[Any, ...]:
        if self.cells is None:
            return (self.event_id, self.pseudonym, self.partition, self.offset, self.time,
                    self.deadline, self.unerased, None, self.text)
        erased = [c[2] for c in self.cells if c[2] is not None]
        return (self.event_id, self.pseudonym, self.partition, self.offset, self.time,
                self.deadline, len(self.cells) - len(erased), max(erased, default=None),
                _dumps(self.cells))


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _like(store: str) -> str:
    """A LIKE pattern (escape ``!``) matching cells JSON that names ``store``."""
    needle = json.dumps(store).replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%{needle}%"


@functools.lru_cache(maxsize=1024)
def _shape(categories: tuple[str, ...], stores: tuple[str, ...]
           ) -> tuple[tuple[tuple[str, str], ...], str, frozenset[str]]:
    """A fresh holding's (category, store) cells, as JSON too, and its stores: collections
    repeat a few shapes."""
    cells = tuple((c, s) for s in dict.fromkeys(stores) for c in dict.fromkeys(categories))
    return cells, _dumps([[c, s, None] for c, s in cells]), frozenset(stores)


# A person's state (see ``_Batch.subject``): plain JSON types so it round-trips unchanged.
State = dict[str, Any]


class _Batch:
    """The state one ``apply`` call reads, changes in log order, and writes back."""

    def __init__(self, tx_: ViewTransaction, items: Sequence[Item], states: dict[str, State],
                 complete: bool):
        self.tx = tx_
        self.findings: list[FindingRow] = []
        subjects: set[str] = set()
        erasing: set[str] = set()
        erased_stores: set[str] = set()
        recipients: set[str] = set()
        for item in items:
            event = item.event
            data = event.data
            if event.subject:
                subjects.add(event.subject)
                if isinstance(data, ev.DataErased):
                    erasing.add(event.subject)
                    erased_stores.update(data.stores)
            if isinstance(data, ev.DataShared | ev.RecipientRegistered):
                recipients.add(data.recipient)
        # ``states`` is the projection's cache (see ``WriteCache``): the state of people
        # seen lately, as the view holds it; when ``complete``, a person missing has no row.
        self.subjects = states
        missing = [p for p in subjects if recent(states, p) is None]
        for keys in _chunks([] if complete else sorted(missing)):
            for pseudonym, text in tx_.query(
                f"SELECT pseudonym, state FROM {SUBJECTS_TABLE} "
                f"WHERE pseudonym IN ({_marks(len(keys))})", keys):
                self.subjects[pseudonym] = json.loads(text)
        self.dirty: set[str] = set()
        self.recipients: dict[str, dict[str, Any]] = {}
        for keys in _chunks(sorted(recipients)):
            for recipient, text in tx_.query(
                f"SELECT recipient, state FROM {RECIPIENTS_TABLE} "
                f"WHERE recipient IN ({_marks(len(keys))})", keys):
                self.recipients[recipient] = json.loads(text)
        self.recipient_rows: dict[str, str] = {}
        self.policies: dict[str, tuple[int, bool]] = {
            version: (effective, bool(material))
            for version, effective, material in tx_.query(
                f"SELECT version, effective_at, material FROM {POLICIES_TABLE}")
        }
        self.policy_rows: list[tuple[str, int, int]] = []
        # Only erasures need holdings, and only those in a store some erasure of the batch
        # names can be touched: only those are read.
        self.holdings: dict[str, list[_Holding]] = {p: [] for p in erasing}
        patterns = [_like(store) for store in sorted(erased_stores)]
        in_stores = " OR ".join(["cells LIKE ? ESCAPE '!'"] * len(patterns))
        for keys in _chunks(sorted(erasing)):
            for e, p, part, off, t, deadline, unerased, cells in tx_.query(
                f'SELECT event_id, pseudonym, partition, "offset", time, deadline, open, cells '
                f"FROM {HOLDINGS_TABLE} WHERE open > 0 AND pseudonym IN ({_marks(len(keys))}) "
                f"AND ({in_stores})", (*keys, *patterns)):
                self.holdings[p].append(_Holding(e, p, part, off, t, deadline, unerased, cells))
        self.new_holdings: list[_Holding] = []
        self.closures: list[tuple[str, int, str, int | None]] = []
        self.requests_received: list[tuple[Any, ...]] = []
        self.requests_answered: list[tuple[str, str, int]] = []
        self.incidents_opened: list[tuple[Any, ...]] = []
        self.incidents_reported: list[tuple[str, int]] = []
        self.incidents_closed: list[tuple[str, int]] = []
        self.notices: list[tuple[str, str]] = []

    def subject(self, pseudonym: str) -> State:
        """A person's state, created empty on first sight.

        Keys: ``subs`` kind -> [subscribed, time, partition, offset]; ``consents`` id ->
        [purpose, policy version, granted, withdrawn or None, cross-border destination or
        None]; ``closed`` [time, hold categories, hold until or None]; ``refused`` and
        ``optional`` category lists (2.1.1(1)c); ``tp`` category -> [scope] of third-party
        data and ``fp`` categories the person or their device gave (2.1.3); ``verified``
        request id -> time (9.2).
        """
        state = self.subjects.get(pseudonym)
        if state is None:
            state = self.subjects[pseudonym] = {}
        return state

    def changed(self, pseudonym: str) -> None:
        self.dirty.add(pseudonym)

    def flag(self, clause: str, item: Item, explanation: str) -> None:
        record, event = item.record, item.event
        self.findings.append((clause, event.subject, record.event_id, record.partition,
                              record.offset, item.at, explanation))

    def flush(self) -> None:
        tx_ = self.tx
        if self.findings:
            tx_.executemany(
                f'INSERT INTO {FINDINGS_TABLE} (clause, pseudonym, event_id, partition, "offset",'
                " time, explanation) VALUES (?, ?, ?, ?, ?, ?, ?)", self.findings)
        if self.dirty:
            tx_.executemany(
                f"INSERT INTO {SUBJECTS_TABLE} (pseudonym, state) VALUES (?, ?) "
                "ON CONFLICT (pseudonym) DO UPDATE SET state = excluded.state",
                [(p, json.dumps(self.subjects[p], sort_keys=True, separators=(",", ":")))
                 for p in sorted(self.dirty)])
        if self.new_holdings:
            tx_.executemany(
                f'INSERT INTO {HOLDINGS_TABLE} (event_id, pseudonym, partition, "offset", time,'
                " deadline, open, last_erased, cells) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (event_id) DO NOTHING", [h.row() for h in self.new_holdings])
        changed = [h.row() for held in self.holdings.values() for h in held
                   if h.changed and not h.new]
        if changed:
            tx_.executemany(
                f"UPDATE {HOLDINGS_TABLE} SET open = ?, last_erased = ?, cells = ? "
                "WHERE event_id = ?", [(r[6], r[7], r[8], r[0]) for r in changed])
        if self.closures:
            tx_.executemany(
                f"INSERT INTO {CLOSURES_TABLE} (pseudonym, time, held, hold_until) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (pseudonym) DO UPDATE SET time = excluded.time,"
                " held = excluded.held, hold_until = excluded.hold_until", self.closures)
        if self.recipient_rows:
            tx_.executemany(
                f"INSERT INTO {RECIPIENTS_TABLE} (recipient, state) VALUES (?, ?) "
                "ON CONFLICT (recipient) DO UPDATE SET state = excluded.state",
                sorted(self.recipient_rows.items()))
        if self.policy_rows:
            tx_.executemany(
                f"INSERT INTO {POLICIES_TABLE} (version, effective_at, material) VALUES (?, ?, ?)"
                " ON CONFLICT (version) DO UPDATE SET effective_at = excluded.effective_at,"
                " material = excluded.material", self.policy_rows)
        # Requests and incidents are written by upserts that only fill empty columns, each
        # column in log order, so running them grouped by kind gives the same rows as
        # running them one event at a time.
        if self.requests_received:
            tx_.executemany(
                f'INSERT INTO {REQUESTS_TABLE} (pseudonym, request_id, event_id, partition, "offset",'
                " kind, received_at, due) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (pseudonym, request_id) DO UPDATE SET "
                "event_id = COALESCE(findings_requests.event_id, excluded.event_id), "
                "partition = COALESCE(findings_requests.partition, excluded.partition), "
                '"offset" = COALESCE(findings_requests."offset", excluded."offset"), '
                "kind = COALESCE(findings_requests.kind, excluded.kind), "
                "received_at = COALESCE(findings_requests.received_at, excluded.received_at), "
                "due = COALESCE(findings_requests.due, excluded.due)", self.requests_received)
        if self.requests_answered:
            tx_.executemany(
                f"INSERT INTO {REQUESTS_TABLE} (pseudonym, request_id, answered_at) "
                "VALUES (?, ?, ?) ON CONFLICT (pseudonym, request_id) DO UPDATE SET answered_at"
                " = COALESCE(findings_requests.answered_at, excluded.answered_at)",
                self.requests_answered)
        if self.incidents_opened:
            tx_.executemany(
                f'INSERT INTO {INCIDENTS_TABLE} (incident_id, event_id, partition, "offset",'
                " opened_at, stores, categories, window_start, window_end)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (incident_id) DO UPDATE SET "
                "event_id = excluded.event_id, partition = excluded.partition, "
                '"offset" = excluded."offset", opened_at = excluded.opened_at, '
                "stores = excluded.stores, categories = excluded.categories, "
                "window_start = excluded.window_start, window_end = excluded.window_end "
                "WHERE findings_incidents.event_id IS NULL", self.incidents_opened)
        for column, rows in (("reported_at", self.incidents_reported),
                             ("closed_at", self.incidents_closed)):
            if rows:
                tx_.executemany(
                    f"INSERT INTO {INCIDENTS_TABLE} (incident_id, {column}) VALUES (?, ?) "
                    f"ON CONFLICT (incident_id) DO UPDATE SET {column} = "
                    f"COALESCE(findings_incidents.{column}, excluded.{column})", rows)
        if self.notices:
            tx_.executemany(
                f"INSERT INTO {NOTICES_TABLE} (incident_id, pseudonym) VALUES (?, ?) "
                "ON CONFLICT (incident_id, pseudonym) DO NOTHING", self.notices)


# --- state questions ---------------------------------------------------------------------


def _unsubscribed(state: State, kind: str, at: int) -> str | None:
    """The kind the person opted out of that covers ``kind`` and is in effect at ``at``.

    Of all changes to ``kind`` or a parent kind made by ``at``, the latest decides: a
    re-subscription to a parent lifts an earlier opt-out of a child, and the other way round.
    """
    latest: list[Any] | None = None
    latest_kind = ""
    for sub_kind, change in state.get("subs", {}).items():
        if (change[1] <= at and tx.covers(sub_kind, kind)
                and (latest is None or change[1:] > latest[1:])):
            latest, latest_kind = change, sub_kind
    if latest is not None and not latest[0]:
        return latest_kind
    return None


def _consent_in_force(state: State, purpose: str, at: int) -> bool:
    for c in state.get("consents", {}).values():
        if c[2] <= at and (c[3] is None or c[3] > at) and tx.covers(c[0], purpose):
            return True
    return False


def _consent_lapsed(state: State, purpose: str, at: int) -> bool:
    """True if a consent for ``purpose`` was given by ``at`` but withdrawn by then."""
    return any(c[2] <= at and c[3] is not None and c[3] <= at and tx.covers(c[0], purpose)
               for c in state.get("consents", {}).values())


def _closed_at(state: State, at: int) -> list[Any] | None:
    closed = state.get("closed")
    if closed is not None and closed[0] <= at:
        return list(closed)
    return None


# --- rules -------------------------------------------------------------------------------


def _out_of_scope(batch: _Batch, item: Item) -> None:
    """1.3: customer content (what users store on the cloud) is never recorded."""
    data = item.event.data
    for field in CATEGORY_FIELDS[type(data)]:
        if not OUT_OF_SCOPE.isdisjoint(getattr(data, field)):
            batch.flag("1.3", item, f"customer content named in {field} of a {item.event.type} event")
            return
    cross_border = getattr(data, "cross_border", None) if isinstance(
        data, ev.DataShared | ev.ConsentGranted) else None
    if cross_border is not None and not OUT_OF_SCOPE.isdisjoint(cross_border.categories):
        batch.flag("1.3", item, f"customer content named in a {item.event.type} event")


def _after_closure(batch: _Batch, item: Item, state: State, at: int, purpose: str,
                   categories: Sequence[str], what: str) -> None:
    """7.6: after closure only the legal hold may be used, for the legal obligation; a
    commercial use breaks 6.3b as well."""
    closed = _closed_at(state, at)
    if closed is None:
        return
    if purpose in COMMERCIAL:
        batch.flag("6.3b", item, f"commercial {what} for {purpose} after account closure")
    held, until = closed[1], closed[2]
    in_hold = (until is None or at <= until) and all(
        any(tx.covers(h, c) for h in held) for c in categories)
    if not (purpose in LEGAL_OBLIGATION and in_hold):
        beyond = [c for c in categories if not any(tx.covers(h, c) for h in held)]
        reason = (f"categories beyond the legal hold ({_names(beyond)})" if beyond
                  else "not for the legal obligation" if purpose not in LEGAL_OBLIGATION
                  else "after the legal hold ended")
        batch.flag("7.6", item, f"{what} for {purpose} after account closure: {reason}")


def _third_party_scope(batch: _Batch, item: Item, state: State, purpose: str,
                       categories: Sequence[str], what: str) -> None:
    """2.1.3: third-party data may only be used within the scope the person authorised.

    A use is of third-party data if it names a category the third party supplied, or one
    containing it, and the person did not give that category themselves. A narrower
    category (search history, of third-party ``user.behavior``) may well be the person's own.
    """
    third_party: dict[str, list[str]] = state.get("tp", {})
    if not third_party:
        return
    first_party: list[str] = state.get("fp", [])
    beyond = {
        tp_cat
        for c in categories
        for tp_cat, scope in third_party.items()
        if tx.covers(c, tp_cat)
        and not any(tx.covers(f, tp_cat) for f in first_party)
        and not any(tx.covers(s, purpose) for s in scope)
    }
    if beyond:
        batch.flag("2.1.3", item,
                   f"third-party data ({_names(beyond)}) {what} for {purpose}, "
                   "beyond its authorised scope")


def _superseded_consent(batch: _Batch, item: Item, state: State, consent_id: str | None,
                        at: int) -> None:
    """8: a consent given under a policy version a material change has since replaced."""
    if consent_id is None:
        return
    consent = state.get("consents", {}).get(consent_id)
    if consent is None:
        return
    version, granted = consent[1], consent[2]
    known = batch.policies.get(version)
    base = known[0] if known is not None else granted
    newer = sorted(
        (effective, v) for v, (effective, material) in batch.policies.items()
        if material and v != version and base < effective <= at
    )
    if newer:
        batch.flag("8", item, f"consent given under policy {version} relied on after material "
                              f"policy {newer[-1][1]} took effect")


def _on_used(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.DataUsed)
    pseudonym = item.event.subject or ""
    state = batch.subject(pseudonym)
    at = item.at
    purpose, cats, ground, kind = data.purpose, data.categories, data.legal_ground, data.message_kind
    _out_of_scope(batch, item)
    if ground is not None and ground.value not in USE_GROUNDS:
        batch.flag("3.5", item, f"use claims legal ground {ground.value}, not one of 3.5.1-3.5.10")
    for k in (purpose, kind):
        if k is not None and k in MARKETING:
            opted_out = _unsubscribed(state, k, at)
            if opted_out:
                batch.flag("3.3", item, f"marketing ({k}) after the person opted out of {opted_out}")
                break
    if purpose in TRACKING:
        # A web beacon rides in an e-mail: unsubscribing from that mailing stops it too.
        for k in (purpose, kind or TRACKING_CARRIER):
            opted_out = _unsubscribed(state, k, at)
            if opted_out:
                batch.flag("4.2", item, f"tracking ({purpose}) after the person unsubscribed "
                                        f"from {opted_out}")
                break
    if kind is not None:
        opted_out = _unsubscribed(state, kind, at)
        if opted_out:
            batch.flag("7.3", item, f"message of kind {kind} sent while unsubscribed from "
                                    f"{opted_out}")
    if purpose in PROFILING and not _consent_in_force(state, purpose, at):
        why = "consent withdrawn" if _consent_lapsed(state, purpose, at) else "no consent given"
        batch.flag("3.2b", item, f"profiling ({purpose}) without consent in force: {why}")
    if purpose in ANALYTICS and not data.anonymised and not _consent_in_force(state, purpose, at):
        batch.flag("3.2a", item, f"analytics ({purpose}) on non-anonymised data without consent")
    if purpose in UNDECLARED and not _consent_in_force(state, purpose, at):
        batch.flag("3.4b", item, f"use for {purpose}, a purpose the policy does not declare, "
                                 "without consent")
    if (purpose not in VERIFICATION and not VERIFICATION_TOUCH.isdisjoint(cats)
            and (ground is None or ground.value not in DISCLOSURE_GROUNDS)):
        touched = [c for c in cats if c in VERIFICATION_TOUCH]
        batch.flag("2.1.1(2)b", item, f"verification-only data ({_names(touched)}) used for "
                                      f"{purpose}")
    _third_party_scope(batch, item, state, purpose, cats, "used")
    _after_closure(batch, item, state, at, purpose, cats, "use")
    _superseded_consent(batch, item, state, data.consent_id, at)


def _transfer_consented(state: State, data: ev.DataShared, destination: str, at: int) -> bool:
    """Whether a consent in force covers this transfer: one given with a cross-border notice
    for ``destination``, or the consent the disclosure cites if it covers its purpose."""
    return any(
        c[2] <= at and (c[3] is None or c[3] > at)
        and (c[4] == destination
             or (consent_id == data.consent_id and tx.covers(c[0], data.purpose)))
        for consent_id, c in state.get("consents", {}).items()
    )


def _on_shared(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.DataShared)
    pseudonym = item.event.subject or ""
    state = batch.subject(pseudonym)
    at = item.at
    purpose, cats, recipient = data.purpose, data.categories, data.recipient
    clause = data.clause.value if data.clause is not None else None
    ground = data.legal_ground.value if data.legal_ground is not None else None
    registered = batch.recipients.get(recipient)
    _out_of_scope(batch, item)
    if clause is None and data.consent_id is None:
        batch.flag("5.0", item, f"disclosure to {recipient} with neither a clause nor a consent")
    if clause is not None and clause.startswith("5.3.") and ground not in DISCLOSURE_GROUNDS:
        batch.flag("5.3", item, f"disclosure claims clause {clause} but its legal ground is "
                                f"{ground or 'missing'}, not one of 5.3.1-5.3.7")
    # Section 5.3 allows disclosure on a legal ground whatever the recipient is registered for.
    legal = ground in DISCLOSURE_GROUNDS
    if not legal and purpose not in VERIFICATION and not VERIFICATION_TOUCH.isdisjoint(cats):
        touched = [c for c in cats if c in VERIFICATION_TOUCH]
        batch.flag("2.1.1(2)b", item, f"verification-only data ({_names(touched)}) shared with "
                                      f"{recipient} for {purpose}")
    if not legal and not PAYMENT_TOUCH.isdisjoint(cats) and (
            registered is None or PROCESSOR_ROLES.isdisjoint(registered["roles"])):
        touched = [c for c in cats if c in PAYMENT_TOUCH]
        status = "an unregistered recipient" if registered is None else \
            "a recipient not registered as a payment or invoice processor"
        batch.flag("2.1.1(3)b", item, f"payment data ({_names(touched)}) shared with {recipient},"
                                      f" {status}")
    if not legal and registered is not None:
        reasons = []
        allowed_cats: list[str] = registered["categories"]
        if allowed_cats:
            beyond = [c for c in cats if not any(tx.covers(a, c) for a in allowed_cats)]
            if beyond:
                reasons.append(f"categories {_names(beyond)} beyond those registered")
        allowed_uses: list[str] = registered["purposes"]
        if allowed_uses and not any(tx.covers(a, purpose) for a in allowed_uses):
            reasons.append(f"purpose {purpose} not among those registered")
        if reasons:
            batch.flag("5.1", item, f"disclosure to {recipient}: {'; '.join(reasons)}")
    destination = (data.cross_border.destination_country if data.cross_border is not None
                   else registered["location"] if registered is not None else None)
    if data.cross_border is not None or (destination is not None
                                         and destination != tx.DOMESTIC_LOCATION):
        assert destination is not None
        problems = []
        if not _transfer_consented(state, data, destination, at):
            problems.append("no consent in force for it")
        untold = (data.cross_border.missing() if data.cross_border is not None
                  else list(ev.CrossBorder.REQUIRED))
        if untold:
            problems.append(f"notice fields missing: {', '.join(untold)}")
        if problems:
            batch.flag("6.3d", item, f"cross-border disclosure to {destination} via {recipient}: "
                                     f"{'; '.join(problems)}")
    _third_party_scope(batch, item, state, purpose, cats, "shared")
    _after_closure(batch, item, state, at, purpose, cats, "disclosure")
    _superseded_consent(batch, item, state, data.consent_id, at)


def _on_collected(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.DataCollected)
    pseudonym = item.event.subject or ""
    state = batch.subject(pseudonym)
    at = item.at
    cats = data.categories
    _out_of_scope(batch, item)
    if data.retention_days != 0 and not BIOMETRIC_TOUCH.isdisjoint(cats):
        kept = ("until closure" if data.retention_days is None
                else f"for {data.retention_days} days")
        batch.flag("2.1.1(2)a", item, f"biometric data ({_names(c for c in cats if c in BIOMETRIC_TOUCH)})"
                                      f" stored {kept} in {data.store}")
    if data.protection is tx.Protection.PLAIN and not PASSWORD_TOUCH.isdisjoint(cats):
        clause = "4.1" if data.mechanism is tx.Mechanism.COOKIE else "2.1.1(1)a"
        batch.flag(clause, item, f"password ({_names(c for c in cats if c in PASSWORD_TOUCH)}) "
                                 f"collected unprotected via {data.mechanism.value}")
    if data.purpose in PROMOTION and not _consent_in_force(state, data.purpose, at):
        batch.flag("2.1.1(4)", item, f"data for {data.purpose} collected without prior consent")
    source = data.source
    third_party = source.kind is tx.SourceKind.THIRD_PARTY
    if third_party and source.provenance_verified is False:
        batch.flag("2.1.3", item, f"third-party data ({_names(cats)}) collected without verifying "
                                  "its legal source")
    if data.store_location != tx.DOMESTIC_LOCATION and data.cross_border_ref is None:
        batch.flag("6.3c", item, f"stored in {data.store} in {data.store_location}, outside China, "
                                 "without a cross-border record")
    changed = False
    if third_party:
        known: dict[str, list[str]] = state.setdefault("tp", {})
        for c in cats:
            scope = known.setdefault(c, [])
            for use in source.authorised_scope:
                if use not in scope:
                    scope.append(use)
        changed = True
    else:
        first_party: list[str] = state.setdefault("fp", [])
        for c in cats:
            if c not in first_party:
                first_party.append(c)
                changed = True
    if data.optional:
        optional: list[str] = state.setdefault("optional", [])
        for c in cats:
            if c not in optional:
                optional.append(c)
                changed = True
    if changed:
        batch.changed(pseudonym)
    if data.retention_days != 0:
        deadline = at + data.retention_days * _DAY if data.retention_days is not None else None
        record = item.record
        shape, text, kept_in = _shape(tuple(cats), (data.store, *data.backups))
        holding = _Holding(record.event_id, pseudonym, record.partition, record.offset, at,
                           deadline, len(shape), text, stores=kept_in, shape=shape, new=True)
        batch.new_holdings.append(holding)
        held = batch.holdings.get(pseudonym)
        if held is not None:  # the person erases something later in this batch
            held.append(holding)


def _on_erased(batch: _Batch, item: Item) -> None:
    """6.3a: erasing a holding must reach every store that keeps it, backups included.

    An erasure that names none of a holding's stores is about something else (the ledger's
    own key vault, say) and is no finding.
    """
    data = item.event.data
    assert isinstance(data, ev.DataErased)
    _out_of_scope(batch, item)
    at = item.at
    stores = frozenset(data.stores)
    needles: list[str] | None = None
    covered = _covered_by(tuple(data.categories))
    skipped: list[list[Any]] = []
    for h in batch.holdings.get(item.event.subject or "", []):
        if h.stores is None:
            if needles is None:
                needles = [json.dumps(store) for store in stores]
            if not any(needle in h.text for needle in needles):
                continue  # as read from the view, and naming none of these stores
            h.parsed()
        if h.stores is None or stores.isdisjoint(h.stores):
            continue
        touched = set()
        left = []
        for cell in h.parsed():
            if cell[2] is None:
                if cell[1] in stores and cell[0] in covered:
                    cell[2] = at
                    touched.add(cell[0])
                else:
                    left.append(cell)
        if touched:
            h.changed = True
            skipped.extend(cell for cell in left if cell[0] in touched)
    if skipped:
        batch.flag("6.3a", item, f"erasure of {_names(c[0] for c in skipped)} skipped store(s) "
                                 f"{_names(c[1] for c in skipped)}")


def _on_linked(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.DataLinked)
    _out_of_scope(batch, item)
    if not data.authorised and not data.de_identified:
        batch.flag("2.1.2-note", item, f"device or log data ({_names(data.categories)}) linked to "
                                       "the account without authorisation or de-identification")


def _on_refused(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.CollectionRefused)
    _out_of_scope(batch, item)
    pseudonym = item.event.subject or ""
    refused: list[str] = batch.subject(pseudonym).setdefault("refused", [])
    for c in data.categories:
        if c not in refused:
            refused.append(c)
    batch.changed(pseudonym)


def _on_denied(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.ServiceDenied)
    _out_of_scope(batch, item)
    state = batch.subject(item.event.subject or "")
    optional = [*state.get("refused", []), *state.get("optional", [])]
    missing = [m for m in data.missing_categories if any(_overlaps(m, o) for o in optional)]
    if missing:
        batch.flag("2.1.1(1)c", item, f"service denied for want of optional data the person may "
                                      f"refuse ({_names(missing)})")


def _on_closed(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.SubjectClosed)
    _out_of_scope(batch, item)
    pseudonym = item.event.subject or ""
    at = item.at
    until = to_us(data.legal_hold_until) if data.legal_hold_until is not None else None
    held = list(dict.fromkeys(data.legal_hold_categories))
    batch.subject(pseudonym)["closed"] = [at, held, until]
    batch.changed(pseudonym)
    batch.closures.append((pseudonym, at, json.dumps(held), until))


def _on_consent_granted(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.ConsentGranted)
    _out_of_scope(batch, item)
    pseudonym = item.event.subject or ""
    notice = data.cross_border
    batch.subject(pseudonym).setdefault("consents", {})[data.consent_id] = [
        data.purpose, data.policy_version, item.at, None,
        notice.destination_country if notice is not None else None,
    ]
    batch.changed(pseudonym)


def _on_consent_withdrawn(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.ConsentWithdrawn)
    pseudonym = item.event.subject or ""
    consents: dict[str, list[Any]] = batch.subject(pseudonym).setdefault("consents", {})
    at = item.at
    # An unknown id still withdraws: the person meant every consent for that purpose.
    targets = ([consents[data.consent_id]] if data.consent_id in consents
               else [c for c in consents.values() if tx.covers(data.purpose, c[0])])
    for c in targets:
        if c[3] is None:
            c[3] = at
    batch.changed(pseudonym)


def _on_subscription(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.SubscriptionChanged)
    pseudonym = item.event.subject or ""
    batch.subject(pseudonym).setdefault("subs", {})[data.kind] = [
        data.subscribed, item.at, item.record.partition, item.record.offset]
    batch.changed(pseudonym)


def _on_recipient(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.RecipientRegistered)
    _out_of_scope(batch, item)
    state = {
        "roles": [r.value for r in data.roles],
        "location": data.location,
        "categories": list(data.allowed_categories),
        "purposes": list(data.allowed_purposes),
    }
    batch.recipients[data.recipient] = state
    batch.recipient_rows[data.recipient] = json.dumps(state, sort_keys=True)


def _on_policy(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.PolicyPublished)
    effective = to_us(data.effective_at)
    batch.policies[data.policy_version] = (effective, data.material)
    batch.policy_rows.append((data.policy_version, effective, int(data.material)))


def _on_request_received(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.RequestReceived)
    _out_of_scope(batch, item)
    record = item.record
    batch.requests_received.append(
        (item.event.subject, data.request_id, record.event_id, record.partition, record.offset,
         data.kind.value, item.at, to_us(data.due) if data.due is not None else None))


def _on_identity_verified(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.RequestIdentityVerified)
    pseudonym = item.event.subject or ""
    verified: dict[str, int] = batch.subject(pseudonym).setdefault("verified", {})
    verified.setdefault(data.request_id, item.at)
    batch.changed(pseudonym)


def _on_request_answered(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.RequestFulfilled | ev.RequestRefused)
    pseudonym = item.event.subject or ""
    at = item.at
    batch.requests_answered.append((pseudonym, data.request_id, at))
    if isinstance(data, ev.RequestFulfilled):
        verified = batch.subject(pseudonym).get("verified", {}).get(data.request_id)
        if verified is None or verified > at:
            batch.flag("9.2", item, "request fulfilled without verifying the requester's identity")


def _on_incident_opened(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.IncidentOpened)
    _out_of_scope(batch, item)
    record = item.record
    batch.incidents_opened.append(
        (data.incident_id, record.event_id, record.partition, record.offset,
         item.at, json.dumps(sorted(set(data.stores))),
         json.dumps(sorted(set(data.categories))), to_us(data.window_start), to_us(data.window_end)))


def _on_incident_reported(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.IncidentReported)
    batch.incidents_reported.append((data.incident_id, item.at))


def _on_incident_closed(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.IncidentClosed)
    batch.incidents_closed.append((data.incident_id, item.at))


def _on_notified(batch: _Batch, item: Item) -> None:
    data = item.event.data
    assert isinstance(data, ev.IncidentSubjectNotified)
    batch.notices.append((data.incident_id, item.event.subject or ""))


def _on_other(batch: _Batch, item: Item) -> None:
    _out_of_scope(batch, item)


_HANDLERS: Final = {
    ev.DataUsed.TYPE: _on_used,
    ev.DataShared.TYPE: _on_shared,
    ev.DataCollected.TYPE: _on_collected,
    ev.DataErased.TYPE: _on_erased,
    ev.DataLinked.TYPE: _on_linked,
    ev.DataCorrected.TYPE: _on_other,
    ev.CollectionRefused.TYPE: _on_refused,
    ev.ServiceDenied.TYPE: _on_denied,
    ev.SubjectClosed.TYPE: _on_closed,
    ev.ConsentGranted.TYPE: _on_consent_granted,
    ev.ConsentWithdrawn.TYPE: _on_consent_withdrawn,
    ev.SubscriptionChanged.TYPE: _on_subscription,
    ev.RecipientRegistered.TYPE: _on_recipient,
    ev.PolicyPublished.TYPE: _on_policy,
    ev.RequestReceived.TYPE: _on_request_received,
    ev.RequestIdentityVerified.TYPE: _on_identity_verified,
    ev.RequestFulfilled.TYPE: _on_request_answered,
    ev.RequestRefused.TYPE: _on_request_answered,
    ev.IncidentOpened.TYPE: _on_incident_opened,
    ev.IncidentReported.TYPE: _on_incident_reported,
    ev.IncidentClosed.TYPE: _on_incident_closed,
    ev.IncidentSubjectNotified.TYPE: _on_notified,
}


class FindingsProjection(Projection):
    """The compliance findings view: one ``findings`` row per event that breaks a promise,
    plus the ``findings_*`` state the rules and the time-dependent queries need."""

    name = "findings"
    topics = frozenset(_HANDLERS)
    schema = SCHEMA
    tables = TABLES
    cost = 4.0

    def __init__(self, cache_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        #: people's states across batches (about a kilobyte each), so a person met again
        #: soon costs no read and no JSON parse
        self.cache = WriteCache(self.name, capacity=max(1, cache_entries // 4))

    def create(self, tx: ViewTransaction, *, indexes: bool = True) -> None:
        super().create(tx, indexes=indexes)
        create_meta(tx, self.name)  # the row whose token guards the cache

    def drop(self, tx: ViewTransaction) -> None:
        super().drop(tx)
        drop_meta(tx, self.name)

    def merge(self, tx: ViewTransaction, source: str) -> None:
        # A finding about no one comes from an event about no one: every share has it,
        # naming its own partition's copy. Keep the first share's, as for keyed tables.
        super().merge(tx, source)
        tx.execute(
            f"DELETE FROM main.{FINDINGS_TABLE} AS f WHERE f.pseudonym IS NULL AND EXISTS ("
            f"SELECT 1 FROM main.{FINDINGS_TABLE} AS g WHERE g.pseudonym IS NULL "
            "AND g.event_id = f.event_id AND g.clause = f.clause AND g.rowid < f.rowid)")

    def apply(self, tx: ViewTransaction, items: Sequence[Item]) -> None:
        states = self.cache.begin(tx)
        if self.cache.restarted:
            self.cache.complete = not tx.query(f"SELECT 1 FROM {SUBJECTS_TABLE} LIMIT 1")
        batch = _Batch(tx, items, states, self.cache.complete)
        for item in items:
            _HANDLERS[item.event.type](batch, item)
        batch.flush()


# --- queries -----------------------------------------------------------------------------


def _matches(clause: str, prefix: str | None) -> bool:
    return prefix is None or clause.startswith(prefix)


def _stored(store: ViewStore, prefix: str | None) -> list[Finding]:
    sql = (f'SELECT clause, pseudonym, event_id, partition, "offset", time, explanation '
           f"FROM {FINDINGS_TABLE}")
    params: tuple[Any, ...] = ()
    if prefix:
        sql += " WHERE substr(clause, 1, ?) = ?"
        params = (len(prefix), prefix)
    return [Finding(c, p, e, int(part), int(off), from_us(t), x)
            for c, p, e, part, off, t, x in store.query(sql, params)]


def _retention(store: ViewStore, now: int, grace: timedelta) -> Iterator[Finding]:
    """6.3a: data kept (in any store or backup) after its retention deadline plus ``grace``."""
    late = grace // timedelta(microseconds=1)
    for event_id, pseudonym, partition, offset, collected, deadline, cells in store.query(
            f'SELECT event_id, pseudonym, partition, "offset", time, deadline, cells '
            f"FROM {HOLDINGS_TABLE} WHERE deadline IS NOT NULL AND deadline < ? "
            "AND (open > 0 OR last_erased > deadline + ?)", (now - late, late)):
        kept = [c for c in json.loads(cells) if c[2] is None or c[2] > deadline + late]
        days = (deadline - collected) // _DAY
        yield Finding("6.3a", pseudonym, event_id, int(partition), int(offset), from_us(deadline),
                      f"{_names(c[0] for c in kept)} kept in {_names(c[1] for c in kept)} past "
                      f"the {days}-day retention deadline")


def _after_closure_holdings(store: ViewStore, now: int, allowed: timedelta,
                            grace: timedelta) -> Iterator[Finding]:
    """2.1.1(1)d: after closure, data beyond the legal hold is erased within ``allowed``,
    and the held categories within ``grace`` of the hold's end."""
    allowed_us = allowed // timedelta(microseconds=1)
    grace_us = grace // timedelta(microseconds=1)
    for event_id, pseudonym, partition, offset, cells, closed, held_json, until in store.query(
            f'SELECT h.event_id, h.pseudonym, h.partition, h."offset", h.cells, c.time, c.held, '
            f"c.hold_until FROM {HOLDINGS_TABLE} h "
            f"JOIN {CLOSURES_TABLE} c ON c.pseudonym = h.pseudonym "
            "WHERE h.open > 0 OR h.last_erased > c.time"):
        held: list[str] = json.loads(held_json)
        late: list[tuple[str, str, int, bool]] = []
        for category, kept_in, erased in json.loads(cells):
            if erased is not None and erased <= closed:
                continue
            in_hold = any(tx.covers(h, category) for h in held)
            if in_hold and until is None:
                continue
            deadline = until + grace_us if in_hold else closed + allowed_us
            if deadline < now and (erased is None or erased > deadline):
                late.append((category, kept_in, deadline, in_hold))
        if late:
            why = ("after the legal hold ended" if all(x[3] for x in late)
                   else f"more than {allowed.days} days after account closure, beyond the legal "
                        "hold")
            yield Finding("2.1.1(1)d", pseudonym, event_id, int(partition), int(offset),
                          from_us(max(x[2] for x in late)),
                          f"{_names(x[0] for x in late)} still kept in "
                          f"{_names(x[1] for x in late)} {why}")


def _requests(store: ViewStore, now: int, deadline: timedelta) -> Iterator[Finding]:
    """7.1: a rights request answered (fulfilled or refused) only after its due date, or never."""
    rows = store.query(
        f'SELECT pseudonym, event_id, partition, "offset", kind, received_at, due, answered_at '
        f"FROM {REQUESTS_TABLE} WHERE received_at IS NOT NULL")
    for pseudonym, event_id, partition, offset, kind, received, due, answered in rows:
        if due is None:
            due = to_us(from_us(received) + deadline)
        if due < now and (answered is None or answered > due):
            state = "answered late" if answered is not None and answered <= now else "still open"
            yield Finding("7.1", pseudonym, event_id, int(partition), int(offset), from_us(due),
                          f"{kind} request not fulfilled or refused by its due date ({state})")


def _incidents(store: ViewStore, now: int) -> Iterator[Finding]:
    """6.2.1a: once an incident is closed or 72 h old it must be reported, and everybody with
    data in its stores during its window notified."""
    window = timedelta(hours=INCIDENT_REPORT_HOURS)
    for (incident_id, event_id, partition, offset, opened, stores_json, cats_json, start, end,
         reported, closed) in store.query(
            f'SELECT incident_id, event_id, partition, "offset", opened_at, stores, categories, '
            f"window_start, window_end, reported_at, closed_at FROM {INCIDENTS_TABLE} "
            "WHERE event_id IS NOT NULL"):
        due = from_us(opened) + window
        if closed is not None and closed <= now:
            due = min(due, from_us(closed))
        elif to_us(due) >= now:
            continue
        if reported is None or reported > now:
            yield Finding("6.2.1a", None, event_id, int(partition), int(offset), due,
                          "incident not reported to the regulator")
        stores: list[str] = json.loads(stores_json)
        cats: list[str] = json.loads(cats_json)
        notified = {p for (p,) in store.query(
            f"SELECT pseudonym FROM {NOTICES_TABLE} WHERE incident_id = ?", (incident_id,))}
        affected: set[str] = set()
        for pseudonym, cells in store.query(
                f"SELECT pseudonym, cells FROM {HOLDINGS_TABLE} WHERE time <= ? "
                "AND (open > 0 OR last_erased >= ?)", (end, start)):
            if pseudonym not in affected and any(
                    kept_in in stores and (erased is None or erased >= start)
                    and (not cats or any(_overlaps(c, category) for c in cats))
                    for category, kept_in, erased in json.loads(cells)):
                affected.add(pseudonym)
        for pseudonym in sorted(affected - notified):
            yield Finding("6.2.1a", pseudonym, event_id, int(partition), int(offset), due,
                          f"person with data in {_names(stores)} during an incident was not "
                          "notified")


def list_findings(store: ViewStore, clause: str | None = None, now: datetime | None = None, *,
                  deadline_days: int = DEFAULT_DEADLINE_DAYS,
                  closure_days: int = DEFAULT_DEADLINE_DAYS,
                  erasure_grace_days: int = ERASURE_GRACE_DAYS) -> list[Finding]:
    """Every finding as of ``now`` (default: the current time; naive means UTC), by time.

    The stored findings, plus those that depend on the clock, evaluated at ``now``: data kept
    more than ``erasure_grace_days`` past its retention deadline (6.3a); after account
    closure, data beyond the legal hold kept more than ``closure_days`` after closure, or
    held data kept more than ``erasure_grace_days`` after the hold ends (2.1.1(1)d);
    rights requests not answered by their due date, ``deadline_days`` after receipt unless
    the request names one (7.1); incidents closed or older than 72 h that were not reported,
    or whose affected people were not notified (6.2.1a).
    ``clause`` keeps the findings whose clause starts with it ("3", "2.1.1(2)b").
    Needs the tables of ``FindingsProjection``: run it (``ProjectionRunner``) first.
    """
    when = now if now is not None else datetime.now(UTC)
    at = to_us(when if when.tzinfo is not None else when.replace(tzinfo=UTC))
    found = _stored(store, clause)
    dynamic: list[Iterator[Finding]] = []
    grace = timedelta(days=erasure_grace_days)
    if _matches("6.3a", clause):
        dynamic.append(_retention(store, at, grace))
    if _matches("2.1.1(1)d", clause):
        dynamic.append(_after_closure_holdings(store, at, timedelta(days=closure_days), grace))
    if _matches("7.1", clause):
        dynamic.append(_requests(store, at, timedelta(days=deadline_days)))
    if _matches("6.2.1a", clause):
        dynamic.append(_incidents(store, at))
    for findings in dynamic:
        found.extend(findings)
    found.sort(key=lambda f: (f.time, f.partition, f.offset, f.clause, f.pseudonym or ""))
    return found


def summary(findings: Iterable[Finding]) -> dict[str, int]:
    """How many findings there are per clause, in clause order."""
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.clause] = counts.get(f.clause, 0) + 1
    return dict(sorted(counts.items()))
