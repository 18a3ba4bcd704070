"""The notify list: the reachable people of a snapshot with their contact channel, unsealed.

Only for the privacy officer, with a reason, and audited (``ledger.queried``). People who
cannot be reached — erased (data key destroyed) or with no contact value left — are
counted with the reason and routed to the public announcement (公告); they are never
listed with a contact and never contacted.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from cases.snapshot import people_of
from ledger.application import Ledger
from ledger.persistence import AppendResult
from schemas import decode

#: Contact categories in the order they are preferred.
CONTACT_CATEGORIES = ("user.contact.email", "user.contact.phone_number")
CHANNELS = {"user.contact.email": "email", "user.contact.phone_number": "sms"}
NO_VALUE = "no contact value can be unsealed"
ROUTE = "public announcement (公告)"


def contacts(ledger: Ledger, pseudonyms: set[str]) -> dict[str, tuple[str, str]]:
    """(channel, value) per person: their latest value of the preferred contact category,
    from one pass over the log (only their sealed records are decoded and opened)."""
    latest: dict[str, dict[str, str]] = {}
    for record in ledger.log.read():
        if record.subject not in pseudonyms:
            continue
        event = decode(record.payload)
        if not event.sealed:
            continue
        values = ledger.unseal(event)
        if values:
            mine = latest.setdefault(record.subject, {})
            mine.update({k: v for k, v in values.items() if k in CHANNELS})
    out: dict[str, tuple[str, str]] = {}
    for pseudonym, values in latest.items():
        for category in CONTACT_CATEGORIES:
            if category in values:
                out[pseudonym] = (CHANNELS[category], values[category])
                break
    return out


def notify_list(ledger: Ledger, snapshot: dict[str, Any], reason: str, *,
                actor: str | None = None, role: str | None = None
                ) -> tuple[dict[str, Any], AppendResult]:
    """The notify list of a snapshot, and the audit event recording who took it and why."""
    reachable = [p["pseudonym"] for p in people_of(snapshot, True)]
    found = contacts(ledger, set(reachable))
    listed = [{"pseudonym": p, "channel": found[p][0], "contact": found[p][1]}
              for p in reachable if p in found]
    reasons: Counter[str] = Counter(p["unreachable_reason"] or "unreachable"
                                    for p in people_of(snapshot, False))
    missing = len(reachable) - len(listed)
    if missing:
        reasons[NO_VALUE] += missing
    audit = ledger.audit("incident notify-list", {
        "incident_id": snapshot["incident_id"], "snapshot": snapshot["hash"],
        "listed": str(len(listed))}, actor=actor, role=role,
        people=[p["pseudonym"] for p in listed], reason=reason, clear=True)
    return {
        "incident_id": snapshot["incident_id"],
        "snapshot_hash": snapshot["hash"],
        "reason": reason,
        "counts": {"listed": len(listed), "announcement": sum(reasons.values()),
                   "by_channel": dict(Counter(p["channel"] for p in listed))},
        "announcement": {"route": ROUTE, "people": sum(reasons.values()),
                         "reasons": dict(sorted(reasons.items()))},
        "people": listed,
    }, audit
