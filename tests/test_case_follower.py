"""The case files' events reach the ledger log exactly once, even when the process is killed
between the two writes (the ledger append and the follower's tracking row), on both log
backends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cases.application import SOURCE, CaseFiles, LedgerFollower
from cases.domain import Incident
from ledger.application import Ledger
from ledger.settings import Settings
from schemas import decode

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)

KILLED = textwrap.dedent("""
    import os, signal, sys
    from datetime import datetime, timedelta, timezone
    from eventsourcing.sqlite import SQLiteTrackingRecorder
    from cases.application import CaseFiles, LedgerFollower
    from cases.domain import Incident, RightsRequest
    from ledger.application import Ledger
    from ledger.settings import Settings

    die_after = sys.argv[1]  # the tracking row written just before the kill
    original = SQLiteTrackingRecorder.insert_tracking

    def insert_tracking(self, tracking):
        original(self, tracking)
        if tracking.application_name == die_after:
            os.kill(os.getpid(), signal.SIGKILL)

    SQLiteTrackingRecorder.insert_tracking = insert_tracking
    t0 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
    settings = Settings.from_env()
    ledger = Ledger(settings)
    cases = CaseFiles(settings)
    incident = Incident.open("inc-k", "killed mid-copy", ["logs"], t0 - timedelta(days=1), t0,
                             at=t0)
    incident.scope({"hash": "ab" * 32, "counts": {
        "people": 3, "records": 3, "reachable": 3, "unreachable": 0, "erased": 0,
        "people_with_sensitive_data": 0, "cross_border_people": 0, "residence": {}}}, at=t0)
    request = RightsRequest.receive("req-k", "erasure", "p_k", t0 + timedelta(days=15), at=t0)
    request.verify("sms_code", at=t0)
    cases.save(incident, request)
    LedgerFollower(cases, ledger).pull()
    raise SystemExit("not killed")
""")


def _env(settings: Settings) -> dict[str, str]:
    assert settings.master_key is not None
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LEDGER_DATA_DIR": str(settings.data_dir),
           "LEDGER_MASTER_KEY": settings.master_key.hex(), "LEDGER_BACKEND": settings.backend,
           "LEDGER_SQLITE_SYNCHRONOUS": "NORMAL"}
    if settings.backend == "kafka":
        k = settings.kafka
        assert k.bootstrap_servers and k.dead_letter_topic
        env |= {"LEDGER_KAFKA_BOOTSTRAP_SERVERS": k.bootstrap_servers,
                "LEDGER_KAFKA_TOPIC": k.topic,
                "LEDGER_KAFKA_DEAD_LETTER_TOPIC": k.dead_letter_topic,
                "LEDGER_KAFKA_PARTITIONS": str(k.partitions)}
    return env


def _killed(settings: Settings, code: str, arg: str) -> None:
    """Run ``code`` in a child process on ``settings``' ledger; it must die by SIGKILL."""
    result = subprocess.run([sys.executable, "-c", code, arg], cwd=ROOT, env=_env(settings),
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr


def _copies(ledger: Ledger) -> Counter[tuple[int, str]]:
    """(partition, event id) of every case event in the log: on Kafka an event about no one
    sits once in every partition, so a repeat shows as a count of 2."""
    return Counter((r.partition, r.event_id) for r in ledger.log.read()
                   if decode(r.payload).source == SOURCE)


def test_killed_before_the_append_the_batch_is_copied_once_on_restart(
    backend_settings: Settings
) -> None:
    _killed(backend_settings, KILLED, "cases.intent")
    with Ledger(backend_settings) as ledger:
        cases = CaseFiles(backend_settings)
        follower = LedgerFollower(cases, ledger)
        assert (follower.intent, follower.position) == (4, 0)
        assert not _copies(ledger)  # killed after the intent row, before the append
        assert follower.pull() == 4
        after = _copies(ledger)
        assert follower.position == 4
        assert set(after.values()) == {1} and len({eid for _, eid in after}) == 4
        types = Counter(e.type for e in {e.id: e for e in (
            decode(r.payload) for r in ledger.log.read()) if e.source == SOURCE}.values())
        assert types == {"incident.opened": 1, "incident.scoped": 1, "request.received": 1,
                         "request.identity_verified": 1}
        assert follower.pull() == 0 and _copies(ledger) == after
        cases.close()


def test_killed_after_the_append_before_tracking_is_not_copied_twice(
    backend_settings: Settings
) -> None:
    # The window the intent row exists for: the ledger has the batch, tracking does not.
    code = KILLED.replace("SQLiteTrackingRecorder.insert_tracking = insert_tracking", """
from ledger.application import GroupCommit
append = GroupCommit.append
def append_then_die(self, records):
    results = append(self, records)
    os.kill(os.getpid(), signal.SIGKILL)
GroupCommit.append = append_then_die""")
    _killed(backend_settings, code, "-")
    with Ledger(backend_settings) as ledger:
        cases = CaseFiles(backend_settings)
        follower = LedgerFollower(cases, ledger)
        assert (follower.intent, follower.position) == (4, 0)
        assert len({eid for _, eid in _copies(ledger)}) == 4  # in the log, not yet tracked
        assert follower.pull() == 0  # recovered: found in the log, nothing appended again
        assert follower.position == 4
        after = _copies(ledger)
        assert set(after.values()) == {1} and len({eid for _, eid in after}) == 4
        incident = cases.incident("inc-k")
        request = cases.request("req-k")
        incident.scope({"hash": "cd" * 32, "counts": {
            "people": 1, "records": 1, "reachable": 1, "unreachable": 0, "erased": 0,
            "people_with_sensitive_data": 0, "cross_border_people": 0, "residence": {}}},
            at=T0 + timedelta(hours=1))
        cases.save(incident)
        assert follower.pull() == 1 and follower.position == 5  # and it carries on
        events = [decode(r.payload) for r in ledger.log.read()]
        requests = [e for e in events if e.type.startswith("request.")]
        assert {e.subject for e in requests} == {request.subject}  # pseudonym, as stored
        cases.close()


def test_each_domain_event_becomes_its_catalogue_event(settings: Settings) -> None:
    with Ledger(settings) as ledger:
        cases = CaseFiles(settings)
        incident = Incident.open("inc-c", "catalogue", ["logs"], T0 - timedelta(days=1), T0,
                                 ["user.contact.email"], at=T0)
        cases.save(incident)
        assert LedgerFollower(cases, ledger).pull() == 1
        (record,) = [r for r in ledger.log.read() if r.event_type == "incident.opened"]
        event = decode(record.payload)
        assert event.source == SOURCE and event.time == T0
        assert event.data.model_dump(mode="json", exclude={"personal"}) == {
            "incident_id": "inc-c", "description": "catalogue", "stores": ["logs"],
            "window_start": "2026-02-28T08:00:00Z", "window_end": "2026-03-01T08:00:00Z",
            "categories": ["user.contact.email"]}
        # the case store is the eventsourcing library's own SQLite recorder, 0600
        assert settings.cases_file.exists()
        assert oct(settings.cases_file.stat().st_mode & 0o777) == "0o600"
        assert type(cases.recorder).__name__ == "SQLiteApplicationRecorder"
        cases.close()


def test_an_adopted_incident_keeps_the_producers_events_and_adds_only_its_own(
    settings: Settings
) -> None:
    from cases.desk import CaseDesk
    from pdl.service import QueryService

    with Ledger(settings) as ledger:
        ledger.publish([
            {"source": "svc/security", "type": "incident.opened", "time": "2026-03-01T08:00:00Z",
             "id": "0190a6f2-7c4e-7000-8000-00000000aaaa",
             "data": {"incident_id": "inc-p", "description": "from a producer",
                      "stores": ["logs"], "window_start": "2026-02-28T00:00:00Z",
                      "window_end": "2026-03-01T00:00:00Z"}},
            {"source": "svc/security", "type": "incident.reported",
             "time": "2026-03-01T10:00:00Z", "id": "0190a6f2-7c4e-7000-8000-00000000bbbb",
             "data": {"incident_id": "inc-p", "authority": "CAC"}},
            {"source": "svc/security", "type": "incident.contained",
             "time": "2026-03-01T11:00:00Z", "id": "0190a6f2-7c4e-7000-8000-00000000cccc",
             "data": {"incident_id": "inc-p", "measures": "bucket made private"}},
        ])
        service = QueryService(ledger)
        desk = CaseDesk(ledger)
        try:
            service.catch_up()
            incident = desk.adopt("inc-p", service.views, "general", "nobody's data was there")
        finally:
            service.views.close()
            desk.close()
        assert incident.reports["pipl57_regulator"]["authority"] == "CAC"
        assert incident.response["contained"]["measures"] == "bucket made private"
        records = list(ledger.log.read())
        ids = Counter(r.event_id for r in records)
        assert ids["0190a6f2-7c4e-7000-8000-00000000aaaa"] == 1
        assert ids["0190a6f2-7c4e-7000-8000-00000000bbbb"] == 1
        assert ids["0190a6f2-7c4e-7000-8000-00000000cccc"] == 1  # adopted, not copied again
        ours = Counter(r.event_type for r in records if decode(r.payload).source == SOURCE)
        assert ours == {"incident.scoped": 1, "incident.graded": 1}
