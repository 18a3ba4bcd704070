"""Long-lived projection processes: ``pdl consume``.

On Kafka, each process is one member of a consumer group: the group shares the topic's
partitions, and on every assignment a member seeks each partition to the position its view
store tracks — consumer-group offsets are committed only as a hint for tools. A batch's view
rows and positions commit in one view transaction, and the runner re-reads the tracked
position inside it, so a rebalance, a zombie member or a crash loses and doubles nothing.

A record that does not decode or validate goes to the dead-letter topic with the reason and
its original position, before the batch's positions commit; the projection goes on.

On SQLite, the same command polls the log file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from consumers.projection import Projection, ProjectionRunner, RunStats
from consumers.views import ViewStore
from ledger.errors import OperationalError, PersistenceError
from ledger.persistence import EventLog, LogRecord

log = logging.getLogger(__name__)

HEADER_REASON = "pdl-dead-letter-reason"
HEADER_ORIGIN = "pdl-dead-letter-origin"


class PollingConsumer:
    """Keeps projections caught up with an embedded (SQLite) log by polling it."""

    def __init__(self, log: EventLog, store: ViewStore, projections: Sequence[Projection],
                 *, interval: float = 0.5, batch_size: int = 1000):
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
                 group_id: str | None = None, batch_size: int = 1000,
                 dead_letter_topic: str | None = None):
        from ledger.kafka import KafkaEventLog

        if not isinstance(log, KafkaEventLog):
            raise TypeError("KafkaGroupConsumer needs a KafkaEventLog")
        self.log = log
        self.store = store
        self.group_id = group_id or log.group_id or "pdl-projections"
        self.batch_size = batch_size
        self.dead_letter_topic = dead_letter_topic or log.dead_letter_topic
        self.runner = ProjectionRunner(log, store, projections, batch_size=batch_size,
                                       on_bad_record=self._dead_letter)
        self._producer: Any = None
        self._consumer: Any = None
        self.assigned: set[int] = set()  # partitions this member owns now
        self.ever_assigned: set[int] = set()

    # --- dead letters -----------------------------------------------------------------

    def _dead_letter(self, record: LogRecord, reason: str) -> None:
        if not self.dead_letter_topic:
            raise PersistenceError(
                f"record {record.partition}:{record.offset} does not decode ({reason}) and no "
                "dead-letter topic is configured (LEDGER_KAFKA_DEAD_LETTER_TOPIC)"
            )
        from kafka import KafkaProducer

        if self._producer is None:
            self._producer = KafkaProducer(acks="all", enable_idempotence=True,
                                           client_id=f"pdl-dead-letter-{self.log.topic}",
                                           **self.log._client_config)  # noqa: SLF001
        origin = f"{self.log.topic}:{record.partition}:{record.offset}"
        headers = [(HEADER_REASON, reason.encode()[:4000]), (HEADER_ORIGIN, origin.encode())]
        try:
            # Waited for, so the dead letter is stored before the batch's position commits.
            self._producer.send(self.dead_letter_topic, value=record.payload,
                                key=(record.subject or "").encode() or None,
                                headers=headers).get(timeout=30)
        except Exception as exc:  # noqa: BLE001 - any failure here must stop the batch
            raise OperationalError(
                f"could not write record {origin} to the dead-letter topic "
                f"{self.dead_letter_topic!r}: {exc}"
            ) from exc
        log.warning("record %s went to the dead-letter topic: %s", origin, reason)

    # --- the group member ---------------------------------------------------------------

    def _seek_to_tracked(self, consumer: Any, partitions: Sequence[Any]) -> None:
        positions = self.runner.positions().values()
        for tp in partitions:
            done = min((pos.get(tp.partition, -1) for pos in positions), default=-1)
            consumer.seek(tp, done + 1)

    def run(self, stop: threading.Event, *, idle_exit: float | None = None,
            on_batch: Callable[[RunStats], None] | None = None) -> RunStats:
        """Consume until ``stop`` is set (or, with ``idle_exit``, after that many idle seconds)."""
        from kafka import KafkaConsumer, OffsetAndMetadata
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        member = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                member.assigned -= {tp.partition for tp in revoked}

            def on_partitions_assigned(self, assigned: Any) -> None:
                member.assigned |= {tp.partition for tp in assigned}
                member.ever_assigned |= member.assigned
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
            while not stop.is_set():
                polled = consumer.poll(timeout_ms=500, max_records=self.batch_size)
                records = [self.log._log_record(r)  # noqa: SLF001
                           for batch in polled.values() for r in batch]
                if not records:
                    if not self.assigned:
                        # joining or rebalancing (e.g. a broker just restarted): not idle yet
                        idle_since = time.monotonic()
                    elif idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                        break
                    continue
                idle_since = time.monotonic()
                records.sort(key=lambda r: (r.partition, r.offset))
                stats = self.runner.process(records)
                total.add(stats)
                if on_batch:
                    on_batch(stats)
                hint = {tp: OffsetAndMetadata(batch[-1].offset + 1, "", -1)
                        for tp, batch in polled.items() if batch}
                try:
                    consumer.commit(hint)
                except Exception as exc:  # noqa: BLE001 - a hint only: the views hold the truth
                    log.info("group offset hint not committed: %s", exc)
        finally:
            consumer.close(autocommit=False)
            if self._producer is not None:
                self._producer.close(timeout=5)
        return total


def make_consumer(log: EventLog, store: ViewStore, projections: Sequence[Projection],
                  **kwargs: Any) -> PollingConsumer | KafkaGroupConsumer:
    """The long-lived consumer for the log's backend."""
    if log.name == "kafka":
        return KafkaGroupConsumer(log, store, projections, **kwargs)
    kwargs.pop("group_id", None)
    kwargs.pop("dead_letter_topic", None)
    return PollingConsumer(log, store, projections, **kwargs)
