"""What only the Kafka backend does: topic configs, transactions, broker time, keying.

Every test here runs against a real broker (see ``kafka_bootstrap`` in conftest), each on
topics of its own, deleted after.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
from conftest import kafka_settings
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from kafka.admin import ConfigResource, ConfigResourceType  # type: ignore[import-untyped]

from ledger.errors import ConfigurationError, IntegrityError, OperationalError
from ledger.kafka import HEADER_EVENT_ID, HEADER_EVENT_TYPE, NO_SUBJECT_KEY, KafkaEventLog
from ledger.factory import create_log
from ledger.persistence import NewRecord
from ledger.settings import KafkaSettings, Settings
from schemas import uuid7

pytestmark = pytest.mark.kafka

MakeKafkaLog = Callable[..., KafkaEventLog]


def records(n: int, subjects: int = 4, tag: str = "") -> list[NewRecord]:
    return [
        NewRecord(uuid7(), "data.used", f"p_subject{i % subjects}",
                  f'{{"n":{i},"tag":"{tag}"}}'.encode())
        for i in range(n)
    ]


def transact_by_hand(log: KafkaEventLog, batch: list[NewRecord], *, commit: bool,
                     timestamp_ms: int | None = None) -> None:
    """Write a batch through the log's own producer, then commit or abort it by hand."""
    producer = log._producer()
    producer.begin_transaction()
    futures = [
        producer.send(log.topic, value=r.payload, key=(r.subject or "").encode(),
                      headers=[(HEADER_EVENT_ID, r.event_id.encode()),
                               (HEADER_EVENT_TYPE, r.event_type.encode())],
                      timestamp_ms=timestamp_ms)
        for r in batch
    ]
    producer.flush()
    if commit:
        producer.commit_transaction()
        # The commit returns before its markers are written: wait, as append does.
        log._await_visible([f.get() for f in futures])
    else:
        producer.abort_transaction()


@pytest.fixture(scope="module")
def admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=10000)
    yield client
    client.close()


@pytest.fixture
def new_settings(settings: Settings, kafka_bootstrap: str,
                 admin: KafkaAdminClient) -> Iterator[Callable[..., Settings]]:
    """Kafka settings on fresh topic names; every topic named is deleted after the test."""
    made: list[Settings] = []

    def make(**overrides: object) -> Settings:
        s = kafka_settings(settings, kafka_bootstrap, **overrides)
        made.append(s)
        return s

    yield make
    names = {t for s in made for t in (s.kafka.topic, s.kafka.dead_letter_topic)}
    existing = set(admin.list_topics())
    if names & existing:
        admin.delete_topics(sorted(names & existing), raise_errors=False)


@pytest.fixture
def make_kafka_log(new_settings: Callable[..., Settings]) -> Iterator[MakeKafkaLog]:
    opened: list[KafkaEventLog] = []

    def make(**overrides: object) -> KafkaEventLog:
        log = KafkaEventLog.from_settings(new_settings(**overrides))
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close()


def effective_configs(admin: KafkaAdminClient, topic: str) -> dict[str, str]:
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                       config_filter="all")
    return {k: v["value"] for k, v in described["topic"][topic].items()}


def raw_records(bootstrap: str, topic: str) -> list:  # type: ignore[type-arg]
    """Every committed record of the topic through a plain consumer."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        consumer.seek_to_beginning(*tps)
        out = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(batch)
        return out
    finally:
        consumer.close()


# --- topics -----------------------------------------------------------------------------


def test_the_topics_are_created_to_keep_every_event(
    make_kafka_log: MakeKafkaLog, admin: KafkaAdminClient
) -> None:
    log = make_kafka_log(partitions=3, min_insync_replicas=1)
    for topic in (log.topic, log.dead_letter_topic):
        assert topic is not None
        configs = effective_configs(admin, topic)
        assert configs["retention.ms"] == "-1"
        assert configs["retention.bytes"] == "-1"
        assert configs["cleanup.policy"] == "delete"
        assert configs["message.timestamp.type"] == "LogAppendTime"
        assert configs["min.insync.replicas"] == "1"
    assert log.partitions() == [0, 1, 2]
    # Opening it again finds the topic as the ledger left it and accepts it.
    again = make_kafka_log(topic=log.topic, dead_letter_topic=log.dead_letter_topic)
    assert again.partitions() == [0, 1, 2]


SAFE = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete",
        "message.timestamp.type": "LogAppendTime"}


@pytest.mark.parametrize(
    ("override", "named", "why"),
    [
        ({"retention.ms": "604800000"}, "retention.ms=604800000", "7 days"),
        ({"retention.bytes": "1073741824"}, "retention.bytes=1073741824", "delete"),
        ({"cleanup.policy": "compact"}, "cleanup.policy=compact", "all but one event"),
        ({"cleanup.policy": "compact,delete"}, "cleanup.policy=compact,delete", "all but one"),
        ({"message.timestamp.type": "CreateTime"}, "message.timestamp.type=CreateTime",
         "as-of"),
    ],
)
def test_an_existing_topic_that_would_lose_events_is_refused(
    new_settings: Callable[..., Settings], admin: KafkaAdminClient,
    override: dict[str, str], named: str, why: str,
) -> None:
    s = new_settings()
    topic = s.kafka.topic
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1,
                                 "configs": {**SAFE, **override}}}, wait_for_metadata=True)
    with pytest.raises(ConfigurationError) as refused:
        create_log(s)
    message = str(refused.value)
    assert named in message and why in message and topic in message
    # Refusing changes nothing on the broker.
    assert effective_configs(admin, topic)[named.split("=")[0]] == named.split("=", 1)[1]


def test_a_topic_with_broker_defaults_is_refused_naming_each_problem(
    new_settings: Callable[..., Settings], admin: KafkaAdminClient
) -> None:
    s = new_settings()
    admin.create_topics({s.kafka.topic: {"num_partitions": 1, "replication_factor": 1}},
                        wait_for_metadata=True)
    with pytest.raises(ConfigurationError) as refused:
        create_log(s)
    assert "retention.ms=604800000" in str(refused.value)
    assert "message.timestamp.type=CreateTime" in str(refused.value)


def test_a_dead_letter_topic_with_limited_retention_is_refused(
    new_settings: Callable[..., Settings], admin: KafkaAdminClient
) -> None:
    s = new_settings()
    dead = s.kafka.dead_letter_topic
    admin.create_topics({dead: {"num_partitions": 1, "replication_factor": 1,
                                "configs": {**SAFE, "retention.ms": "86400000"}}},
                        wait_for_metadata=True)
    with pytest.raises(ConfigurationError, match=rf"{dead}.*retention\.ms=86400000"):
        create_log(s)


def test_settings_that_cannot_be_met_are_refused(settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match="LEDGER_KAFKA_MIN_INSYNC_REPLICAS=2"):
        KafkaEventLog("127.0.0.1:1", "t", replication_factor=1, min_insync_replicas=2)
    with pytest.raises(ConfigurationError, match="LEDGER_KAFKA_BOOTSTRAP_SERVERS"):
        KafkaEventLog.from_settings(settings.with_(backend="kafka", kafka=KafkaSettings(topic="t")))


def test_an_unreachable_broker_is_a_retriable_error_naming_it() -> None:
    with pytest.raises(OperationalError) as failed:
        KafkaEventLog("127.0.0.1:1", "pdl-unreachable", request_timeout_ms=1000)
    assert failed.value.retriable
    assert "127.0.0.1:1" in str(failed.value) and "pdl-unreachable" in str(failed.value)
    assert "LEDGER_KAFKA_BOOTSTRAP_SERVERS" in str(failed.value)


def test_security_settings_reach_the_clients_without_empty_values(
    make_kafka_log: MakeKafkaLog,
) -> None:
    log = make_kafka_log(security_protocol="PLAINTEXT", sasl_mechanism=None, ssl_cafile=None)
    config = log._client_config
    assert config["security_protocol"] == "PLAINTEXT"
    assert "sasl_mechanism" not in config and "ssl_cafile" not in config
    assert None not in config.values()


# --- records ----------------------------------------------------------------------------


def test_records_are_keyed_by_subject_with_ids_in_headers(
    make_kafka_log: MakeKafkaLog, kafka_bootstrap: str
) -> None:
    log = make_kafka_log(partitions=3)
    anonymous = [NewRecord(uuid7(), "system.note", None, b'{"n":1}') for _ in range(5)]
    first = log.append(records(60, subjects=6) + anonymous)
    second = log.append(records(30, subjects=6))
    read = list(log.read())
    # Events about no one are context for everyone: they go to every partition.
    assert len(read) == 90 + 5 * 3
    landed: dict[str | None, set[int]] = {}
    for r in read:
        landed.setdefault(r.subject, set()).add(r.partition)
    anonymous_landed = landed.pop(None)
    assert anonymous_landed == {0, 1, 2}
    assert all(len(partitions) == 1 for partitions in landed.values()), landed
    assert len(set().union(*landed.values())) > 1  # and the subjects do spread
    for a in anonymous:
        assert sum(r.event_id == a.event_id for r in read) == 3
    # Results name a partition each record was read back from.
    by_id: dict[str, set[tuple[int, int]]] = {}
    for r in read:
        by_id.setdefault(r.event_id, set()).add((r.partition, r.offset))
    assert all((a.partition, a.offset) in by_id[a.event_id] for a in first + second)
    # On the wire: the pseudonym (or the fixed key) as key, the payload as value, ids in
    # headers.
    raw = {dict(m.headers)[HEADER_EVENT_ID].decode(): m for m in raw_records(kafka_bootstrap,
                                                                            log.topic)}
    for r in read:
        m = raw[r.event_id]
        assert m.value == r.payload
        assert m.key == (r.subject.encode() if r.subject else NO_SUBJECT_KEY)
        assert dict(m.headers)[HEADER_EVENT_TYPE].decode() == r.event_type
    assert {r.subject for r in read if r.event_type == "system.note"} == {None}


def test_records_carry_the_brokers_append_time(
    make_kafka_log: MakeKafkaLog, kafka_bootstrap: str
) -> None:
    log = make_kafka_log()
    before = datetime.now(timezone.utc) - timedelta(milliseconds=1)
    log.append(records(10))
    # A producer-supplied timestamp (here: 1970) is replaced by the broker's clock.
    transact_by_hand(log, records(3, tag="old-clock"), commit=True, timestamp_ms=1_000)
    after = datetime.now(timezone.utc) + timedelta(milliseconds=1)
    read = list(log.read())
    assert len(read) == 13
    assert all(before <= r.recorded_at <= after for r in read)
    assert all(r.recorded_at.tzinfo == timezone.utc for r in read)
    assert {m.timestamp_type for m in raw_records(kafka_bootstrap, log.topic)} == {1}


def test_an_aborted_transaction_is_never_read(make_kafka_log: MakeKafkaLog) -> None:
    log = make_kafka_log(partitions=3)
    committed = log.append(records(6))
    transact_by_hand(log, records(20, tag="aborted"), commit=False)
    committed += log.append(records(6))
    # A long aborted batch at the very end of one partition (longer than the window
    # end_position looks back first).
    transact_by_hand(log, records(50, subjects=1, tag="aborted-tail"), commit=False)

    read = list(log.read())
    assert sorted(r.event_id for r in read) == sorted(a.event_id for a in committed)
    assert not any(b"aborted" in r.payload for r in read)

    end = log.end_position()
    expected = {p: -1 for p in log.partitions()}
    for a in committed:
        expected[a.partition] = max(expected[a.partition], a.offset)
    assert end == expected
    assert list(log.read(end)) == []
    assert log.count() >= len(committed) + 70  # offsets, so an upper bound


def test_read_sees_the_log_as_it_was_when_called(make_kafka_log: MakeKafkaLog) -> None:
    log = make_kafka_log()
    first = log.append(records(10, tag="first"))
    pending = log.read()
    log.append(records(10, tag="second"))
    assert {r.event_id for r in pending} == {a.event_id for a in first}


def test_reads_can_interleave(make_kafka_log: MakeKafkaLog) -> None:
    log = make_kafka_log()
    log.append(records(40))
    one, two = log.read(), log.read()
    pairs = list(zip(one, two, strict=True))
    assert len(pairs) == 40
    assert sorted(a.event_id for a, _ in pairs) == sorted(b.event_id for _, b in pairs)
    # An abandoned read gives its consumer back; reads still work after many of them.
    for _ in range(10):
        next(iter(log.read()))
    assert len(list(log.read(limit=5))) == 5


def test_a_reader_whose_next_records_were_deleted_is_told(
    make_kafka_log: MakeKafkaLog, admin: KafkaAdminClient
) -> None:
    log = make_kafka_log(partitions=1)
    log.append(records(10))
    # Something outside the ledger deletes records (retention changed behind its back).
    admin.delete_records({TopicPartition(log.topic, 0): 5})
    with pytest.raises(IntegrityError, match="deleted"):
        list(log.read({0: 2}))
    assert len(list(log.read({0: 6}))) == 3


def test_no_subject_or_payload_reaches_the_logs(
    make_kafka_log: MakeKafkaLog, caplog: pytest.LogCaptureFixture
) -> None:
    # At DEBUG kafka-python would dump the wire bytes: keys, payloads, passwords.
    caplog.set_level(logging.DEBUG)
    log = make_kafka_log(sasl_plain_password="not-a-real-password")
    log.append([NewRecord(uuid7(), "data.used", "p_secretsubject", b'{"sealed":"SECRETVALUE"}')])
    assert [r.subject for r in log.read()] == ["p_secretsubject"]
    assert caplog.records  # the capture works: kafka-python's INFO lines are there
    for secret in ("p_secretsubject", "SECRETVALUE", "not-a-real-password"):
        assert secret not in caplog.text


def test_log_id_names_the_topic_not_the_address(make_kafka_log: MakeKafkaLog) -> None:
    log = make_kafka_log()
    assert log.log_id == f"kafka:{log.topic}"
    assert "127.0.0.1" not in log.log_id


def test_same_position_from_another_instance(make_kafka_log: MakeKafkaLog) -> None:
    writer = make_kafka_log()
    writer.append(records(12))
    reader = make_kafka_log(topic=writer.topic, dead_letter_topic=writer.dead_letter_topic)
    assert reader.end_position() == writer.end_position()
    assert reader.transactional_id != writer.transactional_id
    stamp = uuid.uuid4()  # a second writer on the same topic: both batches are kept
    reader.append(records(3, tag=str(stamp)))
    assert sum(1 for r in writer.read() if str(stamp).encode() in r.payload) == 3
