"""The read side: questions compliance staff and incident responders ask of the views.

Every function takes a ``ViewStore`` and returns plain dicts, or dataclasses and named
tuples with ``as_dict``, ready for JSON. People appear by pseudonym only; callers pseudonymise a real identifier first.
Times come back as ISO 8601 strings (UTC).
"""

from __future__ import annotations

import difflib
import json
import operator
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import repeat
from typing import Any, NamedTuple, overload

import numpy as np

from consumers.rows import BIT, SENSITIVE_MASK, categories_of, iso, related_mask, to_us
from consumers.scope import Hits, hits, plain_name
from consumers.views import ViewStore
from ledger.errors import InvalidInput, NotFound
from schemas.taxonomy import CATEGORIES, SharingClause, covers, is_policy_sensitive, is_sensitive

# --- data map ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Closure:
    """A person's account closure and legal hold, which end "until closure" retention."""

    closed_at: int | None = None
    hold_until: int | None = None
    hold_categories: tuple[str, ...] = ()

    def deadline(self, held_since: int, retention_days: int | None, category: str
                 ) -> int | None:
        """When the oldest copy held must be gone: its retention, or closure (+ legal hold)."""
        if retention_days is not None:
            return held_since + retention_days * 86_400_000_000
        if self.closed_at is None:
            return None  # kept until the account is closed
        if self.hold_until and any(covers(h, category) for h in self.hold_categories):
            return max(self.closed_at, self.hold_until)
        return self.closed_at


def subject_map(store: ViewStore, pseudonym: str, now: datetime | None = None) -> dict[str, Any]:
    """Everything the views know about one person. Raises ``NotFound`` if nothing.

    ``now`` (default: the current time) decides which retention deadlines have passed.
    """
    now_us = to_us(now or datetime.now(timezone.utc))
    q = store.query
    row = q("SELECT kind, registered_at, closed_at, close_reason, legal_hold_until, "
            "legal_hold_categories, shredded_at FROM dm_subjects WHERE pseudonym = ?",
            (pseudonym,))
    subject: dict[str, Any] = {}
    closure = _Closure()
    if row:
        kind, registered, closed, reason, hold_until, hold_cats, shredded = row[0]
        held_back = json.loads(hold_cats) if hold_cats else []
        subject = {
            "kind": kind, "registered_at": iso(registered), "closed_at": iso(closed),
            "close_reason": reason,
            "legal_hold": ({"until": iso(hold_until), "categories": held_back}
                           if held_back else None),
            "erased": shredded is not None, "erased_at": iso(shredded),
        }
        closure = _Closure(closed, hold_until, tuple(held_back))

    categories: dict[str, dict[str, Any]] = {}

    def entry(category: str) -> dict[str, Any]:
        e = categories.get(category)
        if e is None:
            info = CATEGORIES.get(category)
            e = categories[category] = {
                "category": category, "description": info.description if info else "",
                "sensitive": is_sensitive(category),
                "policy_sensitive": is_policy_sensitive(category), "held": False,
                "sources": [], "uses": [], "stores": [], "recipients": [],
            }
        return e

    for (kind, party, purpose, mask, stored, optional, ground, consent, first) in q(
        "SELECT source_kind, source_party, purpose, categories, stored, optional, "
        "legal_ground, consent_id, first_at FROM dm_collections "
        "WHERE pseudonym = ? ORDER BY first_at, purpose", (pseudonym,)
    ):
        for cat in categories_of(mask):
            entry(cat)["sources"].append({
                "source": kind, "party": party or None, "purpose": purpose,
                "legal_ground": ground, "consent_id": consent,
                "optional": bool(optional & BIT[cat]), "stored": bool(stored & BIT[cat]),
                "first": iso(first),
            })
    for (store_name, location, backup, held, erased, anonymised, first, since, days,
         erased_at) in q("SELECT store, location, backup, held, erased, anonymised, "
                         "first_collected_at, held_since, retention_days, erased_at "
                         "FROM dm_stores WHERE pseudonym = ? ORDER BY backup, store",
                         (pseudonym,)):
        for status, mask in (("held", held), ("erased", erased), ("anonymised", anonymised)):
            for cat in categories_of(mask):
                is_held = status == "held"
                deadline = closure.deadline(since, days, cat) if is_held else None
                e = entry(cat)
                e["held"] = e["held"] or is_held
                e["stores"].append({
                    "store": store_name, "location": location, "backup": bool(backup),
                    "status": status, "since": iso(since if is_held else erased_at),
                    "first_collected": iso(first), "retention_days": days,
                    "retention_deadline": iso(deadline),
                    "overdue": deadline is not None and deadline < now_us,
                })
    for purpose, ground, consent, mask, first in q(
        "SELECT purpose, legal_ground, consent_id, categories, first_at "
        "FROM dm_uses WHERE pseudonym = ? ORDER BY first_at, purpose", (pseudonym,)
    ):
        for cat in categories_of(mask):
            entry(cat)["uses"].append({
                "purpose": purpose, "legal_ground": ground or None,
                "consent_id": consent or None, "first": iso(first),
            })
    for recipient, mask, first in q(
        "SELECT recipient, categories, first_at FROM dm_recipients "
        "WHERE pseudonym = ? ORDER BY first_at, recipient", (pseudonym,)
    ):
        for cat in categories_of(mask):
            entry(cat)["recipients"].append({"recipient": recipient, "first": iso(first)})
    consents = [
        {"consent_id": cid, "purpose": purpose, "policy_version": version,
         "categories": json.loads(cats) if cats else [], "cross_border_to": country,
         "granted_at": iso(granted), "withdrawn_at": iso(withdrawn),
         "in_force": granted is not None and withdrawn is None}
        for cid, purpose, version, cats, country, granted, withdrawn in q(
            "SELECT consent_id, purpose, policy_version, categories, cross_border_country, "
            "granted_at, withdrawn_at FROM dm_consents WHERE pseudonym = ? "
            "ORDER BY granted_at, consent_id", (pseudonym,))
    ]
    subscriptions = [
        {"kind": kind, "subscribed": bool(on), "changed_at": iso(at)}
        for kind, on, at in q("SELECT kind, subscribed, changed_at FROM dm_subscriptions "
                              "WHERE pseudonym = ? ORDER BY kind", (pseudonym,))
    ]
    if not (subject or categories or consents or subscriptions):
        raise NotFound("the ledger's views know nothing about this person "
                       "(check the identifier; run `pdl project` if events are new)")
    return {
        "pseudonym": pseudonym,
        "subject": subject or None,
        "categories": [categories[k] for k in sorted(categories)],
        "consents": consents,
        "consents_in_force": [c["consent_id"] for c in consents if c["in_force"]],
        "subscriptions": subscriptions,
        "opt_outs": [s["kind"] for s in subscriptions if not s["subscribed"]],
    }


# --- names that must exist ----------------------------------------------------------------


def unknown_name(what: str, name: str, known: Iterable[str],
                 where: str = "in the ledger") -> NotFound:
    """``NotFound`` for a name the views do not know, naming the nearest known ones: a
    filter on a misspelt name is not an empty answer."""
    names = sorted(set(known))
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = (f"; did you mean {', '.join(close)}?" if close
            else f"; known: {', '.join(names[:8])}{' …' if len(names) > 8 else ''}" if names
            else "; none is known yet")
    return NotFound(f"no {what} {name!r} {where}{hint}")


#: Clause filters of the disclosure register: each clause, its groups (5.1 for 5.1.x) and
#: ``none`` (disclosures naming no clause).
SHARING_CLAUSE_FILTERS: frozenset[str] = frozenset(
    {c.value for c in SharingClause}
    | {c.value.rsplit(".", 1)[0] for c in SharingClause if c.value.count(".") > 1}
    | {"5", "none"})


def check_recipient(store: ViewStore, recipient: str) -> None:
    """Raise ``NotFound`` (with the nearest names) unless ``recipient`` is registered or
    has received data."""
    if store.query("SELECT 1 FROM recipients WHERE recipient = ? UNION ALL "
                   "SELECT 1 FROM disclosures WHERE recipient = ? LIMIT 1",
                   (recipient, recipient)):
        return
    known = [r for (r,) in store.query("SELECT recipient FROM recipients UNION "
                                       "SELECT DISTINCT recipient FROM disclosures")]
    raise unknown_name("recipient", recipient, known)


def check_sharing_clause(clause: str) -> None:
    if clause.lower() not in SHARING_CLAUSE_FILTERS:
        raise unknown_name("sharing clause", clause, SHARING_CLAUSE_FILTERS,
                           "in policy section 5")


def check_names(store: ViewStore, *, recipient: str | None = None, clause: str | None = None,
                stores: Iterable[str] = ()) -> None:
    """``NotFound`` with the nearest names for the first filter naming nothing known."""
    if recipient:
        check_recipient(store, recipient)
    if clause:
        check_sharing_clause(clause)
    check_stores(store, stores)


def check_stores(store: ViewStore, stores: Iterable[str]) -> None:
    """Raise ``NotFound`` for the first store that never held anything (index reads)."""
    for name in stores:
        if store.query("SELECT 1 FROM holdings WHERE store = ? UNION ALL "
                       "SELECT 1 FROM holdings_erased WHERE store = ? LIMIT 1", (name, name)):
            continue
        known = [s for (s,) in store.query("SELECT DISTINCT store FROM holdings UNION "
                                           "SELECT DISTINCT store FROM holdings_erased")]
        raise unknown_name("store", name, known)


# --- disclosure register ----------------------------------------------------------------


def category_mask(categories: Iterable[str]) -> int:
    """The categories a filter matches: each one, those under it and those containing it.

    Raises ``InvalidInput`` naming an unknown category.
    """
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise InvalidInput(f"unknown data category {unknown[0]!r} (see docs/events.md)")
    return related_mask(categories)


def _under(col: str) -> str:
    """``col`` equal to a dotted key or below it: ``5.1`` matches ``5.1.1``.

    Keys below ``k`` sort strictly between ``k.`` and ``k/`` ('/' follows '.' in ASCII).
    """
    return f"({col} = ? OR ({col} > ? AND {col} < ?))"


@dataclass(frozen=True)
class DisclosureFilter:
    """Filters of the register; ``clause`` ``none`` means disclosures naming no clause."""

    recipient: str | None = None
    clause: str | None = None
    category: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    pseudonym: str | None = None

    def where(self, alias: str = "d") -> tuple[str, list[Any]]:
        terms: list[str] = []
        params: list[Any] = []
        if self.recipient:
            terms.append(f"{alias}.recipient = ?")
            params.append(self.recipient)
        if self.clause:
            if self.clause.lower() == "none":
                terms.append(f"{alias}.clause IS NULL")
            else:
                terms.append(_under(f"{alias}.clause"))
                params.extend((self.clause, self.clause + ".", self.clause + "/"))
        if self.category:
            terms.append(f"({alias}.categories & ?) != 0")
            params.append(category_mask([self.category]))
        if self.since:
            terms.append(f"{alias}.time >= ?")
            params.append(to_us(self.since))
        if self.until:
            terms.append(f"{alias}.time <= ?")
            params.append(to_us(self.until))
        if self.pseudonym:
            terms.append(f"{alias}.pseudonym = ?")
            params.append(self.pseudonym)
        return (" WHERE " + " AND ".join(terms)) if terms else "", params

    def as_arguments(self) -> dict[str, str]:
        """The filters as audit arguments (no clear personal values: pseudonym only)."""
        out = {k: v for k, v in (("recipient", self.recipient), ("clause", self.clause),
                                 ("category", self.category), ("pseudonym", self.pseudonym))
               if v}
        if self.since:
            out["from"] = self.since.isoformat()
        if self.until:
            out["until"] = self.until.isoformat()
        return out


#: Largest ``limit`` a query takes: any list longer than this is paged anyway, and a
#: bigger number would not fit the view store's 64-bit integers.
MAX_LIMIT = 10_000_000


def check_limit(limit: int | None, name: str = "limit") -> int | None:
    """``limit`` if it is None or a whole number 0..``MAX_LIMIT``; else ``InvalidInput``."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or not 0 <= limit <= MAX_LIMIT):
        raise InvalidInput(f"{name}: must be a whole number from 0 to {MAX_LIMIT}")
    return limit


def disclosures(
    store: ViewStore,
    recipient: str | None = None,
    clause: str | None = None,
    category: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    pseudonym: str | None = None,
    limit: int | None = None,
    after: tuple[int, int, int] | None = None,
    check: bool = True,
) -> list[dict[str, Any]]:
    """Disclosures matching the filters, oldest first; ``after`` a row's (time in µs,
    partition, offset) for the next page. An unknown recipient or clause is ``NotFound``,
    not an empty register (unless ``check`` is False: names were checked against today's
    views, and these are of another time)."""
    if check:
        check_names(store, recipient=recipient, clause=clause)
    check_limit(limit)
    where, params = DisclosureFilter(recipient, clause, category, since, until,
                                     pseudonym).where()
    if after is not None:
        where += (" AND " if where else " WHERE ") + \
            "(d.time, d.log_partition, d.log_offset) > (?, ?, ?)"
        params.extend(after)
    sql = (
        "SELECT d.event_id, d.pseudonym, d.recipient, r.name, d.recipient_kind, d.time, "
        "d.clause, d.legal_ground, d.consent_id, d.purpose, d.categories, d.agreement_ref, "
        "d.cross_border, d.log_partition, d.log_offset FROM disclosures d "
        "LEFT JOIN recipients r ON r.recipient = d.recipient"
        f"{where} ORDER BY d.time, d.log_partition, d.log_offset"
    )
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [
        {"event_id": event_id, "time": iso(t), "pseudonym": person, "recipient": rcpt,
         "recipient_name": name, "recipient_kind": kind, "clause": clause_,
         "legal_ground": ground, "consent_id": consent, "purpose": purpose,
         "categories": list(categories_of(mask)), "agreement_ref": agreement,
         "cross_border": json.loads(cross_border) if cross_border else None,
         "position": {"partition": partition, "offset": offset}}
        for (event_id, person, rcpt, name, kind, t, clause_, ground, consent, purpose, mask,
             agreement, cross_border, partition, offset) in store.query(sql, params)
    ]


def disclosure_summary(store: ViewStore, filters: DisclosureFilter | None = None,
                       *, check: bool = True) -> list[dict[str, Any]]:
    """Per recipient: disclosures, people, categories, clauses, cross-border, first, last."""
    filters = filters or DisclosureFilter()
    if check:
        check_names(store, recipient=filters.recipient, clause=filters.clause)
    where, params = filters.where()
    rows = store.query(
        "SELECT d.recipient, r.name, r.kind, r.location, count(*), "
        "count(DISTINCT d.pseudonym), min(d.time), max(d.time) FROM disclosures d "
        "LEFT JOIN recipients r ON r.recipient = d.recipient"
        f"{where} GROUP BY d.recipient, r.name, r.kind, r.location ORDER BY d.recipient",
        params,
    )
    detail: dict[str, dict[str, Counter[str]]] = {}
    for rcpt, mask, clause, cross, n in store.query(
        "SELECT d.recipient, d.categories, coalesce(d.clause, 'none'), "
        "coalesce(d.cross_border_to, ''), count(*) FROM disclosures d"
        f"{where} GROUP BY d.recipient, d.categories, d.clause, d.cross_border_to",
        params,
    ):
        per = detail.setdefault(rcpt, {"categories": Counter(), "clauses": Counter(),
                                       "cross_border": Counter()})
        for cat in categories_of(mask):
            per["categories"][cat] += n
        per["clauses"][clause] += n
        if cross:
            per["cross_border"][cross] += n
    out = []
    for rcpt, name, kind, location, events, people, first, last in rows:
        per = detail.get(rcpt, {})
        out.append({
            "recipient": rcpt, "name": name, "kind": kind, "location": location,
            "disclosures": events, "people": people,
            "categories": sorted(per.get("categories", {})),
            "clauses": dict(sorted(per.get("clauses", Counter()).items())),
            "cross_border_to": dict(sorted(per.get("cross_border", Counter()).items())),
            "first": iso(first), "last": iso(last),
        })
    return out


# --- breach scope -----------------------------------------------------------------------


class AffectedPerson(NamedTuple):
    """One person whose data an incident exposed (a named tuple: answers can be large)."""

    pseudonym: str
    categories: tuple[str, ...]
    sensitive_categories: tuple[str, ...]
    stores: tuple[str, ...]
    records: int
    reachable: bool
    unreachable_reason: str | None = None
    notified: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "pseudonym": self.pseudonym, "categories": list(self.categories),
            "sensitive_categories": list(self.sensitive_categories),
            "stores": list(self.stores), "records": self.records,
            "reachable": self.reachable, "unreachable_reason": self.unreachable_reason,
            "notified": self.notified,
        }


@dataclass(frozen=True)
class Scope:
    """The exact set of people an incident affected, and the counts a regulator asks for.

    ``counts`` always cover everyone affected; ``people`` is everyone, or one page of them
    in pseudonym order when a limit was asked for (``page["next"]`` continues it).
    """

    stores: tuple[str, ...]
    window_start: str
    window_end: str
    categories: tuple[str, ...]
    people: People
    counts: dict[str, Any] = field(default_factory=dict)
    incident_id: str | None = None
    page: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return self._as_dict([p.as_dict() for p in self.people])

    def _as_dict(self, people: Any) -> dict[str, Any]:
        return {
            "stores": list(self.stores), "window_start": self.window_start,
            "window_end": self.window_end, "categories": list(self.categories),
            "incident_id": self.incident_id, "counts": self.counts,
            "page": self.page, "people": people,
            **({"links": incident_links(self.incident_id)} if self.incident_id else {}),
        }

    def to_json(self, *, indent: int | None = None,
                separators: tuple[str, str] | None = None,
                extra: dict[str, Any] | None = None) -> str:
        """``json.dumps(self.as_dict() | extra, ensure_ascii=False, indent=indent,
        separators=separators)``, the people written from columns (``People.to_json``)
        rather than one dict per person."""
        people = self.people
        if not isinstance(people, People):
            return json.dumps({**self.as_dict(), **(extra or {})}, ensure_ascii=False,
                              indent=indent, separators=separators)
        slot = "\x00people\x00"  # stands for the list; only ever a value of "people"
        text = json.dumps({**self._as_dict(slot), **(extra or {})}, ensure_ascii=False,
                          indent=indent, separators=separators)
        key_sep = (separators or ((", ", ": ") if indent is None else (",", ": ")))[1]
        key = f'"people"{key_sep}'
        head, tail = text.split(key + json.dumps(slot))  # a string's quotes are escaped
        # one copy of the whole text: the list's pieces joined with what surrounds them
        return "".join([head + key, *people.json_parts(
            indent=indent, separators=separators, level=1 if indent is not None else 0),
            tail])


def incident_links(incident_id: str) -> dict[str, str]:
    """Where a responder goes from an incident's scope: its case file and its notify list
    (people are listed here by pseudonym; the notify list has their contact channel)."""
    return {"case": f"pdl incident status {incident_id}",
            "notify_list": f"pdl incident notify-list {incident_id} --reason TEXT"}


UNREACHABLE_ERASED = "erased: data key destroyed"
UNREACHABLE_NO_CONTACT = "no contact data held any more"
_UNREACHABLE = {1: UNREACHABLE_ERASED, 2: UNREACHABLE_NO_CONTACT}
_new_tuple = tuple.__new__


def scope(
    store: ViewStore,
    stores: Sequence[str],
    window_start: datetime,
    window_end: datetime,
    categories: Sequence[str] | None = None,
    *,
    incident_id: str | None = None,
    limit: int | None = None,
    after: str | None = None,
    check: bool = True,
) -> Scope:
    """Who was affected by an incident in ``stores`` between the window's edges (inclusive).

    A person is affected if any of their data in those stores (of ``categories``, if given:
    those, the ones under them and the ones containing them) was held at some instant of
    the window: collected before or during it and not erased before it. A record is one
    category of one person in one store. Erased people stay affected but cannot be reached.

    The counts are exact over everyone; ``limit`` and ``after`` page the list of people
    (in pseudonym order, those after ``after``); ``page["next"]`` is the ``after`` of the
    next page, None after the last one (and with ``limit=0``, which asks for counts only).
    """
    if window_end < window_start:
        raise ValueError("the window ends before it starts")
    check_limit(limit)
    wanted = category_mask(categories) if categories else None
    hit = hits(store, stores, to_us(window_start), to_us(window_end), wanted)
    everyone = len(hit.ids)
    if not everyone and incident_id is None and check:  # a misspelt store is not "no one"
        check_stores(store, stores)
    # Counted over arrays, one pass each; per category over the distinct masks (people
    # share a few), never over Python objects per person.
    records = sensitive_records = 0
    for _, masks in hit.per_store.values():
        records += int(np.bitwise_count(masks).sum())
        sensitive_records += int(np.bitwise_count(masks & SENSITIVE_MASK).sum())
    per_category: Counter[str] = Counter()
    for union, n in _shapes(hit.union):
        for cat in categories_of(union):
            per_category[cat] += n
    unreachable = int(np.count_nonzero(hit.reach))
    counts: dict[str, Any] = {
        "people": everyone,
        "records": records,
        "reachable": everyone - unreachable,
        "unreachable": unreachable,
        "sensitive_records": sensitive_records,
        "people_with_sensitive_data": int(np.count_nonzero(hit.union & SENSITIVE_MASK)),
        "sensitive_categories": {c: n for c, n in sorted(per_category.items())
                                 if BIT[c] & SENSITIVE_MASK},
        "categories": dict(sorted(per_category.items())),
    }
    notified = _notified(store, incident_id) if incident_id else None
    if notified is not None:
        counts["notified"] = sum(map(hit.has, notified))
        counts["not_notified"] = everyone - counts["notified"]

    chosen = hit.page(after, None if limit is None else limit + 1)
    more = limit is not None and len(chosen) > limit
    if more:
        chosen = chosen[:limit]
    listed = People.of(hit, chosen, notified)
    return Scope(
        stores=tuple(dict.fromkeys(stores)), window_start=window_start.isoformat(),
        window_end=window_end.isoformat(), categories=tuple(categories or ()),
        people=listed, counts=counts, incident_id=incident_id,
        page={"after": after, "limit": limit, "listed": len(listed),
              "next": listed[-1].pseudonym if more and listed else None},
    )


def _shapes(masks: np.ndarray) -> Iterable[tuple[int, int]]:
    """(mask, how many people have it) for each distinct mask."""
    if not len(masks):
        return []
    masks = np.sort(masks)
    starts = np.flatnonzero(np.concatenate(([True], masks[1:] != masks[:-1])))
    sizes = np.diff(np.append(starts, len(masks)))
    return zip(masks[starts].tolist(), sizes.tolist(), strict=True)


class People(Sequence[AffectedPerson]):
    """The people a scope answer lists, as columns: one array per field, no Python object
    per person until one is asked for (``people[i]``, iterating) or the list is written
    as JSON (``to_json``, straight from the columns). Equal to any sequence of the same
    ``AffectedPerson`` rows, e.g. a tuple.
    """

    __slots__ = ("_names", "_notified", "_plain", "_present", "_reaches", "_records",
                 "_rows", "_stores", "_unions")

    def __init__(self, names: np.ndarray, unions: np.ndarray, reaches: np.ndarray,
                 records: np.ndarray, stores: tuple[str, ...], present: np.ndarray | None,
                 notified: np.ndarray | None = None, plain: bool | None = None) -> None:
        """``names``: pseudonyms (object array); ``unions``: every category exposed (masks);
        ``reaches``: 0 reachable, 1 data key destroyed, 2 no contact data; ``records``;
        ``present[k, i]``: person i was held in ``stores[k]`` (None: one store, everyone);
        ``notified``: told of the incident (None: no incident asked about)."""
        self._names, self._unions, self._reaches = names, unions, reaches
        self._records, self._stores, self._present = records, stores, present
        self._notified, self._plain = notified, plain
        self._rows: list[AffectedPerson] | None = None

    @classmethod
    def of(cls, hit: Hits, at: np.ndarray, notified: set[str] | None) -> People:
        """The people at positions ``at`` of ``hit``, in that order."""
        ids = hit.ids[at]
        n = len(ids)
        if hit.name_array is not None:
            names = hit.name_array[ids]
        else:
            names = np.fromiter(map(hit.names.__getitem__, ids.tolist()), object, n)
        unions = hit.union[at]
        stores = tuple(sorted(hit.per_store))
        present: np.ndarray | None = None
        if len(stores) == 1:
            records = np.bitwise_count(unions).astype(np.int64)
        else:
            # where each person was held and their records there: looked up per store
            present = np.zeros((len(stores), n), bool)
            records = np.zeros(n, np.int64)
            for k, name in enumerate(stores):
                store_ids, masks = hit.per_store[name]
                if not len(store_ids):
                    continue
                j = np.minimum(store_ids.searchsorted(ids), len(store_ids) - 1)
                here = present[k] = store_ids[j] == ids
                records += np.where(here, np.bitwise_count(masks[j]), 0)
        told = None
        if notified is not None:
            known = [i for i in map(hit.id_of.get, notified) if i is not None]
            told = np.isin(ids, np.array(known, np.int64))
        return cls(names, unions, hit.reach[at], records, stores, present, told, hit.plain)

    def __len__(self) -> int:
        return len(self._names)

    @overload
    def __getitem__(self, i: int) -> AffectedPerson: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[AffectedPerson, ...]: ...

    def __getitem__(self, i: int | slice) -> AffectedPerson | tuple[AffectedPerson, ...]:
        if isinstance(i, slice):
            return tuple(self.rows()[i])
        if self._rows is not None:
            return self._rows[i]
        if not -len(self) <= i < len(self):
            raise IndexError("person index out of range")
        union, reach = int(self._unions[i]), int(self._reaches[i])
        return AffectedPerson(
            self._names[i], categories_of(union), categories_of(union & SENSITIVE_MASK),
            self._where(i), int(self._records[i]), not reach, _UNREACHABLE.get(reach),
            None if self._notified is None else bool(self._notified[i]))

    def _where(self, i: int) -> tuple[str, ...]:
        if self._present is None:
            return self._stores
        return tuple(s for s, here in zip(self._stores, self._present[:, i].tolist(),
                                          strict=True) if here)

    def __iter__(self) -> Iterator[AffectedPerson]:
        return iter(self.rows())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other,
                                                                       strict=True))

    def __hash__(self) -> int:
        return hash(tuple(self.rows()))

    def __repr__(self) -> str:
        return f"People({len(self)} listed)"

    def pseudonyms(self) -> list[str]:
        """Everyone's pseudonym, in order (no row made)."""
        return self._names.tolist()

    def rows(self) -> list[AffectedPerson]:
        """Every person as an ``AffectedPerson``: made once, from the columns."""
        if self._rows is not None:
            return self._rows
        n = len(self)
        unions = self._unions.tolist()
        reaches = self._reaches.tolist()
        if self._present is None:
            wheres: Sequence[tuple[str, ...]] = [self._stores] * n
        else:
            wheres = [tuple(s for s, here in zip(self._stores, row, strict=True) if here)
                      for row in self._present.T.tolist()]
        # what depends only on a mask is worked out once per mask, and each person is
        # one tuple built from columns (no Python work per field)
        shown = {u: (categories_of(u), categories_of(u & SENSITIVE_MASK)) for u in set(unions)}
        cats = [shown[u] for u in unions]
        told: list[bool] | list[None] = ([None] * n if self._notified is None
                                          else self._notified.tolist())
        self._rows = list(map(_new_tuple, repeat(AffectedPerson), zip(
            self._names.tolist(), map(operator.itemgetter(0), cats),
            map(operator.itemgetter(1), cats), wheres, self._records.tolist(),
            map(operator.not_, reaches), map(_UNREACHABLE.get, reaches), told, strict=True)))
        return self._rows

    def as_dicts(self) -> list[dict[str, Any]]:
        return [p.as_dict() for p in self.rows()]

    def to_json(self, *, indent: int | None = None, separators: tuple[str, str] | None = None,
                level: int = 0) -> str:
        """``json.dumps(self.as_dicts(), ensure_ascii=False, indent=indent,
        separators=separators)``, nested ``level`` deep, written from the columns
        (``json_parts`` joined)."""
        return "".join(self.json_parts(indent=indent, separators=separators, level=level))

    def json_parts(self, *, indent: int | None = None,
                   separators: tuple[str, str] | None = None, level: int = 0) -> list[str]:
        """``to_json``'s text in pieces, to be joined (with more around them, maybe).

        Everything of a row after its name depends on a small code: its category mask,
        its set of stores, its records, reachability and notice. The text of each code
        present is written once; the list is then two pieces a row (the name, the code's
        text) gathered into an object array, no Python work per person.
        """
        n = len(self)
        if not n:
            return ["[]"]
        item_sep, key_sep = separators or ((", ", ": ") if indent is None else (",", ": "))

        def pad(depth: int) -> str:
            return "" if indent is None else "\n" + " " * (indent * (level + depth))

        def dump(value: Any) -> str:  # a field's value, two levels in
            return json.dumps(value, ensure_ascii=False, indent=indent,
                              separators=separators).replace("\n", pad(2))

        def key(name: str) -> str:
            return item_sep + pad(2) + json.dumps(name) + key_sep

        opening = "{" + pad(2) + json.dumps("pseudonym") + key_sep + '"'
        between = pad(1) + "}" + item_sep + pad(1) + opening  # one row's end, the next's start
        masks, by_mask = np.unique(self._unions, return_inverse=True)
        stores = self._stores
        if self._present is None:
            sets: list[list[bool]] = [[True]]
            by_where = np.zeros(n, np.int64)
        elif len(stores) <= 62:  # each person's stores as the bits of one number
            weights = np.int64(1) << np.arange(len(stores), dtype=np.int64)
            found, by_where = np.unique(weights @ self._present.astype(np.int64),
                                        return_inverse=True)
            sets = [[bool(f >> k & 1) for k in range(len(stores))] for f in found.tolist()]
        else:
            rows, by_where = np.unique(self._present.T, axis=0, return_inverse=True)
            sets = rows.tolist()
        by_where = by_where.reshape(-1).astype(np.int64)
        told = (np.zeros(n, np.int64) if self._notified is None
                else 1 + self._notified.astype(np.int64))
        # a row's code: its mask, its stores, its records, reachability and notice
        tails = int(self._records.max()) * 9 + 9
        code = ((by_mask.reshape(-1).astype(np.int64) * len(sets) + by_where) * tails
                + (self._records * 3 + self._reaches) * 3 + told)
        span = int(code.max()) + 1
        table = span <= max(4 * n, 1 << 16)  # a lookup table by code, not a search
        codes = np.flatnonzero(np.bincount(code, minlength=span)) if table else np.unique(code)
        # the text of each mask, set of stores, reachability and notice, written once
        cats = [key("categories") + dump(categories_of(m)) + key("sensitive_categories")
                + dump(categories_of(m & SENSITIVE_MASK)) for m in masks.tolist()]
        wheres = [key("stores") + dump([s for s, here in zip(stores, row, strict=True) if here])
                  + key("records") for row in sets]
        reaches = [key("reachable") + ("false" if r else "true") + key("unreachable_reason")
                   + dump(_UNREACHABLE.get(r)) + key("notified") for r in range(3)]
        notices = [dump(v) + between for v in (None, False, True)]

        def fragment(c: int) -> str:  # everything of a row after its name
            c, tail = divmod(c, tails)
            mask, where = divmod(c, len(sets))
            records, rest = divmod(tail, 9)
            reach, notice = divmod(rest, 3)
            return ('"' + cats[mask] + wheres[where] + str(records) + reaches[reach]
                    + notices[notice])

        made = [fragment(c) for c in codes.tolist()]
        if table:
            fragments = np.empty(span, object)
            fragments[codes] = made
        else:
            fragments = np.array(made, object)
        names = self._names
        plain = self._plain
        if plain is None:
            plain = plain_name("".join(names.tolist()))  # a property of each character
        if not plain:
            names = np.fromiter((json.dumps(p, ensure_ascii=False)[1:-1]
                                 for p in names.tolist()), object, n)
        # two pieces a row: its name, then one fragment made once per code
        parts = np.empty(2 * n + 1, object)
        parts[0] = "[" + pad(1) + opening
        parts[1::2] = names
        parts[2::2] = fragments[code] if table else fragments[codes.searchsorted(code)]
        last = parts[-1]
        parts[-1] = last[: len(last) - len(between)] + pad(1) + "}" + pad(0) + "]"
        return parts.tolist()


def _notified(store: ViewStore, incident_id: str) -> set[str]:
    return {r[0] for r in store.query(
        "SELECT DISTINCT pseudonym FROM incident_notices WHERE incident_id = ?", (incident_id,))}


def incidents(store: ViewStore) -> list[dict[str, Any]]:
    """The incidents recorded in the log, newest first."""
    return [
        {"incident_id": iid, "description": desc, "stores": json.loads(stores),
         "window_start": iso(ws), "window_end": iso(we), "categories": json.loads(cats),
         "opened_at": iso(opened) if opened else None, "reported_at": iso(reported),
         "authority": authority, "closed_at": iso(closed)}
        for iid, desc, stores, ws, we, cats, opened, reported, authority, closed in store.query(
            "SELECT incident_id, description, stores, window_start, window_end, categories, "
            "opened_at, reported_at, authority, closed_at FROM incidents "
            "ORDER BY opened_at DESC, incident_id")
    ]


def incident_scope(store: ViewStore, incident_id: str, *, limit: int | None = None,
                   after: str | None = None) -> Scope:
    """The scope of an incident recorded in the log, with who has been notified."""
    for incident in incidents(store):
        if incident["incident_id"] == incident_id and incident["opened_at"]:
            return scope(
                store, incident["stores"],
                datetime.fromisoformat(incident["window_start"]),
                datetime.fromisoformat(incident["window_end"]),
                incident["categories"] or None, incident_id=incident_id, limit=limit,
                after=after,
            )
    raise NotFound(f"no incident {incident_id!r} has been opened in the log")


