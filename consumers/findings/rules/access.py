"""Access to personal information: restricted and audited (6.2.1b).

Every read of the ledger is a ``ledger.queried`` event naming who read, whose data and
why. Reading values in clear (an export, an unsealed log) is the read that most needs a
reason: one recorded without a reason or ticket is a finding.
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
