"""Threads publishing at once: merged appends (group commit), each caller's batch whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ledger.application import Ledger
from ledger.errors import OperationalError
from ledger.persistence import AppendResult, EventLog, NewRecord, Position
from ledger.settings import Settings, generate_key
from schemas import uuid7
from schemas.examples import EXAMPLES

THREADS = 8
EACH = 25


def wire(i: int) -> dict[str, Any]:
    """A wire event with personal values to seal (a collection), or without (a use)."""
    event = json.loads(json.dumps(EXAMPLES["data.used"]))
    event["id"] = uuid7(1_750_000_000_000 + i, i.to_bytes(10, "big"))
    event["subject"] = f"acct:group-{i % 40}"
    event["time"] = f"2026-11-02T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z"
    if i % 2 == 0:
        event["type"] = "data.collected"
        event["data"] = {**EXAMPLES["data.collected"]["data"],
                         "personal": {"user.contact.email": f"group{i}@example.cn"}}
    return event


def run_threads(target: Any, n: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(k: int) -> None:
        try:
            target(k)
        except BaseException as exc:  # noqa: BLE001 - collected for the test to check
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return errors


def test_threads_publishing_single_events_all_land_once(backend_settings: Settings) -> None:
    settings = backend_settings.with_(sqlite_synchronous="FULL")
    results: dict[int, list[AppendResult]] = {}
    with Ledger(settings) as ledger:

        def publish(k: int) -> None:
            mine = []
            for j in range(EACH):
                mine.extend(ledger.publish([wire(k * EACH + j)]))
            results[k] = mine

        assert run_threads(publish, THREADS) == []
        # every caller got the results of its own events, in its order, none a duplicate
        for k, mine in results.items():
            assert [r.event_id for r in mine] == [wire(k * EACH + j)["id"]
                                                  for j in range(EACH)]
            assert not any(r.duplicate for r in mine)
        positions = [(r.partition, r.offset) for mine in results.values() for r in mine]
        assert len(set(positions)) == THREADS * EACH
        stored = [(rec, ev) for rec, ev in ledger.events()]
        assert sorted(ev.id for _, ev in stored) == sorted(
            wire(i)["id"] for i in range(THREADS * EACH))
        # personal values were sealed under the right person's key, and open again
        for _, event in stored:
            if event.type == "data.collected":
                opened = ledger.unseal(event)
                assert opened is not None and opened["user.contact.email"].startswith("group")
        assert ledger.commits.records == THREADS * EACH
        assert ledger.commits.appends <= THREADS * EACH
        if ledger.log.can_verify:
            assert ledger.verify() == THREADS * EACH


class GatedLog(EventLog):
    """Wraps a log; its first append waits for ``release`` (so others queue up behind it),
    and it fails the append numbered ``fail_on`` (from 1)."""

    def __init__(self, inner: EventLog, fail_on: int = 0):
        self.inner = inner
        self.name = inner.name
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on
        self.batches: list[int] = []

    def append(self, records: Sequence[NewRecord]) -> list[AppendResult]:
        self.batches.append(len(records))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(30)
        if len(self.batches) == self.fail_on:
            raise OperationalError("injected: the log refused the group's append")
        return self.inner.append(records)

    def read(self, after: Mapping[int, int] | None = None, *, until: datetime | None = None,
             limit: int | None = None, partitions: Any = None) -> Any:
        return self.inner.read(after, until=until, limit=limit, partitions=partitions)

    def end_position(self, until: datetime | None = None) -> Position:
        return self.inner.end_position(until)

    @property
    def log_id(self) -> str:
        return self.inner.log_id

    def count(self) -> int:
        return self.inner.count()

    def close(self) -> None:
        self.inner.close()


def _queue_behind_a_leader(ledger: Ledger, log: GatedLog, events: list[dict[str, Any]],
                           followers: int) -> tuple[dict[int, Any], list[BaseException]]:
    """One thread publishes ``events[0]`` and holds the log; ``followers`` threads publish
    the next events meanwhile and queue; then the log is released."""
    outcome: dict[int, Any] = {}

    def publish(k: int) -> None:
        try:
            outcome[k] = ledger.publish([events[k]])
        except OperationalError as exc:
            outcome[k] = exc
            raise

    leader = threading.Thread(target=lambda: run_threads(lambda _: publish(0), 1))
    leader.start()
    assert log.entered.wait(30)
    queued: list[BaseException] = []
    followers_done = threading.Thread(
        target=lambda: queued.extend(run_threads(lambda k: publish(k + 1), followers)))
    followers_done.start()
    # wait until every follower is queued behind the leader, then let the leader go
    for _ in range(3000):
        if len(ledger.commits._queue) == followers:  # white-box: wait for the queue
            break
        threading.Event().wait(0.01)
    assert len(ledger.commits._queue) == followers
    log.release.set()
    leader.join(60)
    followers_done.join(60)
    return outcome, queued


def test_callers_queued_behind_an_append_share_the_next_one(settings: Settings) -> None:
    from ledger.factory import create_log

    log = GatedLog(create_log(settings))
    with Ledger(settings, log=log) as ledger:
        events = [wire(1000 + i) for i in range(6)]
        outcome, errors = _queue_behind_a_leader(ledger, log, events, followers=5)
        assert errors == []
        assert log.batches == [1, 5]  # the leader alone, then the five in one append
        assert ledger.commits.appends == 2 and ledger.commits.records == 6
        for k, event in enumerate(events):
            [result] = outcome[k]
            assert result.event_id == event["id"] and not result.duplicate
        assert ledger.log.count() == 6


def test_a_failed_group_append_fails_every_caller_in_it_and_stores_none(
        settings: Settings) -> None:
    from ledger.factory import create_log

    log = GatedLog(create_log(settings), fail_on=2)
    with Ledger(settings, log=log) as ledger:
        events = [wire(2000 + i) for i in range(5)]
        outcome, errors = _queue_behind_a_leader(ledger, log, events, followers=4)
        assert len(errors) == 4 and all(isinstance(e, OperationalError) for e in errors)
        assert all(isinstance(outcome[k], OperationalError) for k in range(1, 5))
        assert ledger.log.count() == 1  # the leader's own append, before the failed one
        # nothing half-written: publishing them again stores each once
        for event in events:
            ledger.publish([event])
        assert ledger.log.count() == 5


def test_the_same_event_from_two_callers_in_one_group_is_stored_once(
        settings: Settings) -> None:
    from ledger.factory import create_log

    log = GatedLog(create_log(settings))
    with Ledger(settings, log=log) as ledger:
        same = wire(3000)
        events = [wire(3001), same, dict(same)]
        outcome, errors = _queue_behind_a_leader(ledger, log, events, followers=2)
        assert errors == [] and log.batches == [1, 2]
        [first], [second] = outcome[1], outcome[2]
        assert first.event_id == second.event_id == same["id"]
        assert first.offset == second.offset
        assert sorted([first.duplicate, second.duplicate]) == [False, True]
        assert ledger.log.count() == 2


def test_a_lone_caller_appends_its_own_batch(settings: Settings) -> None:
    with Ledger(settings) as ledger:
        results = ledger.publish([wire(4000 + i) for i in range(3)])
        assert [r.offset for r in results] == [1, 2, 3]
        assert ledger.commits.appends == 1 and ledger.commits.records == 3


# A child process: THREADS threads publishing single events durably, each printing every
# result it got back ("event_id offset duplicate") as soon as publish returned.
KILLED_CHILD = """
import sys, threading
sys.path.insert(0, sys.argv[1])
from test_group_commit import THREADS, wire
from ledger.application import Ledger
from ledger.settings import Settings

each = int(sys.argv[2])
out = threading.Lock()
with Ledger(Settings.from_env()) as ledger:
    def publish(k):
        for j in range(each):
            [r] = ledger.publish([wire(k * each + j)])
            with out:
                sys.stdout.write(f"{r.event_id} {r.offset} {int(r.duplicate)}\\n")
                sys.stdout.flush()
    threads = [threading.Thread(target=publish, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
"""


def test_sigkill_mid_group_commit_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """Kill a process whose threads are publishing (appends always in flight): every
    result a caller got is stored where it said, no event twice, the tree whole; publishing
    everything again stores exactly the rest."""
    each = 250
    env = {**os.environ, "LEDGER_DATA_DIR": str(tmp_path / "data"),
           "LEDGER_MASTER_KEY": generate_key(), "LEDGER_SQLITE_SYNCHRONOUS": "FULL",
           "LEDGER_ACTOR": "tests", "LEDGER_BACKEND": "sqlite"}
    child = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, str(Path(__file__).parent),
                              str(each)], env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    acknowledged: dict[str, int] = {}
    for line in child.stdout:
        event_id, offset, duplicate = line.split()
        assert duplicate == "0" and event_id not in acknowledged
        acknowledged[event_id] = int(offset)
        if len(acknowledged) >= 150:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    for line in child.stdout:  # results printed before the kill
        event_id, offset, _ = line.split()
        acknowledged[event_id] = int(offset)
    assert child.returncode == -signal.SIGKILL
    assert len(acknowledged) < THREADS * each  # it was killed mid-run
    settings = Settings.from_env(env)
    with Ledger(settings) as ledger:
        stored = {r.event_id: r.offset for r in ledger.log.read()}
        assert len(stored) == ledger.log.count()  # no event twice
        for event_id, offset in acknowledged.items():
            assert stored.get(event_id) == offset  # nothing a caller was told is lost
        assert ledger.verify() == len(stored)  # no half-written group in the tree
        again: dict[int, list[AppendResult]] = {}

        def publish(k: int) -> None:
            again[k] = [r for j in range(each) for r in ledger.publish([wire(k * each + j)])]

        assert run_threads(publish, THREADS) == []
        results = [r for k in range(THREADS) for r in again[k]]
        assert sum(r.duplicate for r in results) == len(stored)
        assert all(r.offset == stored[r.event_id] for r in results if r.duplicate)
        assert ledger.log.count() == THREADS * each
