"""Keeping data no longer than allowed, and nothing after closure (sections 2.1.1(1)d, 6.3a,
6.3b, 7.6)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import NamedTuple

from consumers.findings.registry import Clocks, Finding, rule, timed
from consumers.findings.store import (
    CATEGORY,
    STORE,
    Batch,
    expired_holdings,
    holdings_after_closure,
)
from consumers.findings.vocabulary import COMMERCIAL, DAY_US, LEGAL_OBLIGATION, names
from consumers.projection import Item
from consumers.rows import from_us
from consumers.views import ViewStore
from schemas import events as ev
from schemas import taxonomy as tx


class _Late(NamedTuple):
    """A cell of a closed account's holding kept past its deadline."""

    category: str
    store: str
    deadline: int
    in_hold: bool


@rule("6.3a", "data held past its retention, or an erasure that skipped a store",
      reads=(ev.DataErased,))
def erasure_skipped_a_store(batch: Batch, item: Item, data: ev.DataErased) -> str | None:
    """Erasing a holding must reach every store that keeps it, backups included (the fold
    of the erasure leaves what it skipped in ``batch.skipped``)."""
    skipped = batch.skipped
    if skipped:
        return (f"erasure of {names(c[CATEGORY] for c in skipped)} skipped store(s) "
                f"{names(c[STORE] for c in skipped)}")
    return None


@timed("6.3a", "data held past its retention, or an erasure that skipped a store",
       clock="erasure_grace_days", reads=(ev.DataCollected, ev.DataErased))
def held_past_retention(store: ViewStore, clocks: Clocks) -> Iterator[Finding]:
    """Data kept (in any store or backup) after its retention deadline plus the grace."""
    late = timedelta(days=clocks.erasure_grace_days) // timedelta(microseconds=1)
    for event_id, pseudonym, partition, offset, collected, deadline, cells in expired_holdings(
            store, clocks.now - late, late):
        kept = [(category, kept_in) for category, kept_in, erased in json.loads(cells)
                if erased is None or erased > deadline + late]
        days = (deadline - collected) // DAY_US
        yield Finding("6.3a", pseudonym, event_id, int(partition), int(offset), from_us(deadline),
                      f"{names(c for c, _ in kept)} kept in {names(s for _, s in kept)} past "
                      f"the {days}-day retention deadline")


@rule("6.3b", "commercial use after account closure", reads=(ev.DataUsed, ev.DataShared))
def commercial_after_closure(batch: Batch, item: Item,
                             data: ev.DataUsed | ev.DataShared) -> str | None:
    if data.purpose in COMMERCIAL and batch.person(item).closed_at(item.at) is not None:
        what = "disclosure" if isinstance(data, ev.DataShared) else "use"
        return f"commercial {what} for {data.purpose} after account closure"
    return None


@rule("7.6", "use or disclosure after account closure beyond the legal hold",
      reads=(ev.DataUsed, ev.DataShared))
def after_closure(batch: Batch, item: Item, data: ev.DataUsed | ev.DataShared) -> str | None:
    """After closure only the legal hold may be used, for the legal obligation."""
    closure = batch.person(item).closed_at(item.at)
    if closure is None:
        return None
    purpose, categories, at = data.purpose, data.categories, item.at
    in_hold = ((closure.hold_until is None or at <= closure.hold_until)
               and all(closure.holds(c) for c in categories))
    if purpose in LEGAL_OBLIGATION and in_hold:
        return None
    beyond = [c for c in categories if not closure.holds(c)]
    reason = (f"categories beyond the legal hold ({names(beyond)})" if beyond
              else "not for the legal obligation" if purpose not in LEGAL_OBLIGATION
              else "after the legal hold ended")
    what = "disclosure" if isinstance(data, ev.DataShared) else "use"
    return f"{what} for {purpose} after account closure: {reason}"


@timed("2.1.1(1)d", "data still held after account closure and legal retention",
       clock=("closure_days", "erasure_grace_days"),
       reads=(ev.DataCollected, ev.DataErased, ev.SubjectClosed))
def kept_after_closure(store: ViewStore, clocks: Clocks) -> Iterator[Finding]:
    """After closure, data beyond the legal hold is erased within ``closure_days``, and the
    held categories within the grace of the hold's end."""
    allowed = timedelta(days=clocks.closure_days)
    allowed_us = allowed // timedelta(microseconds=1)
    grace_us = timedelta(days=clocks.erasure_grace_days) // timedelta(microseconds=1)
    now = clocks.now
    for (event_id, pseudonym, partition, offset, cells, closed, held_json,
         until) in holdings_after_closure(store):
        held: list[str] = json.loads(held_json)
        late: list[_Late] = []
        for category, kept_in, erased in json.loads(cells):
            if erased is not None and erased <= closed:
                continue
            in_hold = any(tx.covers(h, category) for h in held)
            if in_hold and until is None:
                continue
            deadline = until + grace_us if in_hold else closed + allowed_us
            if deadline < now and (erased is None or erased > deadline):
                late.append(_Late(category, kept_in, deadline, in_hold))
        if late:
            why = ("after the legal hold ended" if all(x.in_hold for x in late)
                   else f"more than {allowed.days} days after account closure, beyond the legal "
                        "hold")
            yield Finding("2.1.1(1)d", pseudonym, event_id, int(partition), int(offset),
                          from_us(max(x.deadline for x in late)),
                          f"{names(x.category for x in late)} still kept in "
                          f"{names(x.store for x in late)} {why}")
