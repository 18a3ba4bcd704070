"""One valid wire example per event type: shown in docs/events.md and used by the tests.

Identifiers and values are made up; none belongs to a real person.
"""

from __future__ import annotations

from itertools import count
from typing import Any

T = "2026-11-01T09:30:00+08:00"
USER = "acct:10001"
_serial = count(1)


def _event(type_: str, data: dict[str, Any], subject: str | None = USER,
           personal: dict[str, str] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        # a fixed UUIDv7 per example (time 2026-11-01T01:30Z), so the docs stay stable
        "id": f"01a194ba-4dc0-7000-8000-{next(_serial):012d}",
        "source": "svc/example",
        "type": type_,
        "time": T,
        "data": {**data, "personal": personal} if personal else data,
    }
    if subject is not None:
        event["subject"] = subject
    return event


CROSS_BORDER = {
    "destination_country": "SG",
    "recipient_name": "Example Cloud Pte. Ltd.",
    "recipient_contact": "privacy@example.sg",
    "processing": "ticket handling by the regional support desk",
    "purpose": "essential.service.operations.support",
    "categories": ["user.contact.email"],
    "rights_howto": "write to privacy@example.sg or use the account centre",
}

EXAMPLES: dict[str, dict[str, Any]] = {
    "subject.registered": _event(
        "subject.registered",
        {"subject_kind": "user", "channel": "web", "policy_version": "2026-01"},
        personal={"user.account.username": "lin_example", "user.contact.email": "lin@example.cn"},
    ),
    "subject.closed": _event(
        "subject.closed",
        {"reason": "user_request", "request_id": "req-1",
         "legal_hold_categories": ["user.financial.invoice"],
         "legal_hold_until": "2029-11-01T00:00:00Z"},
    ),
    "data.collected": _event(
        "data.collected",
        {"categories": ["user.contact.email", "user.contact.phone_number"],
         "source": {"kind": "subject"}, "purpose": "essential.service.authentication",
         "store": "accounts-db", "store_location": "CN", "backups": ["accounts-backup"],
         "retention_days": None, "protection": "encrypted"},
        personal={"user.contact.email": "lin@example.cn",
                  "user.contact.phone_number": "13800000000"},
    ),
    "data.collection_refused": _event(
        "data.collection_refused",
        {"categories": ["user.demographic.industry"], "purpose": "marketing.communications"},
    ),
    "service.denied": _event(
        "service.denied",
        {"service": "object-storage", "reason": "real_name_verification_missing",
         "missing_categories": ["user.government_id.national_identification_number"]},
    ),
    "data.linked": _event(
        "data.linked",
        {"categories": ["user.device.device_id"], "purpose": "essential.service.security",
         "authorised": True, "de_identified": False},
    ),
    "data.used": _event(
        "data.used",
        {"categories": ["user.contact.email"], "purpose": "marketing.communications.email",
         "system": "mailer", "consent_id": "c-1",
         "message_kind": "marketing.communications.email"},
    ),
    "data.corrected": _event(
        "data.corrected",
        {"categories": ["user.contact.address"], "store": "accounts-db", "request_id": "req-2"},
        personal={"user.contact.address": "1 Example Road, Wuxi"},
    ),
    "data.shared": _event(
        "data.shared",
        {"recipient": "sg-affiliate", "recipient_kind": "affiliate",
         "categories": ["user.contact.email"], "purpose": "essential.service.operations.support",
         "clause": "5.1.1", "consent_id": "c-xb-1", "agreement_ref": "DPA-7",
         "cross_border": CROSS_BORDER},
    ),
    "recipient.registered": _event(
        "recipient.registered",
        {"recipient": "pay-co", "name": "Example Payments Co.", "kind": "service_provider",
         "location": "CN", "roles": ["payment_processor", "invoice_processor"],
         "allowed_purposes": ["essential.service.payment_processing"],
         "allowed_categories": ["user.financial.bank_account"], "agreement_ref": "DPA-1"},
        subject=None,
    ),
    "recipient.inspected": _event(
        "recipient.inspected",
        {"recipient": "sg-affiliate", "method": "on_site", "passed": True,
         "report_ref": "AUD-2026-03"},
        subject=None,
    ),
    "staff.access_granted": _event(
        "staff.access_granted",
        {"actor": "dpo@example.cn", "role": "privacy_officer", "approved_by": "ciso@example.cn"},
        subject=None,
    ),
    "staff.access_revoked": _event(
        "staff.access_revoked", {"actor": "intern@example.cn"}, subject=None
    ),
    "data.erased": _event(
        "data.erased",
        {"categories": ["user.contact.email"], "stores": ["accounts-db", "accounts-backup"],
         "method": "erased", "reason": "closure"},
    ),
    "data.retention_extended": _event(
        "data.retention_extended",
        {"categories": ["user.financial.invoice"], "stores": ["billing-db"],
         "until": "2036-11-01T00:00:00Z", "basis": "law",
         "legal_ref": "会计档案管理办法 art. 14 (30 years)"},
    ),
    "data.deleted_by_subject": _event(
        "data.deleted_by_subject",
        {"categories": ["user.contact.address", "user.financial.invoice"],
         "legal_hold_categories": ["user.financial.invoice"],
         "legal_hold_until": "2031-11-01T00:00:00Z"},
    ),
    "consent.granted": _event(
        "consent.granted",
        {"consent_id": "c-1", "purpose": "personalize.profiling", "policy_version": "2026-01",
         "categories": ["user.behavior.browsing_history"], "notice_ref": "notice-profiling-v1"},
    ),
    "consent.withdrawn": _event(
        "consent.withdrawn", {"consent_id": "c-1", "purpose": "personalize.profiling"}
    ),
    "subscription.changed": _event(
        "subscription.changed", {"kind": "marketing.communications.email", "subscribed": False}
    ),
    "policy.published": _event(
        "policy.published",
        {"policy_version": "2026-01", "effective_at": "2026-01-15T00:00:00+08:00",
         "material": True, "summary": "new cross-border section"},
        subject=None,
    ),
    "policy.notice_sent": _event(
        "policy.notice_sent", {"policy_version": "2026-01", "channel": "email"}
    ),
    "request.received": _event(
        "request.received",
        {"request_id": "req-1", "kind": "access", "due": "2026-11-16T09:30:00+08:00"},
    ),
    "request.identity_verified": _event(
        "request.identity_verified", {"request_id": "req-1", "method": "sms_code"}
    ),
    "request.fulfilled": _event("request.fulfilled", {"request_id": "req-1"}),
    "request.refused": _event(
        "request.refused", {"request_id": "req-1", "reason": "identity_not_verified"}
    ),
    "request.linked": _event(
        "request.linked",
        {"request_id": "req-1", "action": "export", "event_id": "0190a6f2-7c4e-7000-8000-000000000001"},
    ),
    "incident.opened": _event(
        "incident.opened",
        {"incident_id": "inc-1", "description": "misconfigured bucket ACL",
         "stores": ["accounts-db"], "window_start": "2026-10-30T00:00:00Z",
         "window_end": "2026-10-31T00:00:00Z", "categories": ["user.contact.email"]},
        subject=None,
    ),
    "incident.reported": _event(
        "incident.reported", {"incident_id": "inc-1", "authority": "CAC Jiangsu",
                              "duty": "cac_report"}, subject=None
    ),
    "incident.subject_notified": _event(
        "incident.subject_notified", {"incident_id": "inc-1", "channel": "email"}
    ),
    "incident.closed": _event("incident.closed", {"incident_id": "inc-1"}, subject=None),
    "incident.contingency_started": _event(
        "incident.contingency_started", {"incident_id": "inc-1", "plan": "IRP-2026-v3"},
        subject=None,
    ),
    "incident.contained": _event(
        "incident.contained",
        {"incident_id": "inc-1", "measures": "bucket made private; access keys rotated"},
        subject=None,
    ),
    "incident.advice_given": _event(
        "incident.advice_given", {"incident_id": "inc-1", "channel": "email",
                                  "advice_ref": "notice_zh"}, subject=None
    ),
    "incident.scoped": _event(
        "incident.scoped",
        {"incident_id": "inc-1", "snapshot_hash": "0" * 63 + "1", "people": 1200,
         "records": 3100, "reachable": 1150, "unreachable": 30, "erased": 20,
         "people_with_sensitive_data": 40, "cross_border_people": 12,
         "residence": {"CN": 1180, "DE": 20}},
        subject=None,
    ),
    "incident.graded": _event(
        "incident.graded",
        {"incident_id": "inc-1", "grade": "general", "basis": "judgment",
         "justification": "below every threshold; e-mail addresses only",
         "snapshot_hash": "0" * 63 + "1", "duties": ["pipl57_regulator", "gdpr33:DE"]},
        subject=None,
    ),
    "incident.exemption_recorded": _event(
        "incident.exemption_recorded",
        {"incident_id": "inc-1", "duty": "cac_report",
         "justification": "graded general: the CAC measures' 4-hour report does not apply"},
        subject=None,
    ),
    "incident.notice_drafted": _event(
        "incident.notice_drafted",
        {"incident_id": "inc-1", "draft": "notice_zh", "snapshot_hash": "0" * 63 + "1",
         "digest": "0" * 63 + "2"},
        subject=None,
    ),
    "incident.notices_sent": _event(
        "incident.notices_sent",
        {"incident_id": "inc-1", "duty": "pipl57_individuals", "channel": "email",
         "people": 1150},
        subject=None,
    ),
    "incident.announced": _event(
        "incident.announced",
        {"incident_id": "inc-1", "channel": "website", "people": 50,
         "snapshot_hash": "0" * 63 + "1"},
        subject=None,
    ),
    "ledger.queried": _event(
        "ledger.queried",
        {"actor": "dpo@example.cn", "role": "privacy_officer", "query": "export",
         "arguments": {"format": "json"}, "people": ["p_x"], "reason": "ticket DSR-1042",
         "clear": True},
        subject=None,
    ),
}
