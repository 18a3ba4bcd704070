"""A rebuild into PostgreSQL builds aside and swaps in with one transaction (issue 12).

Against the real PostgreSQL the test session starts (tests/pgkit.py): the swapped-in views
equal a rebuild in SQLite and a consumer goes on writing after the swap; a reader (another
``pdl serve``, and the in-memory scope index that follows the store) during a rebuild sees
the old views or the new ones, never a mix, and notices the swap; a rebuild killed with
SIGKILL mid-build leaves the old views serving, and the next one clears what it left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from eventkit import dump_views, log_events, random_events

from consumers.parallel import parallel_rebuild
from consumers.postgres import PostgresViewStore
from consumers.projection import ProjectionRunner
from consumers.registry import all_projections
from consumers.scope import exposed_sql
from consumers.scope_index import ScopeIndex
from consumers.views import SQLiteViewStore, ViewStore
from ledger.sqlite import SQLiteEventLog

EVENTS = random_events(seed=12, n=1500)
#: A scope question whose answer changes between the old views and the new.
QUESTION = (["accounts-db", "logs", "payments-db"], 0, 2**62, None)


def reference(log: SQLiteEventLog) -> dict[str, Any]:
    store = SQLiteViewStore()
    ProjectionRunner(log, store, all_projections()).rebuild()
    return dump_views(store, all_projections())


def fingerprint(view: ViewStore) -> tuple[Any, ...]:
    """Row counts of every view table, the positions and the holdings generation, read
    in one snapshot: a half-built or mixed state matches neither the old nor the new."""
    with view.snapshot() as v:
        counts = tuple(v.query(f"SELECT count(*) FROM {table}")[0][0]
                       for p in all_projections() for table in p.tables)
        tracked = tuple(sorted(v.query('SELECT projection, partition, "offset" FROM tracking')))
        generation = v.query("SELECT generation FROM holdings_generation")
    return counts, tracked, tuple(generation)


def scratch_schemas(store: PostgresViewStore) -> list[str]:
    return [r[0] for r in store.query(
        "SELECT nspname FROM pg_namespace WHERE left(nspname, ?) = ?",
        (len(store.schema) + 10, store.schema + "__rebuild_"))]


@pytest.fixture
def log(tmp_path: Path) -> SQLiteEventLog:
    log = SQLiteEventLog(tmp_path / "log.db", synchronous="OFF")
    log_events(log, EVENTS[:600])
    return log


@pytest.mark.parametrize("workers", [1, 2])
def test_a_rebuild_swaps_in_views_equal_to_sqlite_and_consumers_go_on(
        log: SQLiteEventLog, postgres_url: str, workers: int) -> None:
    store = PostgresViewStore(postgres_url)
    try:
        ProjectionRunner(log, store, all_projections(), batch_size=100).run()
        log_events(log, EVENTS[600:900])
        parallel_rebuild(ProjectionRunner(log, store, all_projections()), workers=workers,
                         batch_size=100)
        assert dump_views(store, all_projections()) == reference(log)
        assert scratch_schemas(store) == []
        # a consumer goes on after the swap: identity columns continue above the copied rows
        log_events(log, EVENTS[900:1200])
        ProjectionRunner(log, store, all_projections(), batch_size=50).run()
        assert dump_views(store, all_projections()) == reference(log)
        seq = store.query("SELECT seq FROM holdings_journal")
        assert len(seq) == len({s for (s,) in seq})
    finally:
        store.close()
        log.close()


def test_a_reader_during_a_rebuild_sees_the_old_views_or_the_new_never_a_mix(
        log: SQLiteEventLog, postgres_url: str) -> None:
    writer, reader = PostgresViewStore(postgres_url), PostgresViewStore(postgres_url)
    try:
        ProjectionRunner(log, writer, all_projections(), batch_size=100).run()
        log_events(log, EVENTS[600:])
        old = fingerprint(reader)
        index = ScopeIndex.attach(reader)
        old_answer = index.exposed(*QUESTION)
        assert old_answer == exposed_sql(reader, *QUESTION)
        loads = index.loads

        failed: list[BaseException] = []

        def rebuild() -> None:
            try:
                parallel_rebuild(ProjectionRunner(log, writer, all_projections()), workers=1,
                                 batch_size=20)
            except BaseException as exc:  # noqa: BLE001 - re-raised by the test
                failed.append(exc)

        thread = threading.Thread(target=rebuild)
        thread.start()
        seen, answers = [], []
        while thread.is_alive():
            seen.append(fingerprint(reader))
            answers.append(index.exposed(*QUESTION))
        thread.join()
        assert not failed, failed
        new = fingerprint(reader)
        new_answer = index.exposed(*QUESTION)
        assert new != old and new_answer != old_answer
        assert len(seen) >= 5, "the reader did not read during the rebuild"
        assert seen[0] == old
        mixed = [fp for fp in seen if fp not in (old, new)]
        assert not mixed, "a reader saw views that are neither the old nor the new"
        assert all(a in (old_answer, new_answer) for a in answers)
        # the index noticed the swap (a new generation): reloaded, and equal to SQL
        assert index.loads > loads
        assert new_answer == exposed_sql(reader, *QUESTION)
        assert dump_views(reader, all_projections()) == reference(log)
    finally:
        ScopeIndex.detach(reader)
        writer.close()
        reader.close()
        log.close()


CHILD = """
import sys
from consumers.parallel import parallel_rebuild
from consumers.postgres import PostgresViewStore
from consumers.projection import ProjectionRunner
from consumers.registry import all_projections
from ledger.sqlite import SQLiteEventLog

store = PostgresViewStore(sys.argv[2])
parallel_rebuild(ProjectionRunner(SQLiteEventLog(sys.argv[1]), store, all_projections()),
                 workers=1, batch_size=10)
"""


def test_a_rebuild_killed_mid_build_leaves_the_old_views_serving(
        log: SQLiteEventLog, postgres_url: str, tmp_path: Path) -> None:
    store = PostgresViewStore(postgres_url)
    try:
        ProjectionRunner(log, store, all_projections(), batch_size=100).run()
        log_events(log, EVENTS[600:])
        old_views, old = dump_views(store, all_projections()), fingerprint(store)
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "log.db"),
                                  postgres_url], env={**os.environ})
        scratch = f'"{store.schema}__rebuild_0"'
        deadline = time.monotonic() + 60
        built = 0
        while time.monotonic() < deadline and child.poll() is None:
            try:  # wait until the build is well under way in its scratch schema
                built = store.query(f"SELECT count(*) FROM {scratch}.tracking")[0][0]
            except Exception:  # noqa: BLE001 - the schema or table is not made yet
                built = 0
            if built >= 3:
                break
            time.sleep(0.02)
        assert child.poll() is None, "the rebuild ended before it could be killed"
        assert built >= 3
        child.send_signal(signal.SIGKILL)
        child.wait(30)

        # the old views serve, whole, positions and generation included
        assert fingerprint(store) == old
        assert dump_views(store, all_projections()) == old_views
        assert scratch_schemas(store)  # what the killed build left, nobody reads
        # the next rebuild clears it and swaps in the views of the whole log
        parallel_rebuild(ProjectionRunner(log, store, all_projections()), workers=1)
        assert scratch_schemas(store) == []
        assert dump_views(store, all_projections()) == reference(log)
        assert fingerprint(store) != old
    finally:
        store.close()
        log.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_findings_view_of_the_old_layout_asks_for_a_rebuild_that_replaces_it(
        log: SQLiteEventLog, tmp_path: Path, backend: str,
        request: pytest.FixtureRequest) -> None:
    """Views built before registries were kept per partition: carrying them on is refused
    with the fix named; a rebuild swaps in the new layout (PostgreSQL: the table itself)."""
    from ledger.errors import ConfigurationError

    store: ViewStore = (PostgresViewStore(request.getfixturevalue("postgres_url"))
                        if backend == "postgres" else SQLiteViewStore(tmp_path / "views.db"))
    try:
        with store.transaction() as tx:  # the findings' policies as they were kept before
            tx.execute("CREATE TABLE findings_policies (version TEXT PRIMARY KEY, "
                       "effective_at BIGINT NOT NULL, material INTEGER NOT NULL)")
        with pytest.raises(ConfigurationError, match=r"pdl rebuild findings"):
            ProjectionRunner(log, store, all_projections()).run()
        parallel_rebuild(ProjectionRunner(log, store, all_projections()), workers=1)
        assert dump_views(store, all_projections()) == reference(log)
        log_events(log, EVENTS[600:700])
        ProjectionRunner(log, store, all_projections()).run()  # carried on
        assert dump_views(store, all_projections()) == reference(log)
    finally:
        store.close()
        log.close()
