"""The contract every projection keeps, checked one projection at a time: applied in
batches of any size, rebuilt over views it already holds, or merged from shares of the
log's partitions, its views equal those of a fresh replay of the whole log.

(``tests/test_projections.py`` checks properties of all projections together; here a
failure names the one projection that breaks the contract.)
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from datetime import datetime
from pathlib import Path

import pytest
from eventkit import dump_views, log_events, random_events

from consumers.projection import Projection, ProjectionRunner
from consumers.registry import all_projections
from consumers.views import SQLiteViewStore, ViewStore
from ledger.persistence import AppendResult, EventLog, LogRecord, NewRecord, Position
from ledger.sqlite import SQLiteEventLog

PROJECTIONS = [p.name for p in all_projections()]
PARTITIONS = 3


def projection(name: str) -> Projection:
    return next(p for p in all_projections() if p.name == name)


def replay(log: EventLog, name: str, **run: object) -> SQLiteViewStore:
    """A fresh store holding ``name``'s views of the whole log, built by one rebuild."""
    store = SQLiteViewStore(":memory:")
    ProjectionRunner(log, store, [projection(name)], **run).rebuild()  # type: ignore[arg-type]
    return store


def dump(store: ViewStore, name: str) -> dict[str, list[tuple[object, ...]]]:
    return dump_views(store, [projection(name)])


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[LogRecord]:
    """Reproducible random events of every type the projections read, as logged."""
    log = SQLiteEventLog(tmp_path_factory.mktemp("contract") / "log.db", synchronous="OFF")
    try:
        log_events(log, random_events(seed=19, n=700))
        return list(log.read())
    finally:
        log.close()


@pytest.fixture
def sqlite_log(records: list[LogRecord], tmp_path: Path) -> Iterator[SQLiteEventLog]:
    log = SQLiteEventLog(tmp_path / "log.db", synchronous="OFF")
    log.append([NewRecord(r.event_id, r.event_type, r.subject, r.payload) for r in records])
    yield log
    log.close()


@pytest.mark.parametrize("name", PROJECTIONS)
def test_applied_in_batches_equals_a_fresh_replay(sqlite_log: SQLiteEventLog, name: str) -> None:
    fresh = dump(replay(sqlite_log, name), name)
    for batch_size in (1, 13, 10_000):
        store = SQLiteViewStore(":memory:")
        runner = ProjectionRunner(sqlite_log, store, [projection(name)], batch_size=batch_size)
        # in two runs, as a live consumer meets the log: up to a point, then the rest
        _run_until(runner, sqlite_log.end_position()[0] // 2)
        runner.run()
        assert dump(store, name) == fresh, f"batch size {batch_size}"


def _run_until(runner: ProjectionRunner, offset: int) -> None:
    """Apply the records up to ``offset`` only (the runner's own batches, cut there)."""
    records = [r for r in runner.log.read() if r.offset <= offset]
    for start in range(0, len(records), runner.batch_size):
        runner.process(records[start : start + runner.batch_size])


@pytest.mark.parametrize("name", PROJECTIONS)
def test_a_rebuild_over_views_it_holds_equals_a_fresh_replay(sqlite_log: SQLiteEventLog,
                                                            name: str) -> None:
    store = SQLiteViewStore(":memory:")
    runner = ProjectionRunner(sqlite_log, store, [projection(name)], batch_size=50)
    runner.run()
    runner.rebuild()
    assert dump(store, name) == dump(replay(sqlite_log, name), name)


class PartitionedLog(EventLog):
    """The records of a log spread over partitions as Kafka keeps them: each person's in
    one partition, each event about no one in every partition, offsets
    counted per partition. Read in the order they were logged (copies of an event about
    no one side by side, partition 0 first), so one reader meets every partition's
    records in an order each partition agrees with."""

    name = "partitioned"
    self_contained_partitions = True

    def __init__(self, records: list[LogRecord], partitions: int):
        self.records: list[LogRecord] = []
        next_offset = [0] * partitions
        home: dict[str, int] = {}  # people take turns, so that every partition has some
        for r in records:
            homes = (range(partitions) if r.subject is None else
                     [home.setdefault(r.subject, len(home) % partitions)])
            for p in homes:
                self.records.append(LogRecord(p, next_offset[p], r.event_id, r.event_type,
                                              r.subject, r.recorded_at, r.payload))
                next_offset[p] += 1
        self.ends = {p: n - 1 for p, n in enumerate(next_offset)}

    def append(self, records: object) -> list[AppendResult]:
        raise NotImplementedError("a test log is read only")

    def read(self, after: Mapping[int, int] | None = None, *, until: datetime | None = None,
             limit: int | None = None,
             partitions: Collection[int] | None = None) -> Iterator[LogRecord]:
        after = after or {}
        out = (r for r in self.records
               if r.offset > after.get(r.partition, -1)
               and (partitions is None or r.partition in partitions)
               and (until is None or r.recorded_at <= until))
        for n, r in enumerate(out):
            if limit is not None and n >= limit:
                return
            yield r

    def end_position(self, until: datetime | None = None) -> Position:
        return dict(self.ends)

    @property
    def log_id(self) -> str:
        return "partitioned:test"


@pytest.mark.parametrize("name", PROJECTIONS)
def test_merged_from_shares_of_partitions_equals_a_fresh_replay(
        records: list[LogRecord], tmp_path: Path, name: str) -> None:
    log = PartitionedLog(records, PARTITIONS)
    assert all(end >= 0 for end in log.end_position().values())  # every share has records
    places = []
    for share in range(PARTITIONS):
        place = str(tmp_path / f"share-{share}.db")
        scratch = SQLiteViewStore(place, synchronous="OFF")
        ProjectionRunner(log, scratch, [projection(name)], dedupe=True).rebuild(
            partitions=[share], indexes=False)
        scratch.close()
        places.append(place)
    merged = SQLiteViewStore(tmp_path / "merged.db")
    ProjectionRunner(log, merged, [projection(name)])  # creates the views
    merged.merge(places, [projection(name)])
    assert dump(merged, name) == dump(replay(log, name, dedupe=True), name)
