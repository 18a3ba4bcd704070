"""One mark per event: where its first copy was met (docs/ordering.md, "Retried copies").

Kafka may carry an event twice (a retried publish) and carries an event about no one in
every partition. A view store marks each event id once, with the position of the first
copy any reader met; a projection applies a copy only if it is that one. These tests run
on both view stores (``make_view_store``) over a Kafka-shaped log in memory
(tests/test_registry_order.py) into which retried copies are written right after their
originals: every reader must give the views of the same log without the retries (the
originals keep their offsets: the retried copies leave gaps there, as Kafka's
transaction markers do).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from test_registry_order import ShapedLog, kafka_shaped, records, round_robin, scenario, views

from consumers.parallel import parallel_rebuild
from consumers.projection import Item, Projection, ProjectionRunner
from consumers.registry import all_projections
from consumers.views import LEGACY, SQLiteViewStore, ViewStore, ViewTransaction
from ledger.persistence import LogRecord
from schemas.events import DataCollected

Parts = dict[int, list[LogRecord]]
MakeStore = Callable[[], ViewStore]


def with_retries(parts: Parts, seed: int, share: float = 0.15) -> tuple[Parts, Parts]:
    """The log with a retried copy after some records (1-3 records later, same partition),
    and the same log without the retried copies, each record at its own offset."""
    rnd = random.Random(seed)
    retried: Parts = {}
    for p, rs in parts.items():
        out: list[LogRecord] = []
        pending: list[tuple[int, LogRecord]] = []
        for r in rs:
            out.append(r)
            if rnd.random() < share:
                pending.append((len(out) + rnd.randint(0, 2), r))
            for due, copy in [x for x in pending if x[0] <= len(out)]:
                out.append(copy)
                pending.remove((due, copy))
        out += [copy for _, copy in pending]
        retried[p] = [r._replace(offset=i) for i, r in enumerate(out)]
    originals = {p: [r for i, r in enumerate(rs) if r.event_id not in
                     {q.event_id for q in rs[:i]}] for p, rs in retried.items()}
    return retried, originals


@pytest.fixture(scope="module")
def shaped() -> tuple[Parts, Parts]:
    return with_retries(kafka_shaped(records(scenario(seed=23, n=300))), seed=4)


@pytest.fixture(scope="module")
def expected(shaped: tuple[Parts, Parts]) -> dict[str, Any]:
    store = SQLiteViewStore()
    ProjectionRunner(ShapedLog(shaped[1], round_robin), store, all_projections(),
                     batch_size=1000).run()
    return views(store)


def _same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    for table in expected:
        assert got[table] == expected[table], f"{table} differs"


def _reopen(store: ViewStore) -> ViewStore:
    if isinstance(store, SQLiteViewStore):
        return SQLiteViewStore(store.path, synchronous="OFF")
    from consumers.postgres import PostgresViewStore

    assert isinstance(store, PostgresViewStore)
    return PostgresViewStore(store.url)


def test_the_log_has_retried_copies(shaped: tuple[Parts, Parts]) -> None:
    retried, originals = shaped
    extra = sum(len(rs) for rs in retried.values()) - sum(len(rs) for rs in originals.values())
    assert extra > 50
    # some retried copies sit next to their original, some of them about no one
    assert any(a.event_id == b.event_id for rs in retried.values() for a, b in zip(rs, rs[1:]))
    assert any(r.subject is None and [q.event_id for q in rs].count(r.event_id) > 1
               for rs in retried.values() for r in rs)


@pytest.mark.parametrize("batch_size", [4, 10_000])
def test_retried_copies_are_skipped_in_one_batch_and_across_batches(
        shaped: tuple[Parts, Parts], expected: dict[str, Any], make_view_store: MakeStore,
        batch_size: int) -> None:
    retried, originals = shaped
    store = make_view_store()
    runner = ProjectionRunner(ShapedLog(retried, round_robin), store, all_projections(),
                              batch_size=batch_size)
    stats = runner.run()
    _same(views(store), expected)
    assert stats.duplicates > 0
    # one mark per event (and per partition for an event about no one), at a first copy
    firsts = {(r.partition, r.offset) for rs in originals.values() for r in rs}
    marks = store.query('SELECT event_id, partition, "offset" FROM event_marks')
    assert {(p, o) for _, p, o in marks} <= firsts
    assert len({e for e, _, _ in marks if "@" not in e}) == len(
        {r.event_id for rs in originals.values() for r in rs})
    # everything delivered again (a rebalance): nothing applied twice
    again = runner.process([r for p in sorted(retried) for r in retried[p]])
    assert again.applied == 0
    _same(views(store), expected)


def test_a_reset_projection_meets_each_first_copy_again(
        shaped: tuple[Parts, Parts], expected: dict[str, Any], make_view_store: MakeStore) -> None:
    """`pdl rebuild <one>` in place, and built aside then swapped in: the projection applies
    the first copies again, skips the retried ones; the others are left alone."""
    retried, _ = shaped
    log = ShapedLog(retried, round_robin)
    store = make_view_store()
    ProjectionRunner(log, store, all_projections(), batch_size=50).run()
    marks = sorted(store.query("SELECT * FROM event_marks"))
    for name in ("findings", "datamap"):  # registries per partition, and not
        one = [p for p in all_projections() if p.name == name]
        stats = ProjectionRunner(log, store, one, batch_size=7).rebuild()
        assert stats.applied > 0 and stats.duplicates > 0
        _same(views(store), expected)
        parallel_rebuild(ProjectionRunner(log, store, one, batch_size=33))
        _same(views(store), expected)
    assert sorted(store.query("SELECT * FROM event_marks")) == marks  # the marks stayed


def test_a_full_rebuild_forgets_the_marks_of_what_it_replaces(
        shaped: tuple[Parts, Parts], expected: dict[str, Any], make_view_store: MakeStore) -> None:
    """A store that followed another topic of the same name (made again from nothing):
    its marks name positions this log does not have. Rebuilding every view starts from
    no marks, in place and aside."""
    retried, _ = shaped
    log = ShapedLog(retried, round_robin)
    store = make_view_store()
    every = all_projections()
    for rebuild in (lambda: ProjectionRunner(log, store, every).rebuild(),
                    lambda: parallel_rebuild(ProjectionRunner(log, store, every))):
        with store.transaction() as tx:
            tx.execute('UPDATE event_marks SET partition = partition + 9')
            tx.mark([(r.event_id, 9, r.offset, None) for r in retried[0]])
        rebuild()
        _same(views(store), expected)
        assert not store.query("SELECT 1 FROM event_marks WHERE partition >= 9")


def test_an_as_of_replay_skips_retried_copies(shaped: tuple[Parts, Parts],
                                              make_view_store: MakeStore) -> None:
    from datetime import timedelta

    from eventkit import at

    retried, originals = shaped
    until = at(minutes=150) + timedelta(seconds=30)
    once = SQLiteViewStore()
    ProjectionRunner(ShapedLog(originals, round_robin), once, all_projections(),
                     valid_until=until).run()
    store = make_view_store()
    stats = ProjectionRunner(ShapedLog(retried, round_robin), store, all_projections(),
                             batch_size=9, valid_until=until).run()
    assert stats.later > 0
    _same(views(store), views(once))


class Poison(Projection):
    """Fails on one event's content, wherever it meets it (a value it cannot store)."""

    name = "poison"

    def __init__(self, event_id: str):
        self.event_id = event_id

    def apply(self, tx: ViewTransaction, items: list[Item]) -> None:  # type: ignore[override]
        if any(i.event.id == self.event_id for i in items):
            raise ValueError("cannot store this value")


def test_a_poisoned_batch_applied_record_by_record_keeps_first_copies(
        shaped: tuple[Parts, Parts], make_view_store: MakeStore) -> None:
    """A projection fails on a retried event: the batch is applied again a record at a
    time, both copies are quarantined, every other first copy applied once."""
    retried, originals = shaped
    twice = next(r.event_id for rs in retried.values() for a, r in zip(rs, rs[1:])
                 if a.event_id == r.event_id and r.subject is not None)
    once = SQLiteViewStore()
    ProjectionRunner(ShapedLog(originals, round_robin), once,
                     [*all_projections(), Poison(twice)]).run()
    store = make_view_store()
    stats = ProjectionRunner(ShapedLog(retried, round_robin), store,
                             [*all_projections(), Poison(twice)], batch_size=40).run()
    assert stats.bad == 2
    assert [r["event_id"] for r in store.quarantined()] == [twice, twice]
    _same(views(store), views(once))


def test_a_quarantined_first_copy_leaves_its_retry_to_be_applied(
        shaped: tuple[Parts, Parts], make_view_store: MakeStore) -> None:
    """The first copy does not decode (a producer's fault), the retried one does: the
    retried copy is the first copy met, and applied."""
    retried, originals = shaped
    p, i = next((p, i) for p, rs in retried.items() for i, (a, b) in enumerate(zip(rs, rs[1:]))
                if a.event_id == b.event_id and a.event_type == DataCollected.TYPE)
    broken = {q: list(rs) for q, rs in retried.items()}
    broken[p][i] = broken[p][i]._replace(payload=b"{not json")
    good = {q: [r for r in rs if r is not retried[p][i]] for q, rs in retried.items()}
    once = SQLiteViewStore()
    ProjectionRunner(ShapedLog(good, round_robin), once, all_projections()).run()
    store = make_view_store()
    stats = ProjectionRunner(ShapedLog(broken, round_robin), store, all_projections(),
                             batch_size=10_000).run()
    assert stats.bad == 1
    _same(views(store), views(once))


def test_a_store_made_before_marks_keeps_each_projections_applied_ids(
        shaped: tuple[Parts, Parts], expected: dict[str, Any], make_view_store: MakeStore) -> None:
    """An older store recorded applied ids per projection (``applied_events``). Opened by
    this version, its ids become LEGACY marks, decided per projection as before: retried
    copies met later are skipped, a projection rebuilt alone applies each event once."""
    retried, _ = shaped
    log = ShapedLog(retried, round_robin)
    store = make_view_store()
    ProjectionRunner(log, store, all_projections(), batch_size=50).run()
    with store.transaction() as tx:  # as the older version left it
        for p in all_projections():
            tx.execute("INSERT INTO applied_events (projection, event_id) "
                       "SELECT ?, event_id FROM event_marks", (p.name,))
        tx.execute("DROP TABLE event_marks")
    store = _reopen(store)
    try:
        marks = store.query('SELECT DISTINCT partition, "offset" FROM event_marks')
        assert [tuple(m) for m in marks] == [LEGACY]
        # the same events again further on (a retried publish after the upgrade)
        later = {p: rs + [r._replace(offset=len(rs) + k) for k, r in enumerate(rs)]
                 for p, rs in retried.items()}
        stats = ProjectionRunner(ShapedLog(later, round_robin), store, all_projections()).run()
        assert stats.applied == 0 and stats.duplicates > 0
        _same(views(store), expected)
        one = [p for p in all_projections() if p.name == "holdings"]
        ProjectionRunner(log, store, one, batch_size=20).rebuild()
        _same(views(store), expected)
    finally:
        store.close()


@pytest.mark.parametrize("shares", [[[0, 1], [2, 3]], [[3], [1], [2, 0]]])
def test_a_split_rebuild_merges_marks_and_counts_what_shares_repeat(
        shaped: tuple[Parts, Parts], expected: dict[str, Any], make_view_store: MakeStore,
        shares: list[list[int]]) -> None:
    from consumers.parallel import _build

    retried, _ = shaped
    log = ShapedLog(retried, round_robin)
    serial = ProjectionRunner(log, SQLiteViewStore(), all_projections(), batch_size=17).run()
    store = make_view_store()
    ProjectionRunner(log, store, all_projections())  # the live views' tables, as always
    places = store.scratch(len(shares))
    assert places is not None
    built = [_build(log, store.scratch_opener()(place), all_projections(), share, 17, True,
                    None, None, close_log=False)
             for place, share in zip(places, shares, strict=True)]
    repeated = store.merge(places, all_projections())
    store.drop_scratch()
    _same(views(store), expected)
    assert sum(b.applied for b in built) - repeated == serial.applied
    assert sum(b.duplicates for b in built) + repeated == serial.duplicates


def test_group_members_skip_retried_copies_whoever_reads_them(
        shaped: tuple[Parts, Parts], expected: dict[str, Any], make_view_store: MakeStore) -> None:
    """Members of one consumer group, each owning some partitions, apply randomly sized
    polled batches into one store: the first copy either member meets is applied once."""
    from test_registry_order import group_members

    retried, _ = shaped
    base = make_view_store()
    got = group_members(ShapedLog(retried, round_robin), [[3, 0], [1], [2]], 2,
                        lambda: _reopen(base))
    _same(got, expected)
