"""The query commands end to end: publish through the ledger, then ask through ``pdl``.

Every query must be audited in the log without the person's real identifier, answer as the
log stood at ``--as-of``, and leave no clear personal value in the views.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from samplekit import (  # noqa: F401 - the sample's names, imported from here by other tests
    ALICE,
    ALICE_BANK,
    ALICE_EMAIL,
    BANK,
    BOB,
    EMAIL,
    cli_env,
    collected,
    run,
    sample_events,
    shared,
    wire,
)

from ledger.application import Ledger
from ledger.settings import Settings
from pdl.cli import main

Capture = pytest.CaptureFixture[str]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A data directory with a first batch of events, configured through LEDGER_* like a user."""
    settings = cli_env(tmp_path, monkeypatch, "dpo@tests")
    with Ledger(settings) as ledger:
        ledger.publish(sample_events(preferences=True))
    return settings


def audits(settings: Settings) -> list[dict[str, Any]]:
    with Ledger(settings) as ledger:
        return [e.data.model_dump() for _, e in ledger.events() if e.type == "ledger.queried"]


def test_subject_answers_by_real_id_and_audits_the_pseudonym(env: Settings, capsys: Capture) -> None:
    code, answer = run(capsys, "subject", ALICE, "--json")
    assert code == 0
    with Ledger(env) as ledger:
        pseudonym = ledger.pseudonymise(ALICE)
    assert answer["pseudonym"] == pseudonym
    cats = {c["category"]: c for c in answer["categories"]}
    assert set(cats) == {EMAIL, BANK}
    assert {s["store"] for s in cats[EMAIL]["stores"]} == {"accounts-db", "accounts-backup"}
    assert cats[BANK]["recipients"][0]["recipient"] == "payco"
    assert answer["consents_in_force"] == ["c-mkt"]
    assert answer["opt_outs"] == ["marketing.communications.sms"]
    audit = audits(env)[-1]
    assert audit["query"] == "subject" and audit["actor"] == "dpo@tests"
    assert audit["arguments"] == {} and audit["people"] == [pseudonym]
    assert audit["role"] is None and audit["clear"] is False
    assert ALICE not in json.dumps(audits(env))


def test_views_hold_no_clear_personal_value(env: Settings, capsys: Capture) -> None:
    for argv in (["project"], ["subject", ALICE, "--json"], ["export", ALICE, "--json"],
                 ["disclosures", "--json"], ["scope", "--stores", "accounts-db", "--from",
                                             "2026-01-01T00:00:00Z", "--until",
                                             "2026-02-01T00:00:00Z", "--json"]):
        assert run(capsys, *argv)[0] == 0
    data = b"".join(p.read_bytes() for p in Path(env.data_dir).glob("views.db*"))
    assert data, "the views were written"
    for clear in (ALICE, BOB, ALICE_EMAIL, ALICE_BANK, "bob@example.com"):
        assert clear.encode() not in data


def test_as_of_answers_from_the_log_as_it_stood(env: Settings, capsys: Capture) -> None:
    assert run(capsys, "project")[0] == 0
    time.sleep(0.05)
    then = datetime.now(timezone.utc)
    time.sleep(0.05)
    with Ledger(env) as ledger:
        ledger.publish([
            shared(ALICE, "2026-02-01T00:00:00Z", "payco", [BANK], "5.1.2"),
            wire("data.erased", "2026-02-02T00:00:00Z", ALICE, {
                "categories": [EMAIL], "stores": ["accounts-backup"]}),
        ])
    as_of = then.isoformat()
    _, now_register = run(capsys, "disclosures", "--json")
    _, old_register = run(capsys, "disclosures", "--json", "--as-of", as_of)
    assert [d["clause"] for d in now_register] == ["5.1.1", "5.1.2"]
    assert [d["clause"] for d in old_register] == ["5.1.1"]

    _, now_map = run(capsys, "subject", ALICE, "--json")
    _, old_map = run(capsys, "subject", ALICE, "--json", "--as-of", as_of)

    def backup(answer: dict[str, Any]) -> str:
        email = next(c for c in answer["categories"] if c["category"] == EMAIL)
        return str(next(s["status"] for s in email["stores"] if s["store"] == "accounts-backup"))

    assert (backup(old_map), backup(now_map)) == ("held", "erased")
    assert audits(env)[-1]["arguments"]["as_of"] == as_of


def test_disclosure_filters_and_summary(env: Settings, capsys: Capture) -> None:
    _, rows = run(capsys, "disclosures", "--json", "--recipient", "payco", "--clause", "5.1",
                  "--category", "user.financial", "--from", "2026-01-01T00:00:00Z",
                  "--until", "2026-01-31T00:00:00+08:00")
    assert len(rows) == 1 and rows[0]["recipient_name"] == "Pay Co"
    _, rows = run(capsys, "disclosures", "--json", "--clause", "5.3")
    assert rows == []
    _, summary = run(capsys, "disclosures", "--json", "--summary")
    assert summary[0]["recipient"] == "payco" and summary[0]["people"] == 1
    assert audits(env)[-1]["arguments"] == {"summary": "yes"}
    code = main(["disclosures", "--category", "user.nonsense"])
    assert code == 65


def test_scope_reports_erased_people_as_unreachable(env: Settings, capsys: Capture) -> None:
    with Ledger(env) as ledger:
        ledger.erase(BOB)
        bob = ledger.pseudonymise(BOB)
    code, answer = run(capsys, "scope", "--stores", "accounts-db,accounts-backup",
                       "--from", "2026-01-10T00:00:00Z", "--until", "2026-01-12T00:00:00Z",
                       "--json")
    assert code == 0
    people = {p["pseudonym"]: p for p in answer["people"]}
    assert len(people) == 2 and answer["counts"]["records"] == 3
    assert people[bob]["reachable"] is False
    assert answer["counts"]["unreachable"] == 1
    assert audits(env)[-1]["query"] == "scope"
    code, text = run(capsys, "scope", "--stores", "accounts-db", "--from",
                     "2026-01-10T00:00:00Z", "--until", "2026-01-12T00:00:00Z")
    assert code == 0 and "for the regulator" in text
    assert main(["scope", "--stores", "accounts-db", "--from", "2026-01-12T00:00:00Z",
                 "--until", "2026-01-10T00:00:00Z"]) == 2
    code, first = run(capsys, "scope", "--stores", "accounts-db,accounts-backup", "--from",
                      "2026-01-10T00:00:00Z", "--until", "2026-01-12T00:00:00Z", "--json",
                      "--limit", "1")
    assert code == 0 and len(first["people"]) == 1 and first["counts"] == answer["counts"]
    code, rest = run(capsys, "scope", "--stores", "accounts-db,accounts-backup", "--from",
                     "2026-01-10T00:00:00Z", "--until", "2026-01-12T00:00:00Z", "--json",
                     "--limit", "1", "--after", first["page"]["next"])
    assert code == 0 and rest["page"]["next"] is None
    assert {p["pseudonym"] for p in first["people"] + rest["people"]} == set(people)
    with pytest.raises(SystemExit) as refused:
        main(["scope", "--stores", "accounts-db", "--from", "2026-01-10T00:00:00Z",
              "--until", "2026-01-12T00:00:00Z", "--limit", "-1"])
    assert refused.value.code == 2 and "--limit: must be 0 or more" in capsys.readouterr().err


def test_export_is_the_unsealed_answer_to_an_access_request(env: Settings, capsys: Capture) -> None:
    code, answer = run(capsys, "export", ALICE, "--json")
    assert code == 0
    assert answer["subject"] == ALICE and answer["key"] == "active"
    values = [e.get("personal") for e in answer["events"] if e.get("personal")]
    assert {EMAIL: ALICE_EMAIL} in values and {BANK: ALICE_BANK} in values
    assert answer["data_map"]["pseudonym"] == answer["pseudonym"]
    code, text = run(capsys, "export", ALICE, "--format", "text")
    assert code == 0 and ALICE_EMAIL in text and "data map" in text
    assert [a["arguments"]["format"] for a in audits(env)[-2:]] == ["json", "text"]
    assert ALICE not in json.dumps(audits(env))


def test_findings_command(env: Settings, capsys: Capture) -> None:
    code, found = run(capsys, "findings", "--json")
    assert code in (0, 1) and isinstance(found, list)
    assert code == (1 if found else 0)
    code, summary = run(capsys, "findings", "--json", "--summary")
    assert isinstance(summary, list)
    assert audits(env)[-1]["query"] == "findings"


PLAIN_PASSWORD = "user.authorization.password"


def test_findings_are_open_or_remedied_with_the_remedying_event(env: Settings,
                                                                capsys: Capture) -> None:
    """7.4: a plain password corrected later is remedied by the correction; a store abroad
    stays open. Table and JSON say which, and --status filters."""
    carol = "acct-carol-3"
    events = [collected(carol, "2026-03-01T00:00:00Z", [PLAIN_PASSWORD], "accounts-db", {},
                        protection="plain"),
              wire("data.corrected", "2026-03-02T00:00:00Z", carol,
                   {"categories": [PLAIN_PASSWORD], "store": "accounts-db"}),
              collected(carol, "2026-03-01T00:00:00Z", ["user.device.ip_address"], "logs-sg",
                        {}, store_location="SG")]
    with Ledger(env) as ledger:
        fixed = ledger.publish(events)[1].event_id
    code, found = run(capsys, "findings", "--json")
    assert code == 1
    mine = {f["clause"]: f for f in found if f["clause"] in ("2.1.1(1)a", "6.3c")}
    assert (mine["2.1.1(1)a"]["status"], mine["2.1.1(1)a"]["remedied_by"]) == ("remedied", fixed)
    assert mine["2.1.1(1)a"]["remedied_at"].startswith("2026-03-02")
    assert (mine["6.3c"]["status"], mine["6.3c"]["remedied_by"]) == ("open", None)
    code, remedied = run(capsys, "findings", "--json", "--status", "remedied")
    assert [f["clause"] for f in remedied] == ["2.1.1(1)a"] and code == 0  # none open
    code, still_open = run(capsys, "findings", "--json", "--status", "open")
    assert code == 1 and "2.1.1(1)a" not in {f["clause"] for f in still_open}
    code, summary = run(capsys, "findings", "--json", "--summary")
    row = next(r for r in summary if r["clause"] == "2.1.1(1)a")
    assert (row["findings"], row["open"]) == (1, 0)
    assert main(["findings", "--status", "remedied"]) == 0
    table = capsys.readouterr().out
    assert "remedied by" in table and "status" in table


def test_project_status_and_rebuild(env: Settings, capsys: Capture) -> None:
    code, out = run(capsys, "project", "--json")
    assert code == 0 and out["records"] > 0
    code, status = run(capsys, "status", "--json")
    assert code == 0 and {s["projection"] for s in status} >= {"datamap", "disclosures",
                                                                "holdings"}
    assert all(s["lag"] == 0 for s in status)
    code, out = run(capsys, "rebuild", "--all", "--json")
    assert code == 0 and "holdings" in out["rebuilt"]
    code, out = run(capsys, "rebuild", "datamap", "--json")
    assert code == 0 and out["rebuilt"] == ["datamap"]
    _, before = run(capsys, "findings", "--json")
    code, out = run(capsys, "rebuild", "--all", "--workers", "2", "--json")
    assert code == 0 and out["records"] > 0 and "findings" in out["rebuilt"]
    assert run(capsys, "findings", "--json")[1] == before
    assert main(["rebuild", "nosuch"]) == 66
    assert main(["rebuild"]) == 2
    with pytest.raises(SystemExit) as refused:
        main(["rebuild", "--all", "--workers", "0"])
    assert refused.value.code == 2


def test_rebuild_uses_two_processes_by_default_only_where_it_pays(
        env: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from pdl.service import QueryService

    def workers(log: str, cores: int, names: list[str] | None, partitions: int = 1) -> int:
        monkeypatch.setattr("os.cpu_count", lambda: cores)
        fake = SimpleNamespace(ledger=SimpleNamespace(log=SimpleNamespace(
            name=log, self_contained_partitions=log == "kafka",
            partitions=lambda: list(range(partitions)))))
        return QueryService.default_workers(fake, names)  # type: ignore[arg-type]

    assert workers("sqlite", 2, None) == 2
    assert workers("sqlite", 8, ["datamap", "findings"]) == 2
    assert workers("sqlite", 2, ["datamap"]) == 1  # one projection: nothing to split
    assert workers("sqlite", 1, None) == 1
    # Kafka splits by partition, so one projection is split too, but one partition is not
    assert workers("kafka", 2, None, partitions=6) == 2
    assert workers("kafka", 2, ["datamap"], partitions=3) == 2
    assert workers("kafka", 8, None, partitions=1) == 1
    assert workers("kafka", 1, None, partitions=6) == 1


def test_queries_catch_up_unless_told_not_to(env: Settings, capsys: Capture) -> None:
    assert run(capsys, "project")[0] == 0
    with Ledger(env) as ledger:
        ledger.publish([shared(ALICE, "2026-03-01T00:00:00Z", "payco", [BANK], "5.1.2")])
    _, stale = run(capsys, "disclosures", "--json", "--no-catch-up")
    _, fresh = run(capsys, "disclosures", "--json")
    assert (len(stale), len(fresh)) == (1, 2)


def test_unknown_person_and_bad_time(env: Settings, capsys: Capture) -> None:
    assert main(["subject", "acct-nobody"]) == 66
    assert "acct-nobody" not in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["subject", ALICE, "--as-of", "2026-01-01T00:00:00"])  # no zone: refused
    assert exc.value.code == 2
