"""The Kafka log: one topic on an Apache Kafka cluster, through kafka-python 3.

Invariants kept here:
- the topic never drops an event: it is created with infinite retention and no compaction,
  and an existing topic configured otherwise is refused at start, naming the setting;
- a batch is one Kafka transaction: readers use ``read_committed``, so they see all of a
  batch or none of it, and an aborted batch never;
- a person's events share a partition (the record key is their pseudonym), so they are
  read back in the order they were appended;
- ``recorded_at`` is the broker's clock (``LogAppendTime``), which as-of reads rely on;
- each record is a CloudEvent in the Kafka binding's binary mode (the data as value, the
  attributes as ``ce_*`` headers); readers get the stored event back whole
  (``schemas.cloudevents.to_kafka`` / ``from_kafka``).
"""

from __future__ import annotations

import functools
import logging
import operator
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

# kafka-python ships no type information.
import kafka.errors as kerrors  # type: ignore[import-untyped]
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType  # type: ignore[import-untyped]
from kafka.partitioner.default import murmur2  # type: ignore[import-untyped]

from ledger.errors import (
    ConfigurationError,
    IntegrityError,
    LedgerError,
    NotFound,
    OperationalError,
    PersistenceError,
)
from ledger.persistence import (
    AppendResult,
    EventLog,
    LogRecord,
    NewRecord,
    Position,
    check_batch,
)
from ledger.settings import KafkaSettings, Settings
from schemas.cloudevents import KafkaLayout, from_kafka_laid_out, kafka_layout, to_kafka

if TYPE_CHECKING:
    from kafka.consumer.fetcher import ConsumerRecord  # type: ignore[import-untyped]
    from kafka.producer.future import RecordMetadata  # type: ignore[import-untyped]


log = logging.getLogger(__name__)

HEADER_EVENT_ID = "pdl-event-id"
HEADER_EVENT_TYPE = "pdl-event-type"
#: Key of records without a subject. Pseudonyms start with ``p_``, so it never collides.
NO_SUBJECT_KEY = b"_ledger"
POLL_RECORDS = 5000
POLL_MS = 200
MAX_IDLE_READERS = 4
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: How far back ``end_position`` looks first for the last committed record of a partition.
TAIL_WINDOW = 16


def topic_configs(min_insync_replicas: int) -> dict[str, str]:
    """The configs every ledger topic is created with."""
    return {
        "retention.ms": "-1",
        "retention.bytes": "-1",
        "cleanup.policy": "delete",
        "message.timestamp.type": "LogAppendTime",
        "min.insync.replicas": str(min_insync_replicas),
    }


def topic_problems(configs: Mapping[str, str | None], *, needs_append_time: bool) -> list[str]:
    """Why a topic with these effective configs could lose events or misdate them."""
    problems = []
    retention_ms = configs.get("retention.ms")
    if retention_ms != "-1":
        problems.append(
            f"retention.ms={retention_ms}: the broker would delete events older than "
            f"{_duration(retention_ms)}, and the ledger must keep every event (set it to -1)"
        )
    retention_bytes = configs.get("retention.bytes")
    if retention_bytes != "-1":
        problems.append(
            f"retention.bytes={retention_bytes}: the broker would delete a partition's oldest "
            "events once it holds more than that (set it to -1)"
        )
    policy = configs.get("cleanup.policy") or ""
    if "compact" in policy:
        problems.append(
            f"cleanup.policy={policy}: compaction keeps only the latest record of each key, and "
            "the key is the person's pseudonym, so all but one event of each person would be "
            "deleted (set it to delete)"
        )
    stamp = configs.get("message.timestamp.type")
    if needs_append_time and stamp != "LogAppendTime":
        problems.append(
            f"message.timestamp.type={stamp}: records would carry the producer's clock, and "
            "as-of queries rely on the broker's append time (set it to LogAppendTime)"
        )
    return problems


def _duration(ms: str | None) -> str:
    try:
        days = int(ms or "") / 86_400_000
    except ValueError:
        return f"{ms} ms"
    return f"{days:g} days" if days >= 1 else f"{ms} ms"


def _to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, exactly (naive times are local, as ``timestamp()``)."""
    aware = moment if moment.tzinfo is not None else moment.astimezone()
    return (aware - EPOCH) // timedelta(milliseconds=1)


# At DEBUG, kafka-python logs every request and response byte for byte: record keys
# (pseudonyms), payloads and SASL passwords. Its loggers stop at INFO unless someone sets
# them lower on purpose, after importing this module; a root logger at DEBUG is not enough.
_kafka_logger = logging.getLogger("kafka")
if _kafka_logger.level == logging.NOTSET or _kafka_logger.level < logging.INFO:
    _kafka_logger.setLevel(logging.INFO)


class KafkaEventLog(EventLog):
    """The log on one Kafka topic: partitions keyed by the person's pseudonym.

    Each ``append`` is one transaction of an idempotent, transactional producer
    (``acks=all``); its results name the partition and offset the broker acknowledged, and
    they are returned once the batch is readable. ``duplicate`` is always False: Kafka
    keeps no index of event ids, so an event published twice (a retried publish whose first
    attempt did commit) is stored twice. Projections apply each event id once, so a
    duplicate changes no view.

    Positions are ``{partition: last offset read}``. Transaction markers occupy offsets
    but are never returned, so offsets have gaps; ``count`` is therefore an upper bound.
    Reads use a small pool of manually assigned consumers (no consumer group: a view's
    progress is its own tracking row, never a group offset).
    """

    name = "kafka"
    self_contained_partitions = True

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        topic: str,
        *,
        dead_letter_topic: str | None = None,
        group_id: str | None = None,
        partitions: int = KafkaSettings.partitions,
        replication_factor: int = KafkaSettings.replication_factor,
        min_insync_replicas: int = KafkaSettings.min_insync_replicas,
        transactional_id: str | None = None,
        request_timeout_ms: int = KafkaSettings.request_timeout_ms,
        security: Mapping[str, Any] | None = None,
        prepare_topics: bool = True,
        check_subjects: bool = True,
        session_timeout_ms: int = KafkaSettings.session_timeout_ms,
    ) -> None:
        """Connect, create the topics if missing (unless ``prepare_topics`` is False: a
        command that only reads and audits finds them or says the log is empty), and refuse
        a topic that would lose events.

        Raises ``ConfigurationError`` for an unsafe topic or settings, ``OperationalError``
        when the cluster does not answer, ``NotFound`` for a missing topic not prepared.
        """
        servers = (
            [s.strip() for s in bootstrap_servers.split(",") if s.strip()]
            if isinstance(bootstrap_servers, str)
            else list(bootstrap_servers)
        )
        if not servers:
            raise ConfigurationError(
                "LEDGER_KAFKA_BOOTSTRAP_SERVERS is empty (for example 127.0.0.1:19092)"
            )
        if min_insync_replicas > replication_factor:
            raise ConfigurationError(
                f"LEDGER_KAFKA_MIN_INSYNC_REPLICAS={min_insync_replicas} is more than "
                f"LEDGER_KAFKA_REPLICATION_FACTOR={replication_factor}: every append would be "
                "refused for lack of in-sync replicas"
            )
        self.bootstrap = ",".join(servers)
        self.checks_subjects = check_subjects
        self._security = dict(security or {})
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic
        self.group_id = group_id
        self.session_timeout_ms = session_timeout_ms
        self.transactional_id = transactional_id or f"pdl-{topic}-{uuid.uuid4()}"
        self._partitions = partitions
        self._replication_factor = replication_factor
        self._min_insync_replicas = min_insync_replicas
        self._timeout_ms = request_timeout_ms
        self._prepare_topics = prepare_topics
        self._client_config: dict[str, Any] = {
            "bootstrap_servers": servers,
            "request_timeout_ms": request_timeout_ms,
            "bootstrap_timeout_ms": request_timeout_ms,
            **{k: v for k, v in (security or {}).items() if v is not None},
        }
        self._closed = False
        self._partition_cache: dict[bytes, int] = {}
        self._partition_ids: list[int] = []
        self._admin_client: KafkaAdminClient | None = None
        self._producer_client: KafkaProducer | None = None
        self._append_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._idle: list[KafkaConsumer] = []
        try:
            self._ensure_topics()
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_settings(cls, settings: Settings | KafkaSettings) -> KafkaEventLog:
        """The log named by ``settings.kafka`` (the ``LEDGER_KAFKA_*`` variables)."""
        k = settings.kafka if isinstance(settings, Settings) else settings
        if not k.bootstrap_servers:
            raise ConfigurationError(
                "LEDGER_BACKEND=kafka needs LEDGER_KAFKA_BOOTSTRAP_SERVERS "
                "(for example 127.0.0.1:19092; `scripts/kafka-dev start` runs a local broker)"
            )
        return cls(
            k.bootstrap_servers,
            k.topic,
            dead_letter_topic=k.dead_letter_topic,
            group_id=k.group_id,
            partitions=k.partitions,
            replication_factor=k.replication_factor,
            min_insync_replicas=k.min_insync_replicas,
            transactional_id=k.transactional_id,
            request_timeout_ms=k.request_timeout_ms,
            security=k.security(),
            prepare_topics=k.prepare_topics,
            check_subjects=k.check_subjects,
            session_timeout_ms=k.session_timeout_ms,
        )

    def reopener(self) -> Callable[[], KafkaEventLog]:
        """Opens the same topic again, with connections of its own (for another process)."""
        return functools.partial(
            KafkaEventLog, self.bootstrap, self.topic,
            dead_letter_topic=self.dead_letter_topic, group_id=self.group_id,
            partitions=self._partitions, replication_factor=self._replication_factor,
            min_insync_replicas=self._min_insync_replicas,
            request_timeout_ms=self._timeout_ms, security=self._security,
            prepare_topics=False,
            check_subjects=self.checks_subjects,
        )

    @property
    def log_id(self) -> str:
        # Not the bootstrap address: the same topic reached through another listener is the
        # same log, and a view must keep its positions.
        return f"kafka:{self.topic}"

    def close(self) -> None:
        """Close the producer, the reading consumers and the admin client."""
        self._closed = True
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for consumer in idle:
            _quietly(consumer.close, timeout_ms=1000)
        with self._append_lock:
            if self._producer_client is not None:
                _close_producer(self._producer_client, timeout=5)
                self._producer_client = None
        if self._admin_client is not None:
            _quietly(self._admin_client.close)
            self._admin_client = None

    # --- errors -----------------------------------------------------------------------

    def _error(self, exc: BaseException, doing: str) -> LedgerError:
        """A driver error as one of the ledger's, naming the cluster, the topic and what to do."""
        if isinstance(exc, LedgerError):
            return exc
        where = f"Kafka topic {self.topic!r} at {self.bootstrap}"
        if isinstance(exc, kerrors.ProducerFencedError):
            return PersistenceError(
                f"{doing} on {where} failed: another producer took over the transactional id "
                f"{self.transactional_id!r} (two processes configured with the same one?)"
            )
        if isinstance(
            exc,
            kerrors.AuthorizationError
            | kerrors.SaslAuthenticationFailedError
            | kerrors.UnsupportedSaslMechanismError,
        ):
            return PersistenceError(
                f"{doing} on {where} was refused: {exc}. Check LEDGER_KAFKA_SECURITY_PROTOCOL, "
                "the LEDGER_KAFKA_SASL_* credentials and the ACLs for the topic and for "
                "transactional ids"
            )
        if isinstance(exc, OSError) or getattr(exc, "retriable", False):
            return OperationalError(
                f"{doing} on {where} failed: {exc}. Check that the broker is running and "
                "reachable at that address (LEDGER_KAFKA_BOOTSTRAP_SERVERS) and that "
                "LEDGER_KAFKA_SECURITY_PROTOCOL matches its listener; trying again later can "
                "succeed"
            )
        return PersistenceError(f"{doing} on {where} failed: {exc}")

    # --- topics -----------------------------------------------------------------------

    def _admin(self) -> KafkaAdminClient:
        if self._admin_client is None:
            self._admin_client = KafkaAdminClient(
                client_id=f"pdl-admin-{self.topic}", **self._client_config
            )
        return self._admin_client

    def _ensure_topics(self) -> None:
        topics = [(self.topic, True)]
        if self.dead_letter_topic:
            topics.append((self.dead_letter_topic, False))
        try:
            admin = self._admin()
            existing = set(admin.list_topics())
            if not self._prepare_topics:
                if self.topic not in existing:
                    raise NotFound(
                        f"the log's Kafka topic {self.topic!r} does not exist at "
                        f"{self.bootstrap}: nothing has been published yet (`pdl publish` "
                        "creates it), or LEDGER_KAFKA_TOPIC names another topic")
                topics = [(t, is_log) for t, is_log in topics if t in existing]
            for topic, _ in topics:
                if topic not in existing:
                    self._create_topic(admin, topic)
            for topic, is_log in topics:
                self._check_topic(admin, topic, needs_append_time=is_log)
        except (kerrors.KafkaError, OSError) as exc:
            doing = "preparing the topics" if self._prepare_topics else "opening the log"
            raise self._error(exc, doing) from exc

    def _create_topic(self, admin: KafkaAdminClient, topic: str) -> None:
        spec = {
            "num_partitions": self._partitions,
            "replication_factor": self._replication_factor,
            "configs": topic_configs(self._min_insync_replicas),
        }
        try:
            admin.create_topics({topic: spec}, timeout_ms=self._timeout_ms)
        except kerrors.TopicAlreadyExistsError:
            pass  # another process created it first; _check_topic judges its configs
        except kerrors.InvalidReplicationFactorError as exc:
            raise ConfigurationError(
                f"cannot create Kafka topic {topic!r} at {self.bootstrap}: "
                f"LEDGER_KAFKA_REPLICATION_FACTOR={self._replication_factor} is more than the "
                f"cluster's brokers ({exc})"
            ) from exc
        except (kerrors.InvalidConfigurationError, kerrors.PolicyViolationError,
                kerrors.InvalidPartitionsError, kerrors.InvalidTopicError) as exc:
            raise ConfigurationError(
                f"the cluster at {self.bootstrap} refused to create the topic {topic!r}: {exc}. "
                "Check LEDGER_KAFKA_TOPIC, LEDGER_KAFKA_PARTITIONS and "
                "LEDGER_KAFKA_MIN_INSYNC_REPLICAS, or create it yourself with the configs "
                f"{topic_configs(self._min_insync_replicas)}"
            ) from exc
        else:
            log.info("created Kafka topic %s with %d partitions", topic, self._partitions)
        admin.wait_for_topics([topic], timeout_ms=self._timeout_ms)

    def _check_topic(self, admin: KafkaAdminClient, topic: str, *, needs_append_time: bool) -> None:
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
        )
        entries = described.get("topic", {}).get(topic, {})
        configs = {name: entry.get("value") for name, entry in entries.items()}
        if not configs:
            raise PersistenceError(
                f"cannot read the configs of the Kafka topic {topic!r} at {self.bootstrap}, "
                "and the ledger checks that it keeps every event before using it: grant this "
                "client DescribeConfigs on the topic"
            )
        problems = topic_problems(configs, needs_append_time=needs_append_time)
        if problems:
            raise ConfigurationError(
                f"refusing the Kafka topic {topic!r} at {self.bootstrap}: "
                + "; ".join(problems)
                + f". Change it with `kafka-configs.sh --alter --entity-type topics "
                f"--entity-name {topic} --add-config ...`, or point LEDGER_KAFKA_TOPIC / "
                "LEDGER_KAFKA_DEAD_LETTER_TOPIC at a new topic the ledger creates itself"
            )

    def partitions(self) -> list[int]:
        """The topic's partition ids, in order."""
        try:
            with self._borrow() as consumer:
                return [tp.partition for tp in self._topic_partitions(consumer)]
        except (kerrors.KafkaError, OSError) as exc:
            raise self._error(exc, "listing partitions") from exc

    def _topic_partitions(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        ids = consumer.partitions_for_topic(self.topic)
        if not ids:
            raise PersistenceError(
                f"the Kafka topic {self.topic!r} no longer exists at {self.bootstrap}: it was "
                "deleted after the ledger started (restart to recreate it empty, or restore it)"
            )
        return [TopicPartition(self.topic, p) for p in sorted(ids)]

    # --- writing ----------------------------------------------------------------------

    def _producer(self) -> KafkaProducer:
        # Created on first append: a read-only process never registers a transactional id.
        if self._producer_client is None:
            if self._closed:
                raise PersistenceError(f"the Kafka log {self.log_id} is closed")
            producer = KafkaProducer(
                client_id=f"pdl-producer-{self.topic}",
                acks="all",
                enable_idempotence=True,
                transactional_id=self.transactional_id,
                # append() flushes at the end of each batch, so lingering costs no latency;
                # it lets a whole transaction go out in a few large requests.
                linger_ms=200,
                batch_size=256 * 1024,
                max_block_ms=self._timeout_ms,
                delivery_timeout_ms=max(120_000, self._timeout_ms + 1000),
                **self._client_config,
            )
            try:
                producer.init_transactions()
            except BaseException:
                _close_producer(producer, timeout=0)
                raise
            self._producer_client = producer
        return self._producer_client

    def _partition_of(self, key: bytes, producer: KafkaProducer) -> int:
        """The default partitioner's choice for ``key``, cached per key.

        kafka-python's murmur2 is pure Python: about 10 µs a record. Same hash, same
        partition as the Java client's default, so a person's events stay on one partition.
        """
        partition = self._partition_cache.get(key)
        if partition is None:
            ids = self._all_partitions(producer)
            partition = ids[(murmur2(key) & 0x7FFFFFFF) % len(ids)]
            if len(self._partition_cache) > 500_000:
                self._partition_cache.clear()
            self._partition_cache[key] = partition
        return partition

    def _all_partitions(self, producer: KafkaProducer) -> list[int]:
        if not self._partition_ids:
            self._partition_ids = sorted(
                producer.partitions_for(self.topic)  # type: ignore[no-untyped-call]
            )
        return self._partition_ids

    def _drop_producer(self) -> None:
        """Discard a producer in an unknown state; the next append fences it and starts over."""
        if self._producer_client is not None:
            _close_producer(self._producer_client, timeout=0)
            self._producer_client = None

    def _end_transaction(self, producer: KafkaProducer, *, commit: bool) -> None:
        # kafka-python's commit_transaction()/abort_transaction() wait without a bound, so a
        # broker lost mid-commit would hang a publish forever. Same calls, bounded wait.
        manager = getattr(producer, "_transaction_manager", None)
        sender = getattr(producer, "_sender", None)
        if manager is None or sender is None:
            (producer.commit_transaction if commit else producer.abort_transaction)()
            return
        result = manager.begin_commit() if commit else manager.begin_abort()
        sender.wakeup()
        if not result.wait(timeout_ms=self._timeout_ms):
            raise kerrors.KafkaTimeoutError(
                f"no answer to {'commit' if commit else 'abort'} within {self._timeout_ms} ms"
            )

    def append(self, records: Sequence[NewRecord]) -> list[AppendResult]:
        """Append a batch as one transaction; return where each record landed, in order.

        Raises ``IntegrityError`` for a malformed batch (nothing sent), ``OperationalError``
        when the cluster does not answer and ``PersistenceError`` when it refuses; in every
        case the transaction is aborted, so readers see none of the batch.
        """
        check_batch(records)
        if not records:
            return []
        doing = f"appending {len(records)} records"
        with self._append_lock:
            try:
                producer = self._producer()
            except (kerrors.KafkaError, OSError) as exc:
                raise self._error(exc, doing) from exc
            committing = False
            try:
                producer.begin_transaction()
                futures = []  # (index of the record, future)
                for index, r in enumerate(records):
                    key = r.subject.encode() if r.subject is not None else NO_SUBJECT_KEY
                    headers = [(HEADER_EVENT_ID, r.event_id.encode()),
                               (HEADER_EVENT_TYPE, r.event_type.encode())]
                    value = r.payload
                    binary = to_kafka(value)
                    if binary is not None:
                        headers += binary[0]
                        value = binary[1]
                    # An event about no one (a recipient, a policy, an incident) is context
                    # for everyone's events, and Kafka orders records only within a
                    # partition: it goes to every partition, so each person's later events
                    # follow it in their own partition. Projections apply an event id once.
                    targets = ([self._partition_of(key, producer)] if r.subject is not None
                               else self._all_partitions(producer))
                    for partition in targets:
                        futures.append((index, producer.send(
                            self.topic, value=value, key=key, partition=partition,
                            headers=headers)))
                producer.flush(timeout=self._timeout_ms / 1000)
                metadata = [(i, f.get(timeout=self._timeout_ms / 1000)) for i, f in futures]
                sent: list[RecordMetadata] = [m for _, m in metadata]
                first: dict[int, RecordMetadata] = {}
                for i, m in metadata:
                    first.setdefault(i, m)
                committing = True
                self._end_transaction(producer, commit=True)
            except BaseException as exc:
                if committing:
                    # The commit may or may not have reached the coordinator.
                    self._drop_producer()
                    if not isinstance(exc, Exception):
                        raise
                    raise OperationalError(
                        f"{doing} on Kafka topic {self.topic!r} at {self.bootstrap}: the commit "
                        f"got no answer from the broker ({exc}), so the batch may or may not "
                        "be in the log. "
                        "Publishing it again is safe: projections apply each event id once"
                    ) from exc
                self._abort(producer)
                if not isinstance(exc, Exception):
                    raise
                raise self._error(exc, doing) from exc
        self._await_visible(sent)
        return [AppendResult(r.event_id, first[i].partition, first[i].offset)
                for i, r in enumerate(records)]

    def _abort(self, producer: KafkaProducer) -> None:
        try:
            self._end_transaction(producer, commit=False)
        except Exception:  # noqa: BLE001 - the original error is the one to report
            log.warning("aborting a Kafka transaction on %s failed; the producer is replaced",
                        self.topic)
            self._drop_producer()

    def _await_visible(self, sent: Sequence[RecordMetadata]) -> None:
        """Wait until ``read_committed`` readers see the batch.

        The coordinator answers a commit before it has written the commit markers, so for a
        few milliseconds after ``commit`` the batch is not yet readable; returning only once
        it is makes "append, then read" see the append.
        """
        last: dict[int, int] = {}
        for m in sent:
            last[m.partition] = max(last.get(m.partition, -1), m.offset)
        tps = {TopicPartition(self.topic, p): o for p, o in last.items()}
        deadline = time.monotonic() + self._timeout_ms / 1000
        pause = 0.002
        try:
            with self._borrow() as consumer:
                while True:
                    ends = consumer.end_offsets(list(tps), timeout_ms=self._timeout_ms)
                    if all(ends.get(tp, -1) > offset for tp, offset in tps.items()):
                        return
                    if time.monotonic() > deadline:
                        break
                    time.sleep(pause)
                    pause = min(pause * 2, 0.05)
        except (kerrors.KafkaError, OSError, LedgerError):
            pass
        # Committed, so not an error: the markers will land; readers just may not see it yet.
        log.warning("could not confirm that a batch committed to Kafka topic %s is readable",
                    self.topic)

    # --- reading ----------------------------------------------------------------------

    def _new_reader(self) -> KafkaConsumer:
        return KafkaConsumer(
            client_id=f"pdl-reader-{self.topic}",
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="none",  # a seek out of range is an error, never a silent jump
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            fetch_max_wait_ms=100,
            max_poll_records=POLL_RECORDS,
            **self._client_config,
        )

    @contextmanager
    def _borrow(self) -> Iterator[KafkaConsumer]:
        """A reading consumer for one caller at a time, returned to the pool after."""
        with self._pool_lock:
            if self._closed:
                raise PersistenceError(f"the Kafka log {self.log_id} is closed")
            consumer = self._idle.pop() if self._idle else None
        if consumer is None:
            consumer = self._new_reader()
        healthy = True
        try:
            yield consumer
        except (kerrors.KafkaError, OSError):
            healthy = False
            raise
        finally:
            keep = False
            if healthy:
                with self._pool_lock:
                    if not self._closed and len(self._idle) < MAX_IDLE_READERS:
                        self._idle.append(consumer)
                        keep = True
            if not keep:
                _quietly(consumer.close, timeout_ms=1000)

    def _bounds(self, consumer: KafkaConsumer, until_ms: int | None) -> dict[int, tuple[int, int]]:
        """Per partition: (first offset, offset to stop before) of the log as it is now.

        The stop is the last stable offset (nothing at or after it is decided yet), or with
        ``until_ms`` the first offset the broker stamped later than that, if earlier.
        """
        tps = self._topic_partitions(consumer)
        firsts = consumer.beginning_offsets(tps, timeout_ms=self._timeout_ms)
        ends = consumer.end_offsets(tps, timeout_ms=self._timeout_ms)
        stops = dict(ends)
        if until_ms is not None:
            if until_ms < 0:
                stops = dict(firsts)
            else:
                cuts = consumer.offsets_for_times({tp: until_ms + 1 for tp in tps},
                                                  timeout_ms=self._timeout_ms)
                for tp, cut in cuts.items():
                    if cut is not None:
                        stops[tp] = min(stops[tp], cut.offset)
        return {tp.partition: (firsts[tp], max(firsts[tp], stops[tp])) for tp in tps}

    def _scan(
        self,
        consumer: KafkaConsumer,
        ranges: Mapping[int, tuple[int, int]],
        until_ms: int | None,
    ) -> Iterator[ConsumerRecord]:
        """Committed records of each partition in [start, stop), stamped at or before until."""
        stops = {
            TopicPartition(self.topic, p): stop
            for p, (start, stop) in ranges.items()
            if start < stop
        }
        if not stops:
            return
        consumer.assign(list(stops))
        consumer.resume(*stops)  # a pooled consumer keeps the paused flags of its last use
        for tp in stops:
            consumer.seek(tp, ranges[tp.partition][0])
        positions = {tp: -1 for tp in stops}
        stalled_since = time.monotonic()

        def finish(tp: TopicPartition) -> None:
            del stops[tp]
            consumer.pause(tp)

        while stops:
            polled = consumer.poll(timeout_ms=POLL_MS, max_records=POLL_RECORDS)
            for tp, batch in polled.items():
                stop = stops.get(tp)
                if stop is None:
                    continue
                for record in batch:
                    if record.offset >= stop or (until_ms is not None
                                                 and record.timestamp > until_ms):
                        finish(tp)
                        break
                    yield record
            moved = bool(polled)
            # Positions also advance over commit markers and aborted batches, which poll
            # never returns: the end of a partition is its position, not its last record.
            for tp in list(stops):
                position = consumer.position(tp, timeout_ms=self._timeout_ms)
                if position is None:
                    continue
                if position != positions[tp]:
                    positions[tp], moved = position, True
                if position >= stops[tp]:
                    finish(tp)
            now = time.monotonic()
            if moved:
                stalled_since = now
            elif now - stalled_since > self._timeout_ms / 1000:
                raise kerrors.KafkaTimeoutError(
                    f"no progress reading partitions {sorted(tp.partition for tp in stops)} "
                    f"for {self._timeout_ms} ms"
                )

    def _log_record(self, record: ConsumerRecord) -> LogRecord:
        return _log_records([record])[0]

    def consumed(self, polled: Mapping[Any, Sequence[ConsumerRecord]]) -> list[LogRecord]:
        """What a group member's ``poll`` returned, as records in log order (see
        ``consumed``, the function: a reader process has no log object)."""
        return consumed(polled)

    def read(
        self,
        after: Mapping[int, int] | None = None,
        *,
        until: datetime | None = None,
        limit: int | None = None,
        partitions: Collection[int] | None = None,
    ) -> Iterator[LogRecord]:
        """Committed records after ``after``, stamped by the broker at or before ``until``,
        of ``partitions`` only if given.

        The end of each partition is fixed when ``read`` is called; records of one partition
        come in offset order, partitions interleaved. Raises ``IntegrityError`` if records
        after ``after`` have been deleted from the topic.
        """
        if limit is not None and limit <= 0:
            return iter(())
        until_ms = _to_ms(until) if until is not None else None
        try:
            with self._borrow() as consumer:
                bounds = self._bounds(consumer, until_ms)
        except (kerrors.KafkaError, OSError) as exc:
            raise self._error(exc, "reading") from exc
        ranges: dict[int, tuple[int, int]] = {}
        for partition, (first, stop) in bounds.items():
            if partitions is not None and partition not in partitions:
                continue
            start = (after or {}).get(partition, -1) + 1
            if after is not None and partition in after and start < first:
                raise IntegrityError(
                    f"partition {partition} of Kafka topic {self.topic!r} starts at offset "
                    f"{first}, but the reader is at {start - 1}: records it has not read were "
                    "deleted (was retention changed?). Rebuild the views from what is left"
                )
            ranges[partition] = (max(start, first), stop)
        return self._records(ranges, until_ms, limit)

    def _records(
        self, ranges: Mapping[int, tuple[int, int]], until_ms: int | None, limit: int | None
    ) -> Iterator[LogRecord]:
        remaining = limit
        try:
            with self._borrow() as consumer:
                for record in self._scan(consumer, ranges, until_ms):
                    yield self._log_record(record)
                    if remaining is not None:
                        remaining -= 1
                        if remaining == 0:
                            return
        except (kerrors.KafkaError, OSError) as exc:
            raise self._error(exc, "reading") from exc

    def end_position(self, until: datetime | None = None) -> Position:
        """Per partition, the offset of the last committed record (``-1`` if none).

        Reading after this position yields nothing; reading after a position taken between
        two appends yields exactly the second.
        """
        until_ms = _to_ms(until) if until is not None else None
        try:
            with self._borrow() as consumer:
                bounds = self._bounds(consumer, until_ms)
                return self._last_records(consumer, bounds, until_ms)
        except (kerrors.KafkaError, OSError) as exc:
            raise self._error(exc, "finding the end of the log") from exc

    def _last_records(
        self,
        consumer: KafkaConsumer,
        bounds: Mapping[int, tuple[int, int]],
        until_ms: int | None,
    ) -> Position:
        # The offset just before the stop is usually a commit marker, and a partition may end
        # in aborted batches, so look back from the stop in growing windows.
        position = {p: -1 for p in bounds}
        window = TAIL_WINDOW
        pending = {p: (max(first, stop - window), stop) for p, (first, stop) in bounds.items()}
        while pending:
            for record in self._scan(consumer, pending, until_ms):
                position[record.partition] = max(position[record.partition], record.offset)
            window *= 4
            pending = {
                p: (max(bounds[p][0], lo - window), lo)
                for p, (lo, _) in pending.items()
                if position[p] < 0 and lo > bounds[p][0]
            }
        return position

    def count(self) -> int:
        """Offsets in use across partitions: an upper bound, since commit markers take offsets."""
        try:
            with self._borrow() as consumer:
                tps = self._topic_partitions(consumer)
                firsts = consumer.beginning_offsets(tps, timeout_ms=self._timeout_ms)
                ends = consumer.end_offsets(tps, timeout_ms=self._timeout_ms)
        except (kerrors.KafkaError, OSError) as exc:
            raise self._error(exc, "counting records") from exc
        return sum(ends[tp] - firsts[tp] for tp in tps)


def _close_producer(producer: KafkaProducer, timeout: float) -> None:
    """Close a producer, dropping what it could not send within ``timeout`` seconds."""
    try:
        producer.close(timeout=timeout)
    except Exception:  # noqa: BLE001
        # kafka-python's close() gives up when its flush times out (broker gone), leaving
        # the sender thread running and the unsent batches pending: stop it without them.
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
        _quietly(producer.close, timeout=2)


def _quietly(close: Any, **kwargs: Any) -> None:
    """Close a client, ignoring errors: it is being discarded."""
    try:
        close(**kwargs)
    except Exception:  # noqa: BLE001
        log.debug("closing a Kafka client failed", exc_info=True)


#: Header names of a record, in order -> where its event id and type are and how its
#: stored event is put back together (``_plan``): worked out once per set of names, not
#: once per record (this runs for every record a consumer reads).
_PLANS: dict[tuple[str, ...], tuple[int | None, int | None, KafkaLayout | None]] = {}
#: Plans remembered at most (a producer writing odd headers cannot grow it for ever).
MAX_PLANS = 1024
_header_name = operator.itemgetter(0)
#: The last broker time made into a ``datetime`` (milliseconds, the datetime).
_last_stamp: tuple[int | None, datetime] = (None, EPOCH)


def _plan(names: tuple[str, ...]) -> tuple[int | None, int | None, KafkaLayout | None]:
    plan = _PLANS.get(names)
    if plan is None:
        id_at = type_at = None
        for i, name in enumerate(names):  # the last of a repeated name
            if name == HEADER_EVENT_ID:
                id_at = i
            elif name == HEADER_EVENT_TYPE:
                type_at = i
        # a record in binary mode (the ledger's own since envelope 2) is put back together;
        # one without ce_* headers is the stored form already
        layout = kafka_layout(names) if len(names) > 2 else None
        if len(_PLANS) >= MAX_PLANS:
            _PLANS.clear()
        plan = _PLANS[names] = (id_at, type_at, layout)
    return plan


def consumed(polled: Mapping[Any, Sequence[ConsumerRecord]]) -> list[LogRecord]:
    """What a group member's ``poll`` returned, as records in log order (partition,
    offset): each partition's come in offset order."""
    return _log_records([r for tp in sorted(polled, key=lambda tp: tp.partition)
                         for r in polled[tp]])


def _log_records(records: Sequence[ConsumerRecord]) -> list[LogRecord]:
    """Kafka records as the ledger's ``LogRecord``s.

    A record written by something other than the ledger may have no headers; it is
    returned anyway (projections report an undecodable payload as a bad record).
    """
    global _last_stamp  # noqa: PLW0603 - a pure function's last value, any thread's is right
    out: list[LogRecord] = []
    append = out.append
    last_ms, recorded_at = _last_stamp
    for record in records:
        headers = record.headers or []
        id_at, type_at, layout = _plan(tuple(map(_header_name, headers)))
        value = record.value
        payload = (from_kafka_laid_out(layout, headers, value) if layout is not None
                   else None) or value
        key = record.key
        ms = record.timestamp
        if ms != last_ms:  # the broker stamps a whole produced batch with one time
            last_ms, recorded_at = ms, EPOCH + timedelta(milliseconds=ms)
        append(LogRecord(
            partition=record.partition,
            offset=record.offset,
            event_id=(id_at is not None and headers[id_at][1] or b"").decode(),
            event_type=(type_at is not None and headers[type_at][1] or b"").decode(),
            subject=None if key is None or key == NO_SUBJECT_KEY else key.decode(),
            recorded_at=recorded_at,
            payload=payload,
        ))
    _last_stamp = (last_ms, recorded_at)  # one read of a record at a time reuses it too
    return out
