"""Long-lived projection processes: ``pdl consume``.

On Kafka, each process is one member of a consumer group: the group shares the topic's
partitions, and on every assignment a member seeks each partition to the position its view
store tracks — consumer-group offsets are committed only as a hint for tools. A batch's view
rows and positions commit in one view transaction, and the runner re-reads the tracked
position inside it, so a rebalance, a zombie member or a crash loses and doubles nothing.

A record that cannot be applied (it does not decode or validate, or a projection fails on
it) is quarantined: a row of the view store's ``quarantine`` table, with its reason, commits
with the batch's positions, and the projection goes on. On Kafka every quarantined record is
then also written to the dead-letter topic with the reason and its original position
(``DeadLetters``, at least once: a row is marked sent after the broker acknowledged it).

On SQLite, the same command polls the log file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from consumers.pipeline import Collector, ReaderProcess, reader_config, resume_at
from consumers.projection import Projection, ProjectionRunner, RunStats, paused_gc
from consumers.views import ViewStore
from ledger.errors import OperationalError
from ledger.persistence import EventLog

log = logging.getLogger(__name__)

#: Records per view transaction of ``pdl consume`` at most (``--batch-size``): a batch is
#: what one poll returns, so a member that keeps up commits small ones, and one catching
#: up pays the per-transaction costs (positions, cache tokens, the commit, on PostgreSQL
#: the round trips under the writers' lock) once per this many records. 5,000 took 12 %
#: less CPU per record than 1,000 into SQLite (bench/consume.py's workload, 20k events).
CONSUME_BATCH = 5000

HEADER_REASON = "pdl-dead-letter-reason"
HEADER_ORIGIN = "pdl-dead-letter-origin"
class PollingConsumer:
    """Keeps projections caught up with an embedded (SQLite) log by polling it."""

    def __init__(self, log: EventLog, store: ViewStore, projections: Sequence[Projection],
                 *, interval: float = 0.5, batch_size: int = CONSUME_BATCH):
        self.runner = ProjectionRunner(log, store, projections, batch_size=batch_size)
        self.interval = interval

    def run(self, stop: threading.Event, *, idle_exit: float | None = None,
            on_batch: Callable[[RunStats], None] | None = None) -> RunStats:
        total, idle_since = RunStats(), time.monotonic()
        while not stop.is_set():
            stats = self.runner.run(should_stop=stop.is_set)
            total.add(stats)
            if stats.records:
                idle_since = time.monotonic()
                if on_batch:
                    on_batch(stats)
            elif idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                break
            stop.wait(self.interval)
        return total


class KafkaGroupConsumer:
    """Runs projections as one member of a Kafka consumer group (see the module docstring)."""

    def __init__(self, log: Any, store: ViewStore, projections: Sequence[Projection], *,
                 group_id: str | None = None, batch_size: int = CONSUME_BATCH,
                 dead_letter_topic: str | None = None, pipeline: bool = False):
        from ledger.kafka import KafkaEventLog

        if not isinstance(log, KafkaEventLog):
            raise TypeError("KafkaGroupConsumer needs a KafkaEventLog")
        self.log = log
        self.store = store
        self.group_id = group_id or log.group_id or "pdl-projections"
        self.batch_size = batch_size
        self.dead_letter_topic = dead_letter_topic or log.dead_letter_topic
        self.runner = ProjectionRunner(log, store, projections, batch_size=batch_size)
        self.dead_letters = DeadLetters(log, self.dead_letter_topic)
        self._consumer: Any = None
        self.assigned: set[int] = set()  # partitions this member owns now
        self.ever_assigned: set[int] = set()
        #: read in a process of its own (``consumers.pipeline``)
        self.pipeline = pipeline
        self._reader: ReaderProcess | None = None
        #: held while the store is in use (the rebalance listener runs in another thread)
        self._store_lock = threading.Lock()

    def cpu_seconds(self) -> float:
        """CPU seconds this member used so far: this process's, and its reader's."""
        return time.process_time() + self.reader_cpu_seconds()

    def reader_cpu_seconds(self) -> float:
        """CPU seconds of the reader process as of its last message (0 without one)."""
        return self._reader.cpu if self._reader else 0.0

    # --- the group member ---------------------------------------------------------------

    def _seek_to_tracked(self, consumer: Any, partitions: Sequence[Any]) -> None:
        resume = resume_at(self.runner.positions(), [tp.partition for tp in partitions])
        for tp in partitions:
            consumer.seek(tp, resume[tp.partition])

    def run(self, stop: threading.Event, *, idle_exit: float | None = None,
            on_batch: Callable[[RunStats], None] | None = None) -> RunStats:
        """Consume until ``stop`` is set (or, with ``idle_exit``, after that many idle seconds)."""
        if self.pipeline:
            return self._run_pipelined(stop, idle_exit, on_batch)
        from kafka import KafkaConsumer
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        member = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                member.assigned -= {tp.partition for tp in revoked}

            def on_partitions_assigned(self, assigned: Any) -> None:
                member.assigned |= {tp.partition for tp in assigned}
                member.ever_assigned |= member.assigned
                # kafka-python (3.x) calls this in its IO thread: the store is the main
                # thread's, so wait for the batch being applied (its positions included)
                with member._store_lock:
                    member._seek_to_tracked(consumer, list(assigned))

        consumer = KafkaConsumer(
            group_id=self.group_id,
            client_id=f"pdl-consume-{self.log.topic}",
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_poll_records=self.batch_size,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            session_timeout_ms=self.log.session_timeout_ms,
            **self.log._client_config,  # noqa: SLF001
        )
        self._consumer = consumer
        consumer.subscribe([self.log.topic], listener=Listener())
        total, idle_since = RunStats(), time.monotonic()
        try:
            with paused_gc():
                self._consume(consumer, stop, idle_exit, on_batch, total, idle_since)
        finally:
            consumer.close(autocommit=False)
            self.dead_letters.close()
        return total

    def _consume(self, consumer: Any, stop: threading.Event, idle_exit: float | None,
                 on_batch: Callable[[RunStats], None] | None, total: RunStats,
                 idle_since: float) -> None:
        """The poll loop of ``run``, with the cyclic GC paused: polling and decoding make
        objects by the thousand per batch, and each automatic collection of the old
        generation would walk the projections' caches too (a tenth of the CPU per record
        measured before). Young objects are collected every ``YOUNG_GC_BATCHES`` batches,
        everything every ``FULL_GC_SECONDS``."""
        from kafka import OffsetAndMetadata

        collector = Collector()
        self.dead_letters.flush(self.store)  # any a crash left unsent
        while not stop.is_set():
            polled = consumer.poll(timeout_ms=500, max_records=self.batch_size)
            records = self.log.consumed(polled)
            if not records:
                if not self.assigned:
                    # joining or rebalancing (e.g. a broker just restarted): not idle yet
                    idle_since = time.monotonic()
                elif idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                    break
                continue
            idle_since = time.monotonic()
            with self._store_lock:
                stats = self.runner.process(records)
                if stats.bad:
                    self.dead_letters.flush(self.store)
            total.add(stats)
            if on_batch:
                on_batch(stats)
            hint = {tp: OffsetAndMetadata(batch[-1].offset + 1, "", -1)
                    for tp, batch in polled.items() if batch}
            try:
                # not waited for: a hint for tools, one broker round trip per batch less
                consumer.commit_async(hint)
            except Exception as exc:  # noqa: BLE001 - a hint only: the views hold the truth
                log.info("group offset hint not committed: %s", exc)
            collector.after_batch()


    def _run_pipelined(self, stop: threading.Event, idle_exit: float | None,
                       on_batch: Callable[[RunStats], None] | None) -> RunStats:
        """``run`` as the applier of a reader process (``consumers.pipeline``)."""
        total, idle_since = RunStats(), time.monotonic()
        collector = Collector()
        self.dead_letters.flush(self.store)  # any a crash left unsent
        self._reader = reader = ReaderProcess(
            reader_config(self.log, self.group_id, self.batch_size))
        try:
            with paused_gc():
                while not stop.is_set():
                    message = reader.receive(timeout=0.5)
                    if message is None:
                        continue
                    kind = message[0]
                    if kind == "batch":
                        idle_since = time.monotonic()
                        stats = self.runner.process(message[2])
                        reader.send("ack", message[1])
                        del message
                        total.add(stats)
                        if stats.bad:
                            self.dead_letters.flush(self.store)
                        if on_batch:
                            on_batch(stats)
                        collector.after_batch()
                    elif kind == "idle":
                        if not message[1]:
                            idle_since = time.monotonic()  # joining or rebalancing
                        elif (idle_exit is not None
                              and time.monotonic() - idle_since >= idle_exit):
                            break
                    elif kind == "assigned":
                        self.assigned |= set(message[1])
                        self.ever_assigned |= self.assigned
                        reader.send("resume", resume_at(self.runner.positions(), message[1]))
                    elif kind == "revoked":
                        # every batch the reader sent before this message is committed
                        self.assigned -= set(message[1])
                        reader.send("drained", None)
        finally:
            reader.stop()
            self.dead_letters.close()
        return total


class DeadLetters:
    """Writes the records a view store quarantined from a Kafka log to its dead-letter topic,
    each at least once, with the reason and the original position in headers."""

    def __init__(self, log: EventLog, topic: str | None = None):
        self.log = log
        self.topic = topic or getattr(log, "dead_letter_topic", None)
        self._producer: Any = None

    def flush(self, store: ViewStore) -> int:
        """Send every quarantined record of this log not sent yet; return how many."""
        if self.log.name != "kafka":
            return 0
        rows = store.query(
            'SELECT partition, "offset", subject, reason, payload FROM quarantine '
            'WHERE log_id = ? AND dead_lettered = 0 ORDER BY partition, "offset"',
            (self.log.log_id,))
        if not rows:
            return 0
        if not self.topic:
            log.warning("%d record(s) quarantined in the view store and no dead-letter topic "
                        "is configured (LEDGER_KAFKA_DEAD_LETTER_TOPIC)", len(rows))
            return 0
        from kafka import KafkaProducer

        if self._producer is None:
            self._producer = KafkaProducer(acks="all", enable_idempotence=True,
                                           client_id=f"pdl-dead-letter-{self.log.topic}",  # type: ignore[attr-defined]
                                           **self.log._client_config)  # type: ignore[attr-defined]  # noqa: SLF001
        for partition, offset, subject, reason, payload in rows:
            origin = f"{self.log.topic}:{partition}:{offset}"  # type: ignore[attr-defined]
            headers = [(HEADER_REASON, reason.encode()[:4000]), (HEADER_ORIGIN, origin.encode())]
            try:
                self._producer.send(self.topic, value=payload,
                                    key=(subject or "").encode() or None,
                                    headers=headers).get(timeout=30)
            except Exception as exc:  # noqa: BLE001 - left unsent: the next flush retries
                raise OperationalError(
                    f"could not write record {origin} to the dead-letter topic "
                    f"{self.topic!r}: {exc}") from exc
            with store.transaction() as tx:
                tx.execute('UPDATE quarantine SET dead_lettered = 1 WHERE log_id = ? AND '
                           'partition = ? AND "offset" = ?', (self.log.log_id, partition, offset))
            log.warning("record %s went to the dead-letter topic: %s", origin, reason)
        return len(rows)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None


def make_consumer(log: EventLog, store: ViewStore, projections: Sequence[Projection],
                  **kwargs: Any) -> PollingConsumer | KafkaGroupConsumer:
    """The long-lived consumer for the log's backend."""
    if log.name == "kafka":
        return KafkaGroupConsumer(log, store, projections, **kwargs)
    kwargs.pop("group_id", None)
    kwargs.pop("dead_letter_topic", None)
    kwargs.pop("pipeline", None)
    return PollingConsumer(log, store, projections, **kwargs)
