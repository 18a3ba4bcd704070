"""The event catalogue: one frozen pydantic model per event type, in a CloudEvents envelope.

Every model here is part of the wire contract. Changing a field is a new schema version:
bump ``SCHEMA_VERSION`` of the data model and register an upcaster in ``schemas.upcast``
so that events stored under the old version still read.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from schemas import taxonomy as tx


Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
# Literal types are checked inside pydantic-core, which keeps decoding the log fast;
# schemas.codec rewrites their long "expected one of" errors into a short message.
CategoryKey = Literal[tuple(tx.CATEGORIES)]  # type: ignore[valid-type]
UseKey = Literal[tuple(tx.USES)]  # type: ignore[valid-type]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
Categories = Annotated[list[CategoryKey], Field(min_length=1)]
# --- bounds: what every projection and query can store and compute with ---------------
#: Earliest and latest time any event may carry, compared after conversion to UTC, so that
#: every accepted time converts to UTC and to integer microseconds without overflow.
MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2200, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
#: Longest retention a collection may declare (100 years).
MAX_RETENTION_DAYS = 36_500
#: Highest schema version the envelope may name (a newer one than the ledger knows is
#: refused by each event type's envelope anyway).
MAX_SCHEMA_VERSION = 1_000
#: Longest wire line (JSON text of one event), in bytes.
MAX_LINE_BYTES = 1_048_576
#: Deepest nesting of objects and arrays in one event (a valid event needs 4).
MAX_DEPTH = 16
#: The form of a subject in the log: ``p_`` and 32 base32 characters, the ledger's keyed
#: pseudonym (``ledger.sealing.Pseudonymiser``). Readers of a log other producers write to
#: (Kafka) refuse any other subject: it may be a person's real identifier.
PSEUDONYM = re.compile(r"p_[a-z2-7]{32}")
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")


def _iso_time_only(value: Any) -> Any:
    """Refuse epoch numbers (and numeric strings) that pydantic would read as a time."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_TIME.match(value):
        raise ValueError("must be an ISO 8601 time with an offset, e.g. "
                         "'2024-05-01T08:00:00+08:00' (epoch numbers are refused)")
    return value


# Times keep the offset the producer sent (comparisons are offset-aware); a time without
# an offset is refused rather than guessed, and so is one outside MIN_TIME..MAX_TIME.
# The bounds come before the validator so that pydantic checks them in its core (about 15 %
# of decoding time saved against a Python check after it); its JSON Schema then no longer
# shows them, so they are written out in the form JSON Schema knows (format assertions).
UtcTime = Annotated[AwareDatetime, Field(ge=MIN_TIME, le=MAX_TIME),
                    BeforeValidator(_iso_time_only),
                    WithJsonSchema({"type": "string", "format": "date-time",
                                    "formatMinimum": MIN_TIME.isoformat().replace("+00:00", "Z"),
                                    "formatMaximum": MAX_TIME.isoformat().replace("+00:00", "Z")})]
#: Clear identifying values of one event: data category -> value.
Personal = dict[CategoryKey, Annotated[str, StringConstraints(min_length=1, max_length=4096)]]


class EventData(BaseModel):
    """Base of every event's ``data``: frozen, unknown fields refused.

    ``personal`` is a reserved member of every event's data (envelope 2): the clear values
    travel inside ``data`` because CloudEvents extension attributes must be scalars. The
    ledger seals them before the log, so a stored event's data never holds them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    TYPE: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1
    #: Whether the envelope's ``subject`` must name a person.
    SUBJECT_REQUIRED: ClassVar[bool] = True

    personal: Personal | None = Field(
        default=None,
        description="wire only: data category -> clear value; sealed by the ledger, never stored",
    )


# --- subjects -------------------------------------------------------------------------


class SubjectRegistered(EventData):
    """A person became known to the company: an account, an enterprise contact, a non-user."""

    TYPE = "subject.registered"
    # v2 added subject_kind (upcast: v1 registrations were all users); v3 added residence
    # (upcast: unknown), which decides whose supervisory authority a breach is reported to.
    SCHEMA_VERSION = 3
    subject_kind: tx.SubjectKind
    """who the person is to the company (see SubjectKind); each kind maps to a fideslang data subject"""
    channel: Name = "web"
    """where the person became known, e.g. web, app, api, invitation"""
    policy_version: Name | None = None
    """the privacy policy version the person accepted on registration (8)"""
    residence: Country | None = Field(
        default=None, description="country of residence (ISO 3166 alpha-2), if known"
    )


class SubjectClosed(EventData):
    """The account was closed (7.6); a legal hold may keep some categories for a while."""

    TYPE = "subject.closed"
    reason: Name = "user_request"
    """why the account was closed, e.g. user_request, inactivity"""
    request_id: Name | None = None
    """the closure request this answers (7.6), if any"""
    legal_hold_categories: list[CategoryKey] = Field(default_factory=list)
    """categories the law requires to keep after closure (6.3b)"""
    legal_hold_until: UtcTime | None = None
    """when the legal hold ends; those categories must be gone by then"""


# --- collection (section 2) ----------------------------------------------------------


class Source(BaseModel):
    """Where collected data came from (2.1.1 the person, 2.1.2 the device, 2.1.3 a third party)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
    kind: tx.SourceKind
    """who provided it (see SourceKind)"""
    party: Name | None = Field(default=None, description="third party the data came from")
    provenance_verified: bool | None = Field(
        default=None, description="the third party's legal source was confirmed (2.1.3)"
    )
    authorised_scope: list[UseKey] = Field(
        default_factory=list, description="uses the person authorised the third party to share for"
    )

    @model_validator(mode="after")
    def _third_party_fields(self) -> Source:
        if self.kind is tx.SourceKind.THIRD_PARTY:
            if not self.party:
                raise ValueError("party is required when kind is third_party")
            if self.provenance_verified is None:
                raise ValueError("provenance_verified is required when kind is third_party")
        return self


class DataCollected(EventData):
    """Personal data was collected and (unless transient) stored."""

    TYPE = "data.collected"
    categories: Categories
    """data categories collected (taxonomy keys, see below)"""
    source: Source
    """where the data came from (see Source)"""
    purpose: UseKey
    """the purpose it was collected for (a data use key); later uses for another purpose need consent (3.4)"""
    optional: bool = False
    """the person could refuse it and still use the service (2.1.1(1)c)"""
    legal_ground: tx.LegalGround | None = None
    """the ground for collecting without consent (3.5.x), if any"""
    consent_id: Name | None = None
    """the consent it relies on (2.1.1(4)), if any"""
    notice_ref: Name | None = Field(default=None, description="the notice shown (2.1.1(4))")
    mechanism: tx.Mechanism = tx.Mechanism.FORM
    """how it was collected (see Mechanism)"""
    store: Name = Field(description="system that keeps it, e.g. 'accounts-db'")
    store_location: Country
    """ISO 3166 country code of the store; outside CN needs a cross-border record (6.3c)"""
    backups: list[Name] = Field(default_factory=list, description="backup stores that also keep it")
    retention_days: int | None = Field(
        default=None, ge=0, le=MAX_RETENTION_DAYS,
        description="0 = not retained (compared, never stored); null = until closure; "
                    f"at most {MAX_RETENTION_DAYS} (100 years)"
    )
    protection: tx.Protection = tx.Protection.ENCRYPTED
    """how the stored value is protected at rest (see Protection); a password must be hashed or encrypted"""
    cross_border_ref: Name | None = Field(
        default=None, description="id of the cross-border disclosure for a store outside China"
    )

    @property
    def transient(self) -> bool:
        return self.retention_days == 0


class CollectionRefused(EventData):
    """The person declined to give optional data (2.1.1(1)c) or refused cookies (4.1)."""

    TYPE = "data.collection_refused"
    categories: Categories
    """the categories the person declined to give"""
    purpose: UseKey
    """the purpose they were asked for"""


class ServiceDenied(EventData):
    """A service was refused to the person; the reason lets 2.1.1(1)c be checked."""

    TYPE = "service.denied"
    service: Name
    """the service refused"""
    reason: Name
    """why, e.g. missing_optional_data, unverified"""
    missing_categories: list[CategoryKey] = Field(default_factory=list)
    """categories whose absence caused the refusal"""


class DataLinked(EventData):
    """Device or log data was joined to an account (2.1.2 note)."""

    TYPE = "data.linked"
    categories: Categories
    """device or log categories joined to the account"""
    purpose: UseKey
    """what the joined data is used for"""
    authorised: bool
    """the person authorised the joining (2.1.2 note)"""
    de_identified: bool
    """the joined data was de-identified"""


# --- use (section 3) ----------------------------------------------------------------


class DataUsed(EventData):
    """Personal data was used for a purpose."""

    TYPE = "data.used"
    categories: Categories
    """data categories used"""
    purpose: UseKey
    """what for (a data use key); an undeclared one needs consent (3.4b)"""
    system: Name
    """the system that used it, e.g. campaign-mailer"""
    legal_ground: tx.LegalGround | None = None
    """the ground for use without consent (3.5.x), if any"""
    consent_id: Name | None = None
    """the consent relied on, if any"""
    anonymised: bool = False
    """only anonymised aggregates were used (3.2a)"""
    message_kind: UseKey | None = Field(
        default=None, description="for a message sent: the subscription kind it belongs to"
    )


class DataCorrected(EventData):
    """Data was corrected (7.5)."""

    TYPE = "data.corrected"
    categories: Categories
    """the categories corrected"""
    store: Name
    """the store where they were corrected"""
    request_id: Name | None = None
    """the correction request this answers (7.5), if any"""


# --- sharing (section 5, 6.3d) -------------------------------------------------------


class CrossBorder(BaseModel):
    """What the person must be told before a transfer out of China (6.3d)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
    destination_country: Country
    """ISO 3166 country code of the recipient abroad"""
    recipient_name: str | None = None
    """the recipient's name, as told to the person"""
    recipient_contact: str | None = None
    """how to contact the recipient"""
    processing: str | None = None
    """how the recipient processes the data"""
    purpose: str | None = None
    """why the data leaves China"""
    categories: list[CategoryKey] = Field(default_factory=list)
    """the categories transferred"""
    rights_howto: str | None = None
    """how the person exercises their rights with the recipient"""

    REQUIRED: ClassVar[tuple[str, ...]] = (
        "recipient_name",
        "recipient_contact",
        "processing",
        "purpose",
        "categories",
        "rights_howto",
    )

    def missing(self) -> list[str]:
        return [f for f in self.REQUIRED if not getattr(self, f)]


class DataShared(EventData):
    """Personal data was shared with, entrusted to, transferred to or disclosed to another party."""

    TYPE = "data.shared"
    recipient: Name = Field(description="id of a registered recipient")
    recipient_kind: tx.RecipientKind
    """the recipient's relation to the company (see RecipientKind)"""
    categories: Categories
    """data categories disclosed"""
    purpose: UseKey
    """what the recipient may use them for"""
    clause: tx.SharingClause | None = None
    """the clause of policy section 5 relied on (see Sharing clauses)"""
    legal_ground: tx.LegalGround | None = None
    """a 5.3.x ground for disclosure without consent, if any"""
    consent_id: Name | None = None
    """the consent relied on, if any"""
    agreement_ref: Name | None = None
    """the agreement binding the recipient (confidentiality, purpose; 5.1, 6.3)"""
    cross_border: CrossBorder | None = None
    """for a transfer out of China: what the person was told (see CrossBorder)"""


class RecipientRegistered(EventData):
    """A third party that may receive data, and what it is contracted for."""

    TYPE = "recipient.registered"
    SUBJECT_REQUIRED = False
    recipient: Name
    """the recipient's id, used by data.shared"""
    name: Name
    """its legal name"""
    kind: tx.RecipientKind
    """its relation to the company (see RecipientKind)"""
    location: Country
    """ISO 3166 country code where it processes the data"""
    roles: list[tx.RecipientRole] = Field(default_factory=list)
    """what it is contracted for (see RecipientRole)"""
    allowed_purposes: list[UseKey] = Field(default_factory=list)
    """purposes its agreement allows"""
    allowed_categories: list[CategoryKey] = Field(default_factory=list)
    """categories its agreement allows"""
    agreement_ref: Name | None = None
    """the agreement binding it"""
    confidentiality: bool = True
    """the agreement binds it to confidentiality (5.1)"""


class RecipientInspected(EventData):
    """A recipient's handling of the data was checked (6.3: overseas recipients are held to
    confidentiality by agreement and on-site checks)."""

    TYPE = "recipient.inspected"
    SUBJECT_REQUIRED = False
    recipient: Name
    """the recipient inspected (as registered)"""
    method: Literal["on_site", "remote", "audit_report"] = "on_site"
    """how: an on-site check (what 6.3 names), a remote one, or a third-party audit report"""
    passed: bool = True
    """whether it met the agreement; a failed check is no check"""
    report_ref: Name | None = None
    """the inspection report"""


# --- staff access (6.2.1) ------------------------------------------------------------


class StaffAccessGranted(EventData):
    """A member of staff (or service) was put on the list of those allowed to read
    personal data (6.2.1: access is restricted to authorised staff)."""

    TYPE = "staff.access_granted"
    SUBJECT_REQUIRED = False
    actor: Name
    """the name the ledger's audit records carry (a principal, or a CLI user)"""
    role: Name | None = None
    """the role granted, if access is by role"""
    approved_by: Name | None = None
    """who approved it"""


class StaffAccessRevoked(EventData):
    """A member of staff was taken off the list of those allowed to read personal data."""

    TYPE = "staff.access_revoked"
    SUBJECT_REQUIRED = False
    actor: Name
    """the name taken off the list"""


# --- erasure (6.3, 7.6) --------------------------------------------------------------


class DataErased(EventData):
    """Data was deleted or anonymised in the named stores (backups are stores too)."""

    TYPE = "data.erased"
    categories: Categories
    """the categories erased or anonymised (\"user\": everything about the person)"""
    stores: Annotated[list[Name], Field(min_length=1)]
    """the stores (backups included) it was erased from"""
    method: tx.ErasureMethod = tx.ErasureMethod.ERASED
    """how (see ErasureMethod)"""
    reason: Name = "retention_expired"
    """why, e.g. retention_expired, account_closed, user_request"""
    request_id: Name | None = None
    """the erasure request this answers, if any"""


class RetentionExtended(EventData):
    """Data is kept longer than its retention period, with the person's consent or a legal
    permission (6.3: 除非经过您的同意延长保存期限或收到法律的允许)."""

    TYPE = "data.retention_extended"
    categories: Categories
    """the categories kept longer"""
    stores: list[Name] = Field(default_factory=list)
    """the stores they are kept in (empty: every store)"""
    until: UtcTime
    """the new end of their retention"""
    basis: Literal["consent", "law"]
    """consent: the person agreed (consent_id); law: a legal permission (legal_ref)"""
    consent_id: Name | None = None
    """the consent to keep the data longer, for basis consent"""
    legal_ref: Name | None = None
    """the law, order or hold that permits it, for basis law"""


class DataDeletedBySubject(EventData):
    """The person deleted some of their own data (6.3: 主动删除). As for closing the account,
    only a legal hold may be kept, never for commercial use, and the rest is erased."""

    TYPE = "data.deleted_by_subject"
    categories: Categories
    """the categories the person deleted"""
    legal_hold_categories: list[CategoryKey] = Field(default_factory=list)
    """those of them the law requires to be kept a while"""
    legal_hold_until: UtcTime | None = None
    """until when the law requires them (None: an open-ended hold)"""


# --- consent and preferences (3.2b, 3.3, 4, 7.3, 8) ----------------------------------


class ConsentGranted(EventData):
    TYPE = "consent.granted"
    consent_id: Name
    """the consent's id, named by later uses and withdrawals"""
    purpose: UseKey
    """the purpose consented to (a data use key)"""
    policy_version: Name
    """the policy version the consent was given under (8)"""
    categories: list[CategoryKey] = Field(default_factory=list)
    """the categories it covers (empty: those the purpose needs)"""
    notice_ref: Name | None = None
    """the notice the person was shown"""
    cross_border: CrossBorder | None = None
    """for consent to a transfer out of China: what the person was told (6.3d)"""


class ConsentWithdrawn(EventData):
    TYPE = "consent.withdrawn"
    consent_id: Name
    """the consent withdrawn"""
    purpose: UseKey
    """its purpose"""


class SubscriptionChanged(EventData):
    """Subscribed or unsubscribed from a message kind; opting out of marketing or tracking."""

    TYPE = "subscription.changed"
    kind: UseKey
    """the message or tracking kind (a data use key among the subscription kinds)"""
    subscribed: bool
    """true: subscribed; false: opted out (3.3, 4.2, 7.3)"""

    @model_validator(mode="after")
    def _kind(self) -> SubscriptionChanged:
        if self.kind not in tx.SUBSCRIPTION_KINDS:
            raise ValueError(f"kind {self.kind!r} is not a subscription kind")
        return self


class PolicyPublished(EventData):
    TYPE = "policy.published"
    SUBJECT_REQUIRED = False
    policy_version: Name
    """the new policy version"""
    effective_at: UtcTime
    """when it takes effect; a material change must be notified before (8)"""
    material: bool = False
    """the change reduces the person's rights or widens collection or use (8)"""
    summary: str = ""
    """what changed"""


class PolicyNoticeSent(EventData):
    TYPE = "policy.notice_sent"
    policy_version: Name
    """the version the notice announces"""
    channel: Literal["email", "sms", "push", "announcement"]
    """how the person was told"""


# --- rights requests (7, 9.2) --------------------------------------------------------


class RequestReceived(EventData):
    TYPE = "request.received"
    request_id: Name
    """the request's id"""
    kind: tx.RequestKind
    """what is asked (see RequestKind)"""
    due: UtcTime | None = Field(default=None, description="deadline; default set by the ledger")
    categories: list[CategoryKey] = Field(default_factory=list)
    """the categories concerned, if the request names them"""


class RequestIdentityVerified(EventData):
    TYPE = "request.identity_verified"
    request_id: Name
    """the request"""
    method: Name
    """how the identity was verified, e.g. sms_code, id_document (9.2)"""


class RequestFulfilled(EventData):
    TYPE = "request.fulfilled"
    request_id: Name
    """the request fulfilled"""


class RequestRefused(EventData):
    TYPE = "request.refused"
    request_id: Name
    """the request refused"""
    reason: Name
    """why, e.g. identity_not_verified"""


class RequestLinked(EventData):
    """The ledger event that carried a request out (the erasure, the audited export)."""

    TYPE = "request.linked"
    request_id: Name
    """the rights request"""
    action: Literal["export", "erase", "correct"]
    """what was done for it"""
    event_id: Name = Field(description="id of the ledger event that carried it out")


# --- incidents (6.2.1) ---------------------------------------------------------------


class IncidentOpened(EventData):
    TYPE = "incident.opened"
    SUBJECT_REQUIRED = False
    incident_id: Name
    """the incident's id"""
    description: str
    """what happened"""
    stores: Annotated[list[Name], Field(min_length=1)]
    """the stores or systems exposed"""
    window_start: UtcTime
    """start of the exposure window"""
    window_end: UtcTime
    """end of the exposure window"""
    categories: list[CategoryKey] = Field(default_factory=list)
    """the categories exposed (empty: all)"""

    @model_validator(mode="after")
    def _window(self) -> IncidentOpened:
        if self.window_end < self.window_start:
            raise ValueError("window_end is before window_start")
        return self


class IncidentStep(EventData):
    """Base of an incident's steps after its opening: about the incident, not a person."""

    SUBJECT_REQUIRED = False
    incident_id: Name
    """the incident"""


class IncidentReported(IncidentStep):
    TYPE = "incident.reported"
    SCHEMA_VERSION = 2  # v2 added duty (upcast: none named)
    authority: Name
    """the authority reported to, under the national emergency plan (6.2.1)"""
    duty: Name | None = Field(
        default=None, description="the reporting duty this report discharges, e.g. cac_report"
    )


class IncidentSubjectNotified(EventData):
    TYPE = "incident.subject_notified"
    incident_id: Name
    """the incident"""
    channel: Literal["email", "sms", "push", "announcement"]
    """how the person was told"""


class IncidentClosed(EventData):
    TYPE = "incident.closed"
    SUBJECT_REQUIRED = False
    incident_id: Name
    """the incident closed"""


class IncidentContingencyStarted(IncidentStep):
    """The contingency plan (应急预案) was started for the incident (6.2.1)."""

    TYPE = "incident.contingency_started"
    plan: Name
    """the contingency plan started, e.g. its document reference"""


class IncidentContained(IncidentStep):
    """The incident's spread was stopped (阻止安全事件扩大, 6.2.1)."""

    TYPE = "incident.contained"
    measures: Annotated[str, StringConstraints(min_length=1, max_length=4000,
                                               strip_whitespace=True)]
    """what was done to stop it, e.g. bucket made private, keys rotated"""


class IncidentAdviceGiven(IncidentStep):
    """Security advice (安全处理建议) was given to the people affected (6.2.1)."""

    TYPE = "incident.advice_given"
    channel: Name
    """how it was given, e.g. email, push, announcement"""
    advice_ref: Name | None = None
    """the advice text's reference, e.g. the notice draft's digest"""


Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Count = Annotated[int, Field(ge=0)]


class IncidentScoped(IncidentStep):
    """The incident's scope was taken from the ledger; the snapshot is cited by its hash."""

    TYPE = "incident.scoped"
    snapshot_hash: Sha256 = Field(description="SHA-256 of the snapshot's canonical JSON")
    people: Count
    """people affected"""
    records: Count
    """records affected (a category of a person in a store)"""
    reachable: Count
    """affected people the company can contact"""
    unreachable: Count
    """affected people it cannot contact"""
    erased: Count
    """affected people whose key was destroyed"""
    people_with_sensitive_data: Count = 0
    """affected people with PIPL-sensitive data"""
    cross_border_people: Count = 0
    """affected people whose data went abroad"""
    residence: dict[str, Count] = Field(
        default_factory=dict, description="people per country of residence ('unknown' too)"
    )


class IncidentGraded(IncidentStep):
    """The incident's grade under the CAC measures: computed from the scope, or judged."""

    TYPE = "incident.graded"
    grade: Literal["especially_major", "major", "relatively_major", "general"]
    """the grade under the CAC incident measures"""
    basis: Literal["threshold", "judgment"]
    """computed from thresholds, or a judgment"""
    justification: str | None = Field(default=None, max_length=4000)
    """why, for a judgment"""
    snapshot_hash: Sha256
    """SHA-256 of the scope snapshot graded"""
    duties: list[Name] = Field(default_factory=list, description="reporting duties that apply")

    @model_validator(mode="after")
    def _judged(self) -> IncidentGraded:
        if self.basis == "judgment" and not (self.justification or "").strip():
            raise ValueError("justification is required when the grade is a judgment")
        return self


class IncidentExemptionRecorded(IncidentStep):
    """A duty does not apply to this incident, and why (instead of a report)."""

    TYPE = "incident.exemption_recorded"
    duty: Name
    """the duty that does not apply"""
    justification: Annotated[str, StringConstraints(min_length=10, max_length=4000,
                                                    strip_whitespace=True)]
    """why it does not apply"""


class IncidentNoticeDrafted(IncidentStep):
    """A notice or report was drafted from a scope snapshot (the draft stays outside the log)."""

    TYPE = "incident.notice_drafted"
    draft: Literal["notice_zh", "notice_en", "report_cac", "report_gdpr"]
    """which notice or report"""
    snapshot_hash: Sha256
    """SHA-256 of the scope snapshot it was drafted from"""
    digest: Sha256 = Field(description="SHA-256 of the rendered Markdown")


class IncidentNoticesSent(IncidentStep):
    """The notice to individuals went out (each person's also an incident.subject_notified)."""

    TYPE = "incident.notices_sent"
    duty: Name = Field(description="the notice duty it discharges, e.g. pipl57_individuals")
    channel: Name
    """how the people were told"""
    people: Count
    """how many people were told"""


class IncidentAnnounced(IncidentStep):
    """A public announcement (公告) was made for the people who cannot be contacted."""

    TYPE = "incident.announced"
    channel: Name = Field(description="where it was published, e.g. website")
    people: Count = Field(description="unreachable and erased people it stands in for")
    snapshot_hash: Sha256
    """SHA-256 of the scope snapshot it rests on"""


# --- the ledger's own audit trail (6.2.1b) -------------------------------------------


class LedgerQueried(EventData):
    """Somebody queried the ledger: access to personal information is itself recorded."""

    TYPE = "ledger.queried"
    SCHEMA_VERSION = 2  # v2: role, people, reason, clear (upcast from v1's arguments)
    SUBJECT_REQUIRED = False
    actor: Name = Field(description="who asked: the authenticated principal, or the CLI user")
    role: Name | None = Field(default=None, description="the principal's role (None: CLI)")
    query: Name
    """the query, e.g. subject, disclosures, findings"""
    arguments: dict[str, str] = Field(default_factory=dict)
    """its arguments; a person appears by pseudonym, never by real identifier"""
    people: Annotated[list[Name], Field(max_length=1000)] = Field(
        default_factory=list, description="pseudonyms of the people whose data was read")
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = Field(
        default=None, description="why: a ticket or reason the reader gave")
    clear: bool = Field(default=False, description="whether clear personal values were read")


DATA_MODELS: tuple[type[EventData], ...] = (
    SubjectRegistered,
    SubjectClosed,
    DataCollected,
    CollectionRefused,
    ServiceDenied,
    DataLinked,
    DataUsed,
    DataCorrected,
    DataShared,
    RecipientRegistered,
    RecipientInspected,
    StaffAccessGranted,
    StaffAccessRevoked,
    DataErased,
    RetentionExtended,
    DataDeletedBySubject,
    ConsentGranted,
    ConsentWithdrawn,
    SubscriptionChanged,
    PolicyPublished,
    PolicyNoticeSent,
    RequestReceived,
    RequestIdentityVerified,
    RequestFulfilled,
    RequestRefused,
    RequestLinked,
    IncidentOpened,
    IncidentReported,
    IncidentSubjectNotified,
    IncidentClosed,
    IncidentContingencyStarted,
    IncidentContained,
    IncidentAdviceGiven,
    IncidentScoped,
    IncidentGraded,
    IncidentExemptionRecorded,
    IncidentNoticeDrafted,
    IncidentNoticesSent,
    IncidentAnnounced,
    LedgerQueried,
)

EVENT_TYPES: dict[str, type[EventData]] = {m.TYPE: m for m in DATA_MODELS}

def dataschema_uri(event_type: str, version: int) -> str:
    return f"urn:pdl:schema:{event_type}:{version}"


class Event(BaseModel):
    """A CloudEvents 1.0 envelope around one event's data (envelope 2).

    On the wire ``subject`` is the person's real identifier and ``data.personal`` holds
    identifying values in clear. In the log ``subject`` is the keyed pseudonym and the
    values are replaced by ``sealed``, an AES-GCM token under the person's own key.
    Every attribute but ``data`` is a scalar, as CloudEvents requires of extensions.
    Envelope 1 (``personal`` at the top level, ``id`` and ``specversion`` optional) is
    upcast by ``schemas.codec``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    specversion: Literal["1.0"] = Field(description="CloudEvents version")
    id: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="unique event id (a retry keeps it); see 'Ids' below for id-less producers"
    )
    source: Name = Field(description="the service that did it, e.g. svc/accounts")
    type: str = Field(description="the event type, one of those below")
    time: UtcTime = Field(description="when it happened, with a UTC offset")
    subject: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None, description="wire: the person's real id; in the log: the keyed pseudonym"
    )
    datacontenttype: Literal["application/json"] = Field(
        default="application/json", description="always application/json"
    )
    dataschema: str | None = Field(default=None, description="urn:pdl:schema:TYPE:VERSION")
    schemaversion: int = Field(default=1, ge=1, le=MAX_SCHEMA_VERSION,
                               description="schema version of data; older ones are upcast")
    data: EventData
    sealed: str | None = Field(
        default=None, description="log only: AES-GCM token of the values under the person's key"
    )
    publisher: Name | None = Field(
        default=None,
        description="log only: the authenticated principal that published it over HTTP; "
        "set by the ledger, refused from a producer",
    )
