"""Access to personal information: restricted and audited (6.2.1b).

Every read of the ledger is a ``ledger.queried`` event naming who read, whose data and
why. Reading values in clear (an export, an unsealed log) is the read that most needs a
reason: one recorded without a reason or ticket is a finding. And only the staff on the
access list (``staff.access_granted`` / ``staff.access_revoked``) may read at all.
"""

from __future__ import annotations

from consumers.findings.registry import rule
from consumers.findings.store import Batch
from consumers.projection import Item
from schemas import events as ev


@rule("6.2.1b", "personal values read in clear without a reason",
      reads=(ev.LedgerQueried,))
def clear_read_without_reason(batch: Batch, item: Item, data: ev.LedgerQueried) -> str | None:
    if not data.clear or data.reason:
        return None
    who = f"the {data.role} role" if data.role else "a command-line user"
    return (f"{data.query} by {who} opened the values of {len(data.people)} person(s) in "
            "clear with no reason or ticket recorded")


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
