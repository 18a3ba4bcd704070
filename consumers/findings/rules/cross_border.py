"""Where data is kept and sent abroad (sections 6.3c, 6.3d, 6.3e)."""

from __future__ import annotations

from consumers.findings.registry import rule
from consumers.findings.state import Person
from consumers.findings.store import Batch
from consumers.projection import Item
from schemas import events as ev
from schemas import taxonomy as tx


@rule("6.3c", "data stored outside China without a cross-border record",
      reads=(ev.DataCollected,), when="data.store_location != tx.DOMESTIC_LOCATION")
def stored_abroad(batch: Batch, item: Item, data: ev.DataCollected) -> str | None:
    if data.store_location != tx.DOMESTIC_LOCATION and data.cross_border_ref is None:
        return (f"stored in {data.store} in {data.store_location}, outside China, without a "
                "cross-border record")
    return None


def _transfer_consented(person: Person, data: ev.DataShared, destination: str, at: int) -> bool:
    """Whether a consent in force covers this transfer: one given with a cross-border notice
    for ``destination``, or the consent the disclosure cites if it covers its purpose."""
    return any(
        c.in_force(at)
        and (c.destination == destination
             or (consent_id == data.consent_id and c.covers(data.purpose)))
        for consent_id, c in person.consents.items()
    )


@rule("6.3d", "cross-border transfer without consent or without the required notice",
      reads=(ev.DataShared,),
      when="data.cross_border is not None or data.recipient in batch.recipients")
def transfer_abroad(batch: Batch, item: Item, data: ev.DataShared) -> str | None:
    registered = batch.recipients.get(data.recipient)
    destination = (data.cross_border.destination_country if data.cross_border is not None
                   else registered.location if registered is not None else None)
    if data.cross_border is None and (destination is None
                                      or destination == tx.DOMESTIC_LOCATION):
        return None
    assert destination is not None
    problems = []
    if not _transfer_consented(batch.person(item), data, destination, item.at):
        problems.append("no consent in force for it")
    untold = (data.cross_border.missing() if data.cross_border is not None
              else list(ev.CrossBorder.REQUIRED))
    if untold:
        problems.append(f"notice fields missing: {', '.join(untold)}")
    if problems:
        return (f"cross-border disclosure to {destination} via {data.recipient}: "
                f"{'; '.join(problems)}")
    return None


@rule("6.3e", "overseas recipient without an agreement or a recorded inspection",
      reads=(ev.DataShared,),
      when="data.cross_border is not None or data.recipient in batch.recipients")
def overseas_unchecked(batch: Batch, item: Item, data: ev.DataShared) -> str | None:
    """6.3: "through agreements and on-site checks we require overseas recipients to keep
    the information confidential": a transfer abroad names an agreement, and the recipient
    passed an inspection (``recipient.inspected``) before it."""
    registered = batch.recipients.get(data.recipient)
    destination = (data.cross_border.destination_country if data.cross_border is not None
                   else registered.location if registered is not None else None)
    if destination is None or destination == tx.DOMESTIC_LOCATION:
        return None
    problems = []
    if data.agreement_ref is None and (registered is None or registered.agreement_ref is None):
        problems.append("no agreement recorded")
    if registered is None or registered.inspected is None or registered.inspected > item.at:
        problems.append("no inspection of the recipient recorded")
    if problems:
        return f"transfer to {data.recipient} in {destination}: {'; '.join(problems)}"
    return None
