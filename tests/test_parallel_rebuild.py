"""Rebuilding in several processes: equal to one process, all or nothing, and how work
is split (by projection cost, by partition)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from eventkit import Boom, dump_views, log_events, random_events, random_sqlite_log

from consumers.parallel import (
    ParallelRebuildError,
    can_rebuild_in_parallel,
    groups,
    parallel_rebuild,
    shares,
)
from consumers.projection import (
    ProjectionRunner,
)
from consumers.registry import all_projections
from consumers.views import SQLiteViewStore
from ledger.persistence import EventLog


# --- parallel rebuild ------------------------------------------------------------------------


def test_parallel_rebuild_equals_a_rebuild_in_one_process(
        tmp_path: Path, make_log: Callable[[], EventLog]) -> None:
    # On every backend: the SQLite log splits by projection, Kafka (three partitions here)
    # by partition (tests/test_kafka_consume.py has events about no one in the shares).
    log = make_log()
    log_events(log, random_events(seed=6, n=500))
    serial = SQLiteViewStore(tmp_path / "serial.db")
    parallel = SQLiteViewStore(tmp_path / "parallel.db")
    try:
        serial_stats = ProjectionRunner(log, serial, all_projections(), batch_size=40).rebuild()
        runner = ProjectionRunner(log, parallel, all_projections(), batch_size=40)
        runner.run()  # views to replace
        assert can_rebuild_in_parallel(runner)
        split = shares(log, 2)
        if log.name == "kafka":
            assert split is not None and len(split) == 2
            assert sorted(p for share in split for p in share) == [0, 1, 2]
        else:
            assert split is None
        seen: list[int] = []
        stats = parallel_rebuild(runner, workers=2, progress=seen.append)
        assert stats.records == serial_stats.records >= 500
        assert sum(seen) == stats.records
        assert stats.applied == serial_stats.applied
        assert dump_views(parallel, all_projections()) == dump_views(serial, all_projections())
        assert runner.positions() == ProjectionRunner(log, serial, all_projections()).positions()
        assert not Path(str(tmp_path / "parallel.db") + ".rebuild").exists()
        log_events(log, random_events(seed=16, n=60))
        runner.run()  # and it carries on from there
        ProjectionRunner(log, serial, all_projections()).run()
        assert dump_views(parallel, all_projections()) == dump_views(serial, all_projections())
    finally:
        serial.close()
        parallel.close()


def test_a_failed_parallel_rebuild_leaves_the_views_as_they_were(tmp_path: Path) -> None:
    log = random_sqlite_log(tmp_path, seed=7, n=200)
    store = SQLiteViewStore(tmp_path / "views.db")
    try:
        ProjectionRunner(log, store, all_projections()).run()
        before = dump_views(store, all_projections())
        positions = ProjectionRunner(log, store, all_projections()).positions()
        runner = ProjectionRunner(log, store, [*all_projections(), Boom()], batch_size=50)
        with pytest.raises(ParallelRebuildError, match="injected failure"):
            parallel_rebuild(runner, workers=2)
        assert dump_views(store, all_projections()) == before
        assert ProjectionRunner(log, store, all_projections()).positions() == positions
    finally:
        log.close()
        store.close()


def test_projections_split_by_cost() -> None:
    parts = groups(all_projections(), 2)
    assert sorted(p.name for part in parts for p in part) == sorted(
        p.name for p in all_projections())
    assert len(parts) == 2
    assert [p.name for p in groups(all_projections(), 1)[0]] == [
        p.name for p in all_projections()]


# --- decoding only what is wanted -----------------------------------------------------------


def test_partitions_are_shared_out_by_their_records() -> None:
    from types import SimpleNamespace

    def split(ends: dict[int, int], workers: int) -> list[list[int]] | None:
        log = SimpleNamespace(self_contained_partitions=True, end_position=lambda: ends,
                              partitions=lambda: sorted(ends))
        return shares(log, workers)  # type: ignore[arg-type]

    # the largest first, each into the smallest share so far
    assert split({0: 99, 1: 9, 2: 49, 3: 49, 4: -1}, 2) == [[0, 1], [2, 3, 4]]  # 110, 100
    assert split({0: 10, 1: 10, 2: 10}, 3) == [[0], [1], [2]]
    assert split({0: 10, 1: 10}, 5) == [[0], [1]]  # no more shares than partitions
    assert split({0: 10}, 2) is None
    assert split({0: 10, 1: 10}, 1) is None
    sqlite = SimpleNamespace(self_contained_partitions=False)
    assert shares(sqlite, 2) is None  # type: ignore[arg-type]
