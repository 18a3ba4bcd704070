"""A worked incident and rights requests through ``pdl``, end to end on a real ledger.

Five people; one erased before the breach is scoped. The incident is scoped (hashed
snapshot), graded by threshold (LEDGER_INCIDENT_GRADE_THRESHOLDS=3,10,100), its clocks read
at frozen instants, its notify list taken by the privacy officer with a reason (audited),
its drafts rendered and checked field by field, then reported, exempted and closed.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from samplekit import wire as sample_wire

from cases import snapshot
from ledger.application import Ledger
from ledger.settings import Settings, generate_key
from pdl.cli import main
from schemas import decode

Capture = pytest.CaptureFixture[str]
EMAIL, PHONE, ID_NO = ("user.contact.email", "user.contact.phone_number",
                       "user.government_id.national_identification_number")
DEVICE = "user.device.device_id"
PEOPLE = {  # id: (residence, {category: value})
    "acct-a": ("CN", {EMAIL: "a.li@example.cn", ID_NO: "110101199003071234"}),
    "acct-b": ("DE", {EMAIL: "b.schmidt@example.de"}),
    "acct-c": ("CN", {EMAIL: "c.zhao@example.cn"}),
    "acct-d": ("CN", {PHONE: "+86 138 0000 0004"}),
    "acct-e": (None, {DEVICE: "dev-0005"}),
}
FOUND = "2026-02-02T09:00:00Z"
FACTS = {"company": "灵境云 Lingjing Cloud", "cause": "an export bucket was made public",
         "harm": "phishing e-mails using the leaked addresses",
         "remedies": "the bucket was closed and its access keys rotated",
         "advice": "beware of messages asking for your password",
         "contact": "privacy@lingjing.example, 400-000-0000",
         "dpo_contact": "dpo@lingjing.example"}


wire = functools.partial(sample_wire, source="tests/cases")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    mp = pytest.MonkeyPatch()
    data = tmp_path_factory.mktemp("cases") / "data"
    for key, value in {"DATA_DIR": str(data), "MASTER_KEY": generate_key(),
                       "ACTOR": "dpo@tests", "SQLITE_SYNCHRONOUS": "NORMAL",
                       "INCIDENT_GRADE_THRESHOLDS": "3,10,100"}.items():
        mp.setenv(f"LEDGER_{key}", value)
    settings = Settings.from_env()
    events = [wire("recipient.registered", "2026-01-01T00:00:00Z", None, {
        "recipient": "sg-support", "name": "SG Support", "kind": "affiliate",
        "location": "SG", "roles": []})]
    for n, (person, (residence, values)) in enumerate(PEOPLE.items()):
        t = f"2026-01-0{n + 2}T00:00:00Z"
        events.append(wire("subject.registered", t, person, {
            "subject_kind": "user", **({"residence": residence} if residence else {})}))
        events.append(wire("data.collected", t, person, {
            "categories": sorted(values), "source": {"kind": "subject"},
            "purpose": "essential.service.authentication", "store": "user-db",
            "store_location": "CN"}, values))
    events.append(wire("data.shared", "2026-01-10T00:00:00Z", "acct-a", {
        "recipient": "sg-support", "recipient_kind": "affiliate", "categories": [EMAIL],
        "purpose": "essential.service.operations.support", "clause": "5.1.1",
        "cross_border": {"destination_country": "SG", "recipient_name": "SG Support",
                         "recipient_contact": "sg@example.sg", "processing": "tickets",
                         "purpose": "support", "categories": [EMAIL],
                         "rights_howto": "privacy@lingjing.example"}}))
    with Ledger(settings) as ledger:
        ledger.publish(events)
    assert main(["erase", "acct-c"]) == 0
    yield settings
    mp.undo()


def run(capsys: Capture, *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def log_events(settings: Settings) -> list[Any]:
    with Ledger(settings) as ledger:
        return [decode(r.payload) for r in ledger.log.read()]


@pytest.fixture(scope="module")
def scoped(env: Settings) -> dict[str, Any]:
    capsys_free = main(["incident", "open", "inc-w", "--description", "export bucket public",
                        "--stores", "user-db", "--from", "2026-01-01T00:00:00Z",
                        "--until", "2026-02-01T00:00:00Z", "--discovered-at", FOUND])
    assert capsys_free == 0
    snap_files = sorted(snapshot.folder(env.data_dir, "inc-w").glob("snapshot-*.json"))
    assert not snap_files
    assert main(["incident", "scope", "inc-w"]) == 0
    (path,) = snapshot.folder(env.data_dir, "inc-w").glob("snapshot-*.json")
    snap: dict[str, Any] = json.loads(path.read_text())
    return snap


def test_refused_steps_exit_65_and_append_nothing(env: Settings, scoped: dict[str, Any],
                                                 capsys: Capture) -> None:
    before = len(log_events(env))
    assert main(["incident", "close", "inc-w"]) == 65  # not graded yet
    assert main(["incident", "report", "inc-w", "--duty", "pipl57_regulator",
                 "--authority", "CAC"]) == 65
    assert main(["incident", "open", "inc-w", "--description", "again", "--stores", "x",
                 "--from", FOUND, "--until", FOUND]) == 65
    assert main(["incident", "status", "inc-nope"]) == 66
    assert "cannot close before it is graded" in capsys.readouterr().err
    assert len(log_events(env)) == before


def test_the_snapshot_counts_and_its_hash(env: Settings, scoped: dict[str, Any]) -> None:
    c = scoped["counts"]
    assert (c["people"], c["erased"], c["cross_border_people"]) == (5, 1, 1)
    assert c["residence"] == {"CN": 3, "DE": 1, "unknown": 1}
    assert c["sensitive_categories"] == {ID_NO: 1}
    assert c["reachable"] + c["unreachable"] == 5
    assert snapshot.verify(scoped)
    assert not snapshot.verify({**scoped, "counts": {**c, "people": 4}})
    path = next(snapshot.folder(env.data_dir, "inc-w").glob("snapshot-*.json"))
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    text = path.read_text()
    assert all(v not in text for _, values in PEOPLE.values() for v in values.values())
    scoped_events = [e for e in log_events(env) if e.type == "incident.scoped"]
    assert scoped_events[-1].data.snapshot_hash == scoped["hash"]


def test_grade_duties_and_clocks_at_frozen_instants(env: Settings, scoped: dict[str, Any],
                                                    capsys: Capture) -> None:
    code, graded = run(capsys, "incident", "grade", "inc-w")
    assert code == 0 and graded["grade"] == "relatively_major"
    assert graded["duties"] == ["pipl57_regulator", "pipl57_individuals", "cac_report",
                                "cac_summary", "gdpr33:DE", "gdpr34:DE"]
    code, status = run(capsys, "incident", "status", "inc-w", "--now", "2026-02-02T12:00:00Z")
    assert code == 0 and status["findings"] == []
    clocks = {c["duty"]: c for c in status["clocks"]}
    assert clocks["cac_report"]["state"] == "running"
    assert clocks["cac_report"]["remaining_s"] == 3600  # 4 h for "other" operators
    assert clocks["gdpr33:DE"]["remaining_s"] == 69 * 3600
    assert clocks["cac_summary"]["state"] == "waiting"
    code, status = run(capsys, "incident", "status", "inc-w", "--now", "2026-02-02T14:00:00Z")
    assert code == 1
    assert status["findings"] == ["pipl57_regulator", "pipl57_individuals", "cac_report"]
    code, listed = run(capsys, "incidents", "--overdue", "--now", "2026-02-02T14:00:00Z")
    assert [i["incident_id"] for i in listed] == ["inc-w"]


def test_notify_list_needs_a_reason_is_audited_and_lists_only_reachable_people(
    env: Settings, scoped: dict[str, Any], capsys: Capture
) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["incident", "notify-list", "inc-w"])
    assert usage.value.code == 2
    assert main(["incident", "notify-list", "inc-w", "--reason", " "]) == 65
    code, answer = run(capsys, "incident", "notify-list", "inc-w", "--reason",
                       "PIPL 57 notice to the people affected")
    assert code == 0 and "people" not in answer  # contacts go to the file, not the terminal
    path = Path(answer["file"])
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    full = json.loads(path.read_text())
    contacts = {(p["channel"], p["contact"]) for p in full["people"]}
    assert contacts == {("email", "a.li@example.cn"), ("email", "b.schmidt@example.de"),
                        ("sms", "+86 138 0000 0004")}
    announce = full["announcement"]
    assert announce["people"] == 2 and announce["route"].startswith("public announcement")
    assert announce["reasons"].get("erased: data key destroyed") == 1
    assert full["snapshot_hash"] == scoped["hash"]
    audits = [e for e in log_events(env) if e.type == "ledger.queried"
              and e.data.query == "incident notify-list"]
    assert len(audits) == 1 and audits[0].id == full["audit_event_id"]
    assert audits[0].data.actor == "dpo@tests"
    assert audits[0].data.reason == "PIPL 57 notice to the people affected"
    assert audits[0].data.arguments["listed"] == "3" and audits[0].data.clear
    assert len(audits[0].data.people) == 3  # by pseudonym
    assert "a.li@example.cn" not in json.dumps(audits[0].model_dump(mode="json"))


def test_drafts_are_rendered_from_the_snapshot_field_by_field(
    env: Settings, scoped: dict[str, Any], capsys: Capture, tmp_path: Path
) -> None:
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps(FACTS, ensure_ascii=False))
    code, written = run(capsys, "incident", "draft", "inc-w", "--facts", str(facts))
    assert code == 0 and set(written) == {"notice_zh", "notice_en", "report_cac", "report_gdpr"}
    drafts = {k: json.loads(Path(v["json"]).read_text()) for k, v in written.items()}
    md = {k: Path(v["markdown"]).read_text() for k, v in written.items()}
    for name, d in drafts.items():
        assert d["snapshot_hash"] == scoped["hash"] and d["missing"] == []
        assert scoped["hash"] in md[name]
        assert hashlib.sha256(md[name].encode()).hexdigest() == written[name]["digest"]
    zh = drafts["notice_zh"]
    assert [c["key"] for c in zh["categories"]] == sorted([EMAIL, ID_NO, PHONE, DEVICE])
    assert [c["key"] for c in zh["sensitive_categories"]] == [ID_NO]
    for item in ("cause", "harm", "remedies", "advice", "contact"):
        assert zh[item] == FACTS[item] and FACTS[item] in md["notice_zh"]
    assert "第五十七条" in md["notice_zh"] and "敏感个人信息" in md["notice_zh"]
    en = drafts["notice_en"]
    assert en["dpo_contact"] == FACTS["dpo_contact"] and "GDPR art. 34" in md["notice_en"]
    cac = drafts["report_cac"]
    assert (cac["grade"], cac["grade_zh"], cac["grade_basis"]) == (
        "relatively_major", "较大", "threshold")
    assert (cac["people"], cac["erased"], cac["cross_border_people"]) == (5, 1, 1)
    assert cac["residence"] == {"CN": 3, "DE": 1, "unknown": 1}
    assert cac["discovered_at"] == "2026-02-02T09:00:00+00:00"
    assert cac["company"] == FACTS["company"] and "较大" in md["report_cac"]
    gdpr = drafts["report_gdpr"]
    assert gdpr["authorities"] == {"DE": 1} and "DE: 1" in md["report_gdpr"]
    recorded = {e.data.draft: e.data.digest for e in log_events(env)
                if e.type == "incident.notice_drafted"}
    assert recorded == {k: v["digest"] for k, v in written.items()}
    # without facts, the gaps are visible and listed
    code, bare = run(capsys, "incident", "draft", "inc-w")
    assert "[to be completed" in Path(bare["notice_zh"]["markdown"]).read_text()
    assert json.loads(Path(bare["notice_zh"]["json"]).read_text())["missing"] == list(FACTS)


def test_reports_exemption_announcement_and_closing(env: Settings, scoped: dict[str, Any],
                                                    capsys: Capture) -> None:
    assert main(["incident", "report", "inc-w", "--duty", "pipl57_regulator",
                 "--authority", "CAC Beijing", "--at", "2026-02-02T10:00:00Z"]) == 0
    assert main(["incident", "report", "inc-w", "--duty", "cac_report",
                 "--authority", "CAC Beijing", "--at", "2026-02-02T11:00:00Z"]) == 0
    assert main(["incident", "close", "inc-w"]) == 65  # gdpr33:DE neither reported nor exempt
    assert main(["incident", "exempt", "inc-w", "--duty", "gdpr33:DE", "--justification",
                 "only a hashed e-mail address of one German resident"]) == 0
    assert main(["incident", "announce", "inc-w", "--channel", "website"]) == 0
    # 6.2.1's response steps: recorded once each, copied to the log as catalogue events
    assert main(["incident", "contingency", "inc-w", "--plan", "IRP-7",
                 "--at", "2026-02-02T09:30:00Z"]) == 0
    assert main(["incident", "contingency", "inc-w", "--plan", "IRP-8"]) == 65  # twice
    code, case = run(capsys, "incident", "contain", "inc-w", "--measures",
                     "bucket made private, keys rotated", "--at", "2026-02-03T09:00:00Z")
    assert code == 0 and set(case["response"]) == {"contingency", "contained"}
    assert case["response"]["contained"]["measures"] == "bucket made private, keys rotated"
    assert main(["incident", "close", "inc-w", "--at", "2026-02-10T00:00:00Z"]) == 0
    assert main(["incident", "advise", "inc-w", "--channel", "email"]) == 65  # closed
    code, rows = run(capsys, "incidents", "--status", "closed", "--now",
                     "2026-02-12T00:00:00Z")
    assert code == 0 and [r["incident_id"] for r in rows] == ["inc-w"]
    clocks = {c["duty"]: c["state"] for c in rows[0]["clocks"]}
    assert clocks["cac_summary"] == "running" and clocks["gdpr33:DE"] == "exempted"
    assert rows[0]["announced"]["people"] == 2
    types = [e.type for e in log_events(env) if e.source == "pdl/cases"]
    assert types.count("incident.closed") == 1 and "incident.announced" in types
    steps = {e.type: e.data for e in log_events(env) if e.source == "pdl/cases"}
    assert steps["incident.contingency_started"].plan == "IRP-7"  # type: ignore[attr-defined]
    assert "incident.contained" in steps and "incident.advice_given" not in steps


def test_overdue_clocks_are_findings(env: Settings, scoped: dict[str, Any],
                                     capsys: Capture) -> None:
    code, found = run(capsys, "findings", "--clause", "6.2.1a")
    assert code == 1
    mine = [f["explanation"] for f in found if f["explanation"].startswith("incident inc-w")]
    # closed on 2026-02-10: the CAC summary was due 30 days later and is not filed
    assert any("cac_summary overdue" in e for e in mine), found
    # the response steps the case recorded reached the findings through the log: only the
    # advice, never given, is missing
    response = [e for e in mine if "no record that" in e or "recorded late" in e]
    assert response == ["incident inc-w: no record that security advice was given to the "
                        "people affected (due 72 h after opening, or at closing)"], found
    opened = next(f for f in found if f["explanation"].startswith("incident inc-w"))
    assert opened["event_id"] and opened["offset"] is not None


def test_scope_answers_link_to_their_case(env: Settings, scoped: dict[str, Any],
                                          capsys: Capture) -> None:
    code, answer = run(capsys, "scope", "--incident", "inc-w")
    assert code == 0
    assert answer["links"]["case"] == "pdl incident status inc-w"
    assert answer["links"]["notify_list"].startswith("pdl incident notify-list inc-w")


# --- rights requests ------------------------------------------------------------------


def test_a_deletion_runs_erase_after_verification_linked_by_id(env: Settings,
                                                               capsys: Capture) -> None:
    code, opened = run(capsys, "request", "open", "r-del", "--kind", "erasure",
                       "--subject", "acct-b", "--at", "2026-03-01T00:00:00Z")
    assert code == 0 and opened["due"] == "2026-03-16T00:00:00+00:00"
    before = len(log_events(env))
    assert main(["request", "fulfil", "r-del", "--subject", "acct-b"]) == 65
    assert len(log_events(env)) == before  # refused: nothing erased, nothing appended
    assert main(["request", "verify", "r-del", "--method", "sms_code"]) == 0
    assert main(["request", "fulfil", "r-del", "--subject", "acct-d"]) == 65  # not the person
    code, done = run(capsys, "request", "fulfil", "r-del", "--subject", "acct-b")
    assert code == 0 and done["status"] == "fulfilled"
    (link,) = done["links"]
    erased = [e for e in log_events(env) if e.type == "data.erased"
              and e.data.request_id == "r-del"]
    assert len(erased) == 1 and link == {"action": "erase", "event_id": erased[0].id}
    linked = [e for e in log_events(env) if e.type == "request.linked"]
    assert linked[-1].data.event_id == erased[0].id
    assert linked[-1].subject == erased[0].subject  # the same pseudonym


def test_an_access_request_runs_the_export_and_links_its_audit_event(
    env: Settings, capsys: Capture, tmp_path: Path
) -> None:
    assert main(["request", "open", "r-acc", "--kind", "access", "--subject", "acct-a"]) == 0
    assert main(["request", "verify", "r-acc", "--method", "face_match"]) == 0
    out = tmp_path / "export.json"
    code, done = run(capsys, "request", "fulfil", "r-acc", "--subject", "acct-a", "-o", str(out))
    assert code == 0 and oct(out.stat().st_mode & 0o777) == "0o600"
    exported = json.loads(out.read_text())
    assert exported["subject"] == "acct-a"
    assert any((e.get("personal") or {}).get(EMAIL) == "a.li@example.cn"
               for e in exported["events"])
    (link,) = done["links"]
    audit = [e for e in log_events(env) if e.id == link["event_id"]]
    assert audit[0].type == "ledger.queried" and audit[0].data.query == "export"
    assert audit[0].data.arguments["request_id"] == "r-acc" and audit[0].data.clear
    assert audit[0].data.reason == "rights request r-acc"


def test_a_real_name_correction_needs_verification_and_requests_list(
    env: Settings, capsys: Capture
) -> None:
    assert main(["request", "open", "r-name", "--kind", "correction", "--subject", "acct-a",
                 "--categories", "user.name", "--at", "2026-03-01T00:00:00Z"]) == 0
    assert main(["request", "fulfil", "r-name"]) == 65
    assert "real-name" in capsys.readouterr().err
    assert main(["request", "refuse", "r-name", "--reason", "identity_not_verified"]) == 0
    assert main(["request", "refuse", "r-name", "--reason", "again"]) == 65
    assert main(["request", "open", "r-late", "--kind", "complaint", "--subject", "acct-d",
                 "--at", "2026-03-01T00:00:00Z"]) == 0
    assert main(["request", "open", "r-bad", "--kind", "complaint", "--subject", "acct-d",
                 "--at", "2026-03-01T00:00:00Z", "--due", "2026-02-01T00:00:00Z"]) == 65
    code, rows = run(capsys, "requests", "--now", "2026-03-20T00:00:00Z")
    by_id = {r["request_id"]: r for r in rows}
    assert {"r-del", "r-acc", "r-name", "r-late"} <= set(by_id)
    assert by_id["r-name"]["status"] == "refused"
    assert by_id["r-late"]["clock"]["state"] == "overdue"
    code, overdue = run(capsys, "requests", "--overdue", "--now", "2026-03-20T00:00:00Z")
    # r-late is still open past its due date; r-del and r-name were answered (today) after it
    states = {r["request_id"]: r["clock"]["state"] for r in overdue}
    assert code == 1 and states == {"r-late": "overdue", "r-del": "late", "r-name": "late"}
    code, refused = run(capsys, "request", "list", "--status", "refused")
    assert [r["request_id"] for r in refused] == ["r-name"]
    code, kinds = run(capsys, "requests", "--kind", "access")
    assert [r["request_id"] for r in kinds] == ["r-acc"]
