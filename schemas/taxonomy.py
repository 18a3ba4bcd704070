"""The vocabulary events are written in: data categories, data uses, legal grounds, clauses.

Category and use keys follow fideslang's taxonomy (``user.contact.email``,
``marketing.communications.email``). Keys the policy needs and fideslang lacks are our
documented extensions (``EXTENSION``); ``tests/test_taxonomy.py`` checks every other key
against the ``fideslang`` package itself.

Each category carries the PIPL "sensitive personal information" flag (PIPL art. 28:
biometrics, identity numbers, financial accounts, precise location, minors' data, ...),
which breach scope counts, and separately the policy's own word: 2.1.1(1) calls the
registration data (username, e-mail, phone number, SMS code, password) 个人敏感信息
(``policy_sensitive``), which the data map shows.

Every extension hangs under a fideslang key (its parent, or its parent's parent, is in
fideslang's default taxonomy): ``tests/test_fides.py`` loads that taxonomy and checks it.
Keys retired from the wire (``RENAMED_CATEGORIES``) are rewritten when old events are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

FIDESLANG: Final = "fideslang"
EXTENSION: Final = "pdl-extension"


@dataclass(frozen=True)
class Category:
    """A data category: its taxonomy key, what it is, and whether PIPL deems it sensitive."""

    key: str
    description: str
    sensitive: bool = False
    origin: str = FIDESLANG
    #: The policy itself calls it 个人敏感信息 (2.1.1(1)), PIPL or not.
    policy_sensitive: bool = False


def _c(key: str, description: str, sensitive: bool = False, ext: bool = False,
       policy_sensitive: bool = False) -> Category:
    return Category(key, description, sensitive, EXTENSION if ext else FIDESLANG,
                    policy_sensitive or sensitive)


_CATEGORY_LIST: Final[tuple[Category, ...]] = (
    _c("user", "Every category of data about the person (used by whole-person erasure)"),
    # Registration (2.1.1(1))
    _c("user.account", "Account data"),
    _c("user.account.username", "User name", policy_sensitive=True),
    _c("user.unique_id", "Account identifier assigned by the service"),
    _c("user.unique_id.pseudonymous", "Pseudonymous identifier"),
    _c("user.contact", "Contact data"),
    _c("user.contact.email", "E-mail address", policy_sensitive=True),
    _c("user.contact.phone_number", "Mobile phone number", policy_sensitive=True),
    _c("user.contact.address", "Postal address"),
    _c("user.contact.organization", "Company name"),
    _c("user.authorization.password", "Account password (must be stored hashed or encrypted)",
       policy_sensitive=True),
    _c("user.authorization.credentials", "Login credentials and tokens"),
    _c("user.authorization.verification_code", "SMS / e-mail verification code", ext=True,
       policy_sensitive=True),
    # Profile (optional, 2.1.1(1)c)
    _c("user.name", "Real name"),
    _c("user.workplace", "Employer / company of the contact"),
    _c("user.job_title", "Job title"),
    _c("user.demographic.industry", "Industry of the user or company", ext=True),
    # Real-name verification (2.1.1(2))
    _c("user.biometric", "Biometric data", sensitive=True),
    _c("user.biometric.face", "Face image / face template used for recognition", True, ext=True),
    _c("user.government_id", "Government identity data", sensitive=True),
    _c("user.government_id.national_identification_number", "Resident ID number", True),
    _c("user.government_id.id_photo", "Photos of identity documents", True, ext=True),
    _c("user.government_id.enterprise_credit_code", "Unified social credit code", ext=True),
    _c("user.government_id.business_licence", "Scans of business licences", ext=True),
    # Payments and invoices (2.1.1(3))
    _c("user.financial", "Financial data", sensitive=True),
    _c("user.financial.bank_account", "Bank account", sensitive=True),
    _c("user.financial.credit_card", "Payment card", sensitive=True),
    _c("user.financial.payment_password", "Payment password", True, ext=True),
    _c("user.financial.payment_record", "Top-up, withdrawal and payment records", True, ext=True),
    _c("user.financial.invoice", "Invoice title, tax number and mailing details", ext=True),
    # Promotions (2.1.1(4))
    _c("user.government_id.special_status", "Proof of a special status for a promotion", True, ext=True),
    # Collected in use (2.1.2)
    _c("user.device", "Device data"),
    _c("user.device.device_id", "Device identifier"),
    _c("user.device.ip_address", "IP address"),
    _c("user.device.cookie", "Cookie contents"),
    _c("user.device.cookie_id", "Cookie identifier"),
    _c("user.behavior", "Behavioural data"),
    _c("user.behavior.browsing_history", "Pages visited and access times"),
    _c("user.behavior.search_history", "Search queries"),
    _c("user.telemetry", "Service logs: browser, carrier, language, access times"),
    _c("user.location", "Location data"),
    _c("user.location.imprecise", "Area id, ISP id"),
    _c("user.location.precise", "GPS / Wi-Fi location", sensitive=True),
    _c("user.content.support_ticket", "Support tickets and troubleshooting records", ext=True),
    _c("user.demographic.language", "Language setting"),
    _c("user.privacy_preferences", "Privacy and subscription preferences"),
    _c("user.childrens", "Data of a minor", sensitive=True),
    _c("user.social.invitation", "An invited friend's contact (the friend is a subject)", ext=True),
    # Out of scope (1.3): never to be recorded; present so the finding can name it. Under
    # fideslang's user.content.private (content created by the person, not public); it was
    # customer.content, which has no fideslang parent.
    _c("user.content.private.customer_data",
       "Customer data stored or processed on the cloud (out of scope, 1.3)", ext=True),
)

#: Retired category keys and their replacements: an old event naming one is read (and a
#: producer still sending one is accepted) as naming the new key.
RENAMED_CATEGORIES: Final[dict[str, str]] = {
    "customer.content": "user.content.private.customer_data",
}

CATEGORIES: Final[dict[str, Category]] = {c.key: c for c in _CATEGORY_LIST}

#: Categories that may only be used or shared for identity verification (2.1.1(2)b, (2)c).
VERIFICATION_ONLY: Final = frozenset(
    {
        "user.biometric.face",
        "user.government_id.national_identification_number",
        "user.government_id.id_photo",
        "user.government_id.enterprise_credit_code",
        "user.government_id.business_licence",
    }
)
#: Of those, the enterprise verification data (2.1.1(2)c): findings on them name 2.1.1(2)c.
ENTERPRISE_VERIFICATION: Final = frozenset(
    {"user.government_id.enterprise_credit_code", "user.government_id.business_licence"}
)
#: Real-name data: changing it needs identity verification (7.1).
REAL_NAME_CATEGORIES: Final = frozenset({"user.name", "user.government_id"})
#: Categories never given to third parties other than payment / invoice processors (2.1.1(3)b).
PAYMENT_CATEGORIES: Final = frozenset(
    {
        "user.financial.bank_account",
        "user.financial.credit_card",
        "user.financial.payment_password",
        "user.financial.payment_record",
        "user.financial.invoice",
    }
)
BIOMETRIC_CATEGORIES: Final = frozenset({"user.biometric", "user.biometric.face"})
PASSWORD_CATEGORIES: Final = frozenset(
    {"user.authorization.password", "user.financial.payment_password"}
)
CUSTOMER_DATA: Final = "user.content.private.customer_data"
OUT_OF_SCOPE_CATEGORIES: Final = frozenset({CUSTOMER_DATA})


@dataclass(frozen=True)
class Use:
    """A data use (purpose) and whether the privacy policy declares it (3.4b)."""

    key: str
    description: str
    declared: bool = True
    origin: str = FIDESLANG


def _u(key: str, description: str, declared: bool = True, ext: bool = False) -> Use:
    return Use(key, description, declared, EXTENSION if ext else FIDESLANG)


_USE_LIST: Final[tuple[Use, ...]] = (
    _u("essential.service", "Providing the cloud services"),
    _u("essential.service.authentication", "Registration and login (2.1.1(1))"),
    _u("essential.service.notifications", "Service notices (3.1)"),
    _u("essential.service.notifications.email", "Service notices by e-mail"),
    _u("essential.service.notifications.sms", "Service notices and codes by SMS"),
    _u("essential.service.operations", "Operating the service"),
    _u("essential.service.operations.support", "Support tickets (3.1)"),
    _u("essential.service.operations.improve", "Improving the service (3.2)"),
    _u("essential.service.payment_processing", "Payments, top-ups and withdrawals (2.1.1(3))"),
    _u("essential.service.invoicing", "Issuing and mailing invoices (2.1.1(3))", ext=True),
    _u("essential.service.identity_verification", "Real-name verification (2.1.1(2))", ext=True),
    _u("essential.service.security", "Security (3.4)"),
    _u("essential.fraud_detection", "Fraud prevention (3.4)"),
    _u("essential.legal_obligation", "Legal obligations"),
    _u("functional.service.improve", "Product improvement (3.2)"),
    _u("functional.service.invitation", "Inviting a friend (3.1)", ext=True),
    _u("functional.service.community", "Community features (3.1)", ext=True),
    _u("functional.storage.privacy_preferences", "Remembering preferences (cookies, 4.1)"),
    _u("analytics.reporting", "Aggregate analytics (3.2)"),
    _u("analytics.reporting.campaign_insights", "E-mail web beacons and pixels (4.2)"),
    _u("personalize.profiling", "Profiling by matching third-party data (3.2b)"),
    _u("marketing.communications", "Marketing (3.3)"),
    _u("marketing.communications.email", "Marketing by e-mail (3.3)"),
    _u("marketing.communications.sms", "Marketing by SMS or phone (3.3)"),
    _u("marketing.promotion", "Promotion-specific identity checks (2.1.1(4))", ext=True),
    # Purposes the policy does not declare: allowed only with prior consent (3.4b)
    _u("marketing.advertising.third_party", "Third-party advertising", declared=False),
    _u("train_ai_system", "Training AI systems", declared=False),
    _u("sales", "Selling data", declared=False),
    _u("personalize.content", "Content personalisation", declared=False),
)

USES: Final[dict[str, Use]] = {u.key: u for u in _USE_LIST}

PROFILING_USES: Final = frozenset({"personalize.profiling"})
MARKETING_USES: Final = frozenset(
    {"marketing.communications", "marketing.communications.email", "marketing.communications.sms"}
)
TRACKING_USES: Final = frozenset({"analytics.reporting.campaign_insights"})
ANALYTICS_USES: Final = frozenset({"analytics.reporting", "functional.service.improve"})
VERIFICATION_USES: Final = frozenset({"essential.service.identity_verification"})
PAYMENT_USES: Final = frozenset(
    {"essential.service.payment_processing", "essential.service.invoicing"}
)
#: Uses that are commercial, so forbidden after account closure (6.3b).
COMMERCIAL_USES: Final = MARKETING_USES | PROFILING_USES | TRACKING_USES | frozenset(
    {"marketing.advertising.third_party", "sales", "personalize.content", "marketing.promotion"}
)


class LegalGround(StrEnum):
    """Grounds for use without consent (3.5.1-3.5.10) and disclosure without it (5.3.1-5.3.7)."""

    USE_NATIONAL_SECURITY = "3.5.1"
    USE_PUBLIC_SAFETY = "3.5.2"
    USE_CRIMINAL_INVESTIGATION = "3.5.3"
    USE_VITAL_INTERESTS = "3.5.4"
    USE_SELF_PUBLISHED = "3.5.5"
    USE_LAWFULLY_PUBLIC = "3.5.6"
    USE_CONTRACT = "3.5.7"
    USE_SERVICE_SECURITY = "3.5.8"
    USE_ANONYMISED = "3.5.9"
    USE_OTHER_LAW = "3.5.10"
    DISCLOSE_LEGAL_OBLIGATION = "5.3.1"
    DISCLOSE_NATIONAL_SECURITY = "5.3.2"
    DISCLOSE_PUBLIC_SAFETY = "5.3.3"
    DISCLOSE_CRIMINAL_INVESTIGATION = "5.3.4"
    DISCLOSE_VITAL_INTERESTS = "5.3.5"
    DISCLOSE_SELF_PUBLISHED = "5.3.6"
    DISCLOSE_LAWFULLY_PUBLIC = "5.3.7"


USE_GROUNDS: Final = frozenset(g for g in LegalGround if g.value.startswith("3.5."))
DISCLOSURE_GROUNDS: Final = frozenset(g for g in LegalGround if g.value.startswith("5.3."))


class SharingClause(StrEnum):
    """The clause of policy section 5 a disclosure relies on."""

    SERVICE_NEEDS = "5.1.1"
    AGREEMENT_DUTIES = "5.1.2"
    PARTNERS = "5.1.3"
    JOINT_PRODUCTS = "5.1.4"
    CORPORATE_TRANSFER = "5.2"
    LEGAL_OBLIGATION = "5.3.1"
    NATIONAL_SECURITY = "5.3.2"
    PUBLIC_SAFETY = "5.3.3"
    CRIMINAL_INVESTIGATION = "5.3.4"
    VITAL_INTERESTS = "5.3.5"
    SELF_PUBLISHED = "5.3.6"
    LAWFULLY_PUBLIC = "5.3.7"


class RecipientKind(StrEnum):
    """A recipient's relation to the company (section 5): affiliate, service provider, agent,
    partner (5.1), acquirer (5.2), authority (5.3), or an unrelated third party."""

    AFFILIATE = "affiliate"
    SERVICE_PROVIDER = "service_provider"
    AGENT = "agent"
    PARTNER = "partner"
    ACQUIRER = "acquirer"
    AUTHORITY = "authority"
    UNRELATED = "unrelated_third_party"


class RecipientRole(StrEnum):
    """What a registered recipient is contracted for (2.1.1(3)b checks PAYMENT / INVOICE)."""

    PAYMENT_PROCESSOR = "payment_processor"
    INVOICE_PROCESSOR = "invoice_processor"
    SMS_GATEWAY = "sms_gateway"
    EMAIL_GATEWAY = "email_gateway"
    IDENTITY_VERIFIER = "identity_verifier"
    CLOUD_HOSTING = "cloud_hosting"
    ANALYTICS = "analytics"
    ADVERTISING = "advertising"
    REGULATOR = "regulator"
    OTHER = "other"


class SourceKind(StrEnum):
    """Who provided collected data: the person (2.1.1), their device while using the
    service (2.1.2), or a third party (2.1.3)."""

    SUBJECT = "subject"  # the person typed or uploaded it
    DEVICE = "device"  # collected automatically while using the service
    THIRD_PARTY = "third_party"  # 2.1.3


class SubjectKind(StrEnum):
    """Who the person is to the company (1.2); each maps to a fideslang data subject."""

    USER = "user"
    ENTERPRISE_CONTACT = "enterprise_contact"
    NON_USER = "non_user"  # e.g. an invited friend


#: The fideslang data subject of each kind: users and the contacts of enterprise customers
#: are ``customer`` ("an individual or other organization that purchases goods or
#: services"); a non-user (an invited friend) is a ``prospect`` ("to whom an organization
#: is selling"). The kind itself stays in the ledger's events.
FIDES_DATA_SUBJECTS: Final[dict[SubjectKind, str]] = {
    SubjectKind.USER: "customer",
    SubjectKind.ENTERPRISE_CONTACT: "customer",
    SubjectKind.NON_USER: "prospect",
}


class Mechanism(StrEnum):
    """How data was collected: a form, an SDK, server logs, a cookie, a web beacon or pixel
    (4.2), an API, a bulk import, or a face scan (2.1.1(2), never stored)."""

    FORM = "form"
    SDK = "sdk"
    SERVER_LOG = "server_log"
    COOKIE = "cookie"
    WEB_BEACON = "web_beacon"
    API = "api"
    IMPORT = "import"
    FACE_SCAN = "face_scan"


class Protection(StrEnum):
    """How a stored value is protected at rest (2.1.1(1)a, 4.1)."""

    PLAIN = "plain"
    HASHED = "hashed"
    ENCRYPTED = "encrypted"
    DE_IDENTIFIED = "de_identified"


class ErasureMethod(StrEnum):
    """How data was removed: deleted, anonymised (6.3), or made unreadable by destroying
    the person's key (crypto-shredding, ``pdl erase``)."""

    ERASED = "erased"
    ANONYMISED = "anonymised"
    CRYPTO_SHREDDED = "crypto_shredded"


class RequestKind(StrEnum):
    """What a rights request asks (7.1-7.6, 3.2b): access, correction, erasure, account
    closure, withdrawal of consent, or a complaint (9.1)."""

    ACCESS = "access"
    CORRECTION = "correction"
    ERASURE = "erasure"
    CLOSURE = "closure"
    CONSENT_WITHDRAWAL = "consent_withdrawal"
    COMPLAINT = "complaint"


#: Country code of stores inside mainland China (6.3c).
DOMESTIC_LOCATION: Final = "CN"

#: Message kinds a person can subscribe to or opt out of (3.3, 4.1, 4.2, 7.3): the data-use
#: keys of marketing and tracking, plus cookies.
SUBSCRIPTION_KINDS: Final = frozenset(
    MARKETING_USES
    | TRACKING_USES
    | {
        "essential.service.notifications.email",
        "essential.service.notifications.sms",
        "functional.storage.privacy_preferences",
        "personalize.profiling",
    }
)


def is_category(key: str) -> bool:
    return key in CATEGORIES


def is_sensitive(key: str) -> bool:
    """True if the category, or any category it is a part of, is PIPL-sensitive."""
    while key:
        cat = CATEGORIES.get(key)
        if cat is not None and cat.sensitive:
            return True
        key = key.rpartition(".")[0]
    return False


def is_policy_sensitive(key: str) -> bool:
    """True if the policy calls the category sensitive (2.1.1(1)) or PIPL does."""
    cat = CATEGORIES.get(key)
    return (cat is not None and cat.policy_sensitive) or is_sensitive(key)


def covers(parent: str, child: str) -> bool:
    """True if taxonomy key ``parent`` is ``child`` or one of its ancestors."""
    return child == parent or child.startswith(parent + ".")
