"""Uses that need consent or a legal ground (sections 2.1.1(4), 3.2, 3.4, 3.5)."""

from __future__ import annotations

import functools

from consumers.findings.registry import rule
from consumers.findings.store import Batch
from consumers.findings.vocabulary import (
    ANALYTICS,
    MARKETING,
    PROFILING,
    PROMOTION,
    SECURITY,
    TRACKING,
    UNDECLARED,
    USE_GROUNDS,
    names,
)
from consumers.projection import Item
from schemas import events as ev


@rule("3.2a", "non-anonymised analytics without consent", reads=(ev.DataUsed,),
      when="data.purpose in ANALYTICS and not data.anonymised")
def raw_analytics(batch: Batch, item: Item, data: ev.DataUsed) -> str | None:
    purpose = data.purpose
    if (purpose in ANALYTICS and not data.anonymised
            and not batch.person(item).consent_in_force(purpose, item.at)):
        return f"analytics ({purpose}) on non-anonymised data without consent"
    return None


@rule("3.2b", "profiling without consent", reads=(ev.DataUsed,),
      when="data.purpose in PROFILING")
def profiling_without_consent(batch: Batch, item: Item, data: ev.DataUsed) -> str | None:
    purpose = data.purpose
    if purpose not in PROFILING:
        return None
    person = batch.person(item)
    if person.consent_in_force(purpose, item.at):
        return None
    why = "consent withdrawn" if person.consent_lapsed(purpose, item.at) else "no consent given"
    return f"profiling ({purpose}) without consent in force: {why}"


@rule("3.4b", "use for an undeclared purpose without consent", reads=(ev.DataUsed,),
      when="data.purpose in UNDECLARED")
def undeclared_purpose(batch: Batch, item: Item, data: ev.DataUsed) -> str | None:
    purpose = data.purpose
    if purpose in UNDECLARED and not batch.person(item).consent_in_force(purpose, item.at):
        return f"use for {purpose}, a purpose the policy does not declare, without consent"
    return None


@functools.lru_cache(maxsize=4096)  # a few dozen purposes: pairs repeat on every use
def compatible(collected_for: str, used_for: str) -> bool:
    """Whether data collected for one purpose may serve another without asking again:
    the same family of uses (``essential.*``, ``marketing.*`` ...), security and fraud
    prevention (3.4a: may combine any data), or marketing by e-mail or phone of data
    collected to run the service (the policy declares it, 3.3)."""
    if collected_for.split(".", 1)[0] == used_for.split(".", 1)[0] or used_for in SECURITY:
        return True
    return collected_for.startswith("essential.") and used_for in MARKETING


#: used for -> collected for -> ``compatible``: one dictionary per use, asked once per
#: category of it (cheaper than the cache's key of two); purposes are taxonomy keys, few.
_COMPATIBLE: dict[str, dict[str, bool]] = {}


#: Purposes 3.4c leaves to rules of their own.
_JUDGED_ELSEWHERE = UNDECLARED | PROFILING | ANALYTICS | TRACKING


@rule("3.4c", "data used for another purpose than it was collected for, without consent",
      reads=(ev.DataUsed,), when="data.legal_ground is None and not data.anonymised and "
      "data.purpose not in _JUDGED_ELSEWHERE and person.purposes")
def purpose_changed(batch: Batch, item: Item, data: ev.DataUsed) -> str | None:
    """3.4: "when we use information collected for a specific purpose for another purpose,
    we ask for consent first". Undeclared purposes (3.4b), profiling (3.2b), analytics
    (3.2a) and e-mail tracking (4.2) have rules of their own; a legal ground or anonymised
    data needs no consent."""
    purpose = data.purpose
    if (data.legal_ground is not None or data.anonymised or purpose in UNDECLARED
            or purpose in PROFILING or purpose in ANALYTICS or purpose in TRACKING):
        return None
    person = batch.person(item)
    collected = person.purposes
    compat = _COMPATIBLE.get(purpose)
    if compat is None:
        if len(_COMPATIBLE) > 4096:
            _COMPATIBLE.clear()
        compat = _COMPATIBLE[purpose] = {}
    changed = []
    for c in data.categories:
        known = collected.get(c)
        if not known:
            continue
        for p in known:
            ok = compat.get(p)
            if ok is None:
                ok = compat[p] = compatible(p, purpose)
            if ok:
                break
        else:
            changed.append(c)
    if not changed or person.consent_in_force(purpose, item.at):
        return None
    were = names(p for c in changed for p in collected[c])
    return (f"{names(changed)} collected for {were} used for {purpose} without consent "
            "to the new purpose")


@rule("3.2c", "service denied after the person withdrew consent to profiling",
      reads=(ev.ServiceDenied,))
def denied_after_withdrawal(batch: Batch, item: Item, data: ev.ServiceDenied) -> str | None:
    """3.2: withdrawing consent to profiling "does not affect the basic core services". A
    denial explained by data the service needs (``missing_categories``: real-name data the
    law requires, 2.1.1(2)) is not one; 2.1.1(1)c judges refused optional data."""
    person = batch.person(item)
    if not data.missing_categories and any(person.consent_lapsed(p, item.at)
                                           for p in PROFILING):
        return (f"service {data.service} denied ({data.reason}) after the person withdrew "
                "consent to profiling")
    return None


@rule("3.5", "use claiming a ground that is not one of 3.5.1-3.5.10", reads=(ev.DataUsed,),
      when="data.legal_ground is not None")
def unlisted_use_ground(batch: Batch, item: Item, data: ev.DataUsed) -> str | None:
    ground = data.legal_ground
    if ground is not None and ground.value not in USE_GROUNDS:
        return f"use claims legal ground {ground.value}, not one of 3.5.1-3.5.10"
    return None


@rule("2.1.1(4)", "promotion data collected without prior consent", reads=(ev.DataCollected,),
      when="data.purpose in PROMOTION")
def promotion_without_consent(batch: Batch, item: Item, data: ev.DataCollected) -> str | None:
    purpose = data.purpose
    if purpose in PROMOTION and not batch.person(item).consent_in_force(purpose, item.at):
        return f"data for {purpose} collected without prior consent"
    return None
