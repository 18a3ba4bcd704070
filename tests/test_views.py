"""The view store: batched event-id dedupe, and its page-cache setting."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from eventkit import dump_views, log_events, random_events

from consumers.projection import ProjectionRunner
from consumers.registry import all_projections, open_views
from consumers.views import SQLiteViewStore
from ledger.errors import ConfigurationError
from ledger.persistence import LogRecord
from ledger.settings import Settings
from ledger.sqlite import SQLiteEventLog

# --- first_time: one query and one executemany per batch ---------------------------------


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
    log = SQLiteEventLog(tmp_path / "log.db", synchronous="OFF")
    log_events(log, random_events(seed=5, n=300))
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
    assert Settings.from_env({}).view_cache_mb == 64
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


def test_view_store_refuses_a_cache_below_one_mb() -> None:
    with pytest.raises(ConfigurationError, match="LEDGER_VIEW_CACHE_MB"):
        SQLiteViewStore(cache_mb=0)
