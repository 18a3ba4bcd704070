"""How each event changes what the findings know: the state the rules read.

A fold runs before the rules of its event (``FindingsProjection.apply``): a rule sees the
state as of its own event included. None of the rules reads a part of the state that its
own event's fold changes, except 6.3a, which reads the cells an erasure left (``Batch.skipped``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

from consumers.findings.state import (
    Closure,
    Consent,
    Deletion,
    Policy,
    Recipient,
    Subscription,
)
from consumers.findings.store import CATEGORY, ERASED, STORE, Batch, Cell, Holding, shape
from consumers.findings.vocabulary import DAY_US, covered_by
from consumers.projection import Item
from consumers.rows import to_us
from schemas import events as ev
from schemas import taxonomy as tx

Fold = Callable[[Batch, Item, Any], None]


def collected(batch: Batch, item: Item, data: ev.DataCollected) -> None:
    """Who supplied which categories (2.1.3), which were optional (2.1.1(1)c), and the
    holding kept (6.3a, 2.1.1(1)d, 6.2.1a)."""
    person = batch.person(item)
    cats = data.categories
    changed = False
    if data.source.kind is tx.SourceKind.THIRD_PARTY:
        known = person.third_party
        for c in cats:
            scope = known.setdefault(c, [])
            for use in data.source.authorised_scope:
                if use not in scope:
                    scope.append(use)
        changed = True
    else:
        first_party, seen = person.first_party, person.first_seen
        if seen is None:
            seen = person.first_seen = set(first_party)
        for c in cats:
            if c not in seen:
                seen.add(c)
                first_party.append(c)
                changed = True
    purposes = person.purposes  # 3.4: what each category was collected for
    purpose = data.purpose
    for c in cats:
        known = purposes.get(c)
        if known is None:
            purposes[c] = [purpose]
            changed = True
        elif purpose not in known:
            known.append(purpose)
            changed = True
    if person.deleted:  # given again: no longer data the person deleted
        again = [replace(d, again=tuple(dict.fromkeys((*d.again, *cats))))
                 for d in person.deleted]
        person.deleted = [d for d in again
                          if not all(any(tx.covers(a, c) for a in d.again) for c in d.categories)]
        changed = True
    if data.optional:
        optional = person.optional
        for c in cats:
            if c not in optional:
                optional.append(c)
                changed = True
    if changed:
        batch.changed(item)
    if data.retention_days != 0:
        at = item.at
        deadline = at + data.retention_days * DAY_US if data.retention_days is not None else None
        record = item.record
        pseudonym = item.event.subject or ""
        cells, text, kept_in, kinds = shape(tuple(cats), (data.store, *data.backups))
        holding = Holding(record.event_id, pseudonym, record.partition, record.offset, at,
                          deadline, len(cells), text, stores=kept_in, kinds=kinds, shape=cells,
                          new=True)
        batch.new_holdings.append(holding)
        held = batch.holdings.get(pseudonym)
        if held is not None:  # the person erases something later in this batch
            held.append(holding)


def erased(batch: Batch, item: Item, data: ev.DataErased) -> None:
    """Mark the erased cells of the person's holdings; keep in ``batch.skipped`` the cells of
    the same categories left in a store the erasure did not name (6.3a).

    An erasure that names none of a holding's stores is about something else (the ledger's
    own key vault, say) and touches nothing.
    """
    at = item.at
    stores = frozenset(data.stores)
    needles: list[str] | None = None
    covered = covered_by(tuple(data.categories))
    skipped: list[Cell] = []
    for h in batch.holdings.get(item.event.subject or "", []):
        if h.stores is None:
            if needles is None:
                needles = [json.dumps(store) for store in stores]
            text = h.text
            for needle in needles:
                if needle in text:
                    break
            else:
                continue  # as read from the view, and naming none of these stores
            h.parsed()
        if h.stores is None or stores.isdisjoint(h.stores) or covered.isdisjoint(h.kinds):
            continue  # none of these stores, or none of these categories
        cells = h.parsed()
        touched = {cell[CATEGORY] for cell in cells if cell[ERASED] is None
                   and cell[STORE] in stores and cell[CATEGORY] in covered}
        if touched:
            for cell in cells:
                if cell[ERASED] is None and cell[STORE] in stores and cell[CATEGORY] in covered:
                    cell[ERASED] = at
            h.changed = True
            # what is left of the categories erased here: in a store the erasure did not name
            skipped.extend(cell for cell in cells
                           if cell[ERASED] is None and cell[CATEGORY] in touched)
    batch.skipped = skipped
    if batch.person(item).unremedied:  # 7.4: unlawfully collected data erased
        batch.remedied(item, stores, covered, everywhere=True)


def extension_problem(batch: Batch, item: Item, data: ev.RetentionExtended) -> str | None:
    """Why a retention extension has no basis (6.3: the person's consent in force, or a
    legal permission named), or None."""
    if data.basis == "law":
        return None if data.legal_ref else "on a legal basis that names no law or order"
    if data.consent_id is None:
        return "on consent, naming no consent"
    consent = batch.person(item).consents.get(data.consent_id)
    if consent is None or not consent.in_force(item.at):
        return "on a consent the person did not give or had withdrawn"
    return None


def retention_extended(batch: Batch, item: Item, data: ev.RetentionExtended) -> None:
    """An extension with a basis moves the deadline of what it names (``held_past_retention``)."""
    if extension_problem(batch, item, data) is None:
        batch.extensions.append((item.record.event_id, item.event.subject or "", item.at,
                                 to_us(data.until), json.dumps(sorted(set(data.categories))),
                                 json.dumps(sorted(set(data.stores)))))


def deleted_by_subject(batch: Batch, item: Item, data: ev.DataDeletedBySubject) -> None:
    """Data the person deleted: the duties of a closure, for those categories (6.3)."""
    until = to_us(data.legal_hold_until) if data.legal_hold_until is not None else None
    cats = tuple(dict.fromkeys(data.categories))
    held = tuple(dict.fromkeys(data.legal_hold_categories))
    batch.person(item).deleted.append(Deletion(item.at, cats, held, until))
    batch.changed(item)
    batch.deletions.append((item.record.event_id, item.event.subject or "", item.at,
                            json.dumps(list(cats)), json.dumps(list(held)), until))


def corrected(batch: Batch, item: Item, data: ev.DataCorrected) -> None:
    """A correction remedies a finding on the data it corrects (7.4: 更正或删除)."""
    if batch.person(item).unremedied:
        batch.remedied(item, frozenset((data.store,)), covered_by(tuple(data.categories)),
                       everywhere=False)


def refused(batch: Batch, item: Item, data: ev.CollectionRefused) -> None:
    refused = batch.person(item).refused
    for c in data.categories:
        if c not in refused:
            refused.append(c)
    batch.changed(item)


def closed(batch: Batch, item: Item, data: ev.SubjectClosed) -> None:
    until = to_us(data.legal_hold_until) if data.legal_hold_until is not None else None
    held = tuple(dict.fromkeys(data.legal_hold_categories))
    batch.person(item).closure = Closure(item.at, held, until)
    batch.changed(item)
    batch.closures.append((item.event.subject or "", item.at, json.dumps(list(held)), until))


def consent_granted(batch: Batch, item: Item, data: ev.ConsentGranted) -> None:
    notice = data.cross_border
    batch.person(item).consents[data.consent_id] = Consent(
        data.purpose, data.policy_version, item.at, None,
        notice.destination_country if notice is not None else None)
    batch.changed(item)


def consent_withdrawn(batch: Batch, item: Item, data: ev.ConsentWithdrawn) -> None:
    consents = batch.person(item).consents
    # An unknown id still withdraws: the person meant every consent for that purpose.
    targets = ([data.consent_id] if data.consent_id in consents
               else [k for k, c in consents.items() if tx.covers(data.purpose, c.purpose)])
    for k in targets:
        if consents[k].withdrawn is None:
            consents[k] = Consent(consents[k].purpose, consents[k].policy_version,
                                  consents[k].granted, item.at, consents[k].destination)
    batch.changed(item)


def subscription(batch: Batch, item: Item, data: ev.SubscriptionChanged) -> None:
    batch.person(item).subscriptions[data.kind] = Subscription(
        data.subscribed, item.at, item.record.partition, item.record.offset)
    batch.changed(item)


def recipient(batch: Batch, item: Item, data: ev.RecipientRegistered) -> None:
    prior = batch.recipients.get(data.recipient)
    state = Recipient(tuple(r.value for r in data.roles), data.location,
                      tuple(data.allowed_categories), tuple(data.allowed_purposes),
                      data.agreement_ref, data.confidentiality,
                      prior.inspected if prior is not None else None)
    batch.recipients[data.recipient] = state
    batch.recipient_rows[data.recipient] = state.dumps()


def inspected(batch: Batch, item: Item, data: ev.RecipientInspected) -> None:
    """A passed check of a registered recipient (6.3); a failed one changes nothing."""
    prior = batch.recipients.get(data.recipient)
    if not data.passed or prior is None:
        return
    if prior.inspected is None or prior.inspected < item.at:
        state = replace(prior, inspected=item.at)
        batch.recipients[data.recipient] = state
        batch.recipient_rows[data.recipient] = state.dumps()


def staff_granted(batch: Batch, item: Item, data: ev.StaffAccessGranted) -> None:
    batch.staff[data.actor] = batch.staff_rows[data.actor] = (item.at, None)


def staff_revoked(batch: Batch, item: Item, data: ev.StaffAccessRevoked) -> None:
    granted = batch.staff.get(data.actor)
    if granted is not None:
        batch.staff[data.actor] = batch.staff_rows[data.actor] = (granted[0], item.at)


def policy(batch: Batch, item: Item, data: ev.PolicyPublished) -> None:
    effective = to_us(data.effective_at)
    batch.policies[data.policy_version] = Policy(effective, data.material)
    batch.policy_rows.append((data.policy_version, effective, int(data.material)))


def request_received(batch: Batch, item: Item, data: ev.RequestReceived) -> None:
    record = item.record
    batch.requests_received.append(
        (item.event.subject, data.request_id, record.event_id, record.partition, record.offset,
         data.kind.value, item.at, to_us(data.due) if data.due is not None else None))


def identity_verified(batch: Batch, item: Item, data: ev.RequestIdentityVerified) -> None:
    batch.person(item).verified.setdefault(data.request_id, item.at)
    batch.changed(item)


def request_answered(batch: Batch, item: Item,
                     data: ev.RequestFulfilled | ev.RequestRefused) -> None:
    batch.requests_answered.append((item.event.subject or "", data.request_id, item.at))


def incident_opened(batch: Batch, item: Item, data: ev.IncidentOpened) -> None:
    record = item.record
    batch.incidents_opened.append(
        (data.incident_id, record.event_id, record.partition, record.offset,
         item.at, json.dumps(sorted(set(data.stores))),
         json.dumps(sorted(set(data.categories))), to_us(data.window_start),
         to_us(data.window_end)))


def incident_reported(batch: Batch, item: Item, data: ev.IncidentReported) -> None:
    batch.incidents_reported.append((data.incident_id, item.at))


def incident_closed(batch: Batch, item: Item, data: ev.IncidentClosed) -> None:
    batch.incidents_closed.append((data.incident_id, item.at))


#: Event data model of an incident's response step (6.2.1) -> the step's name.
STEPS: Final[dict[type[ev.EventData], str]] = {
    ev.IncidentContingencyStarted: "contingency",
    ev.IncidentContained: "contained",
    ev.IncidentAdviceGiven: "advice",
}


def incident_step(batch: Batch, item: Item,
                  data: ev.IncidentContingencyStarted | ev.IncidentContained
                  | ev.IncidentAdviceGiven) -> None:
    batch.incident_steps.append((data.incident_id, STEPS[type(data)], item.at))


def notified(batch: Batch, item: Item, data: ev.IncidentSubjectNotified) -> None:
    batch.notices.append((data.incident_id, item.event.subject or ""))


#: Event data model -> its fold.
FOLDS: Final[dict[type[ev.EventData], Fold]] = {
    ev.DataCollected: collected,
    ev.DataErased: erased,
    ev.DataCorrected: corrected,
    ev.RetentionExtended: retention_extended,
    ev.DataDeletedBySubject: deleted_by_subject,
    ev.CollectionRefused: refused,
    ev.SubjectClosed: closed,
    ev.ConsentGranted: consent_granted,
    ev.ConsentWithdrawn: consent_withdrawn,
    ev.SubscriptionChanged: subscription,
    ev.RecipientRegistered: recipient,
    ev.RecipientInspected: inspected,
    ev.StaffAccessGranted: staff_granted,
    ev.StaffAccessRevoked: staff_revoked,
    ev.PolicyPublished: policy,
    ev.RequestReceived: request_received,
    ev.RequestIdentityVerified: identity_verified,
    ev.RequestFulfilled: request_answered,
    ev.RequestRefused: request_answered,
    ev.IncidentOpened: incident_opened,
    ev.IncidentReported: incident_reported,
    ev.IncidentClosed: incident_closed,
    ev.IncidentSubjectNotified: notified,
    **dict.fromkeys(STEPS, incident_step),
}
