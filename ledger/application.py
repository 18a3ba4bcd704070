"""The ledger application: validate, pseudonymise, seal and append; read back; erase.

This is the only place where clear personal values and the log meet. They arrive in a
wire event's ``personal`` map and leave this module sealed; nothing here logs them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from schemas import Event, EventInvalid, decode, encode, parse_wire
from schemas.events import DataErased, LedgerQueried
from schemas.taxonomy import ErasureMethod

from ledger.errors import InvalidInput, NotFound, SubjectErased
from ledger.persistence import AppendResult, EventLog, LogRecord, NewRecord, create_log
from ledger.sealing import Pseudonymiser, Sealer, SQLiteKeyVault
from ledger.settings import Settings

LineError = tuple[int, str, str]  # (line number, field, reason)
MAX_REPORTED_ERRORS = 100


@dataclass
class PublishSummary:
    """What a publish did: counts, and per-event results if asked for."""

    lines: int = 0
    appended: int = 0
    duplicates: int = 0
    batches: int = 0
    results: list[AppendResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {
            "lines": self.lines,
            "appended": self.appended,
            "duplicates": self.duplicates,
            "batches": self.batches,
        }


class Ledger:
    """Publishes events to the log and reads them back, sealing and unsealing personal values."""

    def __init__(self, settings: Settings, log: EventLog | None = None):
        self.settings = settings
        master = settings.require_master_key()
        self.pseudonymise = Pseudonymiser(master)
        self.vault = SQLiteKeyVault(settings.vault_file, master)
        self.sealer = Sealer(self.vault)
        self.log = log if log is not None else create_log(settings)

    @classmethod
    def from_env(cls) -> Ledger:
        return cls(Settings.from_env())

    def close(self) -> None:
        self.log.close()
        self.vault.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- publishing ---------------------------------------------------------------------

    def seal(self, events: Sequence[Event], first_line: int = 1) -> list[NewRecord]:
        """Pseudonymise and seal validated wire events into records for the log.

        Raises ``InvalidInput`` if a person with personal values was already erased.
        """
        pseudonyms = [self.pseudonymise(e.subject) if e.subject else None for e in events]
        needs_key = [p for p, e in zip(pseudonyms, events) if e.personal and p]
        keys = self.vault.keys_for(needs_key) if needs_key else {}
        records: list[NewRecord] = []
        errors: list[LineError] = []
        for index, (event, pseudonym) in enumerate(zip(events, pseudonyms)):
            assert event.id is not None
            token = None
            if event.personal and pseudonym:
                key = keys.get(pseudonym)
                if key is None:
                    errors.append(
                        (first_line + index, "subject",
                         "this person was erased (key destroyed); personal values cannot be sealed")
                    )
                    continue
                token = self.sealer.seal(key, pseudonym, event.id, event.personal)
            stored = event.model_copy(
                update={"subject": pseudonym, "personal": None, "sealed": token}
            )
            records.append(NewRecord(event.id, event.type, pseudonym, event.time, encode(stored)))
        if errors:
            raise InvalidInput(f"{len(errors)} event(s) refused; nothing was appended", errors)
        return records

    def publish(self, events: Iterable[Event | Mapping[str, Any]]) -> list[AppendResult]:
        """Validate, seal and append one atomic batch. Raises ``InvalidInput``; appends nothing then."""
        parsed: list[Event] = []
        errors: list[LineError] = []
        for n, item in enumerate(events, 1):
            try:
                parsed.append(item if isinstance(item, Event) else parse_wire(dict(item)))
            except EventInvalid as exc:
                errors.extend((n, e.field, e.reason) for e in exc.errors)
        if errors:
            raise InvalidInput(f"{len(errors)} problem(s) in the batch; nothing was appended", errors)
        return self.log.append(self.seal(parsed))

    def publish_lines(
        self,
        lines: Iterable[str | bytes],
        *,
        batch_size: int = 1000,
        progress: Callable[[int], None] | None = None,
        keep_results: bool = False,
    ) -> PublishSummary:
        """Publish JSON Lines: validate every line first, then append in atomic batches.

        ``lines`` is iterated twice, so pass a list or a re-iterable (see ``publish_file``).
        Any bad line refuses the whole input: ``InvalidInput`` lists each bad line.
        """
        errors: list[LineError] = []
        count = 0
        for n, line in enumerate(lines, 1):
            count = n
            if not line.strip():
                continue
            try:
                parse_wire(line)
            except EventInvalid as exc:
                errors.extend((n, e.field, e.reason) for e in exc.errors)
        if errors:
            bad_lines = len({n for n, _, _ in errors})
            raise InvalidInput(
                f"{bad_lines} of {count} line(s) refused; nothing was appended", errors
            )
        summary = PublishSummary(lines=count)
        batch: list[Event] = []
        first = 1
        for n, line in enumerate(lines, 1):
            if line.strip():
                batch.append(parse_wire(line))
            if len(batch) >= batch_size:
                self._append_batch(batch, first, summary, keep_results, progress)
                batch, first = [], n + 1
        if batch:
            self._append_batch(batch, first, summary, keep_results, progress)
        return summary

    def _append_batch(
        self,
        batch: list[Event],
        first_line: int,
        summary: PublishSummary,
        keep_results: bool,
        progress: Callable[[int], None] | None,
    ) -> None:
        results = self.log.append(self.seal(batch, first_line))
        summary.batches += 1
        dups = sum(r.duplicate for r in results)
        summary.duplicates += dups
        summary.appended += len(results) - dups
        if keep_results:
            summary.results.extend(results)
        if progress is not None:
            progress(len(batch))

    def publish_file(self, path: str | Path, **kwargs: Any) -> PublishSummary:
        """Publish a JSON Lines file, or ``-`` for standard input (spooled to a temp file)."""
        if str(path) == "-":
            import sys

            with tempfile.TemporaryFile("w+b") as spool:
                for chunk in iter(lambda: sys.stdin.buffer.read(1 << 20), b""):
                    spool.write(chunk)
                return self.publish_lines(_Lines(spool), **kwargs)
        p = Path(path)
        if not p.exists():
            raise NotFound(f"no such file: {p}")
        with p.open("rb") as fh:
            return self.publish_lines(_Lines(fh), **kwargs)

    # --- reading ------------------------------------------------------------------------

    def events(
        self,
        after: Mapping[int, int] | None = None,
        *,
        until: datetime | None = None,
        subject: str | None = None,
        limit: int | None = None,
    ) -> Iterator[tuple[LogRecord, Event]]:
        """Decoded events in log order; ``subject`` is a real identifier (pseudonymised here)."""
        wanted = self.pseudonymise(subject) if subject else None
        for record in self.log.read(after, until=until, limit=limit):
            if wanted is not None and record.subject != wanted:
                continue
            yield record, decode(record.payload)

    def unseal(self, event: Event) -> dict[str, str] | None:
        """The clear personal values of a stored event; ``None`` if it has none or was erased."""
        if not event.sealed or not event.subject or event.id is None:
            return None
        try:
            return self.sealer.open(event.subject, event.id, event.sealed)
        except SubjectErased:
            return None

    def export(self, subject_id: str) -> dict[str, Any]:
        """Everything the log holds about one person, unsealed (an access request, 7.1)."""
        pseudonym = self.pseudonymise(subject_id)
        out: list[dict[str, Any]] = []
        for record, event in self.events(subject=subject_id):
            item = event.model_dump(mode="json", exclude_none=True, exclude={"sealed"})
            item["subject"] = subject_id
            item["position"] = {"partition": record.partition, "offset": record.offset}
            item["recorded_at"] = record.recorded_at.isoformat()
            if event.sealed:
                values = self.unseal(event)
                item["personal"] = values if values is not None else "(erased: key destroyed)"
            out.append(item)
        return {
            "subject": subject_id,
            "pseudonym": pseudonym,
            "key": self.vault.state(pseudonym),
            "events": out,
        }

    # --- erasure and audit --------------------------------------------------------------

    def erase(self, subject_id: str, *, reason: str = "request", request_id: str | None = None,
              source: str = "pdl/erase") -> AppendResult:
        """Crypto-shred a person: destroy their data key, then record the erasure."""
        pseudonym = self.pseudonymise(subject_id)
        self.vault.destroy(pseudonym)
        event = parse_wire(
            {
                "source": source,
                "type": DataErased.TYPE,
                "time": datetime.now(timezone.utc).isoformat(),
                "subject": subject_id,
                "data": {
                    "categories": ["user"],
                    "stores": ["ledger-key-vault"],
                    "method": ErasureMethod.CRYPTO_SHREDDED.value,
                    "reason": reason,
                    "request_id": request_id,
                },
            }
        )
        return self.log.append(self.seal([event]))[0]

    def audit(self, query: str, arguments: Mapping[str, str] | None = None) -> None:
        """Record that somebody queried the ledger (6.2.1b). Arguments hold no clear values."""
        event = parse_wire(
            {
                "source": "pdl/query",
                "type": LedgerQueried.TYPE,
                "time": datetime.now(timezone.utc).isoformat(),
                "data": {"actor": self.settings.actor, "query": query,
                         "arguments": dict(arguments or {})},
            }
        )
        self.log.append(self.seal([event]))

    def verify(self, progress: Callable[[int], None] | None = None) -> int:
        """Check the log's hash chain (SQLite) and that every record decodes."""
        verify = getattr(self.log, "verify", None)
        if verify is not None:
            return int(verify(progress))
        checked = 0
        for record in self.log.read():
            decode(record.payload)
            checked += 1
        return checked


class _Lines:
    """A file of lines that can be iterated more than once (validate pass, then append pass)."""

    def __init__(self, fh: IO[bytes]):
        self._fh = fh

    def __iter__(self) -> Iterator[bytes]:
        self._fh.seek(0)
        return iter(self._fh)
