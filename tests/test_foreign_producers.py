"""Records other producers write to the Kafka topic are not taken on trust (issue 12,
observation 5). Produced with librdkafka (confluent-kafka), in both partitioner modes.

- key equal to the subject, subject in the pseudonym form: taken up;
- a real identifier as the subject, or a key that is not the subject: quarantined;
- librdkafka's default partitioner (CRC32) puts a person the ledger placed by murmur2 in a
  second partition: every reader (project, consume, rebuild in one process and in several)
  reports it, in ``status`` and as an alert naming the partitions; ``murmur2_random``
  keeps every person in the ledger's partition, and nothing is reported.
"""

from __future__ import annotations

import logging
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from kafka.partitioner.default import murmur2

from consumers.consume import make_consumer
from consumers.registry import all_projections
from consumers.views import SQLiteViewStore
from ledger.application import Ledger
from ledger.settings import Settings
from pdl.service import QueryService
from schemas import encode, parse_wire

PARTITIONS = 3


def wire(subject: str | None, n: int) -> dict[str, Any]:
    return {"id": f"fp-{n}", "source": "svc/other-team", "type": "data.used",
            "time": f"2026-04-01T10:00:{n % 60:02d}Z", "subject": subject,
            "data": {"categories": ["user.contact.email"], "purpose": "essential.service.security",
                     "system": "fraud"}}


def stored(subject: str, n: int, *, as_subject: str | None = None) -> bytes:
    """The stored form another producer writes: the pseudonym as subject, no clear values."""
    event = parse_wire(wire("placeholder", n))
    return encode(event.model_copy(update={"subject": as_subject or subject}))


def murmur2_partition(key: str) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


def crc32_partition(key: str) -> int:
    return zlib.crc32(key.encode()) % PARTITIONS


@pytest.fixture
def kafka(settings: Settings, kafka_bootstrap: str) -> Settings:
    from conftest import kafka_settings

    return kafka_settings(settings, kafka_bootstrap, partitions=PARTITIONS)


def _produce(kafka: Settings, partitioner: str | None,
             records: list[tuple[str | None, bytes]]) -> None:
    config = {"bootstrap.servers": kafka.kafka.bootstrap_servers, "acks": "all"}
    if partitioner:
        config["partitioner"] = partitioner
    producer = Producer(config)
    for key, value in records:
        producer.produce(kafka.kafka.topic, value=value, key=key)
    assert producer.flush(30) == 0


def test_librdkafka_producers_in_both_partitioner_modes(kafka: Settings, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    with QueryService(Ledger(kafka)) as service:
        ledger = service.ledger
        # people the ledger itself published: placed by murmur2 on their pseudonym
        ids = [f"acct:fp-{i}" for i in range(40)]
        ledger.publish([wire(subject, i) for i, subject in enumerate(ids)])
        pseudonyms = [ledger.pseudonymise(s) for s in ids]
        moved = next(p for p in pseudonyms if crc32_partition(p) != murmur2_partition(p))
        kept = next(p for p in pseudonyms if p != moved)
        # the other team's murmur2 producer: same partitions as the ledger
        _produce(kafka, "murmur2_random", [(kept, stored(kept, 100)), (kept, stored(kept, 101))])
        # the default (CRC32) producer: the moved person lands in a second partition
        _produce(kafka, None, [(moved, stored(moved, 102))])
        # a real identifier as subject (keyed by it), and a key that is not the subject
        _produce(kafka, "murmur2_random", [("acct:real-7", stored("acct:real-7", 103)),
                                           (kept, stored(kept, 104, as_subject=moved))])
        split_at = sorted({murmur2_partition(moved), crc32_partition(moved)})

        def reported(status: list[dict[str, Any]]) -> None:
            row = status[0]
            assert row["split_people"] == 1
            assert row["split_examples"] == [{"pseudonym": moved, "partitions": split_at}]

        with caplog.at_level(logging.WARNING, logger="consumers.projection"):
            stats = service.catch_up()  # pdl project
        assert stats.bad == 2 and stats.split == 1
        reasons = [r["reason"] for r in service.views.quarantined()]
        assert any("not a pseudonym" in r for r in reasons)
        assert any("key is not its subject" in r for r in reasons)
        assert all("acct:real-7" not in r for r in reasons)  # never echoed
        reported(service.status())
        alert = [r.getMessage() for r in caplog.records if "ALERT" in r.getMessage()]
        assert alert and moved in alert[0]
        assert f"partitions {', '.join(map(str, split_at))}" in alert[0]
        # the murmur2 producer's records were taken up, the person kept one partition
        applied = service.views.query("SELECT count(*) FROM event_marks WHERE event_id IN "
                                      "('fp-100', 'fp-101', 'fp-102', 'fp-103', 'fp-104')")
        assert applied == [(3,)]  # 100, 101 (murmur2) and 102 (split, still applied)
        # every other reader says so too
        for workers in (1, 2):
            service.rebuild(workers=workers)
            reported(service.status())
        store = SQLiteViewStore(tmp_path / "consumed.db")
        try:
            total = make_consumer(ledger.log, store, all_projections()).run(
                threading.Event(), idle_exit=3)
            assert total.split == 1 and total.bad == 2
            assert store.split_people(ledger.log.log_id) == (1, {moved: split_at})
        finally:
            store.close()
