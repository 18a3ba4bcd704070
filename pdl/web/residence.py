"""Country of residence per person, for the incident page's per-country bars.

No view keeps a person's residence: the case file's snapshot reads it from the log's
``subject.registered`` events (``cases.snapshot.residences``, a full scan). The page keeps
the same answer (each person's latest registration naming a country) in memory and reads
only the records appended since it last looked, so a scope after the first costs no scan.
"""

from __future__ import annotations

import threading

from ledger.persistence import EventLog, Position
from schemas import decode
from schemas.events import SubjectRegistered

UNKNOWN = "unknown"  # as cases.snapshot counts a person with no residence recorded


class Residences:
    """Pseudonym -> country of residence, read from the log incrementally."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log_id: str | None = None
        self._position: Position = {}
        self._where: dict[str, str] = {}

    def of(self, log: EventLog, pseudonyms: set[str]) -> dict[str, str]:
        """The residence of each of ``pseudonyms`` that has one, as the log stands now."""
        with self._lock:
            if self._log_id != log.log_id:
                self._log_id, self._position, self._where = log.log_id, {}, {}
            for record in log.read(self._position or None):
                self._position[record.partition] = record.offset
                if record.event_type == SubjectRegistered.TYPE and record.subject:
                    data = decode(record.payload).data
                    if isinstance(data, SubjectRegistered) and data.residence:
                        self._where[record.subject] = data.residence
            return {p: self._where[p] for p in pseudonyms if p in self._where}
