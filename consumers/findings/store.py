"""The findings' SQL: the tables, the batch that reads and writes them, and the queries
the timed rules run.

Each batch reads the state of the people and recipients it mentions (one query per kind,
not per event), changes it in log order and writes it back with ``executemany``. Nothing
depends on batch boundaries or the clock, so applying the log in any batch sizes gives the
same rows as one rebuild.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from consumers.findings.state import Person, Policy, Recipient
from consumers.projection import Item
from consumers.rows import recent
from consumers.views import ViewStore, ViewTransaction
from schemas import events as ev

FINDINGS_TABLE: Final = "findings"
SUBJECTS_TABLE: Final = "findings_subjects"
HOLDINGS_TABLE: Final = "findings_holdings"
CLOSURES_TABLE: Final = "findings_closures"
REQUESTS_TABLE: Final = "findings_requests"
RECIPIENTS_TABLE: Final = "findings_recipients"
POLICIES_TABLE: Final = "findings_policies"
INCIDENTS_TABLE: Final = "findings_incidents"
NOTICES_TABLE: Final = "findings_incident_notices"
STAFF_TABLE: Final = "findings_staff"
STEPS_TABLE: Final = "findings_incident_steps"
EXTENSIONS_TABLE: Final = "findings_extensions"
DELETIONS_TABLE: Final = "findings_deletions"
REMEDIES_TABLE: Final = "findings_remedies"

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
    # The registries (recipients, policy versions, the staff list) per partition of the
    # log: a person's event meets the registry events before it in its own partition
    # (``FindingsProjection.registries_per_partition``, docs/ordering.md).
    f"""CREATE TABLE IF NOT EXISTS {RECIPIENTS_TABLE} (
        partition INTEGER NOT NULL,
        recipient TEXT NOT NULL,
        state     TEXT NOT NULL,
        PRIMARY KEY (partition, recipient)
    )""",
    f"""CREATE TABLE IF NOT EXISTS {POLICIES_TABLE} (
        partition    INTEGER NOT NULL,
        version      TEXT NOT NULL,
        effective_at BIGINT NOT NULL,
        material     INTEGER NOT NULL,
        PRIMARY KEY (partition, version)
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
    # The staff allowed to read personal data (6.2.1): when each was put on the list and
    # taken off it (null: still on it).
    f"""CREATE TABLE IF NOT EXISTS {STAFF_TABLE} (
        partition  INTEGER NOT NULL,
        actor      TEXT NOT NULL,
        granted_at BIGINT NOT NULL,
        revoked_at BIGINT,
        PRIMARY KEY (partition, actor)
    )""",
    # A finding about no one is raised on each partition's copy of its event; one row
    # names the lowest partition's copy (``Batch.flush``).
    f"""CREATE UNIQUE INDEX IF NOT EXISTS {FINDINGS_TABLE}_nobody
        ON {FINDINGS_TABLE} (event_id, clause) WHERE pseudonym IS NULL""",
    # An incident's response steps (6.2.1): contingency plan started, spread stopped,
    # advice given; when each was first recorded, in log order.
    f"""CREATE TABLE IF NOT EXISTS {STEPS_TABLE} (
        incident_id TEXT NOT NULL,
        step        TEXT NOT NULL,
        at          BIGINT NOT NULL,
        PRIMARY KEY (incident_id, step)
    )""",
    # Retention extended with a basis (6.3): the categories (JSON) and stores (JSON, empty:
    # every store) kept until ``until``.
    f"""CREATE TABLE IF NOT EXISTS {EXTENSIONS_TABLE} (
        event_id   TEXT PRIMARY KEY,
        pseudonym  TEXT NOT NULL,
        time       BIGINT NOT NULL,
        until      BIGINT NOT NULL,
        categories TEXT NOT NULL,
        stores     TEXT NOT NULL
    )""",
    # Data the person deleted (6.3: as closure, for those categories).
    f"""CREATE TABLE IF NOT EXISTS {DELETIONS_TABLE} (
        event_id   TEXT PRIMARY KEY,
        pseudonym  TEXT NOT NULL,
        time       BIGINT NOT NULL,
        categories TEXT NOT NULL,
        held       TEXT NOT NULL,
        hold_until BIGINT
    )""",
    # 7.4: the later event that remedied a finding (the unlawfully collected data erased
    # from every store that kept it, or corrected).
    f"""CREATE TABLE IF NOT EXISTS {REMEDIES_TABLE} (
        event_id        TEXT NOT NULL,
        clause          TEXT NOT NULL,
        remedy_event_id TEXT NOT NULL,
        time            BIGINT NOT NULL,
        PRIMARY KEY (event_id, clause)
    )""",
)

TABLES: Final = (FINDINGS_TABLE, SUBJECTS_TABLE, HOLDINGS_TABLE, CLOSURES_TABLE, REQUESTS_TABLE,
                 RECIPIENTS_TABLE, POLICIES_TABLE, INCIDENTS_TABLE, NOTICES_TABLE, STAFF_TABLE,
                 STEPS_TABLE, EXTENSIONS_TABLE, DELETIONS_TABLE, REMEDIES_TABLE)

CHUNK: Final = 500  # bound on "IN (?, ...)" lists


def chunks(keys: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(keys), CHUNK):
        yield keys[i : i + CHUNK]


def marks(n: int) -> str:
    return ",".join("?" * n)


#: A holding's cell: ``[category, store, erased at or None]``, as stored in ``cells``;
#: read through the indexes below.
Cell = list[Any]
CATEGORY, STORE, ERASED = 0, 1, 2

FindingRow = tuple[str, str | None, str, int, int, int, str]


@dataclass(slots=True)
class Holding:
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
    cells: list[Cell] | None = None
    stores: frozenset[str] | None = None  # known once parsed, or from the shape
    kinds: frozenset[str] = frozenset()  # its categories, known with ``stores``
    shape: tuple[tuple[str, str], ...] = ()  # (category, store) of a holding made here
    new: bool = False
    changed: bool = False

    def parsed(self) -> list[Cell]:
        """The cells, parsed on first need."""
        if self.cells is None:
            if not self.shape:
                # most holdings read back are as collected, nothing erased: a shape seen
                known = _SHAPES.get(self.text)
                if known is None:
                    cells = json.loads(self.text)
                    self.stores = frozenset(c[1] for c in cells)
                    self.kinds = frozenset(c[0] for c in cells)
                    if len(_SHAPES) < _SHAPES_KEPT and all(c[2] is None for c in cells):
                        _SHAPES[self.text] = (tuple((c, s) for c, s, _ in cells), self.stores,
                                              self.kinds)
                    self.cells = cells
                    return cells
                self.shape, self.stores, self.kinds = known
            self.cells = [[c, s, None] for c, s in self.shape]
        return self.cells

    def row(self) -> tuple[Any, ...]:
        """The ``findings_holdings`` row."""
        if self.cells is None:
            return (self.event_id, self.pseudonym, self.partition, self.offset, self.time,
                    self.deadline, self.unerased, None, self.text)
        erased = [c[ERASED] for c in self.cells if c[ERASED] is not None]
        return (self.event_id, self.pseudonym, self.partition, self.offset, self.time,
                self.deadline, len(self.cells) - len(erased), max(erased, default=None),
                dumps(self.cells))


#: ``json.dumps(value, separators=(",", ":"))`` without making an encoder per call (it
#: does, given any option): the same text.
_COMPACT: Final = json.JSONEncoder(separators=(",", ":"))


def dumps(value: Any) -> str:
    return _COMPACT.encode(value)


def like(store: str) -> str:
    """A LIKE pattern (escape ``!``) matching cells JSON that names ``store``."""
    needle = json.dumps(store).replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%{needle}%"


@functools.lru_cache(maxsize=1024)
def shape(categories: tuple[str, ...], stores: tuple[str, ...]
           ) -> tuple[tuple[tuple[str, str], ...], str, frozenset[str], frozenset[str]]:
    """A fresh holding's (category, store) cells, as JSON too, its stores and its
    categories: collections repeat a few shapes."""
    cells = tuple((c, s) for s in dict.fromkeys(stores) for c in dict.fromkeys(categories))
    text = dumps([[c, s, None] for c, s in cells])
    kept_in = frozenset(stores)
    kinds = frozenset(c for c, _ in cells)
    if len(_SHAPES) < _SHAPES_KEPT:
        _SHAPES[text] = (cells, kept_in, kinds)
    return cells, text, kept_in, kinds


#: Cells JSON of a holding with nothing erased -> its (category, store) cells and stores:
#: a holding read back in that state is made from them instead of parsing its JSON. Bounded
#: (a log has a few hundred shapes); beyond the bound, holdings are parsed.
_SHAPES: dict[str, tuple[tuple[tuple[str, str], ...], frozenset[str], frozenset[str]]] = {}
_SHAPES_KEPT: Final = 8192


@dataclass(slots=True)
class Registries:
    """One partition's registries as a batch reads and changes them: what the registry
    events of that partition said before the event being applied."""

    recipients: dict[str, Recipient] = field(default_factory=dict)
    recipient_rows: dict[str, str] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    policy_rows: list[tuple[str, int, int]] = field(default_factory=list)
    staff: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    staff_rows: dict[str, tuple[int, int | None]] = field(default_factory=dict)


@dataclass(slots=True)
class RegistryCache:
    """Every partition's registries as the view holds them, kept across batches by the
    projection next to people's states, and trusted as they are: only while its
    ``WriteCache`` is (``clear`` when that restarts). A batch reads from the view only
    what the cache does not hold yet: the recipients it names that no batch read before,
    the policy versions once, the staff list once."""

    partitions: dict[int, Registries] = field(default_factory=dict)
    #: recipients read from the view (their rows of every partition), held or not
    recipients: set[str] = field(default_factory=set)
    #: whether every partition's policy versions, and staff list, were read
    policies: bool = False
    staff: bool = False

    def clear(self) -> None:
        self.partitions.clear()
        self.recipients.clear()
        self.policies = self.staff = False


_ERASED: Final = ev.DataErased.TYPE
_NAMING_RECIPIENT: Final = frozenset({ev.DataShared.TYPE, ev.RecipientRegistered.TYPE,
                                      ev.RecipientInspected.TYPE})
_READING_STAFF: Final = frozenset({ev.LedgerQueried.TYPE, ev.StaffAccessGranted.TYPE,
                                   ev.StaffAccessRevoked.TYPE})


class Batch:
    """The state one ``apply`` call reads, changes in log order, and writes back, and the
    findings its rules raise."""

    def __init__(self, tx_: ViewTransaction, items: Sequence[Item], states: dict[str, Person],
                 complete: bool, registries: RegistryCache | None = None):
        self.tx = tx_
        self.findings: list[FindingRow] = []
        #: the last event ``person`` was asked about, and its person's state
        self._item: Item | None = None
        self._person = Person()
        subjects: set[str] = set()
        erasing: set[str] = set()
        erased_stores: set[str] = set()
        recipients: set[str] = set()
        partitions: set[int] = set()
        staff = False
        for item in items:
            event = item.event
            kind = event.type
            partitions.add(item.record.partition)
            if event.subject:
                subjects.add(event.subject)
                if kind == _ERASED:
                    erasing.add(event.subject)
                    erased_stores.update(event.data.stores)  # type: ignore[attr-defined]
            if kind in _NAMING_RECIPIENT:
                recipients.add(event.data.recipient)  # type: ignore[attr-defined]
            elif kind in _READING_STAFF:
                staff = True
        # ``states`` is the projection's cache (see ``WriteCache``): the state of people
        # seen lately, as the view holds it; when ``complete``, a person missing has no row.
        self.subjects = states
        missing = [p for p in subjects if recent(states, p) is None]
        for keys in chunks([] if complete else sorted(missing)):
            for pseudonym, text in tx_.query(
                f"SELECT pseudonym, state FROM {SUBJECTS_TABLE} "
                f"WHERE pseudonym IN ({marks(len(keys))})", keys):
                self.subjects[pseudonym] = Person.loads(text)
        self.dirty: set[str] = set()
        #: partition -> its registries, as the batch's events of that partition see them
        #: (every partition's the cache holds, the batch's at least)
        cache = registries if registries is not None else RegistryCache()
        self.registries = regs = cache.partitions
        for reg in regs.values():  # what earlier batches wrote is in the view now
            if reg.recipient_rows or reg.policy_rows or reg.staff_rows:
                reg.recipient_rows, reg.policy_rows, reg.staff_rows = {}, [], {}
        for partition in partitions:
            if partition not in regs:
                regs[partition] = Registries()
        # Read from the view only what the cache does not hold, for every partition (a
        # partition new to the cache then has no rows there).
        for keys in chunks(sorted(recipients - cache.recipients)):
            for partition, recipient, text in tx_.query(
                f"SELECT partition, recipient, state FROM {RECIPIENTS_TABLE} "
                f"WHERE recipient IN ({marks(len(keys))})", keys):
                regs.setdefault(partition, Registries()).recipients[recipient] = \
                    Recipient.loads(text)
            cache.recipients.update(keys)
        if not cache.policies:
            for partition, version, effective, material in tx_.query(
                    f"SELECT partition, version, effective_at, material FROM {POLICIES_TABLE}"):
                regs.setdefault(partition, Registries()).policies[version] = \
                    Policy(effective, bool(material))
            cache.policies = True
        if staff and not cache.staff:  # read only if the batch needs it
            for partition, actor, granted, revoked in tx_.query(
                    f"SELECT partition, actor, granted_at, revoked_at FROM {STAFF_TABLE}"):
                regs.setdefault(partition, Registries()).staff[actor] = (granted, revoked)
            cache.staff = True
        self.recipients: dict[str, Recipient] = {}
        self.recipient_rows: dict[str, str] = {}
        self.policies: dict[str, Policy] = {}
        self.policy_rows: list[tuple[str, int, int]] = []
        #: actor -> (put on the staff list at, taken off at)
        self.staff: dict[str, tuple[int, int | None]] = {}
        self.staff_rows: dict[str, tuple[int, int | None]] = {}
        if items:
            self.enter(items[0].record.partition)
        # Only erasures need holdings, and only those in a store some erasure of the batch
        # names can be touched: only those are read.
        self.holdings: dict[str, list[Holding]] = {p: [] for p in erasing}
        patterns = [like(store) for store in sorted(erased_stores)]
        in_stores = " OR ".join(["cells LIKE ? ESCAPE '!'"] * len(patterns))
        for keys in chunks(sorted(erasing)):
            for e, p, part, off, t, deadline, unerased, cells in tx_.query(
                f'SELECT event_id, pseudonym, partition, "offset", time, deadline, open, cells '
                f"FROM {HOLDINGS_TABLE} WHERE open > 0 AND pseudonym IN ({marks(len(keys))}) "
                f"AND ({in_stores})", (*keys, *patterns)):
                self.holdings[p].append(Holding(e, p, part, off, t, deadline, unerased, cells))
        self.new_holdings: list[Holding] = []
        self.closures: list[tuple[str, int, str, int | None]] = []
        self.requests_received: list[tuple[Any, ...]] = []
        self.requests_answered: list[tuple[str, str, int]] = []
        self.incidents_opened: list[tuple[Any, ...]] = []
        self.incidents_reported: list[tuple[str, int]] = []
        self.incidents_closed: list[tuple[str, int]] = []
        self.notices: list[tuple[str, str]] = []
        self.incident_steps: list[tuple[str, str, int]] = []
        self.extensions: list[tuple[str, str, int, int, str, str]] = []
        self.deletions: list[tuple[str, str, int, str, str, int | None]] = []
        self.remedies: list[tuple[str, str, str, int]] = []
        #: cells the erasure being folded left in a store it did not name (6.3a)
        self.skipped: list[Cell] = []

    def enter(self, partition: int) -> None:
        """Make ``partition``'s registries the ones folds and rules read and write (call
        before an event of another partition than the last)."""
        reg = self.registries[partition]
        self.recipients, self.recipient_rows = reg.recipients, reg.recipient_rows
        self.policies, self.policy_rows = reg.policies, reg.policy_rows
        self.staff, self.staff_rows = reg.staff, reg.staff_rows

    def person(self, item: Item) -> Person:
        """The state of the event's person, created empty on first sight."""
        if item is self._item:  # the fold and most rules of an event ask for it in turn
            return self._person
        pseudonym = item.event.subject or ""
        state = self.subjects.get(pseudonym)
        if state is None:
            state = self.subjects[pseudonym] = Person()
        self._item, self._person = item, state
        return state

    def changed(self, item: Item) -> None:
        """Mark the event's person's state to be written back."""
        self.dirty.add(item.event.subject or "")

    def flag(self, clause: str, item: Item, explanation: str) -> None:
        """Record a finding of ``clause`` on ``item``'s event; one on a collection or a
        linking waits for its remedy (7.4: erased or corrected later)."""
        record, event = item.record, item.event
        self.findings.append((clause, event.subject, record.event_id, record.partition,
                              record.offset, item.at, explanation))
        data = event.data
        if event.subject and isinstance(data, ev.DataCollected | ev.DataLinked):
            pending = self.person(item).unremedied.setdefault(record.event_id, [
                [data.store, *data.backups] if isinstance(data, ev.DataCollected) else [],
                list(data.categories), []])
            if clause not in pending[2]:
                pending[2].append(clause)
            self.changed(item)

    def remedied(self, item: Item, stores: frozenset[str], categories: frozenset[str], *,
                 everywhere: bool) -> None:
        """``item`` erased or corrected ``categories`` (each key and those below it) in
        ``stores``: the person's pending findings whose data it reaches — in every store
        that keeps it if ``everywhere`` (an erasure), else in one (a correction) — are
        remedied by it."""
        person = self.person(item)
        for event_id, (kept_in, cats, clauses) in list(person.unremedied.items()):
            if not all(c in categories for c in cats):
                continue
            if kept_in and not (set(kept_in) <= stores if everywhere
                                else not stores.isdisjoint(kept_in)):
                continue
            for clause in clauses:
                self.remedies.append((event_id, clause, item.record.event_id, item.at))
            del person.unremedied[event_id]
            self.changed(item)

    def flush(self) -> None:
        """Write every change of the batch, one ``executemany`` per kind."""
        tx_ = self.tx
        about_someone = [f for f in self.findings if f[1] is not None]
        if about_someone:
            tx_.executemany(
                f'INSERT INTO {FINDINGS_TABLE} (clause, pseudonym, event_id, partition, "offset",'
                " time, explanation) VALUES (?, ?, ?, ?, ?, ?, ?)", about_someone)
        if len(about_someone) < len(self.findings):
            # one row per (event, clause), naming the lowest partition's copy seen so far
            tx_.executemany(
                f'INSERT INTO {FINDINGS_TABLE} (clause, pseudonym, event_id, partition, "offset",'
                " time, explanation) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (event_id, clause) WHERE pseudonym IS NULL DO UPDATE SET "
                'partition = excluded.partition, "offset" = excluded."offset", '
                "time = excluded.time, explanation = excluded.explanation "
                f"WHERE excluded.partition < {FINDINGS_TABLE}.partition",
                [f for f in self.findings if f[1] is None])
        if self.dirty:
            tx_.executemany(
                f"INSERT INTO {SUBJECTS_TABLE} (pseudonym, state) VALUES (?, ?) "
                "ON CONFLICT (pseudonym) DO UPDATE SET state = excluded.state",
                [(p, self.subjects[p].dumps()) for p in sorted(self.dirty)])
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
        regs = sorted(self.registries.items())
        recipient_rows = [(p, r, state) for p, reg in regs
                          for r, state in sorted(reg.recipient_rows.items())]
        if recipient_rows:
            tx_.executemany(
                f"INSERT INTO {RECIPIENTS_TABLE} (partition, recipient, state) VALUES (?, ?, ?) "
                "ON CONFLICT (partition, recipient) DO UPDATE SET state = excluded.state",
                recipient_rows)
        staff_rows = [(p, a, g, r) for p, reg in regs
                      for a, (g, r) in sorted(reg.staff_rows.items())]
        if staff_rows:
            tx_.executemany(
                f"INSERT INTO {STAFF_TABLE} (partition, actor, granted_at, revoked_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (partition, actor) DO UPDATE SET "
                "granted_at = excluded.granted_at, revoked_at = excluded.revoked_at",
                staff_rows)
        policy_rows = [(p, *row) for p, reg in regs for row in reg.policy_rows]
        if policy_rows:
            tx_.executemany(
                f"INSERT INTO {POLICIES_TABLE} (partition, version, effective_at, material) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (partition, version) DO UPDATE SET "
                "effective_at = excluded.effective_at, material = excluded.material",
                policy_rows)
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
                # the first opening; of its copies (one per partition), the lowest partition's
                "WHERE findings_incidents.event_id IS NULL OR (findings_incidents.event_id = "
                "excluded.event_id AND excluded.partition < findings_incidents.partition)",
                self.incidents_opened)
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
        if self.incident_steps:
            tx_.executemany(
                f"INSERT INTO {STEPS_TABLE} (incident_id, step, at) VALUES (?, ?, ?) "
                "ON CONFLICT (incident_id, step) DO NOTHING", self.incident_steps)
        if self.remedies:
            tx_.executemany(
                f"INSERT INTO {REMEDIES_TABLE} (event_id, clause, remedy_event_id, time) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (event_id, clause) DO NOTHING", self.remedies)
        if self.extensions:
            tx_.executemany(
                f"INSERT INTO {EXTENSIONS_TABLE} (event_id, pseudonym, time, until, categories,"
                " stores) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                self.extensions)
        if self.deletions:
            tx_.executemany(
                f"INSERT INTO {DELETIONS_TABLE} (event_id, pseudonym, time, categories, held,"
                " hold_until) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                self.deletions)


# --- what the timed rules read -------------------------------------------------------------


def stored_findings(store: ViewStore, prefix: str | None) -> list[tuple[Any, ...]]:
    """The ``findings`` rows whose clause starts with ``prefix`` (all if None), each with
    its remedy if any (event id and time, or nulls)."""
    sql = (f'SELECT f.clause, f.pseudonym, f.event_id, f.partition, f."offset", f.time, '
           f"f.explanation, r.remedy_event_id, r.time FROM {FINDINGS_TABLE} f "
           f"LEFT JOIN {REMEDIES_TABLE} r ON r.event_id = f.event_id AND r.clause = f.clause")
    params: tuple[Any, ...] = ()
    if prefix:
        sql += " WHERE substr(f.clause, 1, ?) = ?"
        params = (len(prefix), prefix)
    return store.query(sql, params)


def expired_holdings(store: ViewStore, before: int, late: int) -> list[tuple[Any, ...]]:
    """Holdings whose retention deadline is before ``before`` and that were still open, or
    erased more than ``late`` after it: (event_id, pseudonym, partition, offset, collected,
    deadline, cells JSON)."""
    return store.query(
        f'SELECT event_id, pseudonym, partition, "offset", time, deadline, cells '
        f"FROM {HOLDINGS_TABLE} WHERE deadline IS NOT NULL AND deadline < ? "
        "AND (open > 0 OR last_erased > deadline + ?)", (before, late))


def extensions(store: ViewStore) -> dict[str, list[tuple[int, int, list[str], list[str]]]]:
    """Retention extensions with a basis, per person: (recorded at, until, categories,
    stores; no stores: every store)."""
    out: dict[str, list[tuple[int, int, list[str], list[str]]]] = {}
    for pseudonym, t, until, cats, stores in store.query(
            f"SELECT pseudonym, time, until, categories, stores FROM {EXTENSIONS_TABLE}"):
        out.setdefault(pseudonym, []).append((int(t), int(until), json.loads(cats),
                                              json.loads(stores)))
    return out


def holdings_after_deletion(store: ViewStore) -> list[tuple[Any, ...]]:
    """Holdings collected before the person deleted some of their data and not all erased
    by then: (event_id, pseudonym, partition, offset, cells JSON, deleted at, categories
    JSON, held JSON, hold until)."""
    return store.query(
        f'SELECT h.event_id, h.pseudonym, h.partition, h."offset", h.cells, d.time, '
        f"d.categories, d.held, d.hold_until FROM {HOLDINGS_TABLE} h "
        f"JOIN {DELETIONS_TABLE} d ON d.pseudonym = h.pseudonym "
        "WHERE h.time <= d.time AND (h.open > 0 OR h.last_erased > d.time)")


def holdings_after_closure(store: ViewStore) -> list[tuple[Any, ...]]:
    """Holdings of closed accounts not all erased by the closure: (event_id, pseudonym,
    partition, offset, cells JSON, closed at, held JSON, hold until)."""
    return store.query(
        f'SELECT h.event_id, h.pseudonym, h.partition, h."offset", h.cells, c.time, c.held, '
        f"c.hold_until FROM {HOLDINGS_TABLE} h "
        f"JOIN {CLOSURES_TABLE} c ON c.pseudonym = h.pseudonym "
        "WHERE h.open > 0 OR h.last_erased > c.time")


def requests(store: ViewStore) -> list[tuple[Any, ...]]:
    """Received requests: (pseudonym, event_id, partition, offset, kind, received, due,
    answered)."""
    return store.query(
        f'SELECT pseudonym, event_id, partition, "offset", kind, received_at, due, answered_at '
        f"FROM {REQUESTS_TABLE} WHERE received_at IS NOT NULL")


def incidents(store: ViewStore) -> list[tuple[Any, ...]]:
    """Opened incidents: (incident_id, event_id, partition, offset, opened, stores JSON,
    categories JSON, window start, window end, reported, closed)."""
    return store.query(
        f'SELECT incident_id, event_id, partition, "offset", opened_at, stores, categories, '
        f"window_start, window_end, reported_at, closed_at FROM {INCIDENTS_TABLE} "
        "WHERE event_id IS NOT NULL")


def incident_steps(store: ViewStore, incident_id: str) -> dict[str, int]:
    """The response steps recorded for an incident: step -> when (first in log order)."""
    return {step: int(t) for step, t in store.query(
        f"SELECT step, at FROM {STEPS_TABLE} WHERE incident_id = ?", (incident_id,))}


def notified(store: ViewStore, incident_id: str) -> set[str]:
    """The people notified of an incident."""
    return {p for (p,) in store.query(
        f"SELECT pseudonym FROM {NOTICES_TABLE} WHERE incident_id = ?", (incident_id,))}


def holdings_during(store: ViewStore, start: int, end: int) -> Iterator[tuple[str, list[Cell]]]:
    """(pseudonym, cells) of holdings collected by ``end`` and not all erased before
    ``start``."""
    for pseudonym, cells in store.query(
            f"SELECT pseudonym, cells FROM {HOLDINGS_TABLE} WHERE time <= ? "
            "AND (open > 0 OR last_erased >= ?)", (end, start)):
        yield pseudonym, json.loads(cells)


def contact_held(store: ViewStore, people: set[str], now: int) -> set[str]:
    """Of ``people``, those who hold contact data (``user.contact.*`` but an organisation's
    name) in some store at ``now``, by this view's holdings."""
    held: set[str] = set()
    for pseudonym, cells in store.query(f"SELECT pseudonym, cells FROM {HOLDINGS_TABLE}"):
        if pseudonym in people and pseudonym not in held and any(
                (category == "user.contact" or category.startswith("user.contact."))
                and category != "user.contact.organization"
                and (erased is None or erased > now)
                for category, _, erased in json.loads(cells)):
            held.add(pseudonym)
    return held


def shredded_or_no_contact(store: ViewStore, people: set[str]) -> set[str]:
    """Of ``people``, those the holdings projection (when it shares this store) knows cannot
    be reached: their data key destroyed, or no contact data held."""
    if not people or not store.tracked_logs("holdings"):
        return set()
    return {p for (p,) in store.query(
        "SELECT pseudonym FROM scope_people WHERE shredded_at IS NOT NULL "
        "OR contact_stores = 0") if p in people}
