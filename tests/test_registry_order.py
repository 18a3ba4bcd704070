"""Registries per partition: views and findings never depend on how partitions interleave.

An event about no one (a recipient registered, a policy version, the staff list, an
incident, an audit record) is copied to every partition of a Kafka topic. A person's event
must meet exactly the registry events before it in its own partition, whichever partition
a reader happened to read first (docs/ordering.md).

The harness builds one Kafka-shaped log (a person's events in one partition, registry
events copied to all, as ``KafkaEventLog.append`` writes them), then reads it through
every kind of reader with the partitions interleaved in adversarial orders: one process
(batches large and small), a partition-split rebuild merged from its shares, consumer
group members applying polled batches into one store, and a SQLite log with one
partition. Every view table and the findings must be equal, byte for byte (the SQLite log
names other positions: its findings are compared without them).
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eventkit import T0, _event, at, dump_views, granted, incident, inspected, log_events
from eventkit import random_events, recipient, shared

from consumers.findings import list_findings
from consumers.parallel import _build
from consumers.projection import ProjectionRunner
from consumers.registry import all_projections
from consumers.views import SQLiteViewStore, ViewStore
from ledger.persistence import AppendResult, EventLog, LogRecord, NewRecord, Position
from ledger.sqlite import SQLiteEventLog
from schemas import encode, parse_wire

PARTITIONS = 4
NOW = T0 + timedelta(days=400)

Order = Callable[[dict[int, list[LogRecord]]], Iterator[LogRecord]]


# --- the log --------------------------------------------------------------------------------


def scenario(seed: int, n: int = 500) -> list[dict[str, Any]]:
    """Random events about a dozen people with registry events sprinkled between them:
    recipients registered late (after people's shares to them) and re-registered with other
    terms, inspections, material policy versions after consents under older ones, a staff
    list that changes under audited reads, incidents opened, reported and closed."""
    rnd = random.Random(seed)
    people = [f"p_{letter * 32}" for letter in "abcdefghijkl"]
    events = random_events(seed, n)
    registry = [
        recipient("payco", at(minutes=n * 0.3), agreement_ref=None),
        recipient("payco", at(minutes=n * 0.6), location="SG"),
        recipient("adco", at(minutes=n * 0.5), kind="partner"),
        inspected("payco", at(minutes=n * 0.7)),
        _event("policy.published", at(minutes=n * 0.2),
               {"policy_version": "v1", "effective_at": T0.isoformat(), "material": True},
               None),
        _event("policy.published", at(minutes=n * 0.55),
               {"policy_version": "v2", "effective_at": at(minutes=n * 0.5).isoformat(),
                "material": True}, None),
        _event("staff.access_granted", at(minutes=n * 0.25),
               {"actor": "dpo@example.cn", "role": "privacy_officer"}, None),
        _event("staff.access_revoked", at(minutes=n * 0.75), {"actor": "dpo@example.cn"}, None),
        incident("inc-1", at(minutes=n * 0.4), ["accounts-db", "logs"], at(minutes=0),
                 at(minutes=n * 0.35)),
        _event("incident.reported", at(minutes=n * 0.45),
               {"incident_id": "inc-1", "authority": "CAC"}, None),
        _event("incident.closed", at(minutes=n * 0.8), {"incident_id": "inc-1"}, None),
    ]
    for i in range(8):
        registry.append(_event("ledger.queried", at(minutes=n * (0.1 + 0.1 * i)),
                               {"actor": rnd.choice(["dpo@example.cn", "intern@example.cn"]),
                                "query": "export", "people": [rnd.choice(people)],
                                "reason": rnd.choice([None, "ticket 1"]), "clear": True},
                               None))
    extra = []
    for i in range(40):  # consents under v1 and shares relying on them, to both recipients
        person, t = rnd.choice(people), at(minutes=rnd.uniform(0, n))
        extra.append(granted(person, t, "c-1", purpose="essential.service.payment_processing",
                             policy_version=rnd.choice(["v1", "v2"])))
        extra.append(shared(person, t + timedelta(seconds=1), rnd.choice(["payco", "adco"]),
                            ["user.financial.bank_account"], consent_id="c-1",
                            agreement_ref=rnd.choice([None, "dpa-payco"])))
        extra.append(_event("policy.notice_sent", t + timedelta(seconds=2),
                            {"policy_version": "v2", "channel": "email"}, person))
    return sorted(events + registry + extra, key=lambda e: e["time"])


def records(events: Sequence[Mapping[str, Any]]) -> list[NewRecord]:
    out = []
    for raw in events:
        event = parse_wire(dict(raw))
        assert event.id is not None
        out.append(NewRecord(event.id, event.type, event.subject, encode(event)))
    return out


def kafka_shaped(new: Sequence[NewRecord], partitions: int = PARTITIONS
                 ) -> dict[int, list[LogRecord]]:
    """The records as a topic of ``partitions`` holds them after one producer appended
    them in order: a person's in the partition of their key, the others in every one."""
    out: dict[int, list[LogRecord]] = {p: [] for p in range(partitions)}
    for i, r in enumerate(new):
        targets = ([zlib.crc32(r.subject.encode()) % partitions] if r.subject is not None
                   else range(partitions))
        for p in targets:
            out[p].append(LogRecord(p, len(out[p]), r.event_id, r.event_type, r.subject,
                                    T0 + timedelta(seconds=i), r.payload))
    return out


class ShapedLog(EventLog):
    """A Kafka-shaped log in memory whose reads interleave partitions in a given order."""

    name = "kafka"
    self_contained_partitions = True
    checks_subjects = True

    def __init__(self, parts: dict[int, list[LogRecord]], order: Order):
        self.parts = parts
        self.order = order

    def append(self, records: Sequence[NewRecord]) -> list[AppendResult]:
        raise NotImplementedError

    def read(self, after: Mapping[int, int] | None = None, *, until: datetime | None = None,
             limit: int | None = None, partitions: Collection[int] | None = None
             ) -> Iterator[LogRecord]:
        assert until is None and limit is None
        todo = {p: [r for r in rs if r.offset > (after or {}).get(p, -1)]
                for p, rs in self.parts.items() if partitions is None or p in partitions}
        return self.order(todo)

    def end_position(self, until: datetime | None = None) -> Position:
        return {p: len(rs) - 1 for p, rs in self.parts.items()}

    @property
    def log_id(self) -> str:
        return "kafka:shaped"


# --- adversarial orders ---------------------------------------------------------------------


def one_first(first: int) -> Order:
    """All of partition ``first``, then the others whole, in number order."""
    def order(parts: dict[int, list[LogRecord]]) -> Iterator[LogRecord]:
        for p in sorted(parts, key=lambda p: (p != first, p)):
            yield from parts[p]
    return order


def reversed_whole(parts: dict[int, list[LogRecord]]) -> Iterator[LogRecord]:
    """Partitions whole, highest number first."""
    for p in sorted(parts, reverse=True):
        yield from parts[p]


def round_robin(parts: dict[int, list[LogRecord]]) -> Iterator[LogRecord]:
    """One record of each partition in turn."""
    for row in itertools.zip_longest(*(parts[p] for p in sorted(parts))):
        yield from (r for r in row if r is not None)


def random_runs(seed: int) -> Order:
    """Runs of random length from randomly chosen partitions."""
    def order(parts: dict[int, list[LogRecord]]) -> Iterator[LogRecord]:
        rnd = random.Random(seed)
        cursors = {p: 0 for p in parts}
        while cursors:
            p = rnd.choice(sorted(cursors))
            run = rnd.choice([1, 1, 2, 5, 30])
            rs = parts[p][cursors[p]: cursors[p] + run]
            yield from rs
            cursors[p] += len(rs)
            if cursors[p] >= len(parts[p]):
                del cursors[p]
    return order


ORDERS: dict[str, Order] = {
    **{f"partition {p} first": one_first(p) for p in range(PARTITIONS)},
    "reversed": reversed_whole,
    "round robin": round_robin,
    **{f"random seed {s}": random_runs(s) for s in range(4)},
}


# --- readers --------------------------------------------------------------------------------


def views(store: ViewStore) -> dict[str, Any]:
    """Every view table, and the findings as of ``NOW`` (timed rules included)."""
    out: dict[str, Any] = {k: v for k, v in dump_views(store, all_projections()).items()}
    out["list_findings"] = sorted(repr(f.as_dict()) for f in list_findings(store, now=NOW))
    return out


def one_process(log: EventLog, batch_size: int) -> dict[str, Any]:
    store = SQLiteViewStore()
    ProjectionRunner(log, store, all_projections(), batch_size=batch_size).run()
    return views(store)


def split_by_partition(log: EventLog, shares: list[list[int]], store: ViewStore
                       ) -> dict[str, Any]:
    """What ``parallel_rebuild`` does with a worker per share, in this process."""
    runner = ProjectionRunner(log, store, all_projections(), batch_size=17)
    places = store.scratch(len(shares))
    assert places is not None
    for place, share in zip(places, shares, strict=True):
        _build(log, store.scratch_opener()(place), all_projections(), share, 17, True, None,
               None, close_log=False)
    store.merge(places, runner.projections)
    store.drop_scratch()
    out = views(store)
    store.close()
    return out


def group_members(log: ShapedLog, owners: list[list[int]], seed: int,
                  open_store: Callable[[], ViewStore]) -> dict[str, Any]:
    """Members of one consumer group, each owning some partitions, applying polled batches
    (a few records of each of its partitions, sorted as ``pdl consume`` sorts them) into
    one store, turn by random turn."""
    members = [ProjectionRunner(log, open_store(), all_projections(), batch_size=50)
               for _ in owners]
    rnd = random.Random(seed)
    cursors = {p: 0 for p in log.parts}
    while any(cursors[p] < len(log.parts[p]) for p in cursors):
        m = rnd.randrange(len(owners))
        polled = []
        for p in owners[m]:
            take = rnd.choice([0, 1, 3, 20])
            polled += log.parts[p][cursors[p]: cursors[p] + take]
            cursors[p] = min(cursors[p] + take, len(log.parts[p]))
        polled.sort(key=lambda r: (r.partition, r.offset))
        members[m].process(polled)
    out = views(members[0].store)
    for runner in members:
        runner.store.close()
    return out


# --- tests ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return scenario(seed=18)


@pytest.fixture(scope="module")
def shaped(events: list[dict[str, Any]]) -> dict[int, list[LogRecord]]:
    return kafka_shaped(records(events))


@pytest.fixture(scope="module")
def expected(shaped: dict[int, list[LogRecord]]) -> dict[str, Any]:
    return one_process(ShapedLog(shaped, one_first(0)), batch_size=1000)


def test_the_log_has_teeth(shaped: dict[int, list[LogRecord]], expected: dict[str, Any]) -> None:
    """The scenario raises findings that read each registry, in every partition."""
    clauses = {row[0] for row in expected["findings"]}
    # unregistered recipients, superseded policies, readers off the staff list, and the
    # recipient's terms (location, inspection, agreement)
    assert {"2.1.1(3)b", "8", "6.2.1b", "5.1", "6.3d", "6.3e"} <= clauses, clauses
    assert all(len(rs) > 100 for rs in shaped.values())
    nobody = [row for row in expected["findings"] if row[1] is None]
    assert nobody and all(row[3] == 0 for row in nobody)  # the lowest partition's copy


@pytest.mark.parametrize("order", list(ORDERS))
@pytest.mark.parametrize("batch_size", [3, 1000])
def test_one_process_in_any_order(shaped: dict[int, list[LogRecord]], expected: dict[str, Any],
                                  order: str, batch_size: int) -> None:
    got = one_process(ShapedLog(shaped, ORDERS[order]), batch_size)
    for table in expected:
        assert got[table] == expected[table], f"{table} differs when read {order}"


@pytest.mark.parametrize("shares", [[[0, 1], [2, 3]], [[3], [1], [2, 0]], [[2], [0], [1], [3]]])
@pytest.mark.parametrize("order", ["reversed", "round robin", "random seed 1"])
def test_split_by_partition_in_any_order(shaped: dict[int, list[LogRecord]],
                                         expected: dict[str, Any], tmp_path: Path,
                                         shares: list[list[int]], order: str) -> None:
    got = split_by_partition(ShapedLog(shaped, ORDERS[order]), shares,
                             SQLiteViewStore(tmp_path / "views.db"))
    for table in expected:
        assert got[table] == expected[table], f"{table} differs, shares {shares}"


def test_split_by_partition_into_postgres(shaped: dict[int, list[LogRecord]],
                                          expected: dict[str, Any], postgres_url: str) -> None:
    """Shares built in scratch schemas, merged there, swapped in (``PostgresViewStore``)."""
    from consumers.postgres import PostgresViewStore

    got = split_by_partition(ShapedLog(shaped, ORDERS["random seed 3"]), [[3], [1], [2, 0]],
                             PostgresViewStore(postgres_url))
    for table in expected:
        assert got[table] == expected[table], f"{table} differs in PostgreSQL"


@pytest.mark.parametrize("owners", [[[0, 1], [2, 3]], [[3, 0], [1], [2]]])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_group_members_in_any_order(shaped: dict[int, list[LogRecord]],
                                    expected: dict[str, Any], tmp_path: Path,
                                    owners: list[list[int]], seed: int) -> None:
    got = group_members(ShapedLog(shaped, round_robin), owners, seed,
                        lambda: SQLiteViewStore(tmp_path / "group.db"))
    for table in expected:
        assert got[table] == expected[table], f"{table} differs, owners {owners}"


def test_a_person_in_two_shares_is_refused_and_changes_nothing_in_postgres(
        shaped: dict[int, list[LogRecord]], postgres_url: str) -> None:
    """A person's event in a second partition (a producer that did not key by pseudonym):
    the shares cannot be merged; the store's views are left as they were."""
    from consumers.postgres import PostgresViewStore
    from ledger.errors import IntegrityError

    stray = next(r for r in shaped[0] if r.event_type == "data.collected")
    parts = {p: list(rs) for p, rs in shaped.items()}
    parts[1].append(LogRecord(1, len(parts[1]), "stray-1", stray.event_type, stray.subject,
                              stray.recorded_at, stray.payload.replace(
                                  stray.event_id.encode(), b"stray-1")))
    store = PostgresViewStore(postgres_url)
    ProjectionRunner(ShapedLog(shaped, round_robin), store, all_projections()).run()
    before = views(store)
    with pytest.raises(IntegrityError, match="more than one partition"):
        split_by_partition(ShapedLog(parts, round_robin), [[0], [1, 2, 3]], store)
    store = PostgresViewStore(postgres_url)
    try:
        assert views(store) == before
    finally:
        store.close()


def test_group_members_into_postgres(shaped: dict[int, list[LogRecord]],
                                     expected: dict[str, Any], postgres_url: str) -> None:
    """The same into one shared PostgreSQL store (rows about no one upserted there)."""
    from consumers.postgres import PostgresViewStore

    got = group_members(ShapedLog(shaped, round_robin), [[3, 0], [1], [2]], 4,
                        lambda: PostgresViewStore(postgres_url))
    for table in expected:
        assert got[table] == expected[table], f"{table} differs in PostgreSQL"


def test_a_sqlite_log_finds_the_same(events: list[dict[str, Any]], expected: dict[str, Any],
                                     tmp_path: Path) -> None:
    """One partition in global order: the same findings, at other positions."""
    log = SQLiteEventLog(tmp_path / "log.db", synchronous="OFF")
    log_events(log, events)
    store = SQLiteViewStore()
    ProjectionRunner(log, store, all_projections()).run()

    def unplaced(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return sorted(((c, p, e, t, x) for c, p, e, _, _, t, x in rows), key=repr)

    got = dump_views(store, all_projections())
    assert unplaced(got["findings"]) == unplaced(expected["findings"])
    for table in ("recipients", "incidents", "dm_subjects"):
        assert got[table] == expected[table], table
    for table in ("findings_policies", "findings_staff", "findings_recipients"):
        # one partition: the registries of partition 0, equal to every partition's
        assert got[table] == [r for r in expected[table] if r[0] == 0], table
        assert got[table] == [(0, *r[1:]) for r in expected[table] if r[0] == 3], table


# --- against the real broker ----------------------------------------------------------------


@pytest.mark.kafka
def test_every_reader_of_a_real_topic_gives_the_same_views(
        events: list[dict[str, Any]], settings: Any, kafka_bootstrap: str,
        postgres_url: str, tmp_path: Path) -> None:
    """The scenario published to a real topic of 4 partitions (murmur2 keys, registry
    events copied by ``KafkaEventLog.append``): a rebuild in one process, partition-split
    rebuild in 2 worker processes (into SQLite and into PostgreSQL), two ``pdl consume`` group members sharing one
    store, and the broker's own records replayed in adversarial orders all agree."""
    import threading

    from conftest import kafka_settings

    from consumers.consume import KafkaGroupConsumer
    from consumers.parallel import parallel_rebuild
    from consumers.postgres import PostgresViewStore
    from ledger.factory import create_log

    kafka = kafka_settings(settings, kafka_bootstrap, partitions=PARTITIONS)
    log = create_log(kafka)
    try:
        for start in range(0, len(events), 60):  # appends of 60, as producers batch
            log_events(log, events[start:start + 60])
        expected = one_process(log, batch_size=1000)
        assert any(row[1] is None for row in expected["findings"])

        parts: dict[int, list[LogRecord]] = {}
        for r in log.read():
            parts.setdefault(r.partition, []).append(r)
        assert sorted(parts) == list(range(PARTITIONS))
        for order in ("partition 3 first", "round robin", "random seed 2"):
            assert one_process(ShapedLog(parts, ORDERS[order]), 7) == expected, order

        for store in (SQLiteViewStore(tmp_path / "rebuilt.db"), PostgresViewStore(postgres_url)):
            runner = ProjectionRunner(log, store, all_projections())
            parallel_rebuild(runner, workers=2)  # split by partition
            assert views(store) == expected, type(store).__name__
            store.close()

        group = tmp_path / "group.db"
        stores = [SQLiteViewStore(group), SQLiteViewStore(group)]
        members = [KafkaGroupConsumer(log, s, all_projections(), batch_size=25,
                                      group_id=f"order-{tmp_path.name}") for s in stores]
        threads = [threading.Thread(target=m.run, args=(threading.Event(),),
                                    kwargs={"idle_exit": 3}) for m in members]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        assert views(stores[0]) == expected
        for s in stores:
            s.close()
    finally:
        log.close()
