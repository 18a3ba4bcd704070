"""Who may read personal data (section 6.2.1: access restricted to authorised staff)."""

from __future__ import annotations

from consumers.findings.registry import rule
from consumers.findings.store import Batch
from consumers.projection import Item
from schemas import events as ev


@rule("6.2.1b", "the ledger read by someone not on the staff access list",
      reads=(ev.LedgerQueried,))
def reader_not_authorised(batch: Batch, item: Item, data: ev.LedgerQueried) -> str | None:
    """6.2.1: "we strictly limit the people who may access the information". Every query of
    the ledger reads personal data (an audit record, ``ledger.queried``); its actor must be
    on the staff list (``staff.access_granted``, not since revoked) at the time. A ledger
    that records no staff list has nothing to check against: no finding."""
    if not batch.staff:
        return None
    on_list = batch.staff.get(data.actor)
    at = item.at
    if on_list is not None and on_list[0] <= at and (on_list[1] is None or on_list[1] > at):
        return None
    why = "never on it" if on_list is None else (
        "taken off it before" if on_list[1] is not None and on_list[1] <= at
        else "put on it later")
    return f"{data.actor} ran {data.query} while not on the staff access list ({why})"
