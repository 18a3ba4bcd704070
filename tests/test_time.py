"""Two kinds of time: ``--valid-at`` (when things happened) and ``--as-of`` (when the log
recorded them), alone or together, on events published out of time order.

The scenario: Alice's e-mail is collected and her bank account shared with Pay Co, both
published as they happen. Later a back-fill publishes, late, that her bank account had been
collected ten days before (and that a first disclosure to Pay Co happened then too).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from consumers.replay import QueryTime
from ledger.application import Ledger
from ledger.settings import Settings, generate_key
from pdl.cli import main, parse_time
from pdl.service import QueryService

Capture = pytest.CaptureFixture[str]
ALICE = "acct-alice-time"
EMAIL, BANK = "user.contact.email", "user.financial.bank_account"
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def wire(type_: str, t: datetime, subject: str | None, data: dict[str, Any],
         personal: dict[str, str] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"source": "tests/time", "type": type_, "time": _iso(t),
                             "data": data}
    if subject:
        event["subject"] = subject
    if personal:
        event["personal"] = personal
    return event


def collected(t: datetime, category: str, value: str) -> dict[str, Any]:
    return wire("data.collected", t, ALICE, {
        "categories": [category], "source": {"kind": "subject"},
        "purpose": "essential.service.payment_processing", "store": "pay-db",
        "store_location": "CN"}, {category: value})


def shared(t: datetime, clause: str) -> dict[str, Any]:
    return wire("data.shared", t, ALICE, {
        "recipient": "payco", "recipient_kind": "service_provider", "categories": [BANK],
        "purpose": "essential.service.payment_processing", "clause": clause})


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two publishes: on time, then (after ``between``) a late back-fill."""
    data = tmp_path_factory.mktemp("time")
    env = {"LEDGER_DATA_DIR": str(data), "LEDGER_MASTER_KEY": generate_key(),
           "LEDGER_ACTOR": "dpo@tests", "LEDGER_SQLITE_SYNCHRONOUS": "NORMAL"}
    settings = Settings.from_env(env)
    with Ledger(settings) as ledger:
        ledger.publish([
            wire("recipient.registered", NOW - timedelta(hours=3), None, {
                "recipient": "payco", "name": "Pay Co", "kind": "service_provider",
                "location": "CN", "roles": ["payment_processor"]}),
            wire("subject.registered", NOW - timedelta(hours=2), ALICE,
                 {"subject_kind": "user"}),
            collected(NOW - timedelta(hours=2), EMAIL, "alice@example.com"),
            shared(NOW - timedelta(hours=1), "5.1.1"),
        ])
    time.sleep(0.05)
    between = datetime.now(timezone.utc)
    time.sleep(0.05)
    with Ledger(settings) as ledger:
        ledger.publish([  # the back-fill: happened ten days ago, recorded now
            collected(NOW - timedelta(days=10), BANK, "6222 0000 1111 2222"),
            shared(NOW - timedelta(days=9), "5.1.2"),
        ])
    return {"env": env, "settings": settings, "between": between}


@pytest.fixture
def cli(log: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for key, value in log["env"].items():
        monkeypatch.setenv(key, value)
    return log


def run(capsys: Capture, *argv: str) -> tuple[int, Any, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    try:
        return code, json.loads(captured.out), captured.err
    except json.JSONDecodeError:
        return code, captured.out, captured.err


def clauses(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(r["clause"] for r in rows)


def test_valid_at_counts_late_events_whenever_recorded(cli: dict[str, Any], capsys: Capture
                                                       ) -> None:
    eight_days_ago = _iso(NOW - timedelta(days=8))
    # today: both disclosures
    assert clauses(run(capsys, "disclosures", "--json")[1]) == ["5.1.1", "5.1.2"]
    # what was true eight days ago: the back-filled disclosure only (recorded later)
    assert clauses(run(capsys, "disclosures", "--json", "--valid-at", eight_days_ago)[1]) \
        == ["5.1.2"]
    # what the log knew before the back-fill: the on-time disclosure only
    between = cli["between"].isoformat()
    assert clauses(run(capsys, "disclosures", "--json", "--as-of", between)[1]) == ["5.1.1"]
    # both: what the log knew before the back-fill about eight days ago: nothing
    code, rows, err = run(capsys, "disclosures", "--json", "--as-of", between,
                          "--valid-at", eight_days_ago)
    assert code == 0 and rows == []
    assert "precedes the first event" in json.loads(err)["warnings"][0]


def test_valid_at_data_map_and_audit(cli: dict[str, Any], capsys: Capture) -> None:
    nine_days_ago = _iso(NOW - timedelta(days=9, hours=-1))
    code, answer, _ = run(capsys, "subject", ALICE, "--json", "--valid-at", nine_days_ago)
    assert code == 0 and answer["valid_at"] and answer["warnings"] == []
    # registration and the e-mail came later in event time; the bank account was held
    assert [c["category"] for c in answer["categories"]] == [BANK]
    assert answer["subject"] is None
    with Ledger(cli["settings"]) as ledger:
        audit = [e.data for _, e in ledger.events() if e.type == "ledger.queried"][-1]
    assert audit.query == "subject" and "valid_at" in audit.arguments


def test_a_time_before_the_log_or_the_first_event_is_said(cli: dict[str, Any],
                                                         capsys: Capture) -> None:
    code, rows, err = run(capsys, "disclosures", "--summary", "--as-of", "2024-06-01")
    assert code == 0
    assert "precedes the log's first record" in err and "--valid-at" in err
    code, answer, _ = run(capsys, "subject", ALICE, "--json", "--as-of", "2024-06-01")
    assert code == 66  # nothing known about her then: not found, not an empty map
    code, answer, _ = run(capsys, "scope", "--json", "--stores", "pay-db", "--from",
                          "2020-01-01", "--until", "2020-02-01", "--valid-at", "2020-02-01")
    assert code == 0 and answer["counts"]["people"] == 0
    assert any("precedes the first event" in w for w in answer["warnings"])
    code, rows, err = run(capsys, "log", "--json", "--as-of", "2024-06-01")
    assert rows == [] and "precedes the log's first record" in err


def test_late_events_in_status_and_in_the_timeline(cli: dict[str, Any], capsys: Capture) -> None:
    assert run(capsys, "project")[0] == 0
    code, rows, _ = run(capsys, "status", "--json")
    clock = next(r for r in rows if r["projection"] == "clock")["summary"]
    assert clock["events"] == 5 and clock["late_events"] == 2
    assert 9 * 24 - 2 <= clock["longest_delay_hours"] <= 10 * 24 + 2
    code, text, _ = run(capsys, "status")
    assert "late events (recorded over 24 h after they happened): 2" in text
    code, answer, _ = run(capsys, "export", ALICE, "--json")
    assert answer["late_events"] == 2
    events = answer["events"]
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)  # event time order
    assert [e["type"] for e in events if e.get("late")] == ["data.collected", "data.shared"]
    code, text, _ = run(capsys, "export", ALICE)
    assert text.count("[late: recorded") == 2


def test_service_passes_both_times_through(cli: dict[str, Any]) -> None:
    """The layer both front ends share: one QueryTime, the same answer as the CLI."""
    with QueryService.open(cli["settings"]) as service:
        when = QueryTime(as_of=datetime.now(timezone.utc), valid_at=NOW - timedelta(days=8))
        with service.answering(when, needs=["disclosures"]) as found:
            rows = found.views.query("SELECT clause FROM disclosures")
        assert rows == [("5.1.2",)] and found.warnings == []
        assert when.reference == when.valid_at


def test_plain_dates_are_midnight_utc() -> None:
    assert parse_time("2024-07-01") == datetime(2024, 7, 1, tzinfo=timezone.utc)
    assert parse_time("2024-07-01T08:00:00+08:00") == datetime(2024, 7, 1, tzinfo=timezone.utc)
    for bad in ("2024-13-01", "2024-07-01T08:00:00", "yesterday"):
        with pytest.raises(Exception, match="2024|zone|ISO"):
            parse_time(bad)


def test_status_explains_lag_from_audit_records(cli: dict[str, Any], capsys: Capture,
                                               tmp_path: Path) -> None:
    assert run(capsys, "project")[0] == 0
    # queries that do not catch up still record themselves: lag that only audit makes
    assert run(capsys, "findings", "--summary", "--no-catch-up")[0] in (0, 1)
    code, rows, _ = run(capsys, "status", "--json")
    assert all(r["lag"] == r["audit_lag"] >= 1 for r in rows)
    code, text, _ = run(capsys, "status")
    assert "audit records only" in text and "ledger.queried" in text
