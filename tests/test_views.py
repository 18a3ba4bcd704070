"""The view store: batched event-id dedupe, and its page-cache setting."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from eventkit import dump_views, log_events, random_events

from consumers.parallel import (
    ParallelRebuildError,
    can_rebuild_in_parallel,
    groups,
    parallel_rebuild,
    shares,
)
from consumers.projection import (
    REBUILD_BATCH_SIZE,
    Item,
    Projection,
    ProjectionRunner,
)
from consumers.registry import all_projections, open_views
from consumers.views import SQLiteViewStore, ViewTransaction
from ledger.errors import ConfigurationError
from ledger.persistence import EventLog, LogRecord, NewRecord
from ledger.settings import Settings
from ledger.sqlite import SQLiteEventLog
from schemas.events import DataUsed

# --- first_time: one query and one executemany per batch ---------------------------------



def _logged(tmp_path: Path, *, seed: int, n: int) -> SQLiteEventLog:
    """A SQLite log in ``tmp_path`` holding ``n`` reproducible random events."""
    log = SQLiteEventLog(tmp_path / "log.db", synchronous="OFF")
    log_events(log, random_events(seed=seed, n=n))
    return log

def test_first_time_marks_an_id_once_within_a_batch_and_across_batches() -> None:
    store = SQLiteViewStore()
    try:
        with store.transaction() as tx:
            assert tx.first_time("a", ["e1", "e2", "e1", "e3", "e2"]) == [
                True, True, False, True, False]
        with store.transaction() as tx:
            assert tx.first_time("a", ["e3", "e4", "e4", "e1"]) == [False, True, False, False]
            # another projection keeps its own account
            assert tx.first_time("b", ["e1", "e1"]) == [True, False]
            assert tx.first_time("a", []) == []
    finally:
        store.close()


def test_first_time_rolled_back_with_its_transaction() -> None:
    store = SQLiteViewStore()
    try:
        with pytest.raises(RuntimeError), store.transaction() as tx:
            assert tx.first_time("a", ["e1"]) == [True]
            raise RuntimeError("batch failed")
        with store.transaction() as tx:
            assert tx.first_time("a", ["e1"]) == [True]
    finally:
        store.close()


def test_first_time_of_more_ids_than_one_query_takes() -> None:
    store = SQLiteViewStore()
    ids = [f"e{i}" for i in range(1234)]
    try:
        with store.transaction() as tx:
            assert all(tx.first_time("a", ids[:700]))
        with store.transaction() as tx:
            assert tx.first_time("a", ids + ids[-5:]) == [False] * 700 + [True] * 534 + [False] * 5
    finally:
        store.close()


def _copies(records: list[LogRecord], partitions: int) -> list[LogRecord]:
    """Each record also on other partitions (as Kafka carries an event about no one, or a
    retried publish), at offsets of their own, sorted as a consumer hands them over."""
    out = []
    for partition in range(partitions):
        out.extend(dataclasses.replace(r, partition=partition) for r in records)
    out.sort(key=lambda r: (r.partition, r.offset))
    return out


@pytest.mark.parametrize("batch_size", [7, 10_000])
def test_an_event_on_several_partitions_is_applied_once(tmp_path: Path, batch_size: int) -> None:
    log = _logged(tmp_path, seed=5, n=300)
    records = list(log.read())
    once = SQLiteViewStore()
    thrice = SQLiteViewStore()
    try:
        ProjectionRunner(log, once, all_projections()).rebuild()
        runner = ProjectionRunner(log, thrice, all_projections(), dedupe=True)
        copies = _copies(records, 3)
        duplicates = 0
        for start in range(0, len(copies), batch_size):
            duplicates += runner.process(copies[start : start + batch_size]).duplicates
        assert dump_views(thrice, all_projections()) == dump_views(once, all_projections())
        # every projection skipped the two extra copies of each event it wants
        wanted = sum(1 for p in all_projections() for r in records
                     if not p.topics or r.event_type in p.topics)
        assert duplicates == 2 * wanted
        # a redelivery of everything changes nothing
        assert runner.process(copies).applied == 0
        assert dump_views(thrice, all_projections()) == dump_views(once, all_projections())
    finally:
        log.close()
        once.close()
        thrice.close()


# --- the page cache setting ----------------------------------------------------------------


def test_view_cache_setting_defaults_and_reaches_the_store(tmp_path: Path) -> None:
    assert Settings.from_env({}).view_cache_mb == 32
    settings = Settings.from_env({"LEDGER_VIEW_CACHE_MB": "8",
                                  "LEDGER_VIEWS_PATH": str(tmp_path / "v.db")})
    assert settings.view_cache_mb == 8
    store = open_views(settings)
    try:
        assert store.query("PRAGMA cache_size") == [(-8 * 1024,)]
    finally:
        store.close()


@pytest.mark.parametrize(("raw", "message"), [
    ("lots", "LEDGER_VIEW_CACHE_MB='lots' is not a whole number"),
    ("0", "LEDGER_VIEW_CACHE_MB=0 must be at least 1"),
])
def test_view_cache_setting_errors_name_the_key(raw: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        Settings.from_env({"LEDGER_VIEW_CACHE_MB": raw})


def test_rebuild_batch_setting_defaults_and_errors_name_the_key() -> None:
    assert Settings.from_env({}).rebuild_batch == REBUILD_BATCH_SIZE
    assert Settings.from_env({"LEDGER_REBUILD_BATCH": "5000"}).rebuild_batch == 5000
    with pytest.raises(ConfigurationError, match="LEDGER_REBUILD_BATCH=0 must be at least 1"):
        Settings.from_env({"LEDGER_REBUILD_BATCH": "0"})


def test_view_cache_entries_setting_reaches_every_projection_cache(tmp_path: Path) -> None:
    from consumers.rows import DEFAULT_CACHE_ENTRIES
    from ledger.application import Ledger
    from pdl.service import QueryService

    assert Settings.from_env({}).view_cache_entries == DEFAULT_CACHE_ENTRIES
    with pytest.raises(ConfigurationError, match="LEDGER_VIEW_CACHE_ENTRIES=0 must be at least 1"):
        Settings.from_env({"LEDGER_VIEW_CACHE_ENTRIES": "0"})
    settings = Settings.from_env({"LEDGER_VIEW_CACHE_ENTRIES": "1000", "LEDGER_DEMO": "1",
                                  "LEDGER_DATA_DIR": str(tmp_path)})
    with QueryService(Ledger(settings)) as service:
        caps = {p.name: p.cache.capacity for p in service.projections if hasattr(p, "cache")}
    # findings keeps people's states, each ~4x a pair: a quarter as many
    assert caps == {"datamap": 1000, "holdings": 1000, "findings": 250}


def test_view_store_refuses_a_cache_below_one_mb() -> None:
    with pytest.raises(ConfigurationError, match="LEDGER_VIEW_CACHE_MB"):
        SQLiteViewStore(cache_mb=0)


# --- parallel rebuild ------------------------------------------------------------------------


class _Boom(Projection):
    """Fails on its second batch."""

    name = "boom"
    calls = 0

    def apply(self, tx: ViewTransaction, items: Sequence[Item]) -> None:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("injected failure in a rebuild worker")


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
    log = _logged(tmp_path, seed=7, n=200)
    store = SQLiteViewStore(tmp_path / "views.db")
    try:
        ProjectionRunner(log, store, all_projections()).run()
        before = dump_views(store, all_projections())
        positions = ProjectionRunner(log, store, all_projections()).positions()
        runner = ProjectionRunner(log, store, [*all_projections(), _Boom()], batch_size=50)
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


def test_a_runner_decodes_only_the_types_its_projections_want(tmp_path: Path) -> None:
    """On the SQLite log (whose type column the ledger wrote from the validated event) a
    record of a type no projection of the runner wants is not decoded at all."""
    log = _logged(tmp_path, seed=8, n=120)
    # a record that does not decode, of a type the disclosure register does not read
    log.append([NewRecord("not-json-1", DataUsed.TYPE, None, b"\x00 not json")])
    store = SQLiteViewStore(tmp_path / "views.db")
    try:
        disclosures = [p for p in all_projections() if p.name == "disclosures"]
        runner = ProjectionRunner(log, store, disclosures)
        assert runner.types is not None and DataUsed.TYPE not in runner.types
        stats = runner.run()
        assert stats.records == 121 and stats.bad == 0
        # a runner whose projections read data.used decodes it, and quarantines it
        stats = ProjectionRunner(log, store, all_projections()).run()
        assert stats.bad == 1
        (row,) = store.quarantined()
        assert (row["offset"], row["event_id"]) == (121, "not-json-1")
    finally:
        log.close()
        store.close()


def test_a_kafka_runner_decodes_every_record(make_log: Callable[[], EventLog],
                                             tmp_path: Path) -> None:
    """A Kafka record's type header is its producer's word: every record is decoded there
    (a malformed one must reach the dead-letter handler); SQLite filters by type."""
    log = make_log()
    disclosures = [p for p in all_projections() if p.name == "disclosures"]
    store = SQLiteViewStore(tmp_path / "views.db")
    try:
        runner = ProjectionRunner(log, store, disclosures)
        assert (runner.types is None) == (log.name == "kafka")
    finally:
        store.close()


def _indexes(store: SQLiteViewStore) -> set[str]:
    return {name for (name,) in store.query(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}


def test_a_rebuild_makes_the_query_indexes_after_its_replay(tmp_path: Path) -> None:
    log = _logged(tmp_path, seed=9, n=300)
    store = SQLiteViewStore(tmp_path / "views.db")
    query_indexes = {"disclosures_recipient", "disclosures_subject", "disclosures_time",
                     "holdings_by_store", "holdings_erased_by_span"}
    try:
        runner = ProjectionRunner(log, store, all_projections(), batch_size=50)
        assert query_indexes <= _indexes(store)  # a new view has them from the start
        seen: list[set[str]] = []

        class Watch(Projection):
            """Notes which indexes exist while the replay runs."""

            name = "watch"

            def apply(self, tx: ViewTransaction, items: Sequence[Item]) -> None:
                seen.append(_indexes(store))

        runner = ProjectionRunner(log, store, [*all_projections(), Watch()], batch_size=50)
        runner.rebuild()
        assert seen and all(not (query_indexes & during) for during in seen)
        assert query_indexes <= _indexes(store)  # and after it, again

        # a rebuild killed before its end leaves them out; the next runner puts them back
        boom = _Boom()
        with pytest.raises(RuntimeError, match="injected"):
            ProjectionRunner(log, store, [*all_projections(), boom], batch_size=50).rebuild()
        assert not query_indexes & _indexes(store)
        ProjectionRunner(log, store, all_projections())
        assert query_indexes <= _indexes(store)
    finally:
        log.close()
        store.close()


def test_projecting_pauses_the_cyclic_gc_and_restores_it(tmp_path: Path) -> None:
    import gc

    from consumers.projection import paused_gc

    log = _logged(tmp_path, seed=10, n=80)
    store = SQLiteViewStore(tmp_path / "views.db")
    states: list[bool] = []

    class Probe(Projection):
        name = "probe"

        def apply(self, tx: ViewTransaction, items: Sequence[Item]) -> None:
            states.append(gc.isenabled())

    try:
        assert gc.isenabled()
        ProjectionRunner(log, store, [Probe()], batch_size=20).run()
        assert states and not any(states) and gc.isenabled()
        with paused_gc():  # nested pauses: enabled again only when the last one ends
            with paused_gc():
                assert not gc.isenabled()
            assert not gc.isenabled()
        assert gc.isenabled()
        with pytest.raises(RuntimeError, match="injected"), paused_gc():
            raise RuntimeError("injected")
        assert gc.isenabled()
        gc.disable()  # a caller that had it off keeps it off
        try:
            with paused_gc():
                pass
            assert not gc.isenabled()
        finally:
            gc.enable()
    finally:
        log.close()
        store.close()


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
