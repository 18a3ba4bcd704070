"""Keeping data no longer than allowed (or longer only with consent or a legal permission),
and nothing after closure or after the person deleted it (sections 2.1.1(1)d, 6.3a, 6.3b,
7.6)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, NamedTuple

from consumers.findings.folds import extension_problem
from consumers.findings.registry import Clocks, Finding, rule, timed
from consumers.findings.store import (
    CATEGORY,
    STORE,
    Batch,
    expired_holdings,
    extensions,
    holdings_after_closure,
    holdings_after_deletion,
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
      reads=(ev.DataErased,), when="batch.skipped")
def erasure_skipped_a_store(batch: Batch, item: Item, data: ev.DataErased) -> str | None:
    """Erasing a holding must reach every store that keeps it, backups included (the fold
    of the erasure leaves what it skipped in ``batch.skipped``)."""
    skipped = batch.skipped
    if skipped:
        return (f"erasure of {names(c[CATEGORY] for c in skipped)} skipped store(s) "
                f"{names(c[STORE] for c in skipped)}")
    return None


@rule("6.3a", "retention extended without the person's consent or a legal permission",
      reads=(ev.RetentionExtended,))
def extension_without_basis(batch: Batch, item: Item, data: ev.RetentionExtended) -> str | None:
    """Keeping data longer needs consent or a legal permission (6.3); without one the
    extension moves no deadline (the fold keeps only those with a basis)."""
    problem = extension_problem(batch, item, data)
    if problem is None:
        return None
    return (f"retention of {names(data.categories)} extended to {data.until.date().isoformat()} "
            f"{problem}")


@timed("6.3a", "data held past its retention, or an erasure that skipped a store",
       clock="erasure_grace_days",
       reads=(ev.DataCollected, ev.DataErased, ev.RetentionExtended))
def held_past_retention(store: ViewStore, clocks: Clocks) -> Iterator[Finding]:
    """Data kept (in any store or backup) after its retention deadline plus the grace, the
    deadline moved by an extension with a basis recorded before it had passed (6.3)."""
    late = timedelta(days=clocks.erasure_grace_days) // timedelta(microseconds=1)
    extended = extensions(store)
    for event_id, pseudonym, partition, offset, collected, deadline, cells in expired_holdings(
            store, clocks.now - late, late):
        mine = extended.get(pseudonym, ())
        kept: list[tuple[str, str, int]] = []
        for category, kept_in, erased in json.loads(cells):
            until = max([deadline, *(u for t, u, cats, stores in mine
                                      if t <= deadline + late and (not stores or kept_in in stores)
                                      and any(tx.covers(c, category) for c in cats))])
            if until + late < clocks.now and (erased is None or erased > until + late):
                kept.append((category, kept_in, until))
        if not kept:
            continue
        days = (deadline - collected) // DAY_US
        due = max(k[2] for k in kept)
        why = (f"the {days}-day retention deadline, with no extension on consent or a legal "
               "permission" if due == deadline
               else f"its extended retention (to {from_us(due).date().isoformat()})")
        yield Finding("6.3a", pseudonym, event_id, int(partition), int(offset), from_us(due),
                      f"{names(c for c, _, _ in kept)} kept in {names(s for _, s, _ in kept)} "
                      f"past {why}")


@rule("6.3b", "commercial use after account closure", reads=(ev.DataUsed, ev.DataShared),
      when="person.closure is not None and data.purpose in COMMERCIAL")
def commercial_after_closure(batch: Batch, item: Item,
                             data: ev.DataUsed | ev.DataShared) -> str | None:
    if data.purpose in COMMERCIAL and batch.person(item).closed_at(item.at) is not None:
        what = "disclosure" if isinstance(data, ev.DataShared) else "use"
        return f"commercial {what} for {data.purpose} after account closure"
    return None


@rule("7.6", "use or disclosure after account closure beyond the legal hold",
      reads=(ev.DataUsed, ev.DataShared), when="person.closure is not None")
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


def _kept_after(clause: str, rows: list[tuple[Any, ...]], clocks: Clocks, after: str,
                selected: bool) -> Iterator[Finding]:
    """Findings of data kept after a closure or the person's deletion (``rows``: event id,
    pseudonym, partition, offset, cells JSON, since, [categories JSON if ``selected``],
    held JSON, hold until): beyond the legal hold, erased within ``closure_days`` of it;
    within the hold, within the grace of its end (an open-ended hold: never)."""
    allowed = timedelta(days=clocks.closure_days)
    allowed_us = allowed // timedelta(microseconds=1)
    grace_us = timedelta(days=clocks.erasure_grace_days) // timedelta(microseconds=1)
    for row in rows:
        event_id, pseudonym, partition, offset, cells, since = row[:6]
        only: list[str] | None = json.loads(row[6]) if selected else None
        held: list[str] = json.loads(row[-2])
        until: int | None = row[-1]
        late: list[_Late] = []
        for category, kept_in, erased in json.loads(cells):
            if (erased is not None and erased <= since) or (
                    only is not None and not any(tx.covers(c, category) for c in only)):
                continue
            in_hold = any(tx.covers(h, category) for h in held)
            if in_hold and until is None:
                continue
            deadline = until + grace_us if in_hold and until is not None else since + allowed_us
            if deadline < clocks.now and (erased is None or erased > deadline):
                late.append(_Late(category, kept_in, deadline, in_hold))
        if late:
            why = ("after the legal hold ended" if all(x.in_hold for x in late)
                   else f"more than {allowed.days} days after {after}, beyond the legal hold")
            yield Finding(clause, pseudonym, event_id, int(partition), int(offset),
                          from_us(max(x.deadline for x in late)),
                          f"{names(x.category for x in late)} still kept in "
                          f"{names(x.store for x in late)} {why}")


@timed("2.1.1(1)d", "data still held after account closure and legal retention",
       clock=("closure_days", "erasure_grace_days"),
       reads=(ev.DataCollected, ev.DataErased, ev.SubjectClosed))
def kept_after_closure(store: ViewStore, clocks: Clocks) -> Iterator[Finding]:
    """After closure, data beyond the legal hold is erased within ``closure_days``, and the
    held categories within the grace of the hold's end."""
    return _kept_after("2.1.1(1)d", holdings_after_closure(store), clocks, "account closure",
                       selected=False)


@rule("6.3b", "use or disclosure of data the person deleted, beyond the legal hold",
      reads=(ev.DataUsed, ev.DataShared), when="person.deleted")
def after_own_deletion(batch: Batch, item: Item, data: ev.DataUsed | ev.DataShared) -> str | None:
    """Data the person deleted is treated as after closure (6.3: 注销账号或主动删除): only
    its legal hold may be used, for the legal obligation, until the hold ends."""
    at, purpose = item.at, data.purpose
    for deletion in batch.person(item).deleted:
        if deletion.time > at:
            continue
        touched = [c for c in data.categories if deletion.touches(c)]
        if not touched:
            continue
        in_hold = ((deletion.hold_until is None or at <= deletion.hold_until)
                   and all(deletion.holds(c) for c in touched))
        if purpose in LEGAL_OBLIGATION and in_hold:
            continue
        reason = ("commercial" if purpose in COMMERCIAL
                  else "not for the legal obligation" if purpose not in LEGAL_OBLIGATION
                  else "beyond the legal hold")
        what = "disclosure" if isinstance(data, ev.DataShared) else "use"
        return (f"{what} for {purpose} of data the person deleted ({names(touched)}): "
                f"{reason}")
    return None


@timed("6.3a", "data kept after the person deleted it, beyond the legal hold",
       clock=("closure_days", "erasure_grace_days"),
       reads=(ev.DataCollected, ev.DataErased, ev.DataDeletedBySubject))
def kept_after_own_deletion(store: ViewStore, clocks: Clocks) -> Iterator[Finding]:
    """Data the person deleted is erased, source and backups, as after closure: within
    ``closure_days`` beyond the legal hold, the grace after the hold's end within it."""
    return _kept_after("6.3a", holdings_after_deletion(store), clocks, "the person deleted it",
                       selected=True)
