"""A consumer-group member in two processes: one reads Kafka, the other applies.

A member of ``pdl consume`` spends about a third of its CPU in kafka-python (fetching,
parsing record batches, rebuilding the ledger's records from their headers) and the rest
decoding, validating and projecting. Python runs one of those at a time per process, so
with ``pipeline=True`` (``LEDGER_CONSUME_PIPELINE``, on by default for ``pdl consume``) a
member reads in a **reader process** of its own while its main process, the **applier**,
projects the batch before: on two cores the member's rate is set by the slower half
instead of by their sum (docs/consume.md, bench/consume.py).

Nothing about what is applied changes. The reader is the consumer-group member: it polls,
and hands each batch to the applier over a pipe. The applier is the only one that touches
the view store; it applies each batch exactly as a one-process member does (positions in
the same transaction as the rows, re-read inside it), so a duplicate or a late batch
changes nothing. The pipe is ordered and the reader blocks while it sends, so it is at
most one batch ahead.

- **Assignment**: the reader asks the applier where each new partition resumes (the view
  store's positions, read after every batch sent before has been applied) and seeks there.
- **Revocation**: the reader tells the applier and waits for its answer, which comes only
  after every batch it sent before has been committed: work in flight for a revoked
  partition is committed with its position before the group moves the partition on.
- **Offset hints**: the reader commits a batch's group offsets (hints for tools, as in one
  process) only once the applier says the batch is committed.
- **Faults**: the reader dies with the applier (``die_with_parent``); if the reader dies,
  the applier stops with ``OperationalError`` naming its exit code (a supervisor restarts
  the member; nothing applied is lost, nothing is applied twice). Interrupts (Ctrl-C) reach
  the applier only, which finishes its batch and stops the reader.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
import traceback
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any

from consumers.parallel import die_with_parent
from consumers.projection import paused_gc

log = logging.getLogger(__name__)

#: A group member (each of its processes) runs with the cyclic GC paused (``paused_gc``):
#: it collects the young generations itself every this many batches, or polls (the
#: objects of those batches, not the long-lived caches) ...
YOUNG_GC_BATCHES = 10
#: ... and everything every this many seconds, for cycles that reached the old generation.
FULL_GC_SECONDS = 300.0


class Collector:
    """The cyclic GC's work while it is paused (``paused_gc``) in a long-lived member: the
    young generations every ``YOUNG_GC_BATCHES`` batches, everything every
    ``FULL_GC_SECONDS``."""

    def __init__(self) -> None:
        self.batches = 0
        self.full_at = time.monotonic() + FULL_GC_SECONDS

    def after_batch(self) -> None:
        self.batches += 1
        if self.batches % YOUNG_GC_BATCHES == 0:
            gc.collect(1)
        if time.monotonic() >= self.full_at:
            gc.collect()
            self.full_at = time.monotonic() + FULL_GC_SECONDS


#: Seconds the applier waits for a stopping reader to leave the group before killing it.
READER_STOP_SECONDS = 15.0
#: How much lower the reader's parsing thread's CPU priority is than the applier's
#: (nice(2)): the reader has time to spare (it is the quicker half), while the applier,
#: and on PostgreSQL the server it waits for, set the member's rate: on a busy machine
#: they go first. The reader's kafka-python IO thread (heartbeats) keeps the priority.
READER_NICENESS = 5
#: Milliseconds a stopping reader gives its last offset hint and leaving the group (a
#: rebalance in progress would otherwise hold them up to the request timeout, each).
HINT_COMMIT_MS = 5000


def reader_config(log: Any, group_id: str, batch_size: int) -> dict[str, Any]:
    """What the reader process needs to join the group (picklable: no log object)."""
    return {
        "topic": log.topic,
        "group_id": group_id,
        "batch_size": batch_size,
        "session_timeout_ms": log.session_timeout_ms,
        "client": dict(log._client_config),  # noqa: SLF001 - bootstrap and security
    }


def read(parent: int, conn: Connection, config: Mapping[str, Any]) -> None:
    """The reader process's entry point (see the module docstring)."""
    die_with_parent(parent)
    # Ctrl-C reaches the whole foreground process group: the applier decides when to stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        Reader(conn, config).run()
    except (BrokenPipeError, EOFError):  # the applier went first
        pass
    except BaseException as exc:  # noqa: BLE001 - reported to the applier, which raises
        log.debug("reader failed: %s", traceback.format_exc())
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass
    finally:
        conn.close()


class Reader:
    """The group member's reading half: polls, converts, sends (runs in its own process)."""

    def __init__(self, conn: Connection, config: Mapping[str, Any]):
        self.conn = conn
        self.config = config
        self.assigned: set[int] = set()
        self.stopping = False
        self.sent = 0
        self.hints: dict[int, dict[Any, Any]] = {}
        #: the group offsets of every batch the applier committed (partition -> next offset)
        self.acked: dict[Any, int] = {}
        self.consumer: Any = None
        # kafka-python (3.x) calls the rebalance listener in its IO thread, while this
        # process's main thread polls and sends: both use the pipe, so each direction has
        # a lock, answers are routed to whoever waits for them, and acks are left for the
        # main thread (the consumer's own calls stay on it).
        self._send_lock = threading.Lock()
        self._receive_lock = threading.Lock()
        self.answers: dict[str, Any] = {}
        self.acks: list[int] = []

    def run(self) -> None:
        from kafka import KafkaConsumer
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        from ledger.kafka import consumed

        reader = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                parts = sorted(tp.partition for tp in revoked)
                reader.assigned -= set(parts)
                if parts and not reader.stopping:
                    reader.send("revoked", parts)
                    reader.answer("drained")

            def on_partitions_assigned(self, assigned: Any) -> None:
                parts = sorted(tp.partition for tp in assigned)
                reader.assigned |= set(parts)
                if not parts or reader.stopping:
                    return
                reader.send("assigned", parts)
                resume = reader.answer("resume")
                if resume is not None:
                    for tp in assigned:
                        reader.consumer.seek(tp, resume[tp.partition])

        batch = int(self.config["batch_size"])
        self.consumer = consumer = KafkaConsumer(
            group_id=self.config["group_id"],
            client_id=f"pdl-consume-{self.config['topic']}",
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_poll_records=batch,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            session_timeout_ms=self.config["session_timeout_ms"],
            **self.config["client"],
        )
        # Only this thread (parsing) gives way, after the consumer started its IO thread:
        # heartbeats and rebalances keep the applier's priority, or a busy machine could
        # starve them past the session timeout (Linux: a thread's nice value is its own)
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                           os.getpriority(os.PRIO_PROCESS, 0) + READER_NICENESS)
        except OSError:  # not permitted here: the same priority as the applier
            pass
        collector = Collector()
        try:
            consumer.subscribe([self.config["topic"]], listener=Listener())
            with paused_gc():
                while not self.stopping:
                    self.handle_waiting()
                    if self.stopping:
                        break
                    polled = consumer.poll(timeout_ms=500, max_records=batch)
                    if self.stopping:
                        break
                    records = consumed(polled)
                    if records:
                        self.sent += 1
                        self.hints[self.sent] = {tp: rs[-1].offset + 1
                                                 for tp, rs in polled.items() if rs}
                        del polled
                        self.send("batch", self.sent, records, time.process_time())
                    else:
                        self.send("idle", bool(self.assigned), time.process_time())
                    del records
                    collector.after_batch()
            self.handle_waiting()  # the last acks
            self.commit_hint(None, wait=True)  # an async commit may not finish before close
        finally:
            consumer.close(autocommit=False, timeout_ms=HINT_COMMIT_MS)

    def send(self, *message: Any) -> None:
        with self._send_lock:
            self.conn.send(message)

    def route(self, message: tuple[Any, ...]) -> None:
        """File one message from the applier (the receive lock held)."""
        kind = message[0]
        if kind == "ack":
            self.acks.append(message[1])
        elif kind == "stop":
            self.stopping = True
        else:
            self.answers[kind] = message[1]

    def handle_waiting(self) -> None:
        """Whatever the applier said meanwhile (acks, stop), without blocking; the main
        thread commits the acknowledged batches' hints."""
        with self._receive_lock:
            while self.conn.poll():
                self.route(self.conn.recv())
            acks, self.acks = self.acks, []
        for batch in acks:
            self.commit_hint(batch)

    def answer(self, kind: str) -> Any:
        """Wait for the applier's answer of ``kind`` (any thread); None if it asked to stop
        instead."""
        while True:
            with self._receive_lock:
                if kind in self.answers:
                    return self.answers.pop(kind)
                if self.stopping:
                    return None
                if self.conn.poll(0.05):
                    self.route(self.conn.recv())

    def commit_hint(self, batch: int | None, *, wait: bool = False) -> None:
        """Commit the group offsets of ``batch`` (None: of every batch acked so far), once
        the applier has committed it: hints never run ahead of the views."""
        from kafka import OffsetAndMetadata

        if batch is not None:
            hint = self.hints.pop(batch, None) or {}
            for old in [n for n in self.hints if n < batch]:
                self.hints.pop(old)
            self.acked.update(hint)
        else:
            hint = self.acked
        mine = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in hint.items()
                if tp.partition in self.assigned}
        if not mine:
            return
        try:
            if wait:
                self.consumer.commit(mine, timeout_ms=HINT_COMMIT_MS)
            else:
                # not waited for: a hint for tools, one broker round trip per batch less
                self.consumer.commit_async(mine)
        except Exception as exc:  # noqa: BLE001 - a hint only: the views hold the truth
            log.info("group offset hint not committed: %s", exc)


class ReaderProcess:
    """The applier's handle on its reader: starts it, receives from it, stops it."""

    def __init__(self, config: Mapping[str, Any]):
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.conn, theirs = context.Pipe(duplex=True)
        self.process = context.Process(target=read, name="pdl-consume-reader", daemon=True,
                                       args=(os.getpid(), theirs, dict(config)))
        self.process.start()
        theirs.close()
        #: the reader's CPU seconds, as of the last message it sent
        self.cpu = 0.0

    def receive(self, timeout: float) -> tuple[Any, ...] | None:
        """The reader's next message, or None after ``timeout`` seconds of silence.

        Raises ``OperationalError`` if the reader failed or died."""
        from ledger.errors import OperationalError

        try:
            if not self.conn.poll(timeout):
                if not self.process.is_alive():
                    raise EOFError
                return None
            message: tuple[Any, ...] = self.conn.recv()
        except (EOFError, OSError):
            raise self._gone() from None
        if message[0] == "error":
            raise OperationalError(f"the reader process of this consumer-group member "
                                   f"failed: {message[1]}")
        if message[0] in ("batch", "idle"):
            self.cpu = message[-1]
        return message

    def send(self, *message: Any) -> None:
        try:
            self.conn.send(message)
        except OSError:
            raise self._gone() from None

    def _gone(self) -> Exception:
        from ledger.errors import OperationalError

        self.process.join(timeout=5)
        return OperationalError(
            f"the reader process of this consumer-group member exited (code "
            f"{self.process.exitcode}); the views keep every batch it handed over: start "
            "the member again")

    def stop(self) -> None:
        """Ask the reader to leave the group and wait for it (kill it if it hangs)."""
        try:
            self.conn.send(("stop",))
        except OSError:
            pass
        deadline = time.monotonic() + READER_STOP_SECONDS
        # drain what it sends meanwhile, or its blocked send would keep it from stopping
        while self.process.is_alive() and time.monotonic() < deadline:
            try:
                if self.conn.poll(0.1):
                    self.conn.recv()
            except (EOFError, OSError):
                break
        self.process.join(timeout=max(0.0, deadline - time.monotonic()))
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


def resume_at(positions: Mapping[str, Mapping[int, int]], partitions: list[int]
              ) -> dict[int, int]:
    """Where each partition resumes: after the earliest position any projection tracks."""
    return {partition: min((pos.get(partition, -1) for pos in positions.values()),
                           default=-1) + 1
            for partition in partitions}

