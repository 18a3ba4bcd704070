"""Ingest for every language: a CloudEvents HTTP message, in any content mode, into the log.

Independent of the web framework: ``Ingest.publish`` takes what an HTTP request carries
(content type, headers, body) and the authenticated publisher, and answers per event.
The events then take exactly the way of ``pdl publish`` (``Ledger.publish_lines``): the
same validation (every line checked before anything is appended; errors name the line
and the field), sealing, idempotency (a retried request reports duplicates, stores
nothing twice) and results. The ledger records the publisher's name with each event
(the ``publisher`` attribute); a producer cannot set it, nor publish for a ``source`` not
registered to its principal (``Forbidden``, nothing appended).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.application import Ledger, Publisher
from ledger.errors import InvalidInput, LedgerError
from schemas.cloudevents import BindingError, UnsupportedMediaType, lines_of

__all__ = ["Ingest", "IngestAnswer", "TooLarge", "UnsupportedMediaType"]


class TooLarge(LedgerError):
    """A request holds more than the ledger takes at once (``LEDGER_INGEST_MAX_*``)."""

    exit_code = 65  # EX_DATAERR


@dataclass(frozen=True)
class IngestAnswer:
    """What one ingest request did: counts, and where each event landed, in order."""

    appended: int
    duplicates: int
    results: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"events": len(self.results), "appended": self.appended,
                "duplicates": self.duplicates, "results": self.results}


class Ingest:
    """Publishes CloudEvents HTTP messages through one ``Ledger`` (thread-safe as it is)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.max_events = ledger.settings.ingest_max_events
        self.max_bytes = ledger.settings.ingest_max_bytes

    def publish(self, publisher: Publisher, content_type: str | None,
                headers: Mapping[str, str] | Iterable[tuple[str, str]],
                body: bytes) -> IngestAnswer:
        """Validate, seal and append the events of one message, all or none.

        Raises ``UnsupportedMediaType``, ``TooLarge``, ``InvalidInput`` (line, field,
        reason for each problem; the line is the event's place in the message, from 1),
        ``Forbidden`` (a source not registered to ``publisher``), or a retriable
        ``OperationalError`` when the log is unreachable (a retry is safe).
        """
        if len(body) > self.max_bytes:
            raise TooLarge(f"the body is {len(body)} bytes; the most one request takes is "
                           f"{self.max_bytes} (LEDGER_INGEST_MAX_BYTES): send smaller batches")
        try:
            lines: Sequence[str | bytes] = lines_of(content_type, headers, body)
        except BindingError as exc:
            raise InvalidInput(f"not a CloudEvent: {exc}; nothing was appended",
                               [(exc.line, exc.field, exc.reason)]) from None
        numbers = [n for n, line in enumerate(lines, 1) if line.strip()]
        if len(numbers) > self.max_events:
            raise TooLarge(f"{len(numbers)} events in one request; the most is "
                           f"{self.max_events} (LEDGER_INGEST_MAX_EVENTS): send smaller batches")
        if not numbers:
            raise InvalidInput("no events in the request; nothing was appended",
                               [(1, "(body)", "empty: send at least one event")])
        summary = self.ledger.publish_lines(lines, keep_results=True, publisher=publisher,
                                            batch_size=max(len(numbers), 1))
        results = [{"line": n, "id": r.event_id, "partition": r.partition,
                    "offset": r.offset, "duplicate": r.duplicate}
                   for n, r in zip(numbers, summary.results)]
        return IngestAnswer(summary.appended, summary.duplicates, results)
