"""Hand-built events for projection tests: wire dicts, and a way to log them unsealed.

``log_events`` appends events straight to a log with their subject taken as the
pseudonym, which is what the projections see; tests of the whole path publish through
``Ledger`` instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from itertools import count
from pathlib import Path
from typing import Any

from consumers.projection import Item, Projection
from consumers.views import ViewTransaction
from ledger.persistence import AppendResult, EventLog, NewRecord
from ledger.sqlite import SQLiteEventLog
from schemas import encode, parse_wire

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
_ids = count(1)


def at(days: float = 0, **kw: float) -> datetime:
    """A time relative to ``T0``."""
    return T0 + timedelta(days=days, **kw)


def _event(type_: str, t: datetime, data: Mapping[str, Any], subject: str | None,
           **extra: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"id": f"e{next(_ids):08d}", "source": "tests", "type": type_,
                         "time": t.isoformat(), "data": dict(data)}
    if subject is not None:
        e["subject"] = subject
    e.update(extra)
    return e


def registered(subject: str, t: datetime, kind: str = "user") -> dict[str, Any]:
    return _event("subject.registered", t, {"subject_kind": kind}, subject)


def closed(subject: str, t: datetime, **data: Any) -> dict[str, Any]:
    return _event("subject.closed", t, data, subject)


def collected(subject: str, t: datetime, categories: Sequence[str], store: str = "accounts-db",
              *, location: str = "CN", backups: Sequence[str] = (),
              retention_days: int | None = None,
              purpose: str = "essential.service.authentication", source: str = "subject",
              **data: Any) -> dict[str, Any]:
    src: dict[str, Any] = {"kind": source}
    if source == "third_party":
        src.update(party="partner-x", provenance_verified=True)
    return _event("data.collected", t, {
        "categories": list(categories), "source": src, "purpose": purpose, "store": store,
        "store_location": location, "backups": list(backups), "retention_days": retention_days,
        **data}, subject)


def erased(subject: str, t: datetime, categories: Sequence[str], stores: Sequence[str],
           method: str = "erased") -> dict[str, Any]:
    return _event("data.erased", t, {"categories": list(categories), "stores": list(stores),
                                     "method": method}, subject)


def used(subject: str, t: datetime, categories: Sequence[str],
         purpose: str = "essential.service.security", **data: Any) -> dict[str, Any]:
    return _event("data.used", t, {"categories": list(categories), "purpose": purpose,
                                   "system": data.pop("system", "app"), **data}, subject)


def shared(subject: str, t: datetime, recipient: str, categories: Sequence[str],
           clause: str | None = "5.1.1", purpose: str = "essential.service.payment_processing",
           kind: str = "service_provider", **data: Any) -> dict[str, Any]:
    return _event("data.shared", t, {"recipient": recipient, "recipient_kind": kind,
                                     "categories": list(categories), "purpose": purpose,
                                     "clause": clause, **data}, subject)


def recipient(recipient_id: str, t: datetime, name: str = "Pay Co", kind: str = "service_provider",
              location: str = "CN", **data: Any) -> dict[str, Any]:
    """A registered recipient, bound by an agreement unless ``agreement_ref=None`` (5.1)."""
    data.setdefault("agreement_ref", f"dpa-{recipient_id}")
    return _event("recipient.registered", t, {"recipient": recipient_id, "name": name,
                                              "kind": kind, "location": location, **data}, None)


def inspected(recipient_id: str, t: datetime, passed: bool = True) -> dict[str, Any]:
    """A recorded inspection of a recipient (6.3)."""
    return _event("recipient.inspected", t, {"recipient": recipient_id, "passed": passed}, None)


def granted(subject: str, t: datetime, consent_id: str, purpose: str = "marketing.communications",
            **data: Any) -> dict[str, Any]:
    return _event("consent.granted", t, {"consent_id": consent_id, "purpose": purpose,
                                         "policy_version": data.pop("policy_version", "v1"),
                                         **data}, subject)


def withdrawn(subject: str, t: datetime, consent_id: str,
              purpose: str = "marketing.communications") -> dict[str, Any]:
    return _event("consent.withdrawn", t, {"consent_id": consent_id, "purpose": purpose}, subject)


def subscription(subject: str, t: datetime, kind: str = "marketing.communications.email",
                 subscribed: bool = False) -> dict[str, Any]:
    return _event("subscription.changed", t, {"kind": kind, "subscribed": subscribed}, subject)


def incident(incident_id: str, t: datetime, stores: Sequence[str], start: datetime,
             end: datetime, categories: Sequence[str] = ()) -> dict[str, Any]:
    return _event("incident.opened", t, {
        "incident_id": incident_id, "description": "test incident", "stores": list(stores),
        "window_start": start.isoformat(), "window_end": end.isoformat(),
        "categories": list(categories)}, None)


def notified(subject: str, t: datetime, incident_id: str, channel: str = "email") -> dict[str, Any]:
    return _event("incident.subject_notified", t, {"incident_id": incident_id,
                                                   "channel": channel}, subject)


def log_events(log: EventLog, events: Iterable[Mapping[str, Any]]) -> list[AppendResult]:
    """Append wire events as they are (subject = pseudonym, nothing sealed)."""
    records = []
    for raw in events:
        event = parse_wire(dict(raw))
        assert event.id is not None and not event.data.personal
        records.append(NewRecord(event_id=event.id, event_type=event.type, subject=event.subject,
                                 payload=encode(event)))
    return log.append(records)


# --- views ------------------------------------------------------------------------------

def dump_views(store: Any, projections: Iterable[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of these projections, sorted: equal dumps = equal views."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for projection in projections:
        for table in projection.tables:
            if table in projection.volatile:
                continue
            rows = store.query(f"SELECT * FROM {table}")
            if type(store).__name__ == "PostgresViewStore":
                # PostgreSQL spells out the rowid SQLite keeps hidden (consumers.postgres)
                names = [r[0] for r in store.query(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = ? AND table_schema = current_schema() "
                    "ORDER BY ordinal_position", (table,))]
                if "rowid" in names:
                    rows = [r[:names.index("rowid")] + r[names.index("rowid") + 1:]
                            for r in rows]
            out[table] = sorted(rows, key=repr)
    return out


# --- random sequences over the catalogue (hypothesis) ------------------------------------

def event_sequences(min_size: int = 1, max_size: int = 60) -> Any:
    """A strategy of event lists drawn from every type the projections read, and some they
    do not, over a few people, stores and categories so that events meet each other."""
    from hypothesis import strategies as st

    # Few people, stores and categories, and many collections and erasures, so that
    # events about the same holding often meet inside one batch.
    people = st.sampled_from(["p_ann", "p_bob"])
    stores = st.sampled_from(["accounts-db", "logs"])
    cats = st.sampled_from(["user.contact.email", "user.financial.bank_account",
                            "user.device.ip_address"])
    erase_cats = st.sampled_from(["user", "user.contact", "user.contact.email",
                                  "user.financial", "user.device.ip_address"])
    recipients = st.sampled_from(["payco", "adco"])
    clauses = st.sampled_from([None, "5.1.1", "5.1.3", "5.3.1"])
    times = st.integers(min_value=0, max_value=60 * 24 * 90).map(lambda m: at(minutes=m))
    cat_lists = st.lists(cats, min_size=1, max_size=3, unique=True)
    consent = st.sampled_from(["c-mkt", "c-prof"])

    def b(fn: Any, *args: Any, **kw: Any) -> Any:
        return st.builds(fn, *args, **kw)

    event = st.one_of(
        b(registered, people, times, st.sampled_from(["user", "non_user"])),
        b(closed, people, times),
        b(collected, people, times, cat_lists, stores,
          backups=st.lists(st.sampled_from(["backup-a", "backup-b"]), max_size=2, unique=True),
          retention_days=st.sampled_from([None, 0, 30]),
          purpose=st.sampled_from(["essential.service.authentication",
                                   "essential.service.security"]),
          source=st.sampled_from(["subject", "device", "third_party"])),
        b(collected, people, times, cat_lists, stores),
        b(erased, people, times, st.lists(erase_cats, min_size=1, max_size=2, unique=True),
          st.lists(st.sampled_from(["accounts-db", "logs", "backup-a"]),
                   min_size=1, max_size=2, unique=True),
          st.sampled_from(["erased", "anonymised", "crypto_shredded"])),
        b(erased, people, times, st.lists(cats, min_size=1, max_size=2, unique=True),
          st.lists(stores, min_size=1, max_size=2, unique=True)),
        b(collected, people, times, cat_lists, stores, backups=st.just(["backup-a"])),
        b(used, people, times, cat_lists,
          purpose=st.sampled_from(["essential.service.security", "marketing.communications"]),
          legal_ground=st.sampled_from([None, "3.5.7"])),
        b(shared, people, times, recipients, cat_lists, clauses),
        b(recipient, recipients, times),
        b(granted, people, times, consent),
        b(withdrawn, people, times, consent),
        b(subscription, people, times, subscribed=st.booleans()),
        b(incident, st.sampled_from(["inc-1", "inc-2"]), times,
          st.lists(stores, min_size=1, max_size=2, unique=True), times, times)
        .filter(lambda e: e["data"]["window_start"] <= e["data"]["window_end"]),
        b(notified, people, times, st.sampled_from(["inc-1", "inc-2"])),
        b(lambda t: _event("ledger.queried", t, {"actor": "x", "query": "q"}, None), times),
    )
    return st.lists(event, min_size=min_size, max_size=max_size)


def random_events(seed: int, n: int) -> list[dict[str, Any]]:
    """``n`` reproducible random events over a few people and stores (bulk crash tests)."""
    import random

    rnd = random.Random(seed)
    # in the ledger's pseudonym form (p_ + 32 base32 characters): Kafka readers check it
    people = [f"p_{letter * 32}" for letter in "abcdefghijkl"]
    stores = ["accounts-db", "logs", "payments-db"]
    cats = ["user.contact.email", "user.contact.phone_number", "user.financial.bank_account",
            "user.device.ip_address"]

    def pick_cats() -> list[str]:
        return rnd.sample(cats, rnd.randint(1, 3))

    out: list[dict[str, Any]] = []
    for i in range(n):
        p, t = rnd.choice(people), at(minutes=i)
        kind = rnd.random()
        if kind < 0.35:
            out.append(collected(p, t, pick_cats(), rnd.choice(stores),
                                 backups=rnd.choice([[], ["backup-a"]]),
                                 retention_days=rnd.choice([None, 30, 0])))
        elif kind < 0.6:
            out.append(used(p, t, pick_cats(), legal_ground=rnd.choice([None, "3.5.7"])))
        elif kind < 0.7:
            out.append(erased(p, t, [rnd.choice(["user", "user.contact", *cats])],
                              rnd.sample([*stores, "backup-a"], 2),
                              rnd.choice(["erased", "anonymised", "crypto_shredded"])))
        elif kind < 0.8:
            out.append(shared(p, t, rnd.choice(["payco", "adco"]), pick_cats(),
                              rnd.choice([None, "5.1.1", "5.3.1"])))
        elif kind < 0.85:
            out.append(rnd.choice([granted, withdrawn])(p, t, rnd.choice(["c-1", "c-2"])))
        elif kind < 0.9:
            out.append(subscription(p, t, subscribed=rnd.random() < 0.5))
        elif kind < 0.95:
            out.append(registered(p, t) if rnd.random() < 0.5 else closed(p, t))
        else:
            out.append(notified(p, t, "inc-1"))
    return out


def random_sqlite_log(directory: Path, *, seed: int, n: int) -> SQLiteEventLog:
    """A SQLite log in ``directory`` holding ``n`` reproducible random events."""
    log = SQLiteEventLog(directory / "log.db", synchronous="OFF")
    log_events(log, random_events(seed=seed, n=n))
    return log


class Boom(Projection):
    """A projection that fails on its ``fail_at``-th batch (the second by default), in
    whichever process runs it."""

    name = "boom"

    def __init__(self, fail_at: int = 2) -> None:
        self.fail_at, self.calls = fail_at, 0

    def apply(self, tx: ViewTransaction, items: Sequence[Item]) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError(f"injected failure at batch {self.fail_at}")
