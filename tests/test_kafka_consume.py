"""Projections on Kafka: consumer groups, dead letters, foreign producers, broker faults.

All against a real broker (``kafka_bootstrap``); a broker crash is a SIGKILL of its JVM
through ``scripts/kafka-dev kill``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consumers.findings import list_findings
from consumers.consume import HEADER_ORIGIN, HEADER_REASON, KafkaGroupConsumer
from consumers.parallel import parallel_rebuild
from consumers.projection import ProjectionRunner
from consumers.registry import all_projections
from consumers.views import SQLiteViewStore
from ledger.application import Ledger
from ledger.errors import LedgerError
from ledger.settings import Settings
from schemas import encode, parse_wire
from schemas.examples import EXAMPLES
from conftest import DEV_ENV, IN_CI, KAFKA_DEV, kafka_cli_env, kafka_settings
from eventkit import dump_views as _dump_views

pytestmark = pytest.mark.kafka


def dump_views(store: Any, projections: Any) -> dict[str, list[tuple[Any, ...]]]:
    """View rows, without bookkeeping that records the order batches arrived in."""
    return {k: v for k, v in _dump_views(store, projections).items() if not k.endswith("_meta")}


def wire(i: int, subject: str | None = None) -> dict[str, Any]:
    return {
        "id": f"kc-{i:07d}",
        "source": "tests/kafka",
        "type": "data.collected",
        "time": f"2026-11-01T10:{(i // 60) % 60:02d}:{i % 60:02d}Z",
        "subject": subject or f"acct:{i % 40}",
        "data": {"categories": ["user.contact.email"], "source": {"kind": "subject"},
                 "purpose": "essential.service.authentication", "store": f"db-{i % 3}",
                 "store_location": "CN", "retention_days": 365},
        "personal": {"user.contact.email": f"k{i}@example.cn"},
    }


def paid(i: int) -> dict[str, Any]:
    return {**EXAMPLES["data.shared"], "id": f"kc-paid-{i}", "subject": f"acct:{i}",
            "time": "2026-11-02T10:00:00Z",
            "data": {"recipient": "pay-co", "recipient_kind": "service_provider",
                     "categories": ["user.financial.bank_account"],
                     "purpose": "essential.service.payment_processing", "clause": "5.1.1",
                     "agreement_ref": "DPA-1"}}


@pytest.fixture
def kafka(settings: Settings, kafka_bootstrap: str) -> Iterator[Settings]:
    yield kafka_settings(settings, kafka_bootstrap, partitions=4)


def fresh_rebuild(ledger: Ledger) -> dict[str, list[tuple[Any, ...]]]:
    store = SQLiteViewStore(":memory:")
    projections = all_projections()
    ProjectionRunner(ledger.log, store, projections).rebuild()
    return dump_views(store, projections)


def consume(ledger: Ledger, store: SQLiteViewStore, *, idle: float = 3.0,
            group: str | None = None, pipeline: bool = False) -> Any:
    member = KafkaGroupConsumer(ledger.log, store, all_projections(), group_id=group,
                                batch_size=200, pipeline=pipeline)
    return member.run(threading.Event(), idle_exit=idle)


@pytest.mark.parametrize("pipeline", [False, True], ids=["one-process", "pipeline"])
def test_group_consumer_equals_a_fresh_rebuild_and_ignores_retried_publishes(
        kafka: Settings, tmp_path: Path, pipeline: bool) -> None:
    with Ledger(kafka) as ledger:
        # A payment processor registered first (an event about no one), then people's
        # payment data shared with it, from every partition.
        ledger.publish([{**EXAMPLES["recipient.registered"], "id": "kc-recipient"}])
        events = [wire(i) for i in range(600)]
        ledger.publish(events[:400])
        ledger.publish(events[300:])  # a retried publish: 100 events again
        ledger.publish([paid(i) for i in range(40)])
        store = SQLiteViewStore(tmp_path / "views.db")
        stats = consume(ledger, store, pipeline=pipeline)
        assert stats.records >= 700 and stats.duplicates > 0
        assert dump_views(store, all_projections()) == fresh_rebuild(ledger)
        # each event applied once, the retried 100 not twice (and the registration, the 40
        # payments)
        assert applied(store) == 641
        # whatever partition a person's disclosure sits on, the registration came first
        assert list_findings(store, clause="2.1.1(3)b") == []


@pytest.mark.parametrize("pipeline", [False, True], ids=["one-process", "pipeline"])
def test_two_members_share_partitions_and_a_crash_loses_nothing(kafka: Settings,
                                                                 tmp_path: Path,
                                                                 pipeline: bool) -> None:
    with Ledger(kafka) as ledger:
        for start in range(0, 1200, 200):
            ledger.publish([wire(i) for i in range(start, start + 200)])
        store_path = tmp_path / "views.db"
        stop_a, stop_b = threading.Event(), threading.Event()
        stores = [SQLiteViewStore(store_path), SQLiteViewStore(store_path)]
        members = [KafkaGroupConsumer(ledger.log, s, all_projections(), batch_size=50,
                                      pipeline=pipeline)
                   for s in stores]
        seen_a: list[int] = []
        thread_a = threading.Thread(target=lambda: members[0].run(
            stop_a, on_batch=lambda st: seen_a.append(st.records)))
        thread_a.start()
        while sum(seen_a) < 200:
            time.sleep(0.05)
        thread_b = threading.Thread(target=lambda: members[1].run(stop_b, idle_exit=6))
        thread_b.start()
        time.sleep(4)  # a rebalance gives B a share
        stop_a.set()  # A leaves mid-stream; B takes over A's partitions
        thread_a.join(30)
        thread_b.join(120)
        assert not thread_a.is_alive() and not thread_b.is_alive()
        assert members[1].ever_assigned, "the second member never got partitions"
        assert members[0].ever_assigned
        assert dump_views(stores[1], all_projections()) == fresh_rebuild(ledger)


def test_foreign_records_are_taken_up_and_bad_ones_dead_lettered(kafka: Settings,
                                                                 tmp_path: Path) -> None:
    kcat = shutil.which("kcat")
    if kcat is None:
        if IN_CI:
            pytest.fail("kcat is missing: run scripts/ci-deps")
        pytest.skip("kcat not installed (apt-get install kcat)")
    with Ledger(kafka) as ledger:
        # Another team's producer writes the documented stored form: a pseudonymous
        # subject (the ledger's form), keyed by it, no clear values.
        foreign = parse_wire({**wire(7001), "personal": None})
        person = "p_" + "f" * 32
        stored = encode(foreign.model_copy(update={"subject": person}))
        lines = (person.encode() + b"|" + stored + b"\n"
                 + b'|{"type": "data.collected", "oops": true}\n')
        done = subprocess.run(
            [kcat, "-P", "-b", ledger.log.bootstrap, "-t", ledger.log.topic, "-p", "0",  # type: ignore[attr-defined]
             "-K", "|"],
            input=lines, capture_output=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr
        ledger.publish([wire(1)])  # and a normal one after
        store = SQLiteViewStore(tmp_path / "views.db")
        stats = consume(ledger, store)
        assert stats.bad == 1
        pseudonyms = {r[0] for r in store.query("SELECT DISTINCT pseudonym FROM holdings")}
        assert applied(store) == 2
        assert person in pseudonyms
        assert ledger.pseudonymise("acct:1") in pseudonyms
        letters = read_dead_letters(ledger)
        assert len(letters) == 1
        (value, headers), = letters
        assert value == b'{"type": "data.collected", "oops": true}'
        assert headers[HEADER_ORIGIN].startswith(f"{ledger.log.topic}:0:".encode())  # type: ignore[attr-defined]
        assert b"data" in headers[HEADER_REASON]


def read_dead_letters(ledger: Ledger) -> list[tuple[bytes, dict[str, bytes]]]:
    from kafka import KafkaConsumer, TopicPartition

    log: Any = ledger.log
    consumer = KafkaConsumer(bootstrap_servers=log.bootstrap, enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=3000)
    tps = [TopicPartition(log.dead_letter_topic, p)
           for p in consumer.partitions_for_topic(log.dead_letter_topic) or ()]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out = [(r.value, dict(r.headers)) for r in consumer]
    consumer.close()
    return out


def broker(command: str) -> None:
    done = subprocess.run([str(KAFKA_DEV), command], capture_output=True, text=True,
                          env=DEV_ENV, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def own_broker(kafka_bootstrap: str) -> Iterator[None]:
    """Fault tests kill the broker: only when it is ours (scripts/kafka-dev)."""
    if subprocess.run([str(KAFKA_DEV), "status"], capture_output=True).returncode != 0:
        if IN_CI:
            pytest.fail("the fault tests need the broker started by scripts/kafka-dev")
        pytest.skip("the broker is not managed by scripts/kafka-dev")
    yield
    if subprocess.run([str(KAFKA_DEV), "status"], capture_output=True).returncode != 0:
        broker("start")


def test_broker_killed_mid_publish_loses_and_doubles_nothing(kafka: Settings, own_broker: None,
                                                             tmp_path: Path) -> None:
    short = kafka.with_(kafka=kafka.kafka.with_(request_timeout_ms=5000))
    acknowledged: set[str] = set()
    failures: list[str] = []
    with Ledger(short) as ledger:
        batches = [[wire(i) for i in range(start, start + 100)] for start in range(0, 3000, 100)]

        def publish_all() -> None:
            for batch in batches:
                try:
                    results = ledger.publish(batch)
                    acknowledged.update(r.event_id for r in results)
                except LedgerError as exc:
                    failures.append(str(exc))
                    if len(failures) > 1:  # the second: the replaced producer's (CI time)
                        return

        publisher = threading.Thread(target=publish_all)
        publisher.start()
        while len(acknowledged) < 300 and publisher.is_alive():
            time.sleep(0.02)
        broker("kill")
        publisher.join(300)
        assert failures, "publishing went on with the broker dead"
        assert "Kafka topic" in failures[0] and "broker" in failures[0]
        broker("start")
    with Ledger(kafka) as ledger:
        # retry what was not acknowledged: the ids are the same, so no duplicates appear
        for batch in batches:
            if not {e["id"] for e in batch} <= acknowledged:
                ledger.publish(batch)
        store = SQLiteViewStore(tmp_path / "views.db")
        consume(ledger, store)
        assert applied(store) == 3000  # every event once, acknowledged or retried
        assert dump_views(store, all_projections()) == fresh_rebuild(ledger)


def applied(store: SQLiteViewStore) -> int:
    """Distinct events taken up (Kafka runners mark each event's first copy, once)."""
    return int(store.query("SELECT count(*) FROM event_marks WHERE event_id NOT LIKE '%@%'"
                           )[0][0])


def test_broker_killed_mid_projection_then_views_equal_a_rebuild(kafka: Settings,
                                                                 own_broker: None,
                                                                 tmp_path: Path) -> None:
    with Ledger(kafka) as ledger:
        for start in range(0, 2000, 250):
            ledger.publish([wire(i) for i in range(start, start + 250)])
    store = SQLiteViewStore(tmp_path / "views.db")
    with Ledger(kafka) as ledger:
        stop = threading.Event()
        seen: list[int] = []
        errors: list[BaseException] = []
        member = KafkaGroupConsumer(ledger.log, store, all_projections(), batch_size=100)

        def run() -> None:
            try:
                member.run(stop, on_batch=lambda st: seen.append(st.records))
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        while sum(seen) < 300:
            time.sleep(0.01)
        broker("kill")
        time.sleep(2)
        broker("start")
        time.sleep(2)
        stop.set()
        thread.join(120)
    with Ledger(kafka) as ledger:
        consume(ledger, store)  # a restarted process picks up from the views' positions
        assert applied(store) == 2000
        assert dump_views(store, all_projections()) == fresh_rebuild(ledger)


def test_pdl_consume_stops_cleanly_on_sigterm(kafka: Settings, tmp_path: Path) -> None:
    import signal
    import sys

    with Ledger(kafka) as ledger:
        ledger.publish([wire(i) for i in range(50)])
    env = kafka_cli_env(kafka)
    proc = subprocess.Popen([sys.executable, "-m", "pdl.cli", "consume", "--json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    views = kafka.views_file
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if views.exists():
            try:
                if applied(SQLiteViewStore(views)) == 50:
                    break
            except Exception:  # noqa: BLE001 - not created yet
                pass
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["records"] >= 50
    assert b"SIGTERM" in err
    status = subprocess.run([sys.executable, "-m", "pdl.cli", "status", "--json"], env=env,
                            capture_output=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert all(row["lag"] == 0 for row in json.loads(status.stdout))


# --- a rebuild split by partition ------------------------------------------------------------


def _positions_of_copies_blanked(dump: dict[str, list[tuple[Any, ...]]]
                                 ) -> dict[str, list[tuple[Any, ...]]]:
    """Views with the (partition, offset) of rows about no one blanked: an event about no
    one is on every partition, and each such row names the copy its reader met first."""
    out = dict(dump)
    out["findings"] = sorted(
        ((*r[:3], None, None, *r[5:]) if r[1] is None else r for r in dump["findings"]),
        key=repr)
    out["findings_incidents"] = sorted(
        ((*r[:2], None, None, *r[4:]) for r in dump["findings_incidents"]), key=repr)
    return out


def _about_no_one(i: int) -> list[dict[str, Any]]:
    """Events about no one that write rows of their own, one of them a finding (1.3)."""
    return [
        {**EXAMPLES["recipient.registered"], "id": f"kc-cloud-{i}",
         "data": {**EXAMPLES["recipient.registered"]["data"], "recipient": f"cloud-{i}",
                  "allowed_categories": ["customer.content"]}},
        {**EXAMPLES["incident.opened"], "id": f"kc-incident-{i}",
         "data": {**EXAMPLES["incident.opened"]["data"], "incident_id": f"inc-{i}",
                  "stores": ["db-1"]}},
        {**EXAMPLES["incident.reported"], "id": f"kc-reported-{i}",
         "data": {**EXAMPLES["incident.reported"]["data"], "incident_id": f"inc-{i}"}},
    ]


def test_a_rebuild_split_by_partition_equals_a_rebuild_in_one_process(
        kafka: Settings, tmp_path: Path) -> None:
    from consumers.parallel import can_rebuild_in_parallel, shares

    with Ledger(kafka) as ledger:
        ledger.publish([{**EXAMPLES["recipient.registered"], "id": "kc-recipient"}])
        for start in range(0, 600, 200):
            ledger.publish([wire(i) for i in range(start, start + 200)])
            ledger.publish(_about_no_one(start))
        ledger.publish([paid(i) for i in range(40)])
        ledger.publish([wire(i) for i in range(550, 600)])  # a retried publish
        split = shares(ledger.log, 2)
        # shares balance records, so their sizes follow where the keyed pseudonyms hash
        assert split is not None and len(split) == 2 and all(split)
        assert sorted(p for share in split for p in share) == [0, 1, 2, 3]
        serial = SQLiteViewStore(tmp_path / "serial.db")
        split = SQLiteViewStore(tmp_path / "split.db")
        serial_stats = ProjectionRunner(ledger.log, serial, all_projections()).rebuild()
        runner = ProjectionRunner(ledger.log, split, all_projections())
        assert can_rebuild_in_parallel(runner)
        seen: list[int] = []
        stats = parallel_rebuild(runner, workers=2, progress=seen.append)
        assert (stats.records, stats.applied, stats.duplicates) == (
            serial_stats.records, serial_stats.applied, serial_stats.duplicates)
        assert sum(seen) == stats.records
        views = dump_views(split, all_projections())
        assert _positions_of_copies_blanked(views) == _positions_of_copies_blanked(
            dump_views(serial, all_projections()))
        # each event about no one counted once, though every partition holds a copy
        about_no_one = [r for r in views["findings"] if r[1] is None]
        assert sorted(r[2] for r in about_no_one) == ["kc-cloud-0", "kc-cloud-200",
                                                      "kc-cloud-400"]
        assert len(views["findings_incidents"]) == len(views["incidents"]) == 3
        assert runner.positions() == ProjectionRunner(
            ledger.log, serial, all_projections()).positions()
        # and the views go on from there as any others would
        ledger.publish([wire(i) for i in range(600, 700)] + _about_no_one(600))
        runner.run()
        ProjectionRunner(ledger.log, serial, all_projections()).run()
        assert _positions_of_copies_blanked(dump_views(split, all_projections())) == (
            _positions_of_copies_blanked(dump_views(serial, all_projections())))
        serial.close()
        split.close()


def test_a_person_on_two_partitions_makes_the_split_rebuild_fall_back(
        kafka: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from ledger.kafka import KafkaEventLog

    with Ledger(kafka) as ledger:
        ledger.publish([wire(i) for i in range(200)])
        # as if partitions had been added to the topic: the same people land elsewhere
        real = KafkaEventLog._partition_of  # the partitioner under test

        def moved(self: KafkaEventLog, key: bytes, producer: Any) -> int:
            return (real(self, key, producer) + 1) % 4

        monkeypatch.setattr(KafkaEventLog, "_partition_of", moved)
        ledger.publish([{**wire(i), "id": f"kc-moved-{i}"} for i in range(200)])
        store = SQLiteViewStore(tmp_path / "views.db")
        with caplog.at_level("WARNING", logger="consumers.parallel"):
            stats = parallel_rebuild(ProjectionRunner(ledger.log, store, all_projections()),
                                     workers=2)
        assert "more than one partition" in caplog.text
        assert "rebuilding in one process instead" in caplog.text
        assert stats.records == 400
        assert dump_views(store, all_projections()) == fresh_rebuild(ledger)
        store.close()
