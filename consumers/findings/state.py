"""What the findings know about a person, a recipient and a policy version: typed records.

Records (``Subscription``, ``Consent``, ``Closure``, ``Recipient``, ``Policy``) are frozen;
a change is a new record. ``Person`` holds a person's records in maps and lists that a batch
folds events into in log order (a copy per event would cost more than the rules). Each
encodes to the compact JSON the view stores (``findings_subjects.state``): the same
document as before this module existed, so views built earlier still read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from schemas import taxonomy as tx


#: ``json.dumps(doc, sort_keys=True, separators=(",", ":"))``, one encoder for every call.
_SORTED_COMPACT = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Subscription:
    """The person's latest change to one message kind (7.3), and where it sits in the log."""

    subscribed: bool
    time: int
    partition: int
    offset: int

    def key(self) -> tuple[int, int, int]:
        """Order of changes: by time, then log position."""
        return self.time, self.partition, self.offset


@dataclass(frozen=True, slots=True)
class Consent:
    """A consent for a purpose under a policy version; ``destination`` if it came with a
    cross-border notice (6.3d)."""

    purpose: str
    policy_version: str
    granted: int
    withdrawn: int | None = None
    destination: str | None = None

    def in_force(self, at: int) -> bool:
        """Granted by ``at`` and not withdrawn by then."""
        return self.granted <= at and (self.withdrawn is None or self.withdrawn > at)

    def covers(self, purpose: str) -> bool:
        return tx.covers(self.purpose, purpose)


@dataclass(frozen=True, slots=True)
class Closure:
    """The account's closure: when, and which categories a legal hold keeps until when."""

    time: int
    held: tuple[str, ...]
    hold_until: int | None

    def holds(self, category: str) -> bool:
        return any(tx.covers(h, category) for h in self.held)


@dataclass(frozen=True, slots=True)
class Deletion:
    """Data the person deleted themselves (6.3): which categories, and which of them a legal
    hold keeps until when."""

    time: int
    categories: tuple[str, ...]
    held: tuple[str, ...]
    hold_until: int | None
    #: categories the person gave again since: no longer deleted
    again: tuple[str, ...] = ()

    def holds(self, category: str) -> bool:
        return any(tx.covers(h, category) for h in self.held)

    def touches(self, category: str) -> bool:
        """Whether using ``category`` uses data deleted here (and not given again)."""
        return (any(tx.covers(d, category) or tx.covers(category, d) for d in self.categories)
                and not any(tx.covers(a, category) for a in self.again))


@dataclass(slots=True)
class Person:
    """Everything the event-time rules need to know about one person."""

    #: message kind -> the latest change to it
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    #: consent id -> consent
    consents: dict[str, Consent] = field(default_factory=dict)
    closure: Closure | None = None
    #: categories the person refused, and categories collected as optional (2.1.1(1)c)
    refused: list[str] = field(default_factory=list)
    optional: list[str] = field(default_factory=list)
    #: category -> uses the person authorised for it, of data a third party supplied (2.1.3)
    third_party: dict[str, list[str]] = field(default_factory=dict)
    #: categories the person or their device gave (2.1.3)
    first_party: list[str] = field(default_factory=list)
    #: request id -> when the requester's identity was verified (9.2)
    verified: dict[str, int] = field(default_factory=dict)
    #: category -> the purposes it was collected for (3.4: another purpose needs consent)
    purposes: dict[str, list[str]] = field(default_factory=dict)
    #: data the person deleted themselves (6.3), less what they gave again since
    deleted: list[Deletion] = field(default_factory=list)
    #: findings on a collection or a linking not yet remedied (7.4): offending event id ->
    #: [the stores that keep the data (empty: any), its categories, the clauses broken]
    unremedied: dict[str, list[list[str]]] = field(default_factory=dict)
    #: ``first_party`` as a set, made on first need (not stored): a person gives some 15
    #: categories, and each collection asks about each of its own
    first_seen: set[str] | None = field(default=None, compare=False, repr=False)

    # -- questions the rules ask -------------------------------------------------------

    def unsubscribed(self, kind: str, at: int) -> str | None:
        """The kind the person opted out of that covers ``kind`` and is in effect at ``at``.

        Of all changes to ``kind`` or a parent kind made by ``at``, the latest decides: a
        re-subscription to a parent lifts an earlier opt-out of a child, and the other way
        round.
        """
        latest: Subscription | None = None
        latest_kind = ""
        for sub_kind, change in self.subscriptions.items():
            if (change.time <= at and tx.covers(sub_kind, kind)
                    and (latest is None or change.key() > latest.key())):
                latest, latest_kind = change, sub_kind
        if latest is not None and not latest.subscribed:
            return latest_kind
        return None

    def consent_in_force(self, purpose: str, at: int) -> bool:
        return any(c.in_force(at) and c.covers(purpose) for c in self.consents.values())

    def consent_lapsed(self, purpose: str, at: int) -> bool:
        """True if a consent for ``purpose`` was given by ``at`` but withdrawn by then."""
        return any(c.granted <= at and c.withdrawn is not None and c.withdrawn <= at
                   and c.covers(purpose) for c in self.consents.values())

    def closed_at(self, at: int) -> Closure | None:
        """The closure, if the account was closed by ``at``."""
        closure = self.closure
        return closure if closure is not None and closure.time <= at else None

    # -- the stored document -----------------------------------------------------------

    def dumps(self) -> str:
        """The JSON document of ``findings_subjects.state`` (empty parts left out)."""
        doc: dict[str, Any] = {}
        if self.subscriptions:
            doc["subs"] = {k: [s.subscribed, s.time, s.partition, s.offset]
                           for k, s in self.subscriptions.items()}
        if self.consents:
            doc["consents"] = {k: [c.purpose, c.policy_version, c.granted, c.withdrawn,
                                   c.destination] for k, c in self.consents.items()}
        if self.closure is not None:
            c = self.closure
            doc["closed"] = [c.time, list(c.held), c.hold_until]
        if self.refused:
            doc["refused"] = self.refused
        if self.optional:
            doc["optional"] = self.optional
        if self.third_party:
            doc["tp"] = self.third_party
        if self.first_party:
            doc["fp"] = self.first_party
        if self.verified:
            doc["verified"] = self.verified
        if self.purposes:
            doc["purp"] = self.purposes
        if self.unremedied:
            doc["unrem"] = self.unremedied
        if self.deleted:
            doc["del"] = [[d.time, list(d.categories), list(d.held), d.hold_until,
                           list(d.again)] for d in self.deleted]
        return _SORTED_COMPACT.encode(doc)

    @classmethod
    def loads(cls, text: str) -> Person:
        doc = json.loads(text)
        closed = doc.get("closed")
        return cls(
            subscriptions={k: Subscription(*v) for k, v in doc.get("subs", {}).items()},
            consents={k: Consent(*v) for k, v in doc.get("consents", {}).items()},
            closure=Closure(closed[0], tuple(closed[1]), closed[2]) if closed else None,
            refused=doc.get("refused", []),
            optional=doc.get("optional", []),
            third_party=doc.get("tp", {}),
            first_party=doc.get("fp", []),
            verified=doc.get("verified", {}),
            purposes=doc.get("purp", {}),
            unremedied=doc.get("unrem", {}),
            deleted=[Deletion(t, tuple(c), tuple(h), u, tuple(a))
                     for t, c, h, u, a in doc.get("del", [])],
        )


@dataclass(frozen=True, slots=True)
class Recipient:
    """A recipient as registered: its roles, location and what it may receive (5.1)."""

    roles: tuple[str, ...]
    location: str | None
    categories: tuple[str, ...]
    purposes: tuple[str, ...]
    #: the agreement binding it, and whether it binds it to confidentiality (5.1, 6.3)
    agreement_ref: str | None = None
    confidentiality: bool = True
    #: when a passed inspection was last recorded (6.3: on-site checks)
    inspected: int | None = None

    def dumps(self) -> str:
        """The JSON document of ``findings_recipients.state``."""
        doc: dict[str, Any] = {"roles": list(self.roles), "location": self.location,
                               "categories": list(self.categories),
                               "purposes": list(self.purposes)}
        if self.agreement_ref is not None:
            doc["agreement"] = self.agreement_ref
        if not self.confidentiality:
            doc["confidential"] = False
        if self.inspected is not None:
            doc["inspected"] = self.inspected
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def loads(cls, text: str) -> Recipient:
        doc = json.loads(text)
        return cls(tuple(doc["roles"]), doc["location"], tuple(doc["categories"]),
                   tuple(doc["purposes"]), doc.get("agreement"), doc.get("confidential", True),
                   doc.get("inspected"))


@dataclass(frozen=True, slots=True)
class Policy:
    """A policy version: when it takes effect and whether the change is material (8)."""

    effective_at: int
    material: bool
