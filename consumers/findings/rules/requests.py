"""Rights requests: verified, and answered in time (sections 7.1, 9.2)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from consumers.findings import store as sql
from consumers.findings.registry import Clocks, Finding, rule, timed
from consumers.findings.store import Batch
from consumers.findings.vocabulary import REAL_NAME, names
from consumers.projection import Item
from consumers.rows import from_us, to_us
from consumers.views import ViewStore
from schemas import events as ev


@rule("9.2", "request fulfilled without verifying the requester's identity",
      reads=(ev.RequestFulfilled,))
def fulfilled_unverified(batch: Batch, item: Item, data: ev.RequestFulfilled) -> str | None:
    verified = batch.person(item).verified.get(data.request_id)
    if verified is None or verified > item.at:
        return "request fulfilled without verifying the requester's identity"
    return None


@timed("7.1", "rights request not answered by its due date", clock="deadline_days",
       reads=(ev.RequestReceived, ev.RequestFulfilled, ev.RequestRefused))
def request_overdue(store: ViewStore, clocks: Clocks) -> Iterator[Finding]:
    """A rights request answered (fulfilled or refused) only after its due date, or never;
    due ``deadline_days`` after receipt unless the request names a date."""
    deadline, now = timedelta(days=clocks.deadline_days), clocks.now
    for pseudonym, event_id, partition, offset, kind, received, due, answered in sql.requests(
            store):
        if due is None:
            due = to_us(from_us(received) + deadline)
        if due < now and (answered is None or answered > due):
            state = "answered late" if answered is not None and answered <= now else "still open"
            yield Finding("7.1", pseudonym, event_id, int(partition), int(offset), from_us(due),
                          f"{kind} request not fulfilled or refused by its due date ({state})")


@rule("7.1", "real-name data changed without verifying the person's identity",
      reads=(ev.DataCorrected,))
def real_name_changed_unverified(batch: Batch, item: Item, data: ev.DataCorrected
                                 ) -> str | None:
    """7.1: "changing real-name verification data requires identity verification": the
    correction answers a request whose requester's identity was verified before it."""
    touched = [c for c in data.categories if c in REAL_NAME]
    if not touched:
        return None
    verified = batch.person(item).verified.get(data.request_id or "")
    if verified is None or verified > item.at:
        return f"real-name data ({names(touched)}) corrected without identity verification"
    return None
