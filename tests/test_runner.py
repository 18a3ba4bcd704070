"""The projection runner: event-id dedupe across batches and partitions, which records it
decodes, the query indexes of a rebuild, and the cyclic GC while projecting."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from eventkit import Boom, dump_views, random_sqlite_log

from consumers.projection import (
    Item,
    Projection,
    ProjectionRunner,
)
from consumers.registry import all_projections, open_views
from consumers.views import SQLiteViewStore, ViewStore, ViewTransaction
from ledger.errors import ConfigurationError, OperationalError
from ledger.settings import Settings
from ledger.persistence import EventLog, LogRecord, NewRecord
from schemas.events import DataUsed


# --- first_time: one query and one executemany per batch ---------------------------------






def test_first_time_marks_an_id_once_within_a_batch_and_across_batches(view_store: ViewStore) -> None:
    store = view_store
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


def test_first_time_rolled_back_with_its_transaction(view_store: ViewStore) -> None:
    store = view_store
    try:
        with pytest.raises(RuntimeError), store.transaction() as tx:
            assert tx.first_time("a", ["e1"]) == [True]
            raise RuntimeError("batch failed")
        with store.transaction() as tx:
            assert tx.first_time("a", ["e1"]) == [True]
    finally:
        store.close()


def test_first_time_of_more_ids_than_one_query_takes(view_store: ViewStore) -> None:
    store = view_store
    ids = [f"e{i}" for i in range(1234)]
    try:
        with store.transaction() as tx:
            assert all(tx.first_time("a", ids[:700]))
        with store.transaction() as tx:
            assert tx.first_time("a", ids + ids[-5:]) == [False] * 700 + [True] * 534 + [False] * 5
    finally:
        store.close()


def test_marks_keep_where_each_event_was_first_met(view_store: ViewStore) -> None:
    """``mark``: one insert; answers the keys marked before at another position (the
    earlier mark wins), nothing while every key is new; rolled back with its transaction."""
    store = view_store
    try:
        with store.transaction() as tx:
            assert tx.mark([("e1", 0, 5, None), ("e2", 1, 7, "policy.published")]) == {}
            assert tx.mark([]) == {}
        with pytest.raises(RuntimeError), store.transaction() as tx:
            assert tx.mark([("e3", 2, 1, None)]) == {}
            raise RuntimeError("batch failed")
        with store.transaction() as tx:
            assert tx.mark([("e3", 0, 9, None), ("e1", 3, 50, None), ("e2", 1, 7, None),
                            ("e4", 0, 5, None)]) == {"e1": (0, 5)}
            assert tx.mark([("e3", 0, 10, None), ("e1", 0, 5, None)]) == {"e3": (0, 9)}
        rows = store.query('SELECT event_id, partition, "offset", event_type FROM event_marks '
                           "ORDER BY event_id")
        assert [tuple(r) for r in rows] == [("e1", 0, 5, None), ("e2", 1, 7, "policy.published"),
                                            ("e3", 0, 9, None), ("e4", 0, 5, None)]
    finally:
        store.close()


def test_first_time_with_some_ids_marked_already_marks_each_once(view_store: ViewStore) -> None:
    """An insert that meets ids marked before is undone and made again id by id: no mark
    lost, none twice, and the answers are those of the fresh ids only."""
    store = view_store
    try:
        with store.transaction() as tx:
            assert tx.first_time("a", ["e1", "e3"]) == [True, True]
        with store.transaction() as tx:
            assert tx.first_time("a", ["e2", "e3", "e4", "e2"]) == [True, False, True, False]
        rows = store.query("SELECT event_id FROM applied_events WHERE projection = 'a' "
                           "ORDER BY event_id")
        assert [r[0] for r in rows] == ["e1", "e2", "e3", "e4"]
    finally:
        store.close()


def test_positions_reads_every_projection_at_once(view_store: ViewStore) -> None:
    store = view_store
    try:
        with store.transaction() as tx:
            tx.track("a", "log-1", {0: 5, 2: 7})
            tx.track("b", "log-1", {1: 3})
            tx.track("a", "log-2", {0: 9})
        with store.transaction() as tx:
            assert tx.positions("log-1") == {"a": {0: 5, 2: 7}, "b": {1: 3}}
            assert tx.positions("log-3") == {}
    finally:
        store.close()


def test_executemany_of_inserts_equals_a_statement_per_row(view_store: ViewStore) -> None:
    """PostgreSQL sends the rows of an INSERT as one statement where that is exact: the
    same rows as one statement per row, in order (the implicit rowid), on both stores;
    a conflict key twice in one call (later rows update earlier ones), booleans, bytes
    and NULLs included."""
    store = view_store
    with store.transaction() as tx:
        tx.execute("CREATE TABLE IF NOT EXISTS t_keyed (k TEXT NOT NULL, n INTEGER NOT NULL, "
                   "b BLOB, PRIMARY KEY (k))")
        tx.execute("CREATE TABLE IF NOT EXISTS t_log (k TEXT NOT NULL, flag INTEGER, "
                   '"offset" INTEGER)')
    upsert = ("INSERT INTO t_keyed (k, n, b) VALUES (?, ?, ?) "
              "ON CONFLICT (k) DO UPDATE SET n = t_keyed.n + excluded.n, b = excluded.b")
    with store.transaction() as tx:
        tx.executemany(upsert, [("a", 1, b"\x00\xff"), ("b", 2, None)])
        tx.executemany(upsert, [("a", 10, b"z"), ("c", 3, b""), ("a", 100, None)])
        tx.executemany("INSERT OR IGNORE INTO t_keyed (k, n) VALUES (?, ?)",
                       [("d", 4), ("d", 5), ("a", 0)])
        tx.executemany('INSERT INTO t_log (k, flag, "offset") VALUES (?, ?, ?)',
                       [(f"r{i}", i % 2 == 0, i if i % 3 else None) for i in range(7)])
    assert [tuple(r) for r in store.query("SELECT k, n, b FROM t_keyed ORDER BY k")] == [
        ("a", 111, None), ("b", 2, None), ("c", 3, b""), ("d", 4, None)]
    assert [tuple(r) for r in store.query('SELECT k, flag, "offset" FROM t_log ORDER BY rowid')
            ] == [(f"r{i}", int(i % 2 == 0), i if i % 3 else None) for i in range(7)]


def _copies(records: list[LogRecord], partitions: int) -> list[LogRecord]:
    """Each record also on other partitions (as Kafka carries an event about no one, or a
    retried publish), at offsets of their own, sorted as a consumer hands them over."""
    out = []
    for partition in range(partitions):
        out.extend(r._replace(partition=partition) for r in records)
    out.sort(key=lambda r: (r.partition, r.offset))
    return out


@pytest.mark.parametrize("batch_size", [7, 10_000])
def test_an_event_on_several_partitions_is_applied_once(tmp_path: Path, batch_size: int,
        make_view_store: Callable[[], ViewStore]) -> None:
    log = random_sqlite_log(tmp_path, seed=5, n=300)
    records = list(log.read())
    once = SQLiteViewStore()
    thrice = make_view_store()  # delivered three times, into each store
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


# --- the store a setting chooses -------------------------------------------------------------


def test_views_url_chooses_postgres_and_errors_name_the_variable(postgres_url: str,
                                                                 tmp_path: Path) -> None:
    from consumers.postgres import PostgresViewStore

    store = open_views(Settings.from_env({"LEDGER_VIEWS_URL": postgres_url,
                                          "LEDGER_DATA_DIR": str(tmp_path)}))
    try:
        assert isinstance(store, PostgresViewStore)
        assert store.position("datamap", "log") == {}
    finally:
        store.close()
    assert isinstance(open_views(Settings(data_dir=tmp_path)), SQLiteViewStore)
    with pytest.raises(ConfigurationError, match="LEDGER_VIEWS_URL must be a postgresql://"):
        Settings.from_env({"LEDGER_VIEWS_URL": "mysql://root:hunter2@db/x"})
    try:
        Settings.from_env({"LEDGER_VIEWS_URL": "mysql://root:hunter2@db/x"})
    except ConfigurationError as exc:
        assert "hunter2" not in str(exc)
    # a server that is not there: retriable, and the message keeps the password out
    down = Settings.from_env({"LEDGER_VIEWS_URL": "postgresql://pdl:hunter2@127.0.0.1:1/x"})
    with pytest.raises(OperationalError) as caught:
        open_views(down)
    assert "hunter2" not in str(caught.value) and caught.value.retriable


# --- the page cache setting ----------------------------------------------------------------


def test_a_runner_decodes_only_the_types_its_projections_want(tmp_path: Path) -> None:
    """On the SQLite log (whose type column the ledger wrote from the validated event) a
    record of a type no projection of the runner wants is not decoded at all."""
    log = random_sqlite_log(tmp_path, seed=8, n=120)
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
    log = random_sqlite_log(tmp_path, seed=9, n=300)
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
        boom = Boom()
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

    log = random_sqlite_log(tmp_path, seed=10, n=80)
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
