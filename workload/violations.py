"""The promises the workload breaks on purpose, and who breaks them.

About 2 % of people break a promise, so that compliance checks have something to find.
``Planted`` names each kind, ``VIOLATIONS`` its clause in ``COMMITMENTS.md``, and
``planted(people)`` says who breaks what. Everyone else keeps every promise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from workload.tables import VIOLATOR_SHARE, account_id

#: The incident whose response the simulation leaves out (``Planted.INCIDENT_RESPONSE_MISSING``).
PLANTED_INCIDENT = "inc-2024-002"


@dataclass(frozen=True)
class Violation:
    """A kind of broken promise the generator plants, and the clause it breaks."""

    clause: str
    promise: str
    planted: str
    #: who breaks it: a person (``planted()`` names subject ids) or the company in an
    #: incident (``planted()`` names the incident id)
    about: str = "person"


class Planted(StrEnum):
    """A kind of broken promise the generator plants (``VIOLATIONS[kind]`` says which
    clause it breaks). A ``str``: ``planted()``'s keys and JSON stay plain names."""

    CUSTOMER_CONTENT_RECORDED = "customer_content_recorded"
    PASSWORD_STORED_PLAIN = "password_stored_plain"
    SERVICE_DENIED_AFTER_REFUSAL = "service_denied_after_refusal"
    FACE_DATA_STORED = "face_data_stored"
    ID_NUMBER_USED_FOR_MARKETING = "id_number_used_for_marketing"
    ID_NUMBER_SHARED_NOT_FOR_VERIFICATION = "id_number_shared_not_for_verification"
    PAYMENT_DATA_TO_AD_TECH = "payment_data_to_ad_tech"
    PROMOTION_DATA_WITHOUT_CONSENT = "promotion_data_without_consent"
    LINKED_WITHOUT_AUTHORISATION = "linked_without_authorisation"
    THIRD_PARTY_DATA_UNVERIFIED = "third_party_data_unverified"
    NON_ANONYMISED_ANALYTICS = "non_anonymised_analytics"
    PROFILING_WITHOUT_CONSENT = "profiling_without_consent"
    PROFILING_AFTER_WITHDRAWAL = "profiling_after_withdrawal"
    MARKETING_AFTER_OPT_OUT = "marketing_after_opt_out"
    UNDECLARED_PURPOSE_WITHOUT_CONSENT = "undeclared_purpose_without_consent"
    TRACKING_AFTER_UNSUBSCRIBE = "tracking_after_unsubscribe"
    DISCLOSURE_WITHOUT_CLAUSE_OR_CONSENT = "disclosure_without_clause_or_consent"
    HELD_PAST_RETENTION = "held_past_retention"
    ERASURE_SKIPPED_BACKUP = "erasure_skipped_backup"
    STORE_OUTSIDE_CHINA = "store_outside_china"
    CROSS_BORDER_WITHOUT_CONSENT = "cross_border_without_consent"
    CROSS_BORDER_MISSING_FIELDS = "cross_border_missing_fields"
    REQUEST_NEVER_FULFILLED = "request_never_fulfilled"
    USE_AFTER_CLOSURE = "use_after_closure"
    DISCLOSURE_AFTER_CLOSURE = "disclosure_after_closure"
    REQUEST_FULFILLED_UNVERIFIED = "request_fulfilled_unverified"
    RETENTION_EXTENDED_WITHOUT_BASIS = "retention_extended_without_basis"
    DELETED_DATA_USED = "deleted_data_used"
    REAL_NAME_CHANGED_UNVERIFIED = "real_name_changed_unverified"
    OVERSEAS_UNCHECKED = "overseas_unchecked"
    NOTICE_AFTER_CHANGE = "notice_after_change"
    DENIED_AFTER_WITHDRAWAL = "denied_after_withdrawal"
    INCIDENT_RESPONSE_MISSING = "incident_response_missing"

    @property
    def clause(self) -> str:
        """The clause of ``COMMITMENTS.md`` this kind breaks."""
        return VIOLATIONS[self].clause


VIOLATIONS: dict[Planted, Violation] = {
    Planted.CUSTOMER_CONTENT_RECORDED: Violation(
        "1.3", "customer data is out of scope",
        "a support collection of customer data (user.content.private.customer_data)"),
    Planted.PASSWORD_STORED_PLAIN: Violation(
        "2.1.1(1)a", "passwords are stored hashed or encrypted",
        "the registration password collected with protection=plain"),
    Planted.SERVICE_DENIED_AFTER_REFUSAL: Violation(
        "2.1.1(1)c", "refusing optional profile data does not block the service",
        "service.denied naming the profile categories the person refused"),
    Planted.FACE_DATA_STORED: Violation(
        "2.1.1(2)a", "face data is compared, never stored",
        "a face_scan collection with retention_days=365 in kyc-vault"),
    Planted.ID_NUMBER_USED_FOR_MARKETING: Violation(
        "2.1.1(2)b", "ID numbers are used only for real-name verification",
        "data.used of the national ID number for marketing.communications"),
    Planted.ID_NUMBER_SHARED_NOT_FOR_VERIFICATION: Violation(
        "2.1.1(2)b", "ID numbers are shared only for real-name verification",
        "data.shared of the national ID number with the payment processor for payments"),
    Planted.PAYMENT_DATA_TO_AD_TECH: Violation(
        "2.1.1(3)b", "payment data never goes to unrelated third parties",
        "data.shared of payment records with the ad-tech company"),
    Planted.PROMOTION_DATA_WITHOUT_CONSENT: Violation(
        "2.1.1(4)", "promotion identity data only after notice and consent",
        "a marketing.promotion collection with no consent"),
    Planted.LINKED_WITHOUT_AUTHORISATION: Violation(
        "2.1.2-note", "device data joined to an account is authorised or de-identified",
        "data.linked with authorised=false and de_identified=false, then used"),
    Planted.THIRD_PARTY_DATA_UNVERIFIED: Violation(
        "2.1.3", "third-party data is used only once its source is verified",
        "a third-party collection with provenance_verified=false, then used"),
    Planted.NON_ANONYMISED_ANALYTICS: Violation(
        "3.2a", "product analytics uses anonymised aggregates",
        "data.used for analytics.reporting with anonymised=false and no consent"),
    Planted.PROFILING_WITHOUT_CONSENT: Violation(
        "3.2b", "profiling only with consent",
        "data.used for personalize.profiling with no consent"),
    Planted.PROFILING_AFTER_WITHDRAWAL: Violation(
        "3.2b", "the user can withdraw profiling consent at any time",
        "data.used for personalize.profiling citing a withdrawn consent"),
    Planted.MARKETING_AFTER_OPT_OUT: Violation(
        "3.3", "the user can unsubscribe from marketing at any time",
        "a marketing e-mail after subscription.changed(subscribed=false)"),
    Planted.UNDECLARED_PURPOSE_WITHOUT_CONSENT: Violation(
        "3.4b", "a purpose not in the policy needs prior consent",
        "data.used for train_ai_system with no consent"),
    Planted.TRACKING_AFTER_UNSUBSCRIBE: Violation(
        "4.2", "unsubscribing from mailings stops e-mail tracking",
        "a campaign_insights use after the marketing e-mail opt-out"),
    Planted.DISCLOSURE_WITHOUT_CLAUSE_OR_CONSENT: Violation(
        "5.0", "no sharing without consent except under 5.1-5.3",
        "data.shared with the analytics partner with neither clause nor consent"),
    Planted.HELD_PAST_RETENTION: Violation(
        "6.3a", "data is erased once its retention period ends",
        "a collection with retention_days=30 that is never erased"),
    Planted.ERASURE_SKIPPED_BACKUP: Violation(
        "6.3a", "expired data is erased from source and backup stores",
        "a retention erasure of log data that leaves out log-lake-backup"),
    Planted.STORE_OUTSIDE_CHINA: Violation(
        "6.3c", "data collected in China is stored in China",
        "a log collection stored in SG with no cross_border_ref"),
    Planted.CROSS_BORDER_WITHOUT_CONSENT: Violation(
        "6.3d", "cross-border transfer only with consent",
        "data.shared with the Singapore affiliate with no consent"),
    Planted.CROSS_BORDER_MISSING_FIELDS: Violation(
        "6.3d", "the person is told the recipient, contact, processing, purpose, "
        "categories and how to exercise rights",
        "data.shared abroad whose cross_border block lacks contact and rights_howto"),
    Planted.REQUEST_NEVER_FULFILLED: Violation(
        "7.1", "access / correction / erasure requests are fulfilled in time",
        "request.received (access) never fulfilled nor refused"),
    Planted.USE_AFTER_CLOSURE: Violation(
        "7.6", "a closed account's data is not used",
        "a marketing use after subject.closed"),
    Planted.DISCLOSURE_AFTER_CLOSURE: Violation(
        "7.6", "a closed account's data is not disclosed",
        "data.shared with the SMS gateway after subject.closed"),
    Planted.REQUEST_FULFILLED_UNVERIFIED: Violation(
        "9.2", "requests are processed after verifying identity",
        "request.fulfilled with no request.identity_verified"),
    Planted.RETENTION_EXTENDED_WITHOUT_BASIS: Violation(
        "6.3a", "data is kept longer than its purpose needs only with consent or a legal "
        "permission",
        "data.retention_extended of a promotion proof on a consent never given, erased at the "
        "extended date"),
    Planted.DELETED_DATA_USED: Violation(
        "6.3b", "data the person deleted is not used (only a legal hold, for the law)",
        "data.used of the address for support after data.deleted_by_subject of it"),
    Planted.REAL_NAME_CHANGED_UNVERIFIED: Violation(
        "7.1", "changing real-name data requires identity verification",
        "data.corrected of the name with no verified correction request"),
    Planted.OVERSEAS_UNCHECKED: Violation(
        "6.3e", "overseas recipients are bound by agreement and checked on site",
        "a consented cross-border transfer to the Hong Kong affiliate, never inspected"),
    Planted.NOTICE_AFTER_CHANGE: Violation(
        "8", "material policy changes are notified before they take effect",
        "policy.notice_sent of the material v2 after its effective date"),
    Planted.DENIED_AFTER_WITHDRAWAL: Violation(
        "3.2c", "withdrawing profiling consent does not affect the core services",
        "service.denied, naming no missing data, after consent.withdrawn of profiling"),
    Planted.INCIDENT_RESPONSE_MISSING: Violation(
        "6.2.1a", "on a breach the contingency plan is started and the spread stopped",
        f"incident {PLANTED_INCIDENT} reported and closed with no incident.contingency_started "
        "nor incident.contained", about="incident"),
}
#: Kinds planted on people (the others are the company's, in an incident).
PERSON_KINDS = [kind for kind, v in VIOLATIONS.items() if v.about == "person"]

#: Kinds that cannot be planted on the same person.
_CONFLICTS = (
    {Planted.PROFILING_WITHOUT_CONSENT, Planted.PROFILING_AFTER_WITHDRAWAL,
     Planted.DENIED_AFTER_WITHDRAWAL},
    # The on-time erasure of one promotion proof would also erase the one meant to be held.
    {Planted.HELD_PAST_RETENTION, Planted.PROMOTION_DATA_WITHOUT_CONSENT,
     Planted.RETENTION_EXTENDED_WITHOUT_BASIS},
    # Deleting the profile needs a profile, which a refusal of it leaves out.
    {Planted.DELETED_DATA_USED, Planted.SERVICE_DENIED_AFTER_REFUSAL},
)
CLOSURE_KINDS = frozenset({Planted.USE_AFTER_CLOSURE, Planted.DISCLOSURE_AFTER_CLOSURE})


class Violators:
    """Who breaks which promise: violators spread evenly over the population.

    With at least as many violators as kinds each violator breaks one promise, kinds taking
    turns; with fewer (small populations) each breaks several, so every kind still appears.
    Computed on demand, so a population of any size costs no memory here.
    """

    def __init__(self, people: int):
        self.people = people
        self.count = 0 if people <= 0 else min(people, max(2, round(people * VIOLATOR_SHARE)))
        self.kinds = list(PERSON_KINDS)
        self.few: list[tuple[Planted, ...]] | None = None
        if self.count < len(self.kinds):
            assigned: list[list[Planted]] = [[] for _ in range(self.count)]
            for k, kind in enumerate(self.kinds):
                for step in range(self.count):
                    j = (k + step) % self.count
                    if not any(kind in group and set(assigned[j]) & (group - {kind})
                               for group in _CONFLICTS):
                        assigned[j].append(kind)
                        break
            self.few = [tuple(a) for a in assigned]

    def index(self, j: int) -> int:
        """The person index of violator ``j``."""
        return (2 * j + 1) * self.people // (2 * self.count)

    def kinds_of(self, j: int) -> tuple[Planted, ...]:
        return self.few[j] if self.few is not None else (self.kinds[j % len(self.kinds)],)

    def get(self, index: int) -> tuple[Planted, ...]:
        """The kinds person ``index`` breaks (none for almost everybody)."""
        if self.count:
            guess = index * self.count // self.people
            for j in (guess - 1, guess, guess + 1):
                if 0 <= j < self.count and self.index(j) == index:
                    return self.kinds_of(j)
        return ()

    def __iter__(self) -> Iterator[tuple[int, tuple[Planted, ...]]]:
        for j in range(self.count):
            yield self.index(j), self.kinds_of(j)


def planted(people: int) -> dict[Planted, list[str]]:
    """Violation kind -> subject ids of the people who break that promise (for a kind
    about an incident: the incident's id)."""
    out: dict[Planted, list[str]] = {
        kind: [PLANTED_INCIDENT] if v.about == "incident" else [] for kind, v in VIOLATIONS.items()}
    for index, kinds in Violators(people):
        for kind in kinds:
            out[kind].append(account_id(index))
    return out
