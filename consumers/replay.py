"""Point-in-time answers on two time axes: what the log had recorded by T, and what was
true of the world at T.

- ``as_of`` (recorded time): the log as it stood at T, i.e. the records it had accepted by
  then, by their ``recorded_at`` (Kafka: the broker's LogAppendTime). "What did we know at
  T?" — e.g. what a regulator could have been told when a notice went out.
- ``valid_at`` (event time): the events whose ``time`` is at or before T, whenever they
  were recorded (a late event published after T about something before T counts). "What
  was true at T?"

Both together: the events that happened by ``valid_at`` among those recorded by
``as_of``. Today's views have applied everything, so either question is answered from
views built afresh, in memory, from ``log.read(until=as_of)`` with events after
``valid_at`` left out. Nothing of the on-disk views is touched.

Scope windows (``pdl scope --from/--until``) and retention deadlines are event time
already; ``valid_at`` (else ``as_of``) is also the "now" a query judges deadlines by.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from consumers.projection import Projection, ProjectionRunner, RunStats
from consumers.registry import all_projections
from consumers.rows import from_us
from consumers.views import SQLiteViewStore
from ledger.persistence import EventLog


@dataclass(frozen=True)
class QueryTime:
    """When a query looks from: recorded time ``as_of`` and event time ``valid_at``
    (either, both, or neither = now, from today's views)."""

    as_of: datetime | None = None
    valid_at: datetime | None = None

    @property
    def now(self) -> bool:
        """True when the question is about the present (today's views answer it)."""
        return self.as_of is None and self.valid_at is None

    @property
    def reference(self) -> datetime | None:
        """The moment deadlines are judged at: event time if given, else recorded time."""
        return self.valid_at if self.valid_at is not None else self.as_of

    def arguments(self) -> dict[str, str | None]:
        """For the audit record and answers: ISO 8601 strings, None where not given."""
        return {"as_of": self.as_of.isoformat() if self.as_of else None,
                "valid_at": self.valid_at.isoformat() if self.valid_at else None}

    def admits(self, time: datetime, recorded_at: datetime) -> bool:
        """Whether an event that happened at ``time``, recorded at ``recorded_at``, is part
        of the answer."""
        return ((self.as_of is None or recorded_at <= self.as_of)
                and (self.valid_at is None or time <= self.valid_at))


def records_until(log: EventLog, until: datetime | None) -> int:
    """About how many records a replay up to ``until`` reads (for a progress bar)."""
    return sum(o + 1 for o in log.end_position(until).values() if o >= 0)


def first_recorded(log: EventLog) -> datetime | None:
    """When the log accepted its first record (the earliest over partitions), or None if
    it is empty."""
    first: datetime | None = None
    for partition, last in log.end_position().items():
        if last < 0:
            continue
        for record in log.read(partitions=[partition], limit=1):
            if first is None or record.recorded_at < first:
                first = record.recorded_at
    return first


def views_as_of(
    log: EventLog,
    until: datetime | None,
    *,
    valid_at: datetime | None = None,
    projections: Sequence[Projection] | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 5000,
) -> tuple[SQLiteViewStore, RunStats]:
    """In-memory views of ``log`` as it stood at ``until`` (all of it if None), of the
    events that happened by ``valid_at`` (all if None); the caller closes the store.

    ``projections`` (default: all) limits the replay to the views a question needs. The
    stats' ``earliest_us`` is the earliest event time read when ``valid_at`` is given.
    """
    store = SQLiteViewStore(":memory:")
    try:
        runner = ProjectionRunner(log, store, list(projections or all_projections()),
                                  batch_size=batch_size, valid_until=valid_at)
        # a rebuild: the query indexes are made once, after the replay
        stats = runner.rebuild(progress=progress, until=until)
    except BaseException:
        store.close()
        raise
    return store, stats


def time_warnings(log: EventLog, when: QueryTime, stats: RunStats | None) -> list[str]:
    """What a reader must know about an answer at ``when``: a time before the log's first
    record or before the first event gives an empty answer for that reason, not because
    nothing happened."""
    warnings: list[str] = []
    if when.as_of is not None:
        first = first_recorded(log)
        if first is None:
            warnings.append("the log is empty: nothing has been recorded yet")
        elif when.as_of < first:
            warnings.append(
                f"--as-of {when.as_of.isoformat()} precedes the log's first record "
                f"(recorded {first.isoformat()}): the ledger knew nothing then. --as-of is "
                "recorded time; to ask what was true at a time, use --valid-at")
    if when.valid_at is not None and stats is not None:
        if stats.earliest_us is None:
            if not warnings:
                warnings.append("no event is in the answer's part of the log")
        elif when.valid_at < from_us(stats.earliest_us):
            warnings.append(
                f"--valid-at {when.valid_at.isoformat()} precedes the first event "
                f"(which happened {from_us(stats.earliest_us).isoformat()}): nothing had "
                "happened yet")
    return warnings
