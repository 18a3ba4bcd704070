"""Uses that need consent or a legal ground (sections 2.1.1(4), 3.2, 3.4b, 3.5)."""

from __future__ import annotations

from consumers.findings.registry import rule
from consumers.findings.store import Batch
from consumers.findings.vocabulary import ANALYTICS, PROFILING, PROMOTION, UNDECLARED, USE_GROUNDS
from consumers.projection import Item
from schemas import events as ev


@rule("3.2a", "non-anonymised analytics without consent", reads=(ev.DataUsed,))
def raw_analytics(batch: Batch, item: Item, data: ev.DataUsed) -> str | None:
    purpose = data.purpose
    if (purpose in ANALYTICS and not data.anonymised
            and not batch.person(item).consent_in_force(purpose, item.at)):
        return f"analytics ({purpose}) on non-anonymised data without consent"
    return None


@rule("3.2b", "profiling without consent", reads=(ev.DataUsed,))
def profiling_without_consent(batch: Batch, item: Item, data: ev.DataUsed) -> str | None:
    purpose = data.purpose
    if purpose not in PROFILING:
        return None
    person = batch.person(item)
    if person.consent_in_force(purpose, item.at):
        return None
    why = "consent withdrawn" if person.consent_lapsed(purpose, item.at) else "no consent given"
    return f"profiling ({purpose}) without consent in force: {why}"


@rule("3.4b", "use for an undeclared purpose without consent", reads=(ev.DataUsed,))
def undeclared_purpose(batch: Batch, item: Item, data: ev.DataUsed) -> str | None:
    purpose = data.purpose
    if purpose in UNDECLARED and not batch.person(item).consent_in_force(purpose, item.at):
        return f"use for {purpose}, a purpose the policy does not declare, without consent"
    return None


@rule("3.5", "use claiming a ground that is not one of 3.5.1-3.5.10", reads=(ev.DataUsed,))
def unlisted_use_ground(batch: Batch, item: Item, data: ev.DataUsed) -> str | None:
    ground = data.legal_ground
    if ground is not None and ground.value not in USE_GROUNDS:
        return f"use claims legal ground {ground.value}, not one of 3.5.1-3.5.10"
    return None


@rule("2.1.1(4)", "promotion data collected without prior consent", reads=(ev.DataCollected,))
def promotion_without_consent(batch: Batch, item: Item, data: ev.DataCollected) -> str | None:
    purpose = data.purpose
    if purpose in PROMOTION and not batch.person(item).consent_in_force(purpose, item.at):
        return f"data for {purpose} collected without prior consent"
    return None
