"""Disclosures to third parties (section 5, and payment data in 2.1.1(3)b)."""

from __future__ import annotations

import functools

from consumers.findings.registry import rule
from consumers.findings.store import Batch
from consumers.findings.vocabulary import DISCLOSURE_GROUNDS, PAYMENT_TOUCH, PROCESSOR_ROLES, names
from consumers.projection import Item
from schemas import events as ev
from schemas import taxonomy as tx


def _legal(data: ev.DataShared) -> bool:
    """Section 5.3 allows disclosure on a legal ground whatever the recipient is
    registered for."""
    return data.legal_ground is not None and data.legal_ground.value in DISCLOSURE_GROUNDS


@rule("5.0", "disclosure with neither a clause nor consent", reads=(ev.DataShared,),
      when="data.clause is None and data.consent_id is None")
def neither_clause_nor_consent(batch: Batch, item: Item, data: ev.DataShared) -> str | None:
    if data.clause is None and data.consent_id is None:
        return f"disclosure to {data.recipient} with neither a clause nor a consent"
    return None


@rule("5.3", "disclosure claiming clause 5.3 without a 5.3 legal ground", reads=(ev.DataShared,),
      when="data.clause is not None")
def clause_without_ground(batch: Batch, item: Item, data: ev.DataShared) -> str | None:
    clause = data.clause.value if data.clause is not None else None
    ground = data.legal_ground.value if data.legal_ground is not None else None
    if clause is not None and clause.startswith("5.3.") and ground not in DISCLOSURE_GROUNDS:
        return (f"disclosure claims clause {clause} but its legal ground is "
                f"{ground or 'missing'}, not one of 5.3.1-5.3.7")
    return None


@rule("2.1.1(3)b", "payment data shared with a party that is not a payment / invoice processor",
      reads=(ev.DataShared,), when="not PAYMENT_TOUCH.isdisjoint(data.categories)")
def payment_data_to_others(batch: Batch, item: Item, data: ev.DataShared) -> str | None:
    if _legal(data) or PAYMENT_TOUCH.isdisjoint(data.categories):
        return None
    registered = batch.recipients.get(data.recipient)
    if registered is not None and not PROCESSOR_ROLES.isdisjoint(registered.roles):
        return None
    touched = [c for c in data.categories if c in PAYMENT_TOUCH]
    status = "an unregistered recipient" if registered is None else \
        "a recipient not registered as a payment or invoice processor"
    return f"payment data ({names(touched)}) shared with {data.recipient}, {status}"


@functools.lru_cache(maxsize=4096)  # recipients repeat, and so do the categories sent them
def _allowed(allowed: tuple[str, ...], category: str) -> bool:
    return any(tx.covers(a, category) for a in allowed)


@rule("5.1", "disclosure beyond what the recipient is registered for",
      reads=(ev.DataShared,), when="data.recipient in batch.recipients")
def beyond_registration(batch: Batch, item: Item, data: ev.DataShared) -> str | None:
    registered = batch.recipients.get(data.recipient)
    if _legal(data) or registered is None:
        return None
    reasons = []
    if registered.categories:
        allowed = registered.categories
        beyond = [c for c in data.categories if not _allowed(allowed, c)]
        if beyond:
            reasons.append(f"categories {names(beyond)} beyond those registered")
    if registered.purposes and not any(tx.covers(a, data.purpose) for a in registered.purposes):
        reasons.append(f"purpose {data.purpose} not among those registered")
    if reasons:
        return f"disclosure to {data.recipient}: {'; '.join(reasons)}"
    return None


@rule("5.1", "disclosure to a recipient not bound to confidentiality by an agreement",
      reads=(ev.DataShared,),
      when="data.clause is not None and data.recipient in batch.recipients")
def not_bound(batch: Batch, item: Item, data: ev.DataShared) -> str | None:
    """5.1 (closing paragraph): recipients are held to confidentiality and to no other
    purpose; the agreement that binds them is on the disclosure or the registration."""
    registered = batch.recipients.get(data.recipient)
    clause = data.clause.value if data.clause is not None else ""
    if registered is None or not clause.startswith("5.1"):
        return None
    reasons = []
    if not registered.confidentiality:
        reasons.append("its agreement does not bind it to confidentiality")
    if data.agreement_ref is None and registered.agreement_ref is None:
        reasons.append("no agreement recorded")
    if reasons:
        return f"disclosure to {data.recipient} under {clause}: {'; '.join(reasons)}"
    return None
