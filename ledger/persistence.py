"""The log's interface, written once and implemented by each backend module.

A log is a set of partitions (SQLite: one; Kafka: the topic's), each an append-only
sequence of records at increasing offsets. A *position* is ``{partition: last offset
read}``; reading "after" a position yields every later record. Offsets are never reused.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from ledger.errors import IntegrityError

Position = dict[int, int]


class NewRecord(NamedTuple):
    """A sealed, serialised event ready to append (a tuple: cheap to pickle between processes)."""

    event_id: str
    event_type: str
    subject: str | None  # pseudonym; also the Kafka key, so a person's events stay in order
    payload: bytes


class LogRecord(NamedTuple):
    """A record as read back from the log (a tuple: a reader makes one per record, at a
    tenth of a frozen dataclass's cost)."""

    partition: int
    offset: int
    event_id: str
    event_type: str
    subject: str | None
    recorded_at: datetime  # when the log accepted it (Kafka: the broker's LogAppendTime)
    payload: bytes


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an event landed; ``duplicate`` means the id was already in the log there."""

    event_id: str
    partition: int
    offset: int
    duplicate: bool = False


class EventLog(ABC):
    """An append-only, replayable log of sealed events."""

    #: Backend name used in messages and in projections' tracking rows. Code that needs to
    #: know what a log can do asks its capabilities below, never its name.
    name: str = ""

    #: Whether an event id is stored once whatever the retries (SQLite), so a reader need
    #: not drop duplicates; else (Kafka) a retried publish may be carried twice.
    stores_ids_once: bool = False

    #: Whether a record's ``event_type`` was written by the log itself from the validated
    #: event (SQLite), so a reader may skip records by type without decoding them; else
    #: (Kafka) the type header comes from the producer and a malformed record must be read.
    trusted_types: bool = False

    #: Whether readers must check each record's subject (Kafka: another producer may have
    #: written it): the key must equal the payload's subject, and the subject must have
    #: the pseudonym form (``schemas.events.PSEUDONYM``); else the record is quarantined.
    #: SQLite's subject column is written by the ledger itself from its pseudonymiser.
    checks_subjects: bool = False

    #: Whether the log keeps its own Merkle tree and signed checkpoints, grown with each
    #: append, which ``verify`` checks (SQLite); else (Kafka) a sealing consumer keeps them
    #: beside it (``ledger.sealer``).
    can_verify: bool = False

    def verify(self, progress: Callable[[int], None] | None = None) -> int:
        """Check every record against the log's own tree; return how many were checked.
        Only logs whose ``can_verify`` is true keep one."""
        raise NotImplementedError(f"the {self.name or type(self).__name__} log keeps no chain "
                                  "to verify")

    @abstractmethod
    def append(self, records: Sequence[NewRecord]) -> list[AppendResult]:
        """Append a batch whole or not at all; return one result per record, in order.

        A record whose event id is already in the log is not stored again (SQLite) or is
        marked so that no projection applies it twice (Kafka).
        """

    def append_counted(self, records: Sequence[NewRecord]) -> tuple[int, int]:
        """``append``, answering only (records stored, duplicates): cheaper for big batches."""
        results = self.append(records)
        duplicates = sum(r.duplicate for r in results)
        return len(results) - duplicates, duplicates

    @abstractmethod
    def read(
        self,
        after: Mapping[int, int] | None = None,
        *,
        until: datetime | None = None,
        limit: int | None = None,
        partitions: Collection[int] | None = None,
    ) -> Iterator[LogRecord]:
        """Records after ``after`` (all if None), recorded at or before ``until``, in log order

        (per partition), of ``partitions`` only if given. Stops at the end of the log as it
        is when called.
        """

    def read_about(self, subject: str, *, until: datetime | None = None) -> Iterator[LogRecord]:
        """The records of one person (``subject`` is the pseudonym), in log order, as
        ``read`` would give them. Backends that can filter before reading override it."""
        return (r for r in self.read(until=until) if r.subject == subject)

    @abstractmethod
    def end_position(self, until: datetime | None = None) -> Position:
        """The last offset of each partition (``-1`` if empty), or as the log stood at ``until``."""

    @property
    @abstractmethod
    def log_id(self) -> str:
        """Identifies this log (file or topic), so a view never mixes positions of two logs."""

    #: Whether each partition can be projected on its own: every person's events sit in one
    #: partition and every event about no one is in every partition (Kafka), so views built
    #: from disjoint shares of the partitions merge into the views of the whole log.
    self_contained_partitions: bool = False

    def partitions(self) -> list[int]:
        """The log's partitions (SQLite: one, numbered 0)."""
        return sorted(self.end_position())

    def reopener(self) -> Callable[[], EventLog] | None:
        """A picklable callable that opens this same log again (in another process), or
        None where that is not possible: what a parallel rebuild's workers read."""
        return None

    def count(self) -> int:
        """Number of records in the log (approximate for Kafka: offsets, not events)."""
        return sum(o + 1 for o in self.end_position().values() if o >= 0)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_batch(records: Sequence[NewRecord]) -> None:
    """Refuse a batch with a malformed record before any of it is written."""
    for event_id, event_type, _, payload in records:
        if not (type(payload) is bytes and payload and event_id and event_type):
            break
    else:
        return
    for index, r in enumerate(records):
        if not isinstance(r.payload, bytes) or not r.payload:
            raise IntegrityError(f"record {index} ({r.event_id}) has no payload bytes")
        if not r.event_id or not r.event_type:
            raise IntegrityError(f"record {index} has no event id or type")

