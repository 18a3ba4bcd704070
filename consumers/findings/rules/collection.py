"""What may be collected and kept, and how (sections 1.3, 2.1, 4.1)."""

from __future__ import annotations

from typing import Final

from consumers.findings.registry import rule
from consumers.findings.store import Batch
from consumers.findings.vocabulary import (
    BIOMETRIC_TOUCH,
    CATEGORY_FIELDS,
    DISCLOSURE_GROUNDS,
    ENTERPRISE_TOUCH,
    OUT_OF_SCOPE,
    PASSWORD_TOUCH,
    VERIFICATION,
    VERIFICATION_TOUCH,
    names,
    overlaps,
)
from consumers.projection import Item
from schemas import events as ev
from schemas import taxonomy as tx

#: Every event type that can name categories (1.3 reads them all).
_NAMING_CATEGORIES = (
    ev.DataUsed, ev.DataShared, ev.DataCollected, ev.DataErased, ev.RetentionExtended,
    ev.DataDeletedBySubject, ev.DataLinked,
    ev.DataCorrected, ev.CollectionRefused, ev.ServiceDenied, ev.SubjectClosed,
    ev.ConsentGranted, ev.RecipientRegistered, ev.RequestReceived, ev.IncidentOpened,
)


#: The event types whose data may name a cross-border transfer's categories (1.3 reads them).
_CROSS_BORDER: Final = frozenset({
    model for model in _NAMING_CATEGORIES
    if issubclass(model, ev.DataShared | ev.ConsentGranted) and "cross_border" in model.model_fields
})


#: The event types whose only categories are ``categories`` (1.3 need look nowhere else).
_PLAIN: Final = frozenset(model for model in _NAMING_CATEGORIES
                          if CATEGORY_FIELDS[model] == ("categories",)
                          and model not in _CROSS_BORDER)


@rule("1.3", "customer content recorded in the ledger", reads=_NAMING_CATEGORIES,
      when="type(data) not in _PLAIN or not OUT_OF_SCOPE.isdisjoint(data.categories)")
def customer_content(batch: Batch, item: Item, data: ev.EventData) -> str | None:
    """Customer content (what users store on the cloud) is never recorded."""
    kind = type(data)
    for field in CATEGORY_FIELDS[kind]:
        if not OUT_OF_SCOPE.isdisjoint(getattr(data, field)):
            return f"customer content named in {field} of a {item.event.type} event"
    cross_border = data.cross_border if kind in _CROSS_BORDER else None  # type: ignore[attr-defined]
    if cross_border is not None and not OUT_OF_SCOPE.isdisjoint(cross_border.categories):
        return f"customer content named in a {item.event.type} event"
    return None


def _plain_password(data: ev.DataCollected, *, in_cookie: bool) -> str | None:
    """A password collected unprotected, in a cookie (4.1) or otherwise (2.1.1(1)a)."""
    if (data.protection is tx.Protection.PLAIN
            and (data.mechanism is tx.Mechanism.COOKIE) == in_cookie
            and not PASSWORD_TOUCH.isdisjoint(data.categories)):
        return (f"password ({names(c for c in data.categories if c in PASSWORD_TOUCH)}) "
                f"collected unprotected via {data.mechanism.value}")
    return None


@rule("2.1.1(1)a", "password collected or stored unprotected", reads=(ev.DataCollected,),
      when="data.protection is tx.Protection.PLAIN")
def password_unprotected(batch: Batch, item: Item, data: ev.DataCollected) -> str | None:
    return _plain_password(data, in_cookie=False)


@rule("4.1", "cookie holding an unprotected password", reads=(ev.DataCollected,),
      when="data.protection is tx.Protection.PLAIN")
def password_in_cookie(batch: Batch, item: Item, data: ev.DataCollected) -> str | None:
    return _plain_password(data, in_cookie=True)


@rule("2.1.1(1)c", "service denied after optional data was refused", reads=(ev.ServiceDenied,))
def denied_for_optional_data(batch: Batch, item: Item, data: ev.ServiceDenied) -> str | None:
    person = batch.person(item)
    optional = [*person.refused, *person.optional]
    missing = [m for m in data.missing_categories if any(overlaps(m, o) for o in optional)]
    if missing:
        return f"service denied for want of optional data the person may refuse ({names(missing)})"
    return None


@rule("2.1.1(2)a", "face / biometric data stored", reads=(ev.DataCollected,),
      when="data.retention_days != 0 and not BIOMETRIC_TOUCH.isdisjoint(data.categories)")
def biometric_stored(batch: Batch, item: Item, data: ev.DataCollected) -> str | None:
    if data.retention_days != 0 and not BIOMETRIC_TOUCH.isdisjoint(data.categories):
        kept = ("until closure" if data.retention_days is None
                else f"for {data.retention_days} days")
        return (f"biometric data ({names(c for c in data.categories if c in BIOMETRIC_TOUCH)})"
                f" stored {kept} in {data.store}")
    return None


#: Personal verification data (ID numbers and photos, bank account): 2.1.1(2)b.
_PERSONAL_VERIFICATION: Final = VERIFICATION_TOUCH - ENTERPRISE_TOUCH


@rule("2.1.1(2)b", "real-name verification data used or shared for another purpose",
      reads=(ev.DataUsed, ev.DataShared),
      when="not _PERSONAL_VERIFICATION.isdisjoint(data.categories)")
def verification_data_elsewhere(batch: Batch, item: Item,
                                data: ev.DataUsed | ev.DataShared) -> str | None:
    return used_elsewhere(_PERSONAL_VERIFICATION, data)


@rule("2.1.1(2)c", "enterprise verification data used or shared for another purpose",
      reads=(ev.DataUsed, ev.DataShared), when="not ENTERPRISE_TOUCH.isdisjoint(data.categories)")
def enterprise_data_elsewhere(batch: Batch, item: Item,
                              data: ev.DataUsed | ev.DataShared) -> str | None:
    return used_elsewhere(ENTERPRISE_TOUCH, data)


def used_elsewhere(touch: frozenset[str], data: ev.DataUsed | ev.DataShared) -> str | None:
    """Verification-only data (``touch``: a person's for 2.1.1(2)b, an enterprise's credit
    code and licence scans for 2.1.1(2)c) serves verification, or a legal ground of 5.3."""
    ground = data.legal_ground
    if data.purpose in VERIFICATION or (ground is not None
                                        and ground.value in DISCLOSURE_GROUNDS):
        return None
    touched = [c for c in data.categories if c in touch]
    if not touched:
        return None
    if isinstance(data, ev.DataShared):
        return (f"verification-only data ({names(touched)}) shared with {data.recipient} for "
                f"{data.purpose}")
    return f"verification-only data ({names(touched)}) used for {data.purpose}"


@rule("2.1.2-note", "device / log data linked to an account without authorisation",
      reads=(ev.DataLinked,))
def linked_without_authorisation(batch: Batch, item: Item, data: ev.DataLinked) -> str | None:
    if not data.authorised and not data.de_identified:
        return (f"device or log data ({names(data.categories)}) linked to the account without "
                "authorisation or de-identification")
    return None


@rule("2.1.3", "third-party data unverified or used beyond its authorised scope",
      reads=(ev.DataCollected,), when="data.source.kind is tx.SourceKind.THIRD_PARTY")
def third_party_unverified(batch: Batch, item: Item, data: ev.DataCollected) -> str | None:
    source = data.source
    if source.kind is tx.SourceKind.THIRD_PARTY and source.provenance_verified is False:
        return (f"third-party data ({names(data.categories)}) collected without verifying its "
                "legal source")
    return None


@rule("2.1.3", "third-party data unverified or used beyond its authorised scope",
      reads=(ev.DataUsed, ev.DataShared), when="person.third_party")
def third_party_beyond_scope(batch: Batch, item: Item,
                             data: ev.DataUsed | ev.DataShared) -> str | None:
    """Third-party data may only be used within the scope the person authorised.

    A use is of third-party data if it names a category the third party supplied, or one
    containing it, and the person did not give that category themselves. A narrower
    category (search history, of third-party ``user.behavior``) may well be the person's own.
    """
    person = batch.person(item)
    third_party = person.third_party
    if not third_party:
        return None
    first_party, purpose = person.first_party, data.purpose
    beyond = {
        tp_cat
        for c in data.categories
        for tp_cat, scope in third_party.items()
        if tx.covers(c, tp_cat)
        and not any(tx.covers(f, tp_cat) for f in first_party)
        and not any(tx.covers(s, purpose) for s in scope)
    }
    if beyond:
        what = "shared" if isinstance(data, ev.DataShared) else "used"
        return (f"third-party data ({names(beyond)}) {what} for {purpose}, beyond its "
                "authorised scope")
    return None
