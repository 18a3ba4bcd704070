"""A consumer group that grows: several `pdl consume` processes, one PostgreSQL store.

Three real processes in one Kafka consumer group write into one shared PostgreSQL view
store; one of them is killed with SIGKILL mid-run; the group rebalances and the others
finish its partitions. Every view must then equal a one-process rebuild of the same log:
positions tracked in the same transaction as the rows they produced, redelivered records
skipped, rows about no one applied once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import kafka_cli_env, kafka_settings
from eventkit import dump_views as _dump_views

from consumers.postgres import PostgresViewStore
from consumers.projection import ProjectionRunner
from consumers.registry import all_projections
from consumers.views import SQLiteViewStore
from ledger.application import Ledger
from ledger.settings import Settings
from schemas.examples import EXAMPLES

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parent.parent
PEOPLE, PER_PERSON = 90, 24


def dump_views(store: Any) -> dict[str, list[tuple[Any, ...]]]:
    """View rows, without the bookkeeping of which writer wrote last (``view_meta``)."""
    return {k: v for k, v in _dump_views(store, all_projections()).items()
            if not k.endswith("_meta")}


def workload() -> list[dict[str, Any]]:
    """A registration (about no one: on every partition), then people's lives."""
    events: list[dict[str, Any]] = [{**EXAMPLES["recipient.registered"], "id": "cg-recipient"}]
    for i in range(PER_PERSON * PEOPLE):
        person, step = i % PEOPLE, i // PEOPLE
        time_ = f"2026-11-01T{step:02d}:{person // 60:02d}:{person % 60:02d}Z"
        base = {"id": f"cg-{i:06d}", "source": "tests/group", "time": time_,
                "subject": f"acct:{person}"}
        if step % 5 == 4:
            events.append({**base, "type": "data.shared", "data": {
                "recipient": "pay-co", "recipient_kind": "service_provider",
                "categories": ["user.financial.bank_account"],
                "purpose": "essential.service.payment_processing", "clause": "5.1.1",
                "agreement_ref": "DPA-1"}})
        elif step == PER_PERSON - 1 and person % 3 == 0:
            events.append({**base, "type": "data.erased", "data": {
                "categories": ["user.contact"], "stores": [f"db-{step % 3}"],
                "method": "erased"}})
        else:
            events.append({**base, "type": "data.collected", "data": {
                "categories": ["user.contact.email", "user.financial.bank_account"],
                "source": {"kind": "subject"}, "purpose": "essential.service.authentication",
                "store": f"db-{step % 3}", "store_location": "CN", "retention_days": 365,
                "personal": {"user.contact.email": f"p{person}@example.cn"}}})
    return events


def applied(url: str) -> int:
    """Records every projection has passed, summed over partitions (the slowest one's)."""
    store = PostgresViewStore(url)
    try:
        rows = store.query('SELECT projection, sum("offset" + 1) FROM tracking '
                           "GROUP BY projection")
        return min((int(n) for _, n in rows), default=0) if len(rows) >= 4 else 0
    finally:
        store.close()


def test_three_consumers_one_killed_equal_a_one_process_rebuild(
        settings: Settings, kafka_bootstrap: str, postgres_url: str) -> None:
    kafka = kafka_settings(settings, kafka_bootstrap, partitions=6)
    events = workload()
    ledger = Ledger(kafka)  # the topic exists before the members subscribe
    env = kafka_cli_env(kafka, LEDGER_VIEWS_URL=postgres_url)
    members = [subprocess.Popen([sys.executable, "-m", "pdl.cli", "consume",
                                 "--batch-size", "50"], cwd=ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for _ in range(3)]
    said: list[list[str]] = [[], [], []]
    readers = [threading.Thread(target=lambda i=i: said[i].extend(members[i].stderr or []),
                                daemon=True) for i in range(3)]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + 240  # three members start and join slowly on a loaded machine
        # events arrive while the group runs: a live stream, in small publishes
        sent, killed = 0, False
        while sent < len(events) and not killed and time.monotonic() < deadline:
            if sent < len(events) - 600:
                ledger.publish(events[sent:sent + 20])
                sent += 20
            # else: keep work for after the kill until every member has projected some
            # (a loaded machine may take longer to start and join three members)
            time.sleep(0.15)
            if all(any("projected" in line for line in lines) for lines in said):
                # every member has partitions and has projected some: one dies mid-run
                members[0].send_signal(signal.SIGKILL)
                killed = True
        assert killed and sent <= len(events) - 500, (sent, said)  # work left to take over
        for start in range(sent, len(events), 500):  # the rest after the kill
            ledger.publish(events[start:start + 500])
        assert members[0].wait(10) == -signal.SIGKILL
        end = sum(o + 1 for o in ledger.log.end_position().values())
        rebuilt = SQLiteViewStore(":memory:")
        ProjectionRunner(ledger.log, rebuilt, all_projections()).rebuild()
        # the group notices (session timeout), rebalances, the others finish its share
        while applied(postgres_url) < end and time.monotonic() < deadline:
            time.sleep(0.2)
        assert applied(postgres_url) == end
    finally:
        for member in members:  # the first too if the test failed before killing it
            if member.poll() is None:
                member.send_signal(signal.SIGTERM)
        for member in members:
            try:
                member.wait(60)
            except subprocess.TimeoutExpired:  # never left running after the test
                member.kill()
                member.wait(10)
        for reader in readers:
            reader.join(10)
        ledger.close()
    assert all(m.returncode == 0 for m in members[1:]), said
    shared = PostgresViewStore(postgres_url)
    try:
        assert dump_views(shared) == dump_views(rebuilt)
        # each event's first copy marked once, the registration's six copies included;
        # the findings apply each partition's copy once (registries per partition,
        # docs/ordering.md), marked "id@partition"
        (n,), = shared.query("SELECT count(*) FROM event_marks WHERE event_id NOT LIKE '%@%'")
        assert n == len(events)
        copies = shared.query("SELECT event_id FROM event_marks WHERE event_id LIKE '%@%'")
        assert sorted(e for (e,) in copies) == [f"cg-recipient@{p}" for p in range(6)]
    finally:
        shared.close()
