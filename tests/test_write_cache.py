"""Two members of a consumer group keep their write caches (``consumers.rows.WriteCache``)
while they own disjoint partitions, and drop them when a partition they wrote comes back
after another member wrote it.

Real Kafka records (a topic of 4 partitions) are fed to two runners by hand, as a group's
members receive them (``ProjectionRunner.process``), both writing one PostgreSQL store:
then a rebalance is replayed on purpose (a partition handed to the other member and
back, with an erasure in between that a stale cache would hide). Views are compared
with a one-process rebuild of the same log.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from conftest import kafka_settings
from eventkit import dump_views as _dump_views

from consumers.postgres import PostgresViewStore
from consumers.projection import ProjectionRunner
from consumers.registry import all_projections
from consumers.views import SQLiteViewStore
from ledger.application import Ledger
from ledger.persistence import LogRecord
from ledger.settings import Settings
from schemas.examples import EXAMPLES

pytestmark = pytest.mark.kafka
PEOPLE = 40


def dump_views(store: Any) -> dict[str, list[tuple[Any, ...]]]:
    """View rows, without the bookkeeping of which writer wrote last (``view_meta``)."""
    return {k: v for k, v in _dump_views(store, all_projections()).items()
            if not k.endswith("_meta")}


def collected(person: int, hour: int, store: str) -> dict[str, Any]:
    return {"id": f"wc-c-{person}-{hour}", "type": "data.collected", "source": "tests/cache",
            "time": f"2026-11-01T{hour:02d}:00:{person:02d}Z", "subject": f"acct:{person}",
            "data": {"categories": ["user.contact.email"], "source": {"kind": "subject"},
                     "purpose": "essential.service.authentication", "store": store,
                     "store_location": "CN", "retention_days": 365,
                     "personal": {"user.contact.email": f"p{person}@example.cn"}}}


def erased(person: int, hour: int, store: str) -> dict[str, Any]:
    return {"id": f"wc-e-{person}-{hour}", "type": "data.erased", "source": "tests/cache",
            "time": f"2026-11-01T{hour:02d}:00:{person:02d}Z", "subject": f"acct:{person}",
            "data": {"categories": ["user.contact"], "stores": [store], "method": "erased"}}


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str,
        ) -> Iterator[tuple[Ledger, dict[int, list[LogRecord]]]]:
    """Each person's data collected (hours 1-3), erased (hour 4), collected again the same
    way (hour 5); a recipient registered (about no one: on every partition). Published in
    that order, so each partition holds its people's collections, then erasures, then
    collections again. Yields the ledger and each partition's records in offset order."""
    from ledger.settings import decode_key, generate_key

    tmp = tmp_path_factory.mktemp("cache")
    base = Settings(data_dir=tmp / "data", master_key=decode_key(generate_key()),
                    sqlite_synchronous="OFF", actor="tests")
    ledger = Ledger(kafka_settings(base, kafka_bootstrap, partitions=4))
    ledger.publish([{**EXAMPLES["recipient.registered"], "id": "wc-recipient"}])
    ledger.publish([collected(p, h, "db-a") for h in (1, 2, 3) for p in range(PEOPLE)])
    ledger.publish([erased(p, 4, "db-a") for p in range(PEOPLE)])
    ledger.publish([collected(p, 5, "db-a") for p in range(PEOPLE)])
    by_partition: dict[int, list[LogRecord]] = {}
    for record in ledger.log.read():
        by_partition.setdefault(record.partition, []).append(record)
    for records in by_partition.values():
        records.sort(key=lambda r: r.offset)
    assert sorted(by_partition) == [0, 1, 2, 3]
    yield ledger, by_partition
    ledger.close()


def rebuilt(ledger: Ledger) -> dict[str, list[tuple[Any, ...]]]:
    store = SQLiteViewStore(":memory:")
    ProjectionRunner(ledger.log, store, all_projections()).rebuild()
    return dump_views(store)


def restarts(runner: ProjectionRunner) -> dict[str, bool]:
    """Which of the runner's write caches the last batch found stale."""
    return {p.name: p.cache.restarted for p in runner.projections if hasattr(p, "cache")}


def phases(records: Sequence[LogRecord]) -> list[list[LogRecord]]:
    """A partition's records cut before its first erasure and after its last one."""
    kinds = [r.event_type for r in records]
    first, last = kinds.index("data.erased"), len(kinds) - kinds[::-1].index("data.erased")
    return [list(records[:first]), list(records[first:last]), list(records[last:])]


Members = tuple[list[PostgresViewStore], ProjectionRunner, ProjectionRunner]


@pytest.fixture
def members(log: tuple[Ledger, dict[int, list[LogRecord]]], postgres_url: str
            ) -> Iterator[Members]:
    """Two group members, each with its own connection to one PostgreSQL store."""
    stores = [PostgresViewStore(postgres_url) for _ in range(2)]
    try:
        a, b = (ProjectionRunner(log[0].log, store, all_projections()) for store in stores)
        yield stores, a, b
    finally:
        for store in stores:
            store.close()


def test_members_on_disjoint_partitions_keep_their_caches(
        log: tuple[Ledger, dict[int, list[LogRecord]]], members: Members) -> None:
    ledger, parts = log
    stores, a, b = members
    assert len(restarts(a)) == 3  # datamap, findings, holdings
    # member a owns partitions 0 and 1, member b 2 and 3; they alternate batches
    batches = [(a, phase[0] + phase[1]) for phase in zip(
        *(phases(parts[p]) for p in (0, 1)), strict=True)]
    batches = [x for pair in zip(batches, [(b, phase[0] + phase[1]) for phase in zip(
        *(phases(parts[p]) for p in (2, 3)), strict=True)], strict=True) for x in pair]
    seen: list[dict[str, bool]] = []
    for runner, records in batches:
        runner.process(records)
        seen.append(restarts(runner))
    # each member starts from an empty cache once, then never again: the other's
    # writes (on its own partitions, and the registration on every partition) do not
    # make it drop its cache
    assert all(seen[0].values()) and all(seen[1].values())
    assert not any(any(s.values()) for s in seen[2:]), "\n".join(map(str, seen))
    assert dump_views(stores[0]) == rebuilt(ledger)


def test_a_partition_written_by_another_member_meanwhile_drops_the_cache(
        log: tuple[Ledger, dict[int, list[LogRecord]]], members: Members) -> None:
    ledger, parts = log
    stores, a, b = members
    collect, erase, again = phases(parts[1])
    a.process(parts[0] + collect)  # a caches partition 1's people as holding db-a
    b.process(parts[2])
    assert all(restarts(b).values())  # b's first batch: it starts empty
    # a rebalance gives partition 1 to b, which erases its people in db-a. b's cache
    # started (empty) after a's last write there: it holds nothing of partition 1's
    # people and reads them from the view, so it need not restart
    b.process(erase)
    assert not any(restarts(b).values())
    # partition 1 back to a: what a cached about its people is stale (held in db-a),
    # and collecting the same again must be written, not skipped as known
    a.process(again)
    assert all(restarts(a).values())
    b.process(parts[3])
    assert not any(restarts(b).values())  # partition 3 untouched by a: b keeps its cache
    held = stores[0].query("SELECT count(*) FROM dm_stores WHERE store = 'db-a' "
                           "AND held != 0")
    assert held[0][0] > 0
    assert dump_views(stores[0]) == rebuilt(ledger)
