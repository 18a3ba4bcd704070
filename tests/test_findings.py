"""Compliance findings: each rule fires on a violating story and stays quiet on a compliant
variant of it; findings carry the right person, event and time and no personal values;
time-dependent rules follow ``now``; applying the log in any batch size gives the same
findings; and every violation the simulator plants is found.

Stories are wire events published through ``Ledger.publish`` (so subjects are pseudonymised
and personal values sealed, as in production) and projected by ``ProjectionRunner``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from typing import Any

import pytest
from eventkit import (
    at,
    inspected,
    closed,
    collected,
    dump_views,
    erased,
    granted,
    incident,
    notified,
    recipient,
    shared,
    subscription,
    used,
    withdrawn,
)

from consumers import findings as findings_module
from consumers.findings import CLAUSES, Finding, FindingsProjection, list_findings, summary
from consumers.projection import Item, Projection, ProjectionRunner
from consumers.scope import HoldingsProjection
from consumers.views import SQLiteViewStore, ViewTransaction
from ledger.application import Ledger
from ledger.settings import Settings
from workload import VIOLATIONS, Planted, planted, simulate

Wire = dict[str, Any]

ALICE = "alice-0f3a"
EMAIL, PHONE, NAME = "user.contact.email", "user.contact.phone_number", "user.name"
BANK, INVOICE = "user.financial.bank_account", "user.financial.invoice"
ID_NUMBER = "user.government_id.national_identification_number"
FACE, PASSWORD = "user.biometric.face", "user.authorization.password"
IP, BROWSING = "user.device.ip_address", "user.behavior.browsing_history"
NOW = at(60)
CROSS_BORDER = {
    "destination_country": "SG", "recipient_name": "Edge SG", "recipient_contact": "dpo@edge.sg",
    "processing": "caching", "purpose": "content delivery", "categories": [EMAIL],
    "rights_howto": "write to the DPO",
}

_ids = count(1)


def wire(type_: str, t: datetime, subject: str | None = ALICE, **data: Any) -> Wire:
    """A wire event of any type (``eventkit`` has builders for the common ones)."""
    event: Wire = {"id": f"f{next(_ids):08d}", "source": "tests/findings", "type": type_,
                   "time": t.isoformat(), "data": data}
    if subject is not None:
        event["subject"] = subject
    return event


def third_party(t: datetime, categories: Sequence[str], verified: bool,
                scope: Sequence[str] = ()) -> Wire:
    event = collected(ALICE, t, categories, "crm-db", source="third_party")
    event["data"]["source"].update(provenance_verified=verified, authorised_scope=list(scope))
    return event


def request(t: datetime, request_id: str = "r-1", kind: str = "access", **data: Any) -> Wire:
    return wire("request.received", t, request_id=request_id, kind=kind, **data)


def verified(t: datetime, request_id: str = "r-1") -> Wire:
    return wire("request.identity_verified", t, request_id=request_id, method="sms-code")


def fulfilled(t: datetime, request_id: str = "r-1") -> Wire:
    return wire("request.fulfilled", t, request_id=request_id)


def policy(t: datetime, version: str, effective: datetime, material: bool) -> Wire:
    return wire("policy.published", t, None, policy_version=version,
                effective_at=effective.isoformat(), material=material)


# --- running the projection ------------------------------------------------------------


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    with Ledger(settings) as ledger:
        yield ledger


def project(ledger: Ledger, batch_size: int = 1000) -> SQLiteViewStore:
    store = SQLiteViewStore(":memory:")
    ProjectionRunner(ledger.log, store, [FindingsProjection()], batch_size=batch_size).run()
    return store


def findings(ledger: Ledger, events: Sequence[Wire], now: datetime = NOW,
             **query: Any) -> list[Finding]:
    """Publish ``events``, project them, and list the findings as of ``now``."""
    ledger.publish(events)
    return list_findings(project(ledger), now=now, **query)


def clauses(found: Sequence[Finding]) -> list[str]:
    return sorted(f.clause for f in found)


# --- one story per rule: violating (ok=False) and compliant (ok=True) -------------------


def marketing_after_opt_out(ok: bool) -> list[Wire]:
    """Opting out of all marketing stops SMS marketing, until SMS is re-subscribed."""
    return [subscription(ALICE, at(1), "marketing.communications", subscribed=False),
            *([subscription(ALICE, at(1.5), "marketing.communications.sms", True)] if ok else []),
            used(ALICE, at(2), [PHONE], "marketing.communications.sms")]


def marketing_message_after_opt_out(ok: bool) -> list[Wire]:
    """A marketing e-mail of an unsubscribed kind breaks 3.3 and 7.3 alike."""
    return [subscription(ALICE, at(3 if ok else 1), "marketing.communications.email", False),
            used(ALICE, at(2), [EMAIL], "marketing.communications.email",
                 message_kind="marketing.communications.email")]


def tracking_after_unsubscribe(ok: bool) -> list[Wire]:
    return [subscription(ALICE, at(1), "analytics.reporting.campaign_insights", False),
            *([subscription(ALICE, at(1.5), "analytics.reporting.campaign_insights", True)]
              if ok else []),
            used(ALICE, at(2), [BROWSING], "analytics.reporting.campaign_insights")]


def tracking_after_mailing_opt_out(ok: bool) -> list[Wire]:
    """A web beacon rides in a marketing e-mail: opting out of those stops the tracking."""
    return [subscription(ALICE, at(1), "marketing.communications.email", False),
            used(ALICE, at(0.5 if ok else 2), [EMAIL, IP], "analytics.reporting.campaign_insights")]


def message_of_unsubscribed_kind(ok: bool) -> list[Wire]:
    return [subscription(ALICE, at(1), "essential.service.notifications.sms", False),
            used(ALICE, at(0.5 if ok else 2), [PHONE], "essential.service.notifications.sms",
                 message_kind="essential.service.notifications.sms")]


def profiling_without_consent(ok: bool) -> list[Wire]:
    return [*([granted(ALICE, at(1), "c-prof", "personalize.profiling")] if ok else []),
            used(ALICE, at(2), [BROWSING], "personalize.profiling")]


def profiling_after_withdrawal(ok: bool) -> list[Wire]:
    return [granted(ALICE, at(1), "c-prof", "personalize.profiling"),
            withdrawn(ALICE, at(2), "c-prof", "personalize.profiling"),
            used(ALICE, at(1.5 if ok else 3), [BROWSING], "personalize.profiling",
                 consent_id="c-prof")]


def verification_data_used(ok: bool) -> list[Wire]:
    return [collected(ALICE, at(0), [ID_NUMBER], "kyc-db",
                      purpose="essential.service.identity_verification"),
            used(ALICE, at(1), [ID_NUMBER], "essential.service.identity_verification" if ok
                 else "essential.service.security")]


def verification_data_shared(ok: bool) -> list[Wire]:
    return [recipient("kyc-co", at(0), "KYC Co", roles=["identity_verifier"]),
            shared(ALICE, at(1), "kyc-co", [ID_NUMBER], purpose=(
                "essential.service.identity_verification" if ok else "essential.fraud_detection"))]


def payment_data_to_non_processor(ok: bool) -> list[Wire]:
    return [recipient("payco", at(0), "Pay Co",
                      roles=["payment_processor" if ok else "email_gateway"]),
            shared(ALICE, at(1), "payco", [BANK])]


def disclosure_without_basis(ok: bool) -> list[Wire]:
    return [recipient("mailer", at(0), "Mailer", roles=["email_gateway"]),
            shared(ALICE, at(1), "mailer", [EMAIL], "5.1.1" if ok else None,
                   "essential.service.notifications.email")]


def disclosure_on_wrong_ground(ok: bool) -> list[Wire]:
    return [shared(ALICE, at(1), "police", [PHONE], "5.3.4", "essential.legal_obligation",
                   kind="authority", legal_ground="5.3.4" if ok else "3.5.3")]


def use_on_wrong_ground(ok: bool) -> list[Wire]:
    return [used(ALICE, at(1), [EMAIL], legal_ground="3.5.8" if ok else "5.3.1")]


def categories_beyond_registration(ok: bool) -> list[Wire]:
    return [recipient("mailer", at(0), "Mailer", roles=["email_gateway"],
                      allowed_categories=[EMAIL]),
            shared(ALICE, at(1), "mailer", [EMAIL] if ok else [EMAIL, PHONE],
                   purpose="essential.service.notifications.email")]


def purpose_beyond_registration(ok: bool) -> list[Wire]:
    return [recipient("mailer", at(0), "Mailer", roles=["email_gateway"],
                      allowed_purposes=["essential.service.notifications"]),
            shared(ALICE, at(1), "mailer", [EMAIL], purpose=(
                "essential.service.notifications.email" if ok else "marketing.communications"))]


def cross_border_without_consent(ok: bool) -> list[Wire]:
    return [recipient("edge-sg", at(0), "Edge SG", location="SG"), inspected("edge-sg", at(0.5)),
            *([granted(ALICE, at(1), "c-xb", "essential.service.operations",
                       cross_border=CROSS_BORDER)] if ok else []),
            shared(ALICE, at(2), "edge-sg", [EMAIL], purpose="essential.service.operations",
                   consent_id="c-xb" if ok else None, cross_border=CROSS_BORDER)]


def cross_border_without_notice(ok: bool) -> list[Wire]:
    """The disclosure itself must record everything the person was told (6.3d)."""
    notice = CROSS_BORDER if ok else {k: v for k, v in CROSS_BORDER.items()
                                      if k != "rights_howto"}
    return [recipient("edge-sg", at(0), "Edge SG", location="SG"), inspected("edge-sg", at(0.5)),
            granted(ALICE, at(1), "c-ops", "essential.service.operations"),
            shared(ALICE, at(2), "edge-sg", [EMAIL], purpose="essential.service.operations",
                   consent_id="c-ops", cross_border=notice)]


def stored_abroad(ok: bool) -> list[Wire]:
    return [collected(ALICE, at(0), [IP], "edge-logs", location="SG", source="device",
                      purpose="essential.service.security",
                      cross_border_ref="xb-7" if ok else None)]


def face_stored(ok: bool) -> list[Wire]:
    return [collected(ALICE, at(0), [FACE], "face-cmp", mechanism="face_scan",
                      purpose="essential.service.identity_verification",
                      retention_days=0 if ok else None)]


def plain_password(ok: bool) -> list[Wire]:
    return [collected(ALICE, at(0), [PASSWORD], protection="hashed" if ok else "plain")]


def plain_password_cookie(ok: bool) -> list[Wire]:
    return [collected(ALICE, at(0), [PASSWORD], "browser", mechanism="cookie", source="device",
                      protection="encrypted" if ok else "plain")]


def promotion_without_consent(ok: bool) -> list[Wire]:
    return [*([granted(ALICE, at(1), "c-promo", "marketing.promotion", notice_ref="n-3")]
              if ok else []),
            collected(ALICE, at(2), ["user.government_id.special_status"], "promo-db",
                      purpose="marketing.promotion", retention_days=90)]


def unverified_third_party(ok: bool) -> list[Wire]:
    return [third_party(at(0), [EMAIL], verified=ok)]


def third_party_beyond_scope(ok: bool) -> list[Wire]:
    """Used beyond the scope the person authorised (2.1.3), and so for another purpose than
    it was collected for, without consent (3.4c): one event, two promises."""
    collect = third_party(at(0), [EMAIL], True, ["marketing.communications"])
    collect["data"]["purpose"] = "marketing.communications"
    return [collect,
            used(ALICE, at(1), [EMAIL], "marketing.communications.email" if ok
                 else "functional.service.community")]


def unauthorised_link(ok: bool) -> list[Wire]:
    return [wire("data.linked", at(1), categories=[IP, "user.device.device_id"],
                 purpose="essential.service.security", authorised=ok, de_identified=False)]


def identified_analytics(ok: bool) -> list[Wire]:
    return [used(ALICE, at(1), [BROWSING], "analytics.reporting", anonymised=ok)]


def undeclared_purpose(ok: bool) -> list[Wire]:
    return [*([granted(ALICE, at(1), "c-ai", "train_ai_system")] if ok else []),
            used(ALICE, at(2), [BROWSING], "train_ai_system")]


def denied_after_refusal(ok: bool) -> list[Wire]:
    return [wire("data.collection_refused", at(1), categories=[NAME], purpose="essential.service"),
            wire("service.denied", at(2), service="object-storage", reason="profile incomplete",
                 missing_categories=[PHONE] if ok else [NAME])]


def use_after_closure(ok: bool) -> list[Wire]:
    return [closed(ALICE, at(5), legal_hold_categories=["user.financial"],
                   legal_hold_until=at(400).isoformat()),
            used(ALICE, at(6), [INVOICE] if ok else [EMAIL],
                 "essential.legal_obligation" if ok else "essential.service.notifications.email")]


def commercial_use_after_closure(ok: bool) -> list[Wire]:
    return [closed(ALICE, at(5)),
            used(ALICE, at(4 if ok else 6), [EMAIL], "marketing.communications.email")]


def customer_content(ok: bool) -> list[Wire]:
    return [collected(ALICE, at(0), ["user.content.support_ticket" if ok else "customer.content"],
                      "tickets", purpose="essential.service.operations.support")]


def held_past_retention(ok: bool) -> list[Wire]:
    return [collected(ALICE, at(0), [IP], "logs", backups=["logs-backup"], source="device",
                      purpose="essential.service.security", retention_days=30),
            *([erased(ALICE, at(29), [IP], ["logs", "logs-backup"])] if ok else [])]


def extended(t: datetime, until: datetime, basis: str = "consent", **data: Any) -> Wire:
    return wire("data.retention_extended", t, categories=[IP], until=until.isoformat(),
                basis=basis, **data)


def retention_extended_without_basis(ok: bool) -> list[Wire]:
    """6.3: kept longer only with consent (or a legal permission); without one the
    extension is a finding and the data is still past its retention."""
    return [collected(ALICE, at(0), [IP], "logs", source="device",
                      purpose="essential.service.security", retention_days=30),
            *([granted(ALICE, at(10), "c-keep", "essential.service.security")] if ok else []),
            extended(at(20), at(100), consent_id="c-keep")]


def deleted_data_used(ok: bool) -> list[Wire]:
    """6.3: data the person deleted is as after closure: only its legal hold, for the legal
    obligation."""
    return [collected(ALICE, at(0), [INVOICE], "billing-db",
                      purpose="essential.service.invoicing"),
            wire("data.deleted_by_subject", at(5), categories=[INVOICE],
                 legal_hold_categories=[INVOICE], legal_hold_until=at(100).isoformat()),
            used(ALICE, at(7), [INVOICE], "essential.legal_obligation" if ok
                 else "essential.service.invoicing")]


def deleted_data_kept(ok: bool) -> list[Wire]:
    """6.3: data the person deleted is erased from source and backups, as after closure."""
    return [collected(ALICE, at(0), [EMAIL], backups=["accounts-backup"]),
            wire("data.deleted_by_subject", at(5), categories=[EMAIL]),
            erased(ALICE, at(6), [EMAIL], ["accounts-db", *(["accounts-backup"] if ok else [])])]


def erasure_skipping_backup(ok: bool) -> list[Wire]:
    return [collected(ALICE, at(0), [EMAIL], backups=["accounts-backup"]),
            erased(ALICE, at(10), ["user.contact"],
                   ["accounts-db", "accounts-backup"] if ok else ["accounts-db"])]


def kept_after_closure(ok: bool) -> list[Wire]:
    return [collected(ALICE, at(0), [EMAIL]),
            closed(ALICE, at(5)),
            *([erased(ALICE, at(6), ["user"], ["accounts-db"])] if ok else [])]


def kept_after_legal_hold(ok: bool) -> list[Wire]:
    return [collected(ALICE, at(0), [INVOICE], "billing-db",
                      purpose="essential.service.invoicing"),
            closed(ALICE, at(5), legal_hold_categories=["user.financial"],
                   legal_hold_until=(at(400) if ok else at(30)).isoformat())]


def responded(t: datetime, incident_id: str = "inc-1",
              steps: Sequence[str] = ("contingency", "contained", "advice")) -> list[Wire]:
    """The response steps of 6.2.1 beyond report and notice, recorded at ``t``."""
    made = {"contingency": ("incident.contingency_started", {"plan": "IRP-3"}),
            "contained": ("incident.contained", {"measures": "bucket made private"}),
            "advice": ("incident.advice_given", {"channel": "email"})}
    return [wire(made[s][0], t, None, incident_id=incident_id, **made[s][1]) for s in steps]


def incident_unreported(ok: bool) -> list[Wire]:
    return [collected(ALICE, at(0), [EMAIL]),
            incident("inc-1", at(10), ["accounts-db"], at(9), at(10)),
            *responded(at(10.2)),
            *([wire("incident.reported", at(10.5), None, incident_id="inc-1", authority="CAC"),
               notified(ALICE, at(11), "inc-1")] if ok else [])]


def incident_response_missing(ok: bool) -> list[Wire]:
    """6.2.1: the contingency plan started (24 h), the spread stopped (72 h), advice given
    to the people affected (with the notice, 72 h) — here none recorded, or one too late."""
    return [collected(ALICE, at(0), [EMAIL]),
            incident("inc-2", at(10), ["accounts-db"], at(9), at(10)),
            wire("incident.reported", at(10.5), None, incident_id="inc-2", authority="CAC"),
            notified(ALICE, at(11), "inc-2"),
            *(responded(at(10.5), "inc-2") if ok
              else responded(at(11.5), "inc-2", steps=("contingency",)))]


def request_overdue(ok: bool) -> list[Wire]:
    return [request(at(1)), *([verified(at(2)), fulfilled(at(3))] if ok else [])]


def request_unverified(ok: bool) -> list[Wire]:
    return [request(at(1)), *([verified(at(2))] if ok else []), fulfilled(at(3))]


def consent_from_superseded_policy(ok: bool) -> list[Wire]:
    return [policy(at(0), "v1", at(0), material=True),
            granted(ALICE, at(1), "c-prof", "personalize.profiling", policy_version="v1"),
            policy(at(10), "v2", at(20), material=not ok),
            used(ALICE, at(25), [BROWSING], "personalize.profiling", consent_id="c-prof")]


# --- the rest of the policy (issue 17): one story per promise ----------------------------


def purpose_changed(ok: bool) -> list[Wire]:
    """3.4: a phone number collected to log in, used for a community feature (another
    family of purposes) needs consent first; marketing by SMS is declared (3.3)."""
    return [collected(ALICE, at(0), [PHONE], "accounts-db"),
            *([granted(ALICE, at(1), "c-com", "functional.service.community")] if ok else []),
            used(ALICE, at(2), [PHONE], "functional.service.community"),
            used(ALICE, at(3), [PHONE], "marketing.communications.sms")]


def denied_after_withdrawal(ok: bool) -> list[Wire]:
    """3.2: withdrawing profiling consent does not cost the core services (a denial for
    missing real-name data is another matter)."""
    return [granted(ALICE, at(1), "c-prof", "personalize.profiling"),
            withdrawn(ALICE, at(2), "c-prof", "personalize.profiling"),
            wire("service.denied", at(3), service="object-storage", reason="no profile",
                 missing_categories=[ID_NUMBER] if ok else [])]


def notice_after_change(ok: bool) -> list[Wire]:
    """8: a material change is notified before it takes effect."""
    return [policy(at(0), "v2", at(10), material=True),
            wire("policy.notice_sent", at(5 if ok else 11), policy_version="v2",
                 channel="email")]


def recipient_not_bound(ok: bool) -> list[Wire]:
    """5.1: recipients are bound to confidentiality by an agreement."""
    return [recipient("crm-co", at(0), "CRM Co", roles=["other"],
                      **({} if ok else {"agreement_ref": None, "confidentiality": False})),
            shared(ALICE, at(1), "crm-co", [EMAIL], "5.1.3",
                   purpose="essential.service.operations.support")]


def overseas_unchecked(ok: bool) -> list[Wire]:
    """6.3: an overseas recipient is held by agreement and on-site checks; a failed check
    is no check."""
    return [recipient("edge-hk", at(0), "Edge HK", location="HK"),
            inspected("edge-hk", at(0.5), passed=ok),
            granted(ALICE, at(1), "c-xb", "essential.service.operations",
                    cross_border=CROSS_BORDER),
            shared(ALICE, at(2), "edge-hk", [EMAIL], purpose="essential.service.operations",
                   consent_id="c-xb", cross_border=CROSS_BORDER)]


def real_name_unverified(ok: bool) -> list[Wire]:
    """7.1: changing real-name data needs identity verification first."""
    if not ok:
        return [wire("data.corrected", at(3), categories=[NAME], store="kyc-db")]
    return [request(at(1), "r-9", "correction"), verified(at(2), "r-9"),
            wire("data.corrected", at(3), categories=[NAME], store="kyc-db", request_id="r-9"),
            fulfilled(at(3.5), "r-9"),
            wire("data.corrected", at(4), categories=[EMAIL], store="accounts-db")]


def enterprise_data_used(ok: bool) -> list[Wire]:
    """2.1.1(2)c: enterprise verification data serves verification only."""
    code = "user.government_id.enterprise_credit_code"
    return [collected(ALICE, at(0), [code], "kyc-db",
                      purpose="essential.service.identity_verification"),
            used(ALICE, at(1), [code], "essential.service.identity_verification" if ok
                 else "essential.service.security")]


def reader_not_on_staff_list(ok: bool) -> list[Wire]:
    """6.2.1: only staff on the access list read personal data."""
    def query(t: float, actor: str) -> Wire:
        return wire("ledger.queried", at(t), None, actor=actor, query="subject")

    return [wire("staff.access_granted", at(0), None, actor="dpo@example.cn"),
            wire("staff.access_granted", at(0), None, actor="temp@example.cn"),
            wire("staff.access_revoked", at(2), None, actor="temp@example.cn"),
            query(1, "dpo@example.cn"), query(1, "temp@example.cn"),
            query(3, "dpo@example.cn" if ok else "temp@example.cn")]


def clear_read_without_reason(ok: bool) -> list[Wire]:
    """An export opens values in clear: it needs a recorded reason (6.2.1b)."""
    return [wire("ledger.queried", at(1), None, actor="dpo@tests", role="privacy_officer",
                 query="export", people=["p_" + "a" * 32], clear=True,
                 reason="ticket DSR-7" if ok else None),
            wire("ledger.queried", at(2), None, actor="ir@tests", role="responder",
                 query="scope", people=["p_" + "b" * 32])]  # not in clear: no reason needed


@dataclass(frozen=True)
class Rule:
    story: Callable[[bool], list[Wire]]
    expected: tuple[str, ...]  # clauses of the violating story's findings, sorted

    @property
    def id(self) -> str:
        return f"{'+'.join(dict.fromkeys(self.expected))}:{self.story.__name__}"


RULES = [
    Rule(marketing_after_opt_out, ("3.3",)),
    Rule(marketing_message_after_opt_out, ("3.3", "7.3")),
    Rule(tracking_after_unsubscribe, ("4.2",)),
    Rule(tracking_after_mailing_opt_out, ("4.2",)),
    Rule(message_of_unsubscribed_kind, ("7.3",)),
    Rule(profiling_without_consent, ("3.2b",)),
    Rule(profiling_after_withdrawal, ("3.2b",)),
    Rule(verification_data_used, ("2.1.1(2)b",)),
    Rule(verification_data_shared, ("2.1.1(2)b",)),
    Rule(payment_data_to_non_processor, ("2.1.1(3)b",)),
    Rule(disclosure_without_basis, ("5.0",)),
    Rule(disclosure_on_wrong_ground, ("5.3",)),
    Rule(use_on_wrong_ground, ("3.5",)),
    Rule(categories_beyond_registration, ("5.1",)),
    Rule(purpose_beyond_registration, ("5.1",)),
    Rule(cross_border_without_consent, ("6.3d",)),
    Rule(cross_border_without_notice, ("6.3d",)),
    Rule(stored_abroad, ("6.3c",)),
    Rule(face_stored, ("2.1.1(2)a",)),
    Rule(plain_password, ("2.1.1(1)a",)),
    Rule(plain_password_cookie, ("4.1",)),
    Rule(promotion_without_consent, ("2.1.1(4)",)),
    Rule(unverified_third_party, ("2.1.3",)),
    Rule(third_party_beyond_scope, ("2.1.3", "3.4c")),
    Rule(unauthorised_link, ("2.1.2-note",)),
    Rule(identified_analytics, ("3.2a",)),
    Rule(undeclared_purpose, ("3.4b",)),
    Rule(denied_after_refusal, ("2.1.1(1)c",)),
    Rule(use_after_closure, ("7.6",)),
    Rule(commercial_use_after_closure, ("6.3b", "7.6")),
    Rule(customer_content, ("1.3",)),
    Rule(held_past_retention, ("6.3a",)),
    Rule(erasure_skipping_backup, ("6.3a",)),
    Rule(retention_extended_without_basis, ("6.3a", "6.3a")),
    Rule(deleted_data_used, ("6.3b",)),
    Rule(deleted_data_kept, ("6.3a", "6.3a")),
    Rule(kept_after_closure, ("2.1.1(1)d",)),
    Rule(kept_after_legal_hold, ("2.1.1(1)d",)),
    Rule(incident_unreported, ("6.2.1a", "6.2.1a")),
    Rule(incident_response_missing, ("6.2.1a", "6.2.1a", "6.2.1a")),
    Rule(request_overdue, ("7.1",)),
    Rule(request_unverified, ("9.2",)),
    Rule(consent_from_superseded_policy, ("8",)),
    Rule(purpose_changed, ("3.4c",)),
    Rule(denied_after_withdrawal, ("3.2c",)),
    Rule(notice_after_change, ("8",)),
    Rule(recipient_not_bound, ("5.1",)),
    Rule(overseas_unchecked, ("6.3e",)),
    Rule(real_name_unverified, ("7.1",)),
    Rule(enterprise_data_used, ("2.1.1(2)c",)),
    Rule(reader_not_on_staff_list, ("6.2.1b",)),
    Rule(clear_read_without_reason, ("6.2.1b",)),
]


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_rule_fires_on_the_violation(ledger: Ledger, rule: Rule) -> None:
    found = findings(ledger, rule.story(False))
    assert clauses(found) == list(rule.expected), [f.explanation for f in found]
    assert all(f.clause in CLAUSES and f.explanation for f in found)


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_compliant_variant_has_no_finding(ledger: Ledger, rule: Rule) -> None:
    found = findings(ledger, rule.story(True))
    assert found == [], [(f.clause, f.explanation) for f in found]


def test_every_clause_of_the_catalogue_has_a_rule_test() -> None:
    assert {c for r in RULES for c in r.expected} == set(CLAUSES)


# --- what a finding says ----------------------------------------------------------------


def test_finding_names_the_person_the_event_and_no_personal_value(ledger: Ledger) -> None:
    secret_email, secret_id = "alice.zhang@example.cn", "110101199003074514"
    events = [
        {**collected(ALICE, at(0), [EMAIL, ID_NUMBER], "kyc-db",
                     purpose="essential.service.identity_verification"),
         "personal": {EMAIL: secret_email, ID_NUMBER: secret_id}},
        subscription(ALICE, at(1), "marketing.communications.email", False),
        {**used(ALICE, at(2), [EMAIL, ID_NUMBER], "marketing.communications.email",
                message_kind="marketing.communications.email"),
         "personal": {EMAIL: secret_email}},
    ]
    results = ledger.publish(events)
    found = list_findings(project(ledger), now=NOW)
    assert clauses(found) == ["2.1.1(2)b", "3.3", "7.3"]
    for f in found:
        assert f.pseudonym == ledger.pseudonymise(ALICE)
        assert (f.event_id, f.partition, f.offset) == (
            events[2]["id"], results[2].partition, results[2].offset)
        assert f.time == at(2)
        text = repr(f.as_dict())
        assert secret_email not in text and secret_id not in text and ALICE not in text
    assert found[0].as_dict()["time"] == at(2).isoformat()


def test_clause_filter_is_a_prefix_and_summary_counts(ledger: Ledger) -> None:
    ledger.publish([*marketing_message_after_opt_out(False), *verification_data_used(False),
                    *request_overdue(False)])
    store = project(ledger)
    everything = list_findings(store, now=NOW)
    assert summary(everything) == {"2.1.1(2)b": 1, "3.3": 1, "7.1": 1, "7.3": 1}
    assert clauses(list_findings(store, "3", now=NOW)) == ["3.3"]
    assert clauses(list_findings(store, "7", now=NOW)) == ["7.1", "7.3"]
    assert clauses(list_findings(store, "2.1.1(2)b", now=NOW)) == ["2.1.1(2)b"]
    assert clauses(list_findings(store, "2.1.1(1)", now=NOW)) == []
    assert [f.time for f in everything] == sorted(f.time for f in everything)


def test_a_change_in_the_past_does_not_reach_back(ledger: Ledger) -> None:
    """Compared by event time: an opt-out dated after a message does not make it a finding,
    nor does a consent dated after the profiling make it lawful."""
    found = findings(ledger, [
        used(ALICE, at(1), [EMAIL], "marketing.communications.email"),
        subscription(ALICE, at(2), "marketing.communications", False),
        used(ALICE, at(3), [BROWSING], "personalize.profiling"),
        granted(ALICE, at(4), "c-prof", "personalize.profiling"),
    ])
    assert clauses(found) == ["3.2b"]


def test_disclosure_on_a_legal_ground_may_include_verification_and_payment_data(
        ledger: Ledger) -> None:
    found = findings(ledger, [shared(ALICE, at(1), "police", [ID_NUMBER, BANK], "5.3.4",
                                     "essential.legal_obligation", kind="authority",
                                     legal_ground="5.3.4")])
    assert found == []


def test_third_party_scope_binds_only_data_that_came_from_the_third_party(
        ledger: Ledger) -> None:
    """E-mail the person also gave, or a narrower category than the third party supplied,
    may be the person's own: its use is not limited by the third party's scope."""
    found = findings(ledger, [
        collected(ALICE, at(0), [EMAIL]),
        third_party(at(1), [EMAIL, "user.behavior"], True, ["personalize.profiling"]),
        used(ALICE, at(2), [EMAIL], "essential.service.notifications.email"),
        used(ALICE, at(2), [BROWSING], "analytics.reporting", anonymised=True),
        used(ALICE, at(3), ["user.behavior"], "essential.fraud_detection"),
    ])
    assert [(f.clause, f.time) for f in found] == [("2.1.3", at(3))]


# --- time-dependent rules follow "now" --------------------------------------------------


def test_retention_finding_appears_at_the_deadline(ledger: Ledger) -> None:
    ledger.publish(held_past_retention(False))
    store = project(ledger)
    assert list_findings(store, now=at(31.9)) == []  # the nightly erasure job has two days
    [late] = list_findings(store, now=at(32.1))
    assert (late.clause, late.time) == ("6.3a", at(30))
    assert "logs, logs-backup" in late.explanation and "30-day" in late.explanation
    assert list_findings(store, now=at(31), erasure_grace_days=0) == [late]


@pytest.mark.parametrize(("erased_on", "late"), [(31, False), (40, True)])
def test_erasure_after_the_deadline_and_its_grace_is_still_a_finding(
        ledger: Ledger, erased_on: int, late: bool) -> None:
    found = findings(ledger, [*held_past_retention(False),
                              erased(ALICE, at(erased_on), [IP], ["logs", "logs-backup"])])
    assert clauses(found) == (["6.3a"] if late else [])


def test_request_deadline_defaults_to_deadline_days_unless_the_request_names_one(
        ledger: Ledger) -> None:
    ledger.publish([request(at(1), "r-default"),
                    request(at(1), "r-due", "erasure", due=at(3).isoformat()),
                    request(at(1), "r-late", "correction"), verified(at(2), "r-late"),
                    fulfilled(at(20), "r-late")])
    store = project(ledger)
    assert [f.explanation for f in list_findings(store, now=at(10))] == [
        "erasure request not fulfilled or refused by its due date (still open)"]
    assert len(list_findings(store, now=at(10), deadline_days=5)) == 3
    late = [f for f in list_findings(store, now=at(30)) if "correction" in f.explanation]
    assert late[0].time == at(16) and "answered late" in late[0].explanation


def test_refusal_in_time_answers_a_request(ledger: Ledger) -> None:
    found = findings(ledger, [request(at(1)), wire("request.refused", at(5), request_id="r-1",
                                                   reason="manifestly unfounded")])
    assert found == []


def test_open_incident_is_judged_after_72_hours_or_when_closed(ledger: Ledger) -> None:
    ledger.publish(incident_unreported(False))
    store = project(ledger)
    assert list_findings(store, now=at(12)) == []
    assert clauses(list_findings(store, now=at(13.1))) == ["6.2.1a", "6.2.1a"]
    ledger.publish([wire("incident.closed", at(11), None, incident_id="inc-1")])
    ProjectionRunner(ledger.log, store, [FindingsProjection()]).run()
    assert [f.time for f in list_findings(store, now=at(12))] == [at(11), at(11)]


def test_incident_affects_only_people_with_data_in_its_stores_during_its_window(
        ledger: Ledger) -> None:
    bob, cy, dee = "bob-1", "cy-2", "dee-3"
    found = findings(ledger, [
        collected(ALICE, at(0), [EMAIL]),
        collected(bob, at(0), [EMAIL]), erased(bob, at(5), [EMAIL], ["accounts-db"]),
        collected(cy, at(11), [EMAIL]),
        collected(dee, at(0), [EMAIL], "other-db"),
        incident("inc-1", at(10), ["accounts-db"], at(9), at(10)), *responded(at(10.2)),
        wire("incident.reported", at(10.5), None, incident_id="inc-1", authority="CAC"),
    ])
    assert [(f.clause, f.pseudonym) for f in found] == [("6.2.1a", ledger.pseudonymise(ALICE))]


def test_people_who_cannot_be_reached_are_routed_to_the_announcement_not_flagged(
        ledger: Ledger) -> None:
    # Each had data in the breached store during the window; none was notified. Only the
    # one who can still be reached is a finding: the others go to the public announcement.
    no_contact, erased_contact, shredded = "nc-1", "ec-2", "sh-3"
    events = [
        collected(ALICE, at(0), [EMAIL]),
        collected(no_contact, at(0), ["user.device.device_id"]),
        collected(erased_contact, at(0), [EMAIL]),
        erased(erased_contact, at(20), [EMAIL], ["accounts-db"]),
        collected(shredded, at(0), [EMAIL]),
        incident("inc-1", at(10), ["accounts-db"], at(9), at(10)), *responded(at(10.2)),
        wire("incident.reported", at(10.5), None, incident_id="inc-1", authority="CAC"),
    ]
    ledger.publish(events)
    ledger.erase(shredded)
    store = SQLiteViewStore(":memory:")
    ProjectionRunner(ledger.log, store, [FindingsProjection(), HoldingsProjection()]).run()
    found = [(f.clause, f.pseudonym) for f in list_findings(store, now=NOW)
             if f.clause == "6.2.1a"]
    assert found == [("6.2.1a", ledger.pseudonymise(ALICE))]
    # without the holdings projection in the store, the findings' own holdings still know
    # who holds no contact data; the shredded person (contact data held, key gone) is flagged
    alone = project(ledger)
    flagged = {f.pseudonym for f in list_findings(alone, now=NOW) if f.clause == "6.2.1a"}
    assert flagged == {ledger.pseudonymise(ALICE), ledger.pseudonymise(shredded)}


def test_legal_hold_keeps_held_data_until_it_ends(ledger: Ledger) -> None:
    ledger.publish([collected(ALICE, at(0), [EMAIL]),
                    collected(ALICE, at(0), [INVOICE], "billing-db"),
                    closed(ALICE, at(5), legal_hold_categories=["user.financial"],
                           legal_hold_until=at(100).isoformat())])
    store = project(ledger)
    assert list_findings(store, now=at(19)) == []
    [beyond_hold] = list_findings(store, now=at(21))
    assert beyond_hold.time == at(20) and beyond_hold.explanation.startswith(EMAIL)
    assert list_findings(store, now=at(21), closure_days=30) == []
    assert list_findings(store, now=at(101)) == [beyond_hold]
    [_, after_hold] = list_findings(store, now=at(103))
    assert after_hold.time == at(102) and "after the legal hold ended" in after_hold.explanation


# --- incremental application -----------------------------------------------------------


def every_story() -> list[Wire]:
    """All stories, violating and compliant, each about a person of its own."""
    events: list[Wire] = []
    for n, rule in enumerate(RULES):
        for ok in (False, True):
            person = f"person-{n}-{ok}"
            for event in rule.story(ok):
                events.append({**event, "subject": person} if event.get("subject") == ALICE
                              else event)
    return events


def test_chunks_of_one_give_the_same_findings_as_one_batch(ledger: Ledger) -> None:
    ledger.publish(every_story())
    one_by_one, all_at_once = project(ledger, batch_size=1), project(ledger, batch_size=10_000)
    projection = [FindingsProjection()]
    assert dump_views(one_by_one, projection) == dump_views(all_at_once, projection)
    expected = list_findings(all_at_once, now=NOW)
    assert list_findings(one_by_one, now=NOW) == expected
    assert {f.clause for f in expected} == set(CLAUSES)


class _FailsOnce(Projection):
    """Fails the third batch it sees, after the projections before it wrote theirs."""

    name = "fails-once"

    def __init__(self) -> None:
        self.calls = 0

    def apply(self, tx: ViewTransaction, items: Sequence[Item]) -> None:
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("injected failure")


def test_a_rolled_back_batch_or_another_store_leaves_no_trace(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """One instance: a batch rolled back after it applied, a failure inside its own apply,
    then another store and back. Its views still equal a fresh rebuild's."""
    ledger.publish(every_story())
    projection, views = FindingsProjection(), [FindingsProjection()]
    store, other = SQLiteViewStore(":memory:"), SQLiteViewStore(":memory:")
    with pytest.raises(RuntimeError, match="injected"):
        ProjectionRunner(ledger.log, store, [projection, _FailsOnce()], batch_size=7).run()

    real = findings_module._HANDLERS["data.used"]
    calls = count()

    def flaky(batch: Any, item: Item) -> None:
        if next(calls) == 5:
            raise RuntimeError("injected failure")
        real(batch, item)

    monkeypatch.setitem(findings_module._HANDLERS, "data.used", flaky)
    with pytest.raises(RuntimeError, match="injected"):
        ProjectionRunner(ledger.log, store, [projection], batch_size=7).run()
    monkeypatch.undo()
    ProjectionRunner(ledger.log, other, [projection], batch_size=11).run()
    ProjectionRunner(ledger.log, store, [projection], batch_size=7).run()
    fresh = project(ledger)
    assert dump_views(store, views) == dump_views(fresh, views)
    assert dump_views(other, views) == dump_views(fresh, views)


def test_registries_kept_across_batches_follow_another_writer(ledger: Ledger) -> None:
    """A projection keeps the registries across its batches (``RegistryCache``), and drops
    them when another writer changed the view in between: here a recipient's role and the
    staff list. Kept, they would clear the second share of payment data (the recipient
    was an e-mail gateway) and flag nothing on the revoked reader."""
    kept, views = FindingsProjection(), [FindingsProjection()]
    store = SQLiteViewStore(":memory:")
    ledger.publish([recipient("payco", at(0), "Pay Co", roles=["email_gateway"]),
                    wire("staff.access_granted", at(0), None, actor="temp@example.cn"),
                    shared(ALICE, at(1), "payco", [BANK])])
    ProjectionRunner(ledger.log, store, [kept]).run()  # reads the registries, keeps them
    ledger.publish([recipient("payco", at(2), "Pay Co", roles=["payment_processor"]),
                    wire("staff.access_revoked", at(2), None, actor="temp@example.cn")])
    ProjectionRunner(ledger.log, store, [FindingsProjection()]).run()  # another writer
    ledger.publish([shared(ALICE, at(3), "payco", [BANK]),
                    wire("ledger.queried", at(3), None, actor="temp@example.cn",
                         query="subject")])
    ProjectionRunner(ledger.log, store, [kept]).run()
    assert dump_views(store, views) == dump_views(project(ledger), views)
    found = list_findings(store, now=NOW)
    assert [f.time for f in found if f.clause == "2.1.1(3)b"] == [at(1)]
    assert [f.time for f in found if f.clause.startswith("6.2.1")] == [at(3)]


# --- the simulator's planted violations --------------------------------------------------


def test_every_violation_the_simulator_plants_is_found(ledger: Ledger) -> None:
    """Each planted person has a finding of the planted clause; nobody else has any, but
    for incident notices: the simulator notifies only those whose logs were in the exposed
    30-day export, which an incident event (stores and a window) cannot say, so findings
    count everybody with data in the store during the window."""
    people = 300
    lines = list(simulate(people, seed=7))
    ledger.publish_lines(lines)
    end = max(datetime.fromisoformat(json.loads(line)["time"]) for line in lines)
    found = list_findings(project(ledger), now=end)
    by_person: dict[str | None, set[str]] = {}
    for f in found:
        by_person.setdefault(f.pseudonym, set()).add(f.clause)
    who = planted(people)
    expected: dict[str, set[str]] = {}
    for kind in Planted:  # every kind of the enum is planted on someone, and found
        assert who[kind], f"{kind} was not planted"
        if VIOLATIONS[kind].about == "incident":  # the company's, in an incident: by its id
            for incident_id in who[kind]:
                assert any(f.clause == kind.clause and f.pseudonym is None
                           and f.explanation.startswith(f"incident {incident_id}:")
                           for f in found), kind
            continue
        for subject in who[kind]:
            expected.setdefault(ledger.pseudonymise(subject), set()).add(kind.clause)
    missed = {p: clauses - by_person.get(p, set()) for p, clauses in expected.items()}
    assert {p: c for p, c in missed.items() if c} == {}
    others = {c for p, cs in by_person.items() if p not in expected for c in cs}
    assert others <= {"6.2.1a"}
    # 7.4: unlawfully stored data the retention job erased later remedies its finding (the
    # store abroad, 6.3c); each remedy is a later erasure or correction of the same person
    by_id = {e["id"]: e for e in map(json.loads, lines)}
    remedied = [f for f in found if f.status == "remedied"]
    assert "6.3c" in {f.clause for f in remedied}
    for f in remedied:
        remedy = by_id[f.remedied_by or ""]
        assert remedy["type"] in ("data.erased", "data.corrected")
        assert ledger.pseudonymise(remedy["subject"]) == f.pseudonym
        assert f.remedied_at is not None and f.remedied_at >= f.time


def test_thresholds_are_settings_shown_by_explain(ledger: Ledger, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The 72 h, 15 days and 2-day grace are the project's figures: settings with their
    source, used by the timed rules and shown by ``pdl findings --explain``."""
    from consumers.findings.thresholds import THRESHOLDS
    from pdl.cli import main

    ledger.publish([incident("inc-9", at(1), ["accounts-db"], at(0), at(1)),
                    *responded(at(1.5), "inc-9", steps=("contingency",))])
    store = project(ledger)
    assert list_findings(store, now=at(3)) == []  # 48 h after opening: within 72 h
    late = list_findings(store, now=at(3), incident_report_hours=24)
    assert clauses(late) == ["6.2.1a"] and "not reported" in late[0].explanation
    for t in THRESHOLDS:
        assert t.source.startswith("assumed") or "§" in t.source or "art." in t.source
    monkeypatch.setenv("LEDGER_DATA_DIR", str(ledger.settings.data_dir.parent / "explain"))
    monkeypatch.setenv("LEDGER_DEMO", "1")
    monkeypatch.setenv("LEDGER_INCIDENT_REPORT_HOURS", "24")
    assert main(["findings", "--explain", "--json"]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert {c["clause"] for c in explained["clauses"]} == set(CLAUSES)
    hours = next(t for t in explained["thresholds"] if t["clock"] == "incident_report_hours")
    assert (hours["value"], hours["default"], hours["unit"]) == (24, 72, "hours")


# --- 6.3: keeping longer, and data the person deleted ---------------------------------------


def test_a_retention_extension_moves_the_deadline_only_with_a_basis_recorded_in_time(
        ledger: Ledger) -> None:
    logs = [collected(ALICE, at(0), [IP], "logs", source="device",
                      purpose="essential.service.security", retention_days=30)]
    by_law = findings(ledger, [*logs, extended(at(20), at(50), "law", legal_ref="court order 7")],
                      now=at(51))
    assert by_law == []  # kept to day 50 by law: not late before day 52
    ran_out = list_findings(project(ledger), now=at(53))
    assert [(f.clause, f.time) for f in ran_out] == [("6.3a", at(50))]
    assert "past its extended retention (to " in ran_out[0].explanation


def test_an_extension_naming_no_law_or_recorded_too_late_is_no_extension(
        ledger: Ledger) -> None:
    found = findings(ledger, [
        collected(ALICE, at(0), [IP], "logs", source="device",
                  purpose="essential.service.security", retention_days=30),
        extended(at(20), at(100), "law"),  # names no law
        collected("bob-1", at(0), [IP], "logs", source="device",
                  purpose="essential.service.security", retention_days=30),
        wire("data.retention_extended", at(40), "bob-1", categories=[IP],
             until=at(100).isoformat(), basis="law", legal_ref="court order 7"),  # too late
    ])
    assert sorted((f.pseudonym == ledger.pseudonymise(ALICE), f.explanation) for f in found) == [
        (False, "user.device.ip_address kept in logs past the 30-day retention deadline, with "
                "no extension on consent or a legal permission"),
        (True, "retention of user.device.ip_address extended to "
               f"{at(100).date().isoformat()} on a legal basis that names no law or order"),
        (True, "user.device.ip_address kept in logs past the 30-day retention deadline, with "
               "no extension on consent or a legal permission")]


def test_data_given_again_after_a_deletion_may_be_used(ledger: Ledger) -> None:
    found = findings(ledger, [
        collected(ALICE, at(0), [EMAIL]),
        wire("data.deleted_by_subject", at(1), categories=["user.contact"]),
        erased(ALICE, at(2), ["user.contact"], ["accounts-db"]),
        used(ALICE, at(3), [EMAIL]),  # deleted: a finding
        collected(ALICE, at(4), [EMAIL]),
        used(ALICE, at(5), [EMAIL]),  # given again: none
    ])
    assert [(f.clause, f.time) for f in found] == [("6.3b", at(3))]
    assert found[0].explanation == ("use for essential.service.security of data the person "
                                    "deleted (user.contact.email): not for the legal obligation")


# --- 7.4: a finding and the later event that remedies it -----------------------------------


def test_unlawfully_collected_data_erased_everywhere_or_corrected_remedies_its_finding(
        ledger: Ledger) -> None:
    events = [
        collected(ALICE, at(0), [FACE], "kyc-db", backups=["kyc-backup"], retention_days=365,
                  purpose="essential.service.identity_verification"),  # 2.1.1(2)a
        erased(ALICE, at(2), ["user.biometric"], ["kyc-db"]),  # not the backup: still open
        erased(ALICE, at(3), [FACE], ["kyc-db", "kyc-backup"]),  # now remedied
        collected(ALICE, at(1), [PASSWORD], protection="plain"),  # 2.1.1(1)a
        wire("data.corrected", at(4), categories=[PASSWORD], store="accounts-db"),
        collected(ALICE, at(1), [IP], "logs-sg", location="SG", source="device"),  # 6.3c
    ]
    results = ledger.publish(events)
    store = project(ledger)
    found = {f.clause: f for f in list_findings(store, now=NOW)
             if f.clause in ("2.1.1(1)a", "2.1.1(2)a", "6.3c")}
    assert {c: (f.status, f.remedied_by) for c, f in found.items()} == {
        "2.1.1(2)a": ("remedied", events[2]["id"]),
        "2.1.1(1)a": ("remedied", events[4]["id"]),
        "6.3c": ("open", None)}
    assert found["2.1.1(2)a"].remedied_at == at(3) and results[2].event_id == events[2]["id"]
    # as of before the remedy, the finding is open
    before = [f for f in list_findings(store, now=at(2.5)) if f.clause == "2.1.1(2)a"]
    assert [(f.status, f.as_dict()["remedied_by"]) for f in before] == [("open", None)]
    assert found["2.1.1(1)a"].as_dict()["status"] == "remedied"
