"""A group member that reads in a process of its own (``consumers.pipeline``), on a real
broker: faults in either process lose and double nothing, the reader never outlives its
member, group offset hints never run ahead of the views, and `pdl consume` runs this way
by default (``LEDGER_CONSUME_PIPELINE``).

The views a pipelined member builds are compared with a one-process rebuild in
tests/test_kafka_consume.py (each member test runs in both modes) and
tests/test_consumer_group.py (three `pdl consume` processes, one killed with SIGKILL).
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
from conftest import kafka_cli_env, kafka_settings
from eventkit import dump_views

from consumers.consume import KafkaGroupConsumer
from consumers.pipeline import READER_NICENESS
from consumers.projection import ProjectionRunner
from consumers.registry import all_projections
from consumers.views import SQLiteViewStore
from ledger.application import Ledger
from ledger.errors import ConfigurationError, OperationalError
from ledger.settings import Settings

pytestmark = pytest.mark.kafka


@pytest.fixture
def kafka(settings: Settings, kafka_bootstrap: str) -> Settings:
    return kafka_settings(settings, kafka_bootstrap, partitions=3)


def wire(i: int) -> dict[str, Any]:
    return {"id": f"pl-{i:05d}", "type": "data.collected", "source": "tests/pipeline",
            "time": f"2026-11-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z",
            "subject": f"acct:{i % 40}",
            "data": {"categories": ["user.contact.email"], "source": {"kind": "subject"},
                     "purpose": "essential.service.authentication", "store": f"db-{i % 3}",
                     "store_location": "CN", "retention_days": 365},
            "personal": {"user.contact.email": f"p{i}@example.cn"}}


def fresh_rebuild(ledger: Ledger) -> dict[str, list[tuple[Any, ...]]]:
    store = SQLiteViewStore(":memory:")
    ProjectionRunner(ledger.log, store, all_projections()).rebuild()
    return dump_views(store, all_projections())


def children(pid: int) -> list[int]:
    """The live (not zombie) processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def niceness(pid: int, task: int | None = None) -> int:
    path = f"/proc/{pid}/task/{task}/stat" if task is not None else f"/proc/{pid}/stat"
    with open(path) as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_reader_stops_its_member_clearly_and_a_restart_loses_nothing(
        kafka: Settings, tmp_path: Path) -> None:
    with Ledger(kafka) as ledger:
        for start in range(0, 1500, 300):
            ledger.publish([wire(i) for i in range(start, start + 300)])
        store = SQLiteViewStore(tmp_path / "views.db")
        member = KafkaGroupConsumer(ledger.log, store, all_projections(), batch_size=100,
                                    pipeline=True)
        killed: list[int] = []

        def kill_the_reader(_stats: Any) -> None:
            assert member._reader is not None  # noqa: SLF001
            if not killed:
                killed.append(member._reader.process.pid)  # noqa: SLF001
                os.kill(killed[0], signal.SIGKILL)

        with pytest.raises(OperationalError, match="reader process .* exited") as raised:
            member.run(threading.Event(), idle_exit=20, on_batch=kill_the_reader)
        assert "-9" in str(raised.value)  # the exit code says how it ended
        assert killed and not alive(killed[0])
        assert 0 < store.query("SELECT count(*) FROM event_marks")[0][0] < 1500
        # a restarted member takes up exactly where the first one stopped
        # (another group: the killed reader's membership would hold its partitions until
        # the session times out; positions come from the views, never from the group)
        again = KafkaGroupConsumer(ledger.log, store, all_projections(), batch_size=100,
                                   pipeline=True, group_id=f"pl-restart-{time.time_ns()}")
        again.run(threading.Event(), idle_exit=3)
        assert store.query("SELECT count(*) FROM event_marks")[0][0] == 1500
        assert dump_views(store, all_projections()) == fresh_rebuild(ledger)
        # the reader's CPU is counted as the member's
        assert again.cpu_seconds() > time.process_time()


def test_group_offset_hints_never_run_ahead_of_the_views(kafka: Settings,
                                                         tmp_path: Path) -> None:
    from kafka import KafkaConsumer, TopicPartition

    with Ledger(kafka) as ledger:
        ledger.publish([wire(i) for i in range(600)])
        store = SQLiteViewStore(tmp_path / "views.db")
        group = f"pl-hints-{os.getpid()}-{time.monotonic_ns()}"
        member = KafkaGroupConsumer(ledger.log, store, all_projections(), group_id=group,
                                    batch_size=50, pipeline=True)
        member.run(threading.Event(), idle_exit=3)
        tracked = {p: o for p, o in store.position("datamap", ledger.log.log_id).items()}
        topic = kafka.kafka.topic
        probe = KafkaConsumer(bootstrap_servers=kafka.kafka.bootstrap_servers, group_id=group,
                              enable_auto_commit=False)
        try:
            committed = {p: probe.committed(TopicPartition(topic, p))
                         for p in ledger.log.partitions()}
        finally:
            probe.close()
        # every partition's hint is where the views are: after the last record applied
        assert committed == {p: tracked[p] + 1 for p in committed}


def test_pdl_consume_reads_in_a_second_process_that_dies_with_it(kafka: Settings) -> None:
    with Ledger(kafka) as ledger:
        ledger.publish([wire(i) for i in range(200)])
    env = kafka_cli_env(kafka)
    env.pop("LEDGER_CONSUME_PIPELINE", None)
    proc = subprocess.Popen([sys.executable, "-m", "pdl.cli", "consume"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                done = SQLiteViewStore(kafka.views_file).query(
                    "SELECT count(*) FROM event_marks")[0][0]
            except Exception:  # noqa: BLE001 - not created yet
                done = 0
            if done == 200:
                break
            time.sleep(0.2)
        assert done == 200
        spawned = children(proc.pid)  # the reader, and multiprocessing's resource tracker
        readers = [pid for pid in spawned if b"spawn_main" in cmdline(pid)]
        assert len(readers) == 1, spawned
        # the reader gives way to the applier (and the server it waits for) on a busy machine
        assert niceness(readers[0]) == niceness(proc.pid) + READER_NICENESS
        # ... but not its heartbeats: kafka-python's IO thread keeps the applier's priority
        # (and the parent watchdog): every thread but the main one
        others = [int(t) for t in os.listdir(f"/proc/{readers[0]}/task")
                  if int(t) != readers[0]]
        assert others and all(niceness(readers[0], t) == niceness(proc.pid) for t in others)
        proc.kill()  # SIGKILL: no chance to stop the reader itself
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(map(alive, spawned)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(alive, spawned)), "the reader outlived its member"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # --no-pipeline: one process, no child
    one = subprocess.Popen([sys.executable, "-m", "pdl.cli", "consume", "--no-pipeline",
                            "--idle-exit", "30"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        assert one.poll() is None and children(one.pid) == []
    finally:
        one.kill()
        one.wait()


def test_the_setting_is_a_flag_and_its_error_names_it() -> None:
    assert Settings.from_env({}).consume_pipeline is True
    assert Settings.from_env({"LEDGER_CONSUME_PIPELINE": "0"}).consume_pipeline is False
    with pytest.raises(ConfigurationError, match="LEDGER_CONSUME_PIPELINE"):
        Settings.from_env({"LEDGER_CONSUME_PIPELINE": "sometimes"})
