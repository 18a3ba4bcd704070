"""The log's two clocks: when events happened and when the log recorded them.

One row per log partition: events about a person, the earliest and latest event time and
recorded time, and how many events were recorded more than ``LATE_AFTER`` after they
happened ("late": a back-fill, a batch export, a producer that was down). ``pdl status``
shows the counts; a person's timeline (``pdl export``) marks each late event.

Events about no one are left out: a Kafka log carries them in every partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from consumers.projection import Item, Projection, to_us
from consumers.rows import iso
from consumers.views import ViewStore, ViewTransaction
from schemas.events import EVENT_TYPES, LedgerQueried

#: An event recorded this long after it happened is late. Assumed (the policy sets no
#: figure): a day covers daily batch exports and time-zone slips.
LATE_AFTER = timedelta(hours=24)
_LATE_US = LATE_AFTER // timedelta(microseconds=1)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS clock (
        partition          INTEGER PRIMARY KEY,
        events             BIGINT NOT NULL,
        late               BIGINT NOT NULL,
        max_delay          BIGINT NOT NULL,
        first_event_at     BIGINT NOT NULL,
        last_event_at      BIGINT NOT NULL,
        first_recorded_at  BIGINT NOT NULL,
        last_recorded_at   BIGINT NOT NULL
    )""",
)

_LOWER = "CASE WHEN excluded.{c} < clock.{c} THEN excluded.{c} ELSE clock.{c} END"
_HIGHER = "CASE WHEN excluded.{c} > clock.{c} THEN excluded.{c} ELSE clock.{c} END"
UPSERT = f"""
INSERT INTO clock (partition, events, late, max_delay, first_event_at, last_event_at,
    first_recorded_at, last_recorded_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (partition) DO UPDATE SET
    events = clock.events + excluded.events,
    late = clock.late + excluded.late,
    max_delay = {_HIGHER.format(c="max_delay")},
    first_event_at = {_LOWER.format(c="first_event_at")},
    last_event_at = {_HIGHER.format(c="last_event_at")},
    first_recorded_at = {_LOWER.format(c="first_recorded_at")},
    last_recorded_at = {_HIGHER.format(c="last_recorded_at")}
"""


class ClockProjection(Projection):
    """Per partition: event and recorded time bounds, and the late events."""

    name = "clock"
    # every type but the ledger's own audit records (recorded as they happen)
    topics = frozenset(t for t in EVENT_TYPES if t != LedgerQueried.TYPE)
    schema = SCHEMA
    tables = ("clock",)
    cost = 0.2

    def apply(self, tx: ViewTransaction, items: Sequence[Item]) -> None:
        rows: dict[int, list[int]] = {}
        stamp, recorded = None, 0
        for item in items:
            if item.event.subject is None:
                continue
            record = item.record
            if record.recorded_at is not stamp:  # records of one broker batch share theirs
                stamp = record.recorded_at
                recorded = to_us(stamp)
            at = item.at
            delay = recorded - at
            row = rows.get(record.partition)
            if row is None:
                rows[record.partition] = [1, int(delay > _LATE_US), max(delay, 0), at, at,
                                          recorded, recorded]
                continue
            row[0] += 1
            if delay > _LATE_US:
                row[1] += 1
            if delay > row[2]:
                row[2] = delay
            if at < row[3]:
                row[3] = at
            elif at > row[4]:
                row[4] = at
            if recorded < row[5]:
                row[5] = recorded
            elif recorded > row[6]:
                row[6] = recorded
        if rows:
            tx.executemany(UPSERT, [(p, *r) for p, r in rows.items()])


def clock_summary(views: ViewStore) -> dict[str, Any] | None:
    """The whole log's clocks (None before any event about a person is projected)."""
    rows = views.query("SELECT SUM(events), SUM(late), MAX(max_delay), MIN(first_event_at), "
                       "MAX(last_event_at), MIN(first_recorded_at), MAX(last_recorded_at) "
                       "FROM clock")
    if not rows or rows[0][0] is None:
        return None
    events, late, max_delay, first_ev, last_ev, first_rec, last_rec = rows[0]
    return {"events": int(events), "late_events": int(late),
            "late_after_hours": LATE_AFTER // timedelta(hours=1),
            "longest_delay_hours": round(int(max_delay) / 3_600_000_000),
            "first_event_at": iso(first_ev), "last_event_at": iso(last_ev),
            "first_recorded_at": iso(first_rec), "last_recorded_at": iso(last_rec)}
