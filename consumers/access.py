"""The access log: who read whose data, when and why (``ledger.queried`` events).

One row per audited query, and one per person it concerned (by pseudonym). Rows are keyed
by event id: an audit event is about no one, so its copy is in every partition; the
projection is given each copy (``registries_per_partition``) and its row names the lowest
partition's, whatever order a reader meets them in (and ``merge`` keeps that one).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from consumers.projection import Item, Projection
from consumers.rows import iso, to_us
from consumers.views import ViewStore, ViewTransaction
from schemas.events import LedgerQueried

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS access_reads (
        event_id       TEXT PRIMARY KEY,
        time           BIGINT NOT NULL,
        actor          TEXT NOT NULL,
        role           TEXT,
        query          TEXT NOT NULL,
        arguments      TEXT NOT NULL,
        reason         TEXT,
        clear          INTEGER NOT NULL,
        people         INTEGER NOT NULL,
        log_partition  INTEGER NOT NULL,
        log_offset     BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS access_people (
        pseudonym  TEXT NOT NULL,
        event_id   TEXT NOT NULL,
        time       BIGINT NOT NULL,
        PRIMARY KEY (pseudonym, time, event_id)
    )""",
)
TABLES = ("access_reads", "access_people")
INDEXES = (
    "CREATE INDEX IF NOT EXISTS access_reads_time ON access_reads (time, event_id)",
    "CREATE INDEX IF NOT EXISTS access_reads_actor ON access_reads (actor, time)",
    "CREATE INDEX IF NOT EXISTS access_people_event ON access_people (event_id)",
)


class AccessProjection(Projection):
    """The access log of the ledger's own audit events (policy 6.2.1b)."""

    name = "access"
    topics = frozenset({LedgerQueried.TYPE})
    schema = SCHEMA
    indexes = INDEXES
    tables = TABLES
    cost = 0.1
    registries_per_partition = True

    def merge(self, tx: ViewTransaction, source: str) -> None:
        super().merge(tx, source)
        tx.execute(
            "UPDATE main.access_reads AS r SET log_partition = s.log_partition, "
            f"log_offset = s.log_offset FROM {source}.access_reads AS s "
            "WHERE s.event_id = r.event_id AND s.log_partition < r.log_partition")

    def apply(self, tx: ViewTransaction, items: Sequence[Item]) -> None:
        reads: list[tuple[Any, ...]] = []
        people: list[tuple[Any, ...]] = []
        for item in items:
            data = item.event.data
            if not isinstance(data, LedgerQueried):
                continue
            event_id = item.event.id
            reads.append((event_id, item.at, data.actor, data.role, data.query,
                          json.dumps(data.arguments, sort_keys=True), data.reason,
                          int(data.clear), len(data.people), item.record.partition,
                          item.record.offset))
            people.extend((p, event_id, item.at) for p in dict.fromkeys(data.people))
        if reads:
            tx.executemany("INSERT INTO access_reads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                           "ON CONFLICT (event_id) DO UPDATE SET "
                           "log_partition = excluded.log_partition, "
                           "log_offset = excluded.log_offset "
                           "WHERE excluded.log_partition < access_reads.log_partition", reads)
        if people:
            tx.executemany("INSERT OR IGNORE INTO access_people VALUES (?, ?, ?)", people)


def access_log(store: ViewStore, *, person: str | None = None, actor: str | None = None,
               since: datetime | None = None, until: datetime | None = None,
               clear: bool | None = None, after: tuple[int, str] | None = None,
               limit: int | None = None) -> list[dict[str, Any]]:
    """Reads of the ledger, oldest first: who (actor, role), whose data (pseudonyms),
    when, the query and the reason. ``after`` (time in µs, event id) continues a page."""
    terms: list[str] = []
    params: list[Any] = []
    if person is not None:
        terms.append("r.event_id IN (SELECT event_id FROM access_people WHERE pseudonym = ?)")
        params.append(person)
    if actor is not None:
        terms.append("r.actor = ?")
        params.append(actor)
    if since is not None:
        terms.append("r.time >= ?")
        params.append(to_us(since))
    if until is not None:
        terms.append("r.time <= ?")
        params.append(to_us(until))
    if clear is not None:
        terms.append("r.clear = ?")
        params.append(int(clear))
    if after is not None:
        terms.append("(r.time, r.event_id) > (?, ?)")
        params.extend(after)
    where = (" WHERE " + " AND ".join(terms)) if terms else ""
    sql = ("SELECT r.event_id, r.time, r.actor, r.role, r.query, r.arguments, r.reason, "
           "r.clear, r.log_partition, r.log_offset FROM access_reads r"
           f"{where} ORDER BY r.time, r.event_id")
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    rows = store.query(sql, params)
    people: dict[str, list[str]] = {}
    ids = [r[0] for r in rows]
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ", ".join("?" * len(chunk))
        for event_id, pseudonym in store.query(
                f"SELECT event_id, pseudonym FROM access_people WHERE event_id IN ({marks}) "
                "ORDER BY pseudonym", chunk):
            people.setdefault(event_id, []).append(pseudonym)
    return [
        {"event_id": event_id, "time": iso(t), "actor": who, "role": role, "query": query,
         "arguments": json.loads(arguments), "people": people.get(event_id, []),
         "reason": reason, "clear": bool(clear_),
         "position": {"partition": partition, "offset": offset}}
        for (event_id, t, who, role, query, arguments, reason, clear_, partition, offset) in rows
    ]
