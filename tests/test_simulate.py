"""The workload generator: deterministic, valid, time-ordered, streaming, with known findings.

The planted violations are checked by small, independent re-statements of the promises in
``COMMITMENTS.md`` (``_Checker``): every planted kind is found, and nothing is found on
anybody who was not planted, so the honest life cycles keep every promise checked here.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from workload import VIOLATIONS, account_id, planted, simulate
from cases.domain import CASE_ONLY_TYPES
from schemas import EVENT_TYPES, parse_wire
from schemas import taxonomy as tx

PEOPLE = 300
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return list(simulate(PEOPLE, seed=7))


@pytest.fixture(scope="module")
def events(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- the basic properties ------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(lines: list[str]) -> None:
    assert list(simulate(PEOPLE, seed=7)) == lines
    other = list(itertools.islice(simulate(PEOPLE, seed=8), 2000))
    assert other != lines[:2000]


def test_every_line_is_a_valid_wire_event(lines: list[str]) -> None:
    for n, line in enumerate(lines, 1):
        event = parse_wire(line)
        assert event.id is not None, f"line {n} has no explicit id"


def test_times_never_decrease(events: list[dict[str, Any]]) -> None:
    times = [_time(e["time"]) for e in events]
    assert all(a <= b for a, b in itertools.pairwise(times))
    assert times[0] == datetime(2024, 1, 1, tzinfo=UTC)


def test_ids_are_unique_time_ordered_uuid7(events: list[dict[str, Any]]) -> None:
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids)
    for e in events:
        u = uuid.UUID(e["id"])
        assert u.version == 7
        assert u.int >> 80 == int(_time(e["time"]).timestamp() * 1000)


def test_every_life_cycle_event_type_appears(events: list[dict[str, Any]]) -> None:
    seen = {e["type"] for e in events}
    # ledger.queried is the ledger's own audit trail, never published by the company; the
    # case files' own steps are written by `pdl incident` / `pdl request` (cases/).
    assert seen == set(EVENT_TYPES) - {"ledger.queried"} - CASE_ONLY_TYPES


def test_start_moves_the_whole_timeline() -> None:
    start = datetime(2025, 3, 1, 8, tzinfo=timezone(timedelta(hours=8)))
    first = json.loads(next(simulate(5, seed=1, start=start)))
    assert _time(first["time"]) == start
    with pytest.raises(ValueError, match="timezone"):
        next(simulate(5, start=datetime(2025, 3, 1)))


def test_population_mix(events: list[dict[str, Any]]) -> None:
    kinds: dict[str, int] = defaultdict(int)
    for e in events:
        if e["type"] == "subject.registered":
            kinds[e["data"]["subject_kind"]] += 1
    assert kinds["user"] + kinds["enterprise_contact"] == PEOPLE
    assert kinds["enterprise_contact"] > 0 and kinds["non_user"] > 0
    recipients = [e["data"] for e in events if e["type"] == "recipient.registered"]
    assert {r["kind"] for r in recipients} >= {"service_provider", "affiliate", "authority",
                                               "unrelated_third_party"}
    assert {r["location"] for r in recipients} == {"CN", "SG", "HK"}  # HK: the planted 6.3e transfer


def test_personal_values_are_fictitious(events: list[dict[str, Any]]) -> None:
    for e in events:
        for category, value in (e.get("personal") or {}).items():
            if category == "user.contact.email":
                assert value.endswith(".example"), value
            if category == "user.government_id.national_identification_number":
                assert value.startswith("99") and len(value) == 18, value
            if category == "user.device.ip_address":
                assert value.startswith(("192.0.2.", "198.51.100.", "203.0.113.")), value
            assert category != "user.authorization.password", "secrets never travel"


# --- lazy and bounded ----------------------------------------------------------------------


def test_generation_is_lazy_for_a_million_people() -> None:
    began = time.perf_counter()
    stream = simulate(10**6, seed=1)
    first = next(stream)
    batch = list(itertools.islice(stream, 5000))
    assert time.perf_counter() - began < 5
    assert json.loads(first)["type"] == "policy.published"
    assert len(batch) == 5000


@pytest.mark.slow
def test_a_million_events_in_flat_memory(tmp_path: Path) -> None:
    """Generating 10**6 events keeps the peak RSS of the process under 200 MB (flat)."""
    # VmHWM, the peak of this process's own memory: ru_maxrss would also count the pytest
    # process it was started from (Linux records the old image's peak across exec).
    script = (
        "import itertools, re\n"
        "from workload import simulate\n"
        "n = sum(1 for _ in itertools.islice(simulate(10**6, seed=1), 10**6))\n"
        "status = open('/proc/self/status').read()\n"
        "print(n, re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    assert int(out[0]) == 10**6
    assert int(out[1]) / 1024 < 200, f"peak RSS {int(out[1]) / 1024:.0f} MB"


def test_pdl_simulate_writes_the_same_lines(tmp_path: Path) -> None:
    from pdl.cli import main

    target = tmp_path / "events.jsonl"
    assert main(["simulate", "--people", "20", "--seed", "3", "-o", str(target)]) == 0
    assert target.read_text(encoding="utf-8").splitlines() == list(simulate(20, seed=3))


# --- planted violations --------------------------------------------------------------------


def test_violations_document_their_clauses() -> None:
    clauses = {v.clause for v in VIOLATIONS.values()}
    # The kinds the brief asks for, by clause.
    assert clauses >= {"3.3", "3.2b", "2.1.1(2)b", "2.1.1(3)b", "5.0", "6.3d", "2.1.1(2)a",
                       "6.3a", "7.6", "7.1", "9.2", "3.4b", "2.1.1(1)a"}
    commitments = (ROOT.parent / "shared" / "policy" / "COMMITMENTS.md")
    if commitments.exists():
        text = commitments.read_text(encoding="utf-8")
        # a clause of COMMITMENTS.md, or one of the project's finer ids in the docs' clause
        # map (3.2c: the rest of 3.2's promise)
        clause_map = (ROOT / "docs" / "findings.md").read_text(encoding="utf-8")
        for v in VIOLATIONS.values():
            assert f"| {v.clause} |" in text or f"| `{v.clause}` |" in clause_map, v.clause


@pytest.mark.parametrize("people", [200, 300, 5000])
def test_every_kind_is_planted_on_a_sprinkle_of_people(people: int) -> None:
    truth = planted(people)
    assert all(truth[kind] for kind in VIOLATIONS)
    violators = set().union(*(set(truth[k]) for k, v in VIOLATIONS.items() if v.about == "person"))
    assert 0.01 <= len(violators) / people <= 0.03


@pytest.mark.parametrize(("people", "seed"), [(PEOPLE, 7), (1000, 9)])
def test_the_checker_finds_exactly_the_planted_violations(
        events: list[dict[str, Any]], people: int, seed: int) -> None:
    if (people, seed) != (PEOPLE, 7):
        events = [json.loads(line) for line in simulate(people, seed=seed)]
    found = _Checker(events).run()
    truth = planted(people)
    for kind in VIOLATIONS:
        assert set(truth[kind]) <= found.get(kind, set()), f"{kind} not found"
    violators = set().union(*map(set, truth.values()))
    for rule, subjects in found.items():
        assert subjects <= violators, f"{rule} flags honest people: {sorted(subjects - violators)}"


def test_no_findings_without_planted_people() -> None:
    """With the violators' lives taken out, the rest of the population keeps every promise."""
    truth = planted(PEOPLE)
    violators = set().union(*map(set, truth.values()))
    honest = [e for e in map(json.loads, simulate(PEOPLE, seed=11))
              if e.get("subject") not in violators
              and e["data"].get("incident_id") not in violators]
    assert account_id(0) not in violators
    assert _Checker(honest).run() == {}


# --- a compliance checker, written from COMMITMENTS.md alone ---------------------------------

GRACE = timedelta(days=7)  # how late a retention job may run


class _Checker:
    """Flags the events that break a promise; ``run()`` -> rule -> subjects."""

    def __init__(self, events: Iterable[dict[str, Any]]):
        self.events = list(events)
        self.found: dict[str, set[str]] = defaultdict(set)
        self.recipients: dict[str, dict[str, Any]] = {}
        self.material: list[tuple[str, datetime]] = []  # (version, effective)
        self.closed: dict[str, datetime] = {}
        self.unsubscribed: dict[str, set[str]] = defaultdict(set)
        self.consents: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.refused: dict[str, set[str]] = defaultdict(set)
        self.requests: dict[str, dict[str, Any]] = {}
        self.retained: list[tuple[str, datetime, datetime, set[str], list[str]]] = []
        self.backups: dict[tuple[str, str], set[str]] = defaultdict(set)
        # Categories not to be used: joined without authorisation, or from an unverified source.
        self.unauthorised: dict[str, list[str]] = defaultdict(list)
        self.unverified: dict[str, list[str]] = defaultdict(list)
        self.erasures: dict[str, list[tuple[datetime, dict[str, Any]]]] = defaultdict(list)
        self.held_at_closure: dict[str, dict[str, set[str]]] = {}
        self.incidents: dict[str, set[str]] = {}  # incident id -> response steps recorded
        self.deleted: dict[str, set[str]] = defaultdict(set)  # categories the person deleted

    def flag(self, rule: str, subject: str | None) -> None:
        assert subject is not None
        self.found[rule].add(subject)

    def run(self) -> dict[str, set[str]]:
        for e in self.events:
            getattr(self, "on_" + e["type"].replace(".", "_"), lambda *_: None)(
                e, e.get("subject"), e["data"], _time(e["time"]))
        self.finish()
        return dict(self.found)

    @staticmethod
    def overlaps(cats: Iterable[str], keys: Iterable[str]) -> bool:
        keys = list(keys)
        return any(tx.covers(k, c) or tx.covers(c, k) for c in cats for k in keys)

    def consent_ok(self, s: str, cid: str | None, purpose: str, t: datetime) -> str | None:
        """None if consent ``cid`` of ``s`` covers ``purpose`` at ``t``, else the problem."""
        consent = self.consents[s].get(cid or "")
        if consent is None or consent["purpose"] != purpose or consent["granted"] > t:
            return "none"
        if consent["withdrawn"] is not None and consent["withdrawn"] <= t:
            return "withdrawn"
        for version, effective in self.material:
            if consent["version"] != version and effective <= t and consent["granted"] < effective:
                return "superseded"
        return None

    # 1.2 / 8: the company's own events.
    def on_recipient_registered(self, e: Any, s: Any, d: dict[str, Any], t: datetime) -> None:
        self.recipients[d["recipient"]] = d

    def on_recipient_inspected(self, e: Any, s: Any, d: dict[str, Any], t: datetime) -> None:
        if d["passed"]:
            self.recipients[d["recipient"]]["inspected"] = t

    def on_policy_published(self, e: Any, s: Any, d: dict[str, Any], t: datetime) -> None:
        if d.get("material"):
            self.material.append((d["policy_version"], _time(d["effective_at"])))

    def on_subject_closed(self, e: Any, s: str, d: dict[str, Any], t: datetime) -> None:
        self.closed[s] = t

    def on_subscription_changed(self, e: Any, s: str, d: dict[str, Any], t: datetime) -> None:
        (self.unsubscribed[s].discard if d["subscribed"] else self.unsubscribed[s].add)(d["kind"])

    def on_consent_granted(self, e: Any, s: str, d: dict[str, Any], t: datetime) -> None:
        self.consents[s][d["consent_id"]] = {"purpose": d["purpose"], "granted": t,
                                             "version": d["policy_version"], "withdrawn": None,
                                             "cross_border": d.get("cross_border")}

    def on_consent_withdrawn(self, e: Any, s: str, d: dict[str, Any], t: datetime) -> None:
        self.consents[s][d["consent_id"]]["withdrawn"] = t

    def on_data_collection_refused(self, e: Any, s: str, d: dict[str, Any], t: datetime) -> None:
        self.refused[s].update(d["categories"])

    def on_service_denied(self, e: Any, s: str, d: dict[str, Any], t: datetime) -> None:
        if set(d.get("missing_categories", [])) & self.refused[s]:
            self.flag("service_denied_after_refusal", s)  # 2.1.1(1)c
        if not d.get("missing_categories") and any(  # 3.2: withdrawal costs no core service
                c["purpose"] in tx.PROFILING_USES and c["withdrawn"] is not None
                and c["withdrawn"] <= t for c in self.consents[s].values()):
            self.flag("denied_after_withdrawal", s)

    def on_data_corrected(self, e: Any, s: str, d: dict[str, Any], t: datetime) -> None:
        request = self.requests.get(d.get("request_id") or "")
        if self.overlaps(d["categories"], tx.REAL_NAME_CATEGORIES) and (
                request is None or not request["verified"]):
            self.flag("real_name_changed_unverified", s)  # 7.1

    def on_policy_notice_sent(self, e: Any, s: str, d: dict[str, Any], t: datetime) -> None:
        if any(version == d["policy_version"] and effective <= t
               for version, effective in self.material):
            self.flag("notice_after_change", s)  # 8: told before it takes effect

    def on_data_collected(self, e: Any, s: str, d: dict[str, Any], t: datetime) -> None:
        cats = d["categories"]
        if set(cats) & tx.OUT_OF_SCOPE_CATEGORIES:
            self.flag("customer_content_recorded", s)  # 1.3
        if set(cats) & tx.PASSWORD_CATEGORIES and d.get("protection") not in ("hashed",
                                                                                "encrypted"):
            self.flag("password_stored_plain", s)  # 2.1.1(1)a
        if set(cats) & tx.BIOMETRIC_CATEGORIES and d.get("retention_days") != 0:
            self.flag("face_data_stored", s)  # 2.1.1(2)a
        if d["purpose"] == "marketing.promotion" and self.consent_ok(
                s, d.get("consent_id"), d["purpose"], t):
            self.flag("promotion_data_without_consent", s)  # 2.1.1(4)
        source = d["source"]
        if source["kind"] == "third_party" and (
                not source.get("provenance_verified")
                or d["purpose"] not in source.get("authorised_scope", [])):
            self.unverified[s].extend(cats)  # 2.1.3
        if d["store_location"] != "CN" and not d.get("cross_border_ref"):
            self.flag("store_outside_china", s)  # 6.3c
        if self.closed.get(s):
            self.flag("use_after_closure", s)
        self.deleted[s] -= set(cats)  # given again
        stores = [d["store"], *d.get("backups", [])]
        self.backups[(s, d["store"])].update(d.get("backups", []))
        if d.get("retention_days"):
            self.retained.append((s, t, t + timedelta(days=d["retention_days"]), set(stores),
                                  cats))

    # 6.3: kept longer only on the person's consent or a law; deleted data is not used.
    def on_data_retention_extended(self, e: Any, s: str, d: dict[str, Any],
                                   t: datetime) -> None:
        consent = self.consents[s].get(d.get("consent_id") or "")
        founded = (bool(d.get("legal_ref")) if d["basis"] == "law" else
                   consent is not None and consent["granted"] <= t
                   and (consent["withdrawn"] is None or consent["withdrawn"] > t))
        if not founded:
            self.flag("retention_extended_without_basis", s)
            return
        until = _time(d["until"])
        self.retained = [
            (subject, collected, max(expires, until) if subject == s and t <= expires
             and all(any(tx.covers(k, c) for k in d["categories"]) for c in cats)
             and (not d.get("stores") or stores <= set(d["stores"]))
             else expires, stores, cats)
            for subject, collected, expires, stores, cats in self.retained]

    def on_data_deleted_by_subject(self, e: Any, s: str, d: dict[str, Any],
                                   t: datetime) -> None:
        self.deleted[s].update(d["categories"])

    def on_data_linked(self, e: Any, s: str, d: dict[str, Any], t: datetime) -> None:
        if not d["authorised"] and not d["de_identified"]:
            self.unauthorised[s].extend(d["categories"])  # 2.1.2-note

    def on_data_used(self, e: Any, s: str, d: dict[str, Any], t: datetime) -> None:
        cats, purpose = d["categories"], d["purpose"]
        if s in self.closed:
            self.flag("use_after_closure", s)  # 7.6
        if self.overlaps(cats, self.deleted[s]) and purpose != "essential.legal_obligation":
            self.flag("deleted_data_used", s)  # 6.3b
        if set(cats) & tx.VERIFICATION_ONLY and purpose not in tx.VERIFICATION_USES:
            self.flag("id_number_used_for_marketing", s)  # 2.1.1(2)b
        if self.overlaps(cats, self.unauthorised[s]):
            self.flag("linked_without_authorisation", s)  # 2.1.2-note
        if self.overlaps(cats, self.unverified[s]):
            self.flag("third_party_data_unverified", s)  # 2.1.3
        if purpose in tx.ANALYTICS_USES and not d.get("anonymised") and not d.get("consent_id"):
            self.flag("non_anonymised_analytics", s)  # 3.2a
        if purpose in tx.PROFILING_USES:  # 3.2b, 8
            problem = self.consent_ok(s, d.get("consent_id"), purpose, t)
            if problem:
                self.flag({"none": "profiling_without_consent",
                           "withdrawn": "profiling_after_withdrawal",
                           "superseded": "consent_superseded"}[problem], s)
        elif not tx.USES[purpose].declared and self.consent_ok(
                s, d.get("consent_id"), purpose, t):
            self.flag("undeclared_purpose_without_consent", s)  # 3.4b
        kind = d.get("message_kind") or (purpose if purpose in tx.MARKETING_USES else None)
        off = self.unsubscribed[s]
        if kind and (kind in off or any(tx.covers(k, kind) for k in off)):
            self.flag("marketing_after_opt_out", s)  # 3.3, 7.3
        if purpose in tx.TRACKING_USES and off & ({"marketing.communications.email",
                                                   "marketing.communications"}
                                                  | tx.TRACKING_USES):
            self.flag("tracking_after_unsubscribe", s)  # 4.2

    def on_data_shared(self, e: Any, s: str, d: dict[str, Any], t: datetime) -> None:
        cats, purpose = set(d["categories"]), d["purpose"]
        recipient = self.recipients[d["recipient"]]
        clause, ground = d.get("clause") or "", d.get("legal_ground") or ""
        if s in self.closed:
            self.flag("disclosure_after_closure", s)  # 7.6
        if (cats & tx.VERIFICATION_ONLY and purpose not in tx.VERIFICATION_USES
                and not clause.startswith("5.3.") and not ground.startswith("5.3.")):
            self.flag("id_number_shared_not_for_verification", s)  # 2.1.1(2)b
        if cats & tx.PAYMENT_CATEGORIES and not set(recipient.get("roles", [])) & {
                "payment_processor", "invoice_processor"}:
            self.flag("payment_data_to_ad_tech", s)  # 2.1.1(3)b
        if not clause and not d.get("consent_id"):
            self.flag("disclosure_without_clause_or_consent", s)  # 5.0
        cross_border = d.get("cross_border")
        if recipient["location"] != "CN" and (  # 6.3: agreement and on-site checks
                not recipient.get("agreement_ref") or recipient.get("inspected") is None
                or recipient["inspected"] > t):
            self.flag("overseas_unchecked", s)
        if cross_border or recipient["location"] != "CN":  # 6.3d
            consent = self.consents[s].get(d.get("consent_id") or "")
            if consent is None or not consent["cross_border"] or self.consent_ok(
                    s, d.get("consent_id"), purpose, t):
                self.flag("cross_border_without_consent", s)
            required = ("recipient_name", "recipient_contact", "processing", "purpose",
                        "categories", "rights_howto")
            if not cross_border or not all(cross_border.get(f) for f in required):
                self.flag("cross_border_missing_fields", s)

    def on_data_erased(self, e: Any, s: str, d: dict[str, Any], t: datetime) -> None:
        self.erasures[s].append((t, d))
        for store in d["stores"]:  # 6.3a: source and backup
            if not self.backups.get((s, store), set()) <= set(d["stores"]):
                self.flag("erasure_skipped_backup", s)

    def on_request_received(self, e: Any, s: str, d: dict[str, Any], t: datetime) -> None:
        self.requests[d["request_id"]] = {"subject": s, "due": _time(d["due"]),
                                          "verified": False, "done": None}

    def on_request_identity_verified(self, e: Any, s: str, d: dict[str, Any],
                                     t: datetime) -> None:
        self.requests[d["request_id"]]["verified"] = True

    def on_request_fulfilled(self, e: Any, s: str, d: dict[str, Any], t: datetime) -> None:
        request = self.requests[d["request_id"]]
        request["done"] = t
        if not request["verified"]:
            self.flag("request_fulfilled_unverified", s)  # 9.2

    on_request_refused = on_request_fulfilled

    # 6.2.1a: a breach starts the contingency plan and stops the spread.
    def on_incident_opened(self, e: Any, s: Any, d: dict[str, Any], t: datetime) -> None:
        self.incidents[d["incident_id"]] = set()

    def on_incident_contingency_started(self, e: Any, s: Any, d: dict[str, Any],
                                        t: datetime) -> None:
        self.incidents[d["incident_id"]].add("contingency")

    def on_incident_contained(self, e: Any, s: Any, d: dict[str, Any], t: datetime) -> None:
        self.incidents[d["incident_id"]].add("contained")

    def on_incident_closed(self, e: Any, s: Any, d: dict[str, Any], t: datetime) -> None:
        if self.incidents[d["incident_id"]] != {"contingency", "contained"}:
            self.flag("incident_response_missing", d["incident_id"])

    def finish(self) -> None:
        as_of = max(_time(e["time"]) for e in self.events)
        for request in self.requests.values():  # 7.1
            done = request["done"]
            if (done is None and request["due"] < as_of) or (done and done > request["due"]):
                self.flag("request_never_fulfilled", request["subject"])
        for s, collected, expires, stores, cats in self.retained:  # 6.3a
            if expires + GRACE > as_of:
                continue
            erased: set[str] = set()
            for t, d in self.erasures[s]:
                if collected <= t <= expires + GRACE and all(
                        any(tx.covers(c, k) for c in d["categories"]) for k in cats):
                    erased.update(d["stores"])
            if not stores <= erased:
                self.flag("held_past_retention", s)
        for s, closed in self.closed.items():  # 2.1.1(1)d: every store erased after closure
            erased_stores = {store for t, d in self.erasures[s] if t >= closed
                             for store in d["stores"]}
            held = {store for (subject, store), _ in self.backups.items() if subject == s}
            held -= {"otp-service", "face-compare"}  # transient: never stored
            if not held <= erased_stores:
                self.flag("held_after_closure", s)
