"""A record that cannot be applied never stops a projection and never empties a view
(issue 12, observation 4): on every path and both backends it is quarantined with its
reason, the position moves on, and ``pdl status`` / ``pdl quarantine`` show it.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from eventkit import collected, dump_views, random_events

from consumers import queries
from consumers.consume import make_consumer
from consumers.registry import all_projections
from consumers.views import SQLiteViewStore
from ledger.application import Ledger
from ledger.persistence import NewRecord
from ledger.settings import Settings
from pdl.cli import main
from pdl.service import QueryService

Capture = pytest.CaptureFixture[str]
PERSON = "p_" + "a" * 32


def _stored(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def poison() -> list[NewRecord]:
    """Records an older ledger or a careless producer left in the log."""
    big = collected(PERSON, datetime(2026, 1, 1, tzinfo=UTC), ["user.contact.email"])
    big["data"]["retention_days"] = 10**12  # accepted before the contract was bounded
    late = collected(PERSON, datetime(2026, 1, 1, tzinfo=UTC), ["user.contact.email"])
    late["time"] = "9999-12-31T23:59:59-05:00"  # overflows once converted to UTC
    unknown = {**collected(PERSON, datetime(2026, 1, 1, tzinfo=UTC), ["user"]),
               "type": "data.teleported"}
    return [
        NewRecord("poison-json", "data.collected", PERSON, b'{"type": "data.collected", oops'),
        NewRecord(big["id"], "data.collected", PERSON, _stored(big)),
        NewRecord(late["id"], "data.collected", PERSON, _stored(late)),
        NewRecord(unknown["id"], "data.collected", PERSON, _stored(unknown)),
    ]


POISON = len(poison())


@pytest.fixture
def service(backend_settings: Settings) -> Any:
    with QueryService(Ledger(backend_settings)) as svc:
        events = random_events(seed=21, n=240)
        svc.ledger.publish(events[:120])
        svc.ledger.log.append(poison())
        svc.ledger.publish(events[120:])
        yield svc


def _at_end(svc: QueryService) -> bool:
    return all(row["lag"] == 0 for row in svc.status())


def _answers(views: Any, svc: QueryService) -> None:
    """Every query answers from these views."""
    queries.disclosures(views)
    queries.disclosure_summary(views)
    queries.incidents(views)
    queries.scope(views, ["accounts-db"], datetime(2020, 1, 1, tzinfo=UTC),
                  datetime(2030, 1, 1, tzinfo=UTC))
    svc.findings(views)


def test_every_path_quarantines_and_moves_on(service: QueryService, tmp_path: Path) -> None:
    svc = service
    log_id = svc.ledger.log.log_id
    # project
    stats = svc.catch_up()
    assert stats.bad == POISON
    assert _at_end(svc)
    assert svc.quarantine_counts() == {log_id: POISON}
    assert {r["quarantined"] for r in svc.status()} == {POISON}
    reasons = [r["reason"] for r in svc.views.quarantined(log_id)]
    assert any("retention_days" in r for r in reasons)
    assert any("time" in r for r in reasons)
    assert any("type" in r for r in reasons)
    _answers(svc.views, svc)
    projected = dump_views(svc.views, svc.projections)
    positions = svc.runner().positions()
    # rebuild, in this process and in two
    for workers in (1, 2):
        stats = svc.rebuild(workers=workers)
        assert stats.bad == POISON, workers
        assert dump_views(svc.views, svc.projections) == projected, workers
        assert svc.runner().positions() == positions, workers
        assert svc.quarantine_counts() == {log_id: POISON}
    # --as-of replay
    with svc.views_at(datetime.now(UTC)) as views:
        assert views.quarantine_counts() == {log_id: POISON}
        _answers(views, svc)
        assert dump_views(views, all_projections()) == projected
    # consume, into views of its own
    store = SQLiteViewStore(tmp_path / "consumed.db")
    try:
        consumer = make_consumer(svc.ledger.log, store, all_projections(), batch_size=50)
        total = consumer.run(threading.Event(), idle_exit=3)
        assert total.bad == POISON
        assert store.quarantine_counts() == {log_id: POISON}
        assert dump_views(store, all_projections()) == projected
    finally:
        store.close()
    if svc.ledger.log.name == "kafka":
        from test_kafka_consume import read_dead_letters

        letters = read_dead_letters(svc.ledger)
        origins = {headers["pdl-dead-letter-origin"] for _, headers in letters}
        assert len(origins) == POISON  # every quarantined record, whichever path found it
        sent = svc.views.query("SELECT count(*) FROM quarantine WHERE dead_lettered = 1")
        assert sent == [(POISON,)]


def test_status_and_quarantine_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: Capture) -> None:
    from ledger.settings import generate_key

    monkeypatch.setenv("LEDGER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEDGER_MASTER_KEY", generate_key())
    monkeypatch.setenv("LEDGER_ACTOR", "tests")
    with Ledger(Settings.from_env()) as ledger:
        ledger.publish(random_events(seed=22, n=30))
        ledger.log.append(poison())
    assert main(["project", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bad"] == POISON
    assert main(["status", "--json"]) == 0
    assert {r["quarantined"] for r in json.loads(capsys.readouterr().out)} == {POISON}
    assert main(["status"]) == 0
    assert f"{POISON} record(s) of the log quarantined" in capsys.readouterr().out
    assert main(["quarantine", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["total"] == POISON
    assert [r["event_id"] for r in listed["records"]][0] == "poison-json"
    first = listed["records"][0]
    assert main(["quarantine", "show", f"{first['partition']}:{first['offset']}",
                 "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["payload"] == '{"type": "data.collected", oops'
    assert "not valid JSON" in shown["reason"] or "json" in shown["reason"].lower()
    assert main(["quarantine", "show", "0:999999"]) == 66
    capsys.readouterr()
    # the queries answer, today and as of now
    assert main(["findings", "--json"]) in (0, 1)
    assert main(["scope", "--stores", "accounts-db", "--from", "2020-01-01T00:00:00Z",
                 "--until", "2030-01-01T00:00:00Z", "--as-of",
                 datetime.now(UTC).isoformat(), "--json"]) == 0


class _Overflow:
    """A projection that cannot store one record's value (as SQLite could not store
    retention_days=10**12): the record is isolated and quarantined, the rest applied."""


def test_a_record_a_projection_fails_on_is_isolated(tmp_path: Path) -> None:
    from consumers.projection import Item, Projection, ProjectionRunner
    from consumers.views import ViewTransaction
    from ledger.sqlite import SQLiteEventLog
    from eventkit import log_events

    class Picky(Projection):
        name = "picky"
        tables = ("picky",)
        schema = ("CREATE TABLE IF NOT EXISTS picky (event_id TEXT PRIMARY KEY)",)

        def apply(self, tx: ViewTransaction, items: Any) -> None:
            for item in items:
                if item.event.id == "e-bad":
                    tx.execute("INSERT INTO picky VALUES (?)", (2**64,))  # OverflowError
                tx.execute("INSERT INTO picky VALUES (?)", (item.event.id,))

    log = SQLiteEventLog(tmp_path / "log.db")
    store = SQLiteViewStore(tmp_path / "views.db")
    try:
        events = random_events(seed=23, n=50)
        events[20]["id"] = "e-bad"
        log_events(log, events)
        stats = ProjectionRunner(log, store, [Picky()], batch_size=16).run()
        assert stats.bad == 1 and stats.records == 50
        assert store.query("SELECT count(*) FROM picky") == [(49,)]
        (row,) = store.quarantined()
        assert row["event_id"] == "e-bad" and "OverflowError" in row["reason"]
        del Item
    finally:
        log.close()
        store.close()
