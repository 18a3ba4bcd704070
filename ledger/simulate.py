"""A realistic, deterministic workload: the privacy policy's life cycle for N people.

``simulate(people, seed)`` yields JSON Lines in the wire format (each line passes
``schemas.parse_wire``) for a Chinese edge-cloud provider (object storage, cloud hosts, CDN):
the policy and its processors once, then per person registration, optional profile,
real-name verification, payments and invoices, device and log data, uses, marketing and
opt-outs, profiling consents, a few cross-border transfers, rights requests, closures,
retention expiries, a material policy change with notices, and one security incident.

About 2 % of people also break a promise, so that compliance checks have something to find.
``VIOLATIONS`` names each kind and its clause in ``COMMITMENTS.md``; ``planted(people)``
says who breaks what. Everyone else keeps every promise.

Properties the tests rely on:

- deterministic: the same ``(people, seed, start)`` gives byte-identical output; every event
  carries an explicit UUIDv7 ``id`` built from its time and the seeded RNG;
- time-ordered: ``time`` never decreases from one line to the next;
- streaming with flat memory: people arrive one after another (at most
  ``MAX_SIGNUPS_PER_DAY`` a day) and each person's plan is kept only until its last event, in
  a heap keyed by the next event's time. Memory is bounded by the people whose life is still
  in progress, not by ``people``; a million events take well under 150 MB.

Generated values are fictitious by construction: names are random combinations of common
surnames and given names, e-mail domains end in the reserved ``.example``, IP addresses come
from the documentation ranges (RFC 5737), and identity numbers use the unassigned area code
``99`` so they cannot be anybody's.
"""

from __future__ import annotations

import heapq
import json
import random
import time as _time
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any

from schemas.codec import uuid7

__all__ = [
    "DEFAULT_START",
    "MAX_SIGNUPS_PER_DAY",
    "RECIPIENTS",
    "VIOLATIONS",
    "Violation",
    "account_id",
    "planted",
    "simulate",
]

SEC = 1000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
YEAR = 365 * DAY
BEIJING = 8 * HOUR  # UTC+8, no daylight saving

DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
#: Sign-ups are spread over about half a year, but never more than this many a day: the
#: number of lives in progress (and so memory) stays bounded however many people there are.
MAX_SIGNUPS_PER_DAY = 40
SIGNUP_SPAN_DAYS = 180
#: Share of people who break a promise (at least one violator per kind for people >= 200).
VIOLATOR_SHARE = 0.02

V1, V2 = "v1", "v2"
V2_PUBLISHED = 165 * DAY  # offsets from the start of the simulation
V2_EFFECTIVE = 195 * DAY
INCIDENT_OPENED = 250 * DAY + 3 * HOUR
INCIDENT_WINDOW = (248 * DAY, 250 * DAY)
CAMPAIGN_EVERY = 45 * DAY  # marketing e-mail campaigns
LOG_RETENTION_DAYS = 180
TICKET_RETENTION_DAYS = 365
SHORT_RETENTION_DAYS = 30  # invitations, promotion proofs
LEGAL_HOLD = 3 * YEAR  # payment records after closure (e-commerce / tax law)
REQUEST_DEADLINE = 15 * DAY

# --- violations ------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """A kind of broken promise the generator plants, and the clause it breaks."""

    clause: str
    promise: str
    planted: str


VIOLATIONS: dict[str, Violation] = {
    "customer_content_recorded": Violation(
        "1.3", "customer data is out of scope",
        "a support collection of customer data (user.content.private.customer_data)"),
    "password_stored_plain": Violation(
        "2.1.1(1)a", "passwords are stored hashed or encrypted",
        "the registration password collected with protection=plain"),
    "service_denied_after_refusal": Violation(
        "2.1.1(1)c", "refusing optional profile data does not block the service",
        "service.denied naming the profile categories the person refused"),
    "face_data_stored": Violation(
        "2.1.1(2)a", "face data is compared, never stored",
        "a face_scan collection with retention_days=365 in kyc-vault"),
    "id_number_used_for_marketing": Violation(
        "2.1.1(2)b", "ID numbers are used only for real-name verification",
        "data.used of the national ID number for marketing.communications"),
    "id_number_shared_not_for_verification": Violation(
        "2.1.1(2)b", "ID numbers are shared only for real-name verification",
        "data.shared of the national ID number with the payment processor for payments"),
    "payment_data_to_ad_tech": Violation(
        "2.1.1(3)b", "payment data never goes to unrelated third parties",
        "data.shared of payment records with the ad-tech company"),
    "promotion_data_without_consent": Violation(
        "2.1.1(4)", "promotion identity data only after notice and consent",
        "a marketing.promotion collection with no consent"),
    "linked_without_authorisation": Violation(
        "2.1.2-note", "device data joined to an account is authorised or de-identified",
        "data.linked with authorised=false and de_identified=false, then used"),
    "third_party_data_unverified": Violation(
        "2.1.3", "third-party data is used only once its source is verified",
        "a third-party collection with provenance_verified=false, then used"),
    "non_anonymised_analytics": Violation(
        "3.2a", "product analytics uses anonymised aggregates",
        "data.used for analytics.reporting with anonymised=false and no consent"),
    "profiling_without_consent": Violation(
        "3.2b", "profiling only with consent",
        "data.used for personalize.profiling with no consent"),
    "profiling_after_withdrawal": Violation(
        "3.2b", "the user can withdraw profiling consent at any time",
        "data.used for personalize.profiling citing a withdrawn consent"),
    "marketing_after_opt_out": Violation(
        "3.3", "the user can unsubscribe from marketing at any time",
        "a marketing e-mail after subscription.changed(subscribed=false)"),
    "undeclared_purpose_without_consent": Violation(
        "3.4b", "a purpose not in the policy needs prior consent",
        "data.used for train_ai_system with no consent"),
    "tracking_after_unsubscribe": Violation(
        "4.2", "unsubscribing from mailings stops e-mail tracking",
        "a campaign_insights use after the marketing e-mail opt-out"),
    "disclosure_without_clause_or_consent": Violation(
        "5.0", "no sharing without consent except under 5.1-5.3",
        "data.shared with the analytics partner with neither clause nor consent"),
    "held_past_retention": Violation(
        "6.3a", "data is erased once its retention period ends",
        "a collection with retention_days=30 that is never erased"),
    "erasure_skipped_backup": Violation(
        "6.3a", "expired data is erased from source and backup stores",
        "a retention erasure of log data that leaves out log-lake-backup"),
    "store_outside_china": Violation(
        "6.3c", "data collected in China is stored in China",
        "a log collection stored in SG with no cross_border_ref"),
    "cross_border_without_consent": Violation(
        "6.3d", "cross-border transfer only with consent",
        "data.shared with the Singapore affiliate with no consent"),
    "cross_border_missing_fields": Violation(
        "6.3d", "the person is told the recipient, contact, processing, purpose, "
        "categories and how to exercise rights",
        "data.shared abroad whose cross_border block lacks contact and rights_howto"),
    "request_never_fulfilled": Violation(
        "7.1", "access / correction / erasure requests are fulfilled in time",
        "request.received (access) never fulfilled nor refused"),
    "use_after_closure": Violation(
        "7.6", "a closed account's data is not used",
        "a marketing use after subject.closed"),
    "disclosure_after_closure": Violation(
        "7.6", "a closed account's data is not disclosed",
        "data.shared with the SMS gateway after subject.closed"),
    "request_fulfilled_unverified": Violation(
        "9.2", "requests are processed after verifying identity",
        "request.fulfilled with no request.identity_verified"),
}

#: Kinds that cannot be planted on the same person.
_CONFLICTS = (
    {"profiling_without_consent", "profiling_after_withdrawal"},
    # The on-time erasure of one promotion proof would also erase the one meant to be held.
    {"held_past_retention", "promotion_data_without_consent"},
)
_CLOSURE_KINDS = frozenset({"use_after_closure", "disclosure_after_closure"})


def account_id(index: int) -> str:
    """The account id (the wire ``subject``) of the person with this index."""
    return str(1_000_000_000 + index)


class _Violators:
    """Who breaks which promise: violators spread evenly over the population.

    With at least as many violators as kinds each violator breaks one promise, kinds taking
    turns; with fewer (small populations) each breaks several, so every kind still appears.
    Computed on demand, so a population of any size costs no memory here.
    """

    def __init__(self, people: int):
        self.people = people
        self.count = 0 if people <= 0 else min(people, max(2, round(people * VIOLATOR_SHARE)))
        self.kinds = list(VIOLATIONS)
        self.few: list[tuple[str, ...]] | None = None
        if self.count < len(self.kinds):
            assigned: list[list[str]] = [[] for _ in range(self.count)]
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

    def kinds_of(self, j: int) -> tuple[str, ...]:
        return self.few[j] if self.few is not None else (self.kinds[j % len(self.kinds)],)

    def get(self, index: int) -> tuple[str, ...]:
        """The kinds person ``index`` breaks (none for almost everybody)."""
        if self.count:
            guess = index * self.count // self.people
            for j in (guess - 1, guess, guess + 1):
                if 0 <= j < self.count and self.index(j) == index:
                    return self.kinds_of(j)
        return ()

    def __iter__(self) -> Iterator[tuple[int, tuple[str, ...]]]:
        for j in range(self.count):
            yield self.index(j), self.kinds_of(j)


def planted(people: int) -> dict[str, list[str]]:
    """Violation kind -> subject ids of the people who break that promise."""
    out: dict[str, list[str]] = {kind: [] for kind in VIOLATIONS}
    for index, kinds in _Violators(people):
        for kind in kinds:
            out[kind].append(account_id(index))
    return out


# --- the company: systems, stores, recipients ---------------------------------------------

SRC = "lingjing-cloud/"
S_ACCOUNTS = SRC + "accounts"
S_KYC = SRC + "real-name"
S_BILLING = SRC + "billing"
S_LOGS = SRC + "log-pipeline"
S_MARKETING = SRC + "marketing"
S_NOTIFY = SRC + "notify"
S_SUPPORT = SRC + "support"
S_SECURITY = SRC + "security"
S_ANALYTICS = SRC + "analytics"
S_PROFILE = SRC + "profile-engine"
S_PRIVACY = SRC + "privacy-desk"
S_RETENTION = SRC + "retention-job"
S_LEGAL = SRC + "legal"
S_CONSOLE = SRC + "console"

PAY, SMS, MAIL, IDV = "huitong-pay", "xunda-sms", "yunxin-mail", "wechat-faceid"
ANALYTICS_PARTNER, AFFILIATE_SG = "shuzhi-analytics", "lingjing-sg"
REGULATOR, POLICE, ADTECH = "cac-jiangsu", "psb-wuxi", "jingzhun-ads"

_PAYMENT_CATEGORIES = [
    "user.financial.bank_account", "user.financial.credit_card",
    "user.financial.payment_password", "user.financial.payment_record",
    "user.financial.invoice",
]

#: ``recipient.registered`` data of every third party, published once at the start.
RECIPIENTS: list[dict[str, Any]] = [
    {"recipient": PAY, "name": "汇通支付科技有限公司 (Huitong Payments)",
     "kind": "service_provider", "location": "CN",
     "roles": ["payment_processor", "invoice_processor"],
     "allowed_purposes": ["essential.service.payment_processing", "essential.service.invoicing"],
     "allowed_categories": _PAYMENT_CATEGORIES, "agreement_ref": "DPA-2023-PAY-017"},
    {"recipient": SMS, "name": "讯达短信网关 (Xunda SMS gateway)",
     "kind": "service_provider", "location": "CN", "roles": ["sms_gateway"],
     "allowed_purposes": ["essential.service.notifications.sms",
                          "essential.service.authentication", "marketing.communications.sms"],
     "allowed_categories": ["user.contact.phone_number"], "agreement_ref": "DPA-2023-SMS-004"},
    {"recipient": MAIL, "name": "云信邮件推送 (Yunxin mail relay)",
     "kind": "service_provider", "location": "CN", "roles": ["email_gateway"],
     "allowed_purposes": ["essential.service.notifications.email",
                          "marketing.communications.email", "functional.service.invitation"],
     "allowed_categories": ["user.contact.email"], "agreement_ref": "DPA-2023-MAIL-009"},
    {"recipient": IDV, "name": "微信人脸核身 (WeChat face verification)",
     "kind": "partner", "location": "CN", "roles": ["identity_verifier"],
     "allowed_purposes": ["essential.service.identity_verification"],
     "allowed_categories": ["user.biometric.face", "user.name",
                            "user.government_id.national_identification_number",
                            "user.government_id.id_photo", "user.contact.organization",
                            "user.government_id.enterprise_credit_code",
                            "user.government_id.business_licence"],
     "agreement_ref": "DPA-2023-KYC-002"},
    {"recipient": ANALYTICS_PARTNER, "name": "数智分析 (Shuzhi Analytics)",
     "kind": "partner", "location": "CN", "roles": ["analytics"],
     "allowed_purposes": ["analytics.reporting"],
     "allowed_categories": ["user.telemetry", "user.behavior.browsing_history",
                            "user.device.device_id"],
     "agreement_ref": "DPA-2023-ANA-011"},
    {"recipient": AFFILIATE_SG, "name": "Lingjing Cloud Singapore Pte. Ltd.",
     "kind": "affiliate", "location": "SG", "roles": ["other"],
     "allowed_purposes": ["essential.service.operations.support"],
     "allowed_categories": ["user.contact.email", "user.account.username",
                            "user.content.support_ticket"],
     "agreement_ref": "IGDTA-2023-SG-001"},
    {"recipient": REGULATOR, "name": "江苏省互联网信息办公室 (Jiangsu Cyberspace Administration)",
     "kind": "authority", "location": "CN", "roles": ["regulator"],
     "allowed_purposes": ["essential.legal_obligation"]},
    {"recipient": POLICE, "name": "无锡市公安局 (Wuxi Public Security Bureau)",
     "kind": "authority", "location": "CN", "roles": ["regulator"],
     "allowed_purposes": ["essential.legal_obligation"]},
    {"recipient": ADTECH, "name": "精准互动广告有限公司 (Jingzhun Ads)",
     "kind": "unrelated_third_party", "location": "CN", "roles": ["advertising"],
     "allowed_purposes": ["marketing.advertising.third_party"],
     "allowed_categories": ["user.device.device_id", "user.device.cookie_id"],
     "confidentiality": False},
]
_KIND = {r["recipient"]: r["kind"] for r in RECIPIENTS}
_AGREEMENT = {r["recipient"]: r.get("agreement_ref") for r in RECIPIENTS}

SG_CROSS_BORDER: dict[str, Any] = {
    "destination_country": "SG",
    "recipient_name": "Lingjing Cloud Singapore Pte. Ltd.",
    "recipient_contact": "dpo@sg.lingjing-cloud.example, +65 6000 0000",
    "processing": "reads and answers support tickets outside Beijing office hours",
    "purpose": "24x7 technical support",
    "categories": ["user.contact.email", "user.content.support_ticket"],
    "rights_howto": "e-mail dpo@sg.lingjing-cloud.example or call 400-181-6806 ext. 1",
}

# Stores: name -> backups.
ACCOUNTS, PROFILE, KYC, BILLING = "accounts-db", "profile-db", "kyc-vault", "billing-db"
LOGS, TICKETS, INVITES, PROMO = "log-lake", "ticket-system", "invite-db", "promo-db"
COOKIES, PROFILES = "web-prefs", "profile-engine-db"
BACKUPS: dict[str, list[str]] = {
    ACCOUNTS: ["accounts-db-backup"], PROFILE: ["profile-db-backup"],
    KYC: ["kyc-vault-backup"], BILLING: ["billing-db-backup"], LOGS: ["log-lake-backup"],
    TICKETS: ["ticket-system-backup"], INVITES: [], PROMO: [], COOKIES: [], PROFILES: [],
}

# Categories.
USERNAME, EMAIL, PHONE = "user.account.username", "user.contact.email", "user.contact.phone_number"
PASSWORD, CODE = "user.authorization.password", "user.authorization.verification_code"
NAME, ADDRESS, ORG = "user.name", "user.contact.address", "user.contact.organization"
INDUSTRY, JOB = "user.demographic.industry", "user.job_title"
FACE, ID_NUMBER = "user.biometric.face", "user.government_id.national_identification_number"
ID_PHOTO = "user.government_id.id_photo"
CREDIT_CODE = "user.government_id.enterprise_credit_code"
LICENCE = "user.government_id.business_licence"
BANK, CARD = "user.financial.bank_account", "user.financial.credit_card"
PAYMENT_RECORD, INVOICE = "user.financial.payment_record", "user.financial.invoice"
SPECIAL = "user.government_id.special_status"
DEVICE_ID, IP = "user.device.device_id", "user.device.ip_address"
COOKIE_ID = "user.device.cookie_id"
BROWSING, SEARCH = "user.behavior.browsing_history", "user.behavior.search_history"
BEHAVIOR, TELEMETRY = "user.behavior", "user.telemetry"
AREA, TICKET = "user.location.imprecise", "user.content.support_ticket"
PREFERENCES, INVITATION = "user.privacy_preferences", "user.social.invitation"

# Uses.
AUTH = "essential.service.authentication"
N_EMAIL, N_SMS = "essential.service.notifications.email", "essential.service.notifications.sms"
SUPPORT, SECURITY = "essential.service.operations.support", "essential.service.security"
PAYMENT, INVOICING = "essential.service.payment_processing", "essential.service.invoicing"
VERIFY, FRAUD = "essential.service.identity_verification", "essential.fraud_detection"
M_EMAIL, M_SMS = "marketing.communications.email", "marketing.communications.sms"
PROFILING, TRACKING = "personalize.profiling", "analytics.reporting.campaign_insights"
PROMOTION, RECOMMEND = "marketing.promotion", "personalize.content"

# --- fictitious people --------------------------------------------------------------------

SURNAMES = [
    ("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"), ("杨", "yang"),
    ("黄", "huang"), ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"), ("徐", "xu"), ("孙", "sun"),
    ("马", "ma"), ("朱", "zhu"), ("胡", "hu"), ("郭", "guo"), ("何", "he"), ("林", "lin"),
    ("罗", "luo"), ("高", "gao"), ("郑", "zheng"), ("梁", "liang"), ("谢", "xie"), ("宋", "song"),
    ("唐", "tang"), ("许", "xu"), ("韩", "han"), ("冯", "feng"), ("邓", "deng"), ("曹", "cao"),
]
GIVEN = [
    ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"),
    ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"),
    ("杰", "jie"), ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("秀英", "xiuying"),
    ("霞", "xia"), ("平", "ping"), ("刚", "gang"), ("桂英", "guiying"), ("建华", "jianhua"),
    ("文", "wen"), ("华", "hua"), ("鑫", "xin"), ("宇轩", "yuxuan"), ("子涵", "zihan"),
    ("浩然", "haoran"), ("欣怡", "xinyi"), ("思远", "siyuan"), ("雨桐", "yutong"), ("晨", "chen"),
]
MAIL_DOMAINS = ["qq.example", "163.example", "126.example", "sina.example", "foxmail.example",
                "outlook.example", "aliyun.example"]
CITIES = [("江苏省", "无锡市", ["新吴区", "梁溪区", "滨湖区"]), ("江苏省", "南京市", ["鼓楼区", "玄武区"]),
          ("浙江省", "杭州市", ["西湖区", "滨江区"]), ("广东省", "深圳市", ["南山区", "福田区"]),
          ("上海市", "上海市", ["浦东新区", "徐汇区"]), ("北京市", "北京市", ["海淀区", "朝阳区"]),
          ("四川省", "成都市", ["高新区", "武侯区"])]
ROADS = ["长江路", "人民路", "建设路", "中山路", "科技大道", "创新路", "学府路", "和平路"]
INDUSTRIES = ["互联网", "游戏", "视频直播", "电子商务", "教育", "金融科技", "制造业", "医疗健康"]
COMPANY_WORDS = [("星辰", "xingchen"), ("云帆", "yunfan"), ("数智", "shuzhi"), ("极光", "jiguang"),
                 ("青禾", "qinghe"), ("远望", "yuanwang"), ("光年", "guangnian"), ("蓝鲸", "lanjing"),
                 ("灵动", "lingdong"), ("启明", "qiming")]
COMPANY_KINDS = ["网络科技", "信息技术", "数据服务", "文化传媒", "软件"]
JOBS = ["运维工程师", "CTO", "开发工程师", "采购经理", "架构师", "产品经理"]
TICKETS_TEXT = ["CDN 节点回源超时", "对象存储 bucket 返回 403", "云主机无法 SSH 登录",
                "发票抬头需要修改", "实名认证一直审核中", "账单金额与预期不符", "域名 CNAME 配置不生效"]
CHANNELS = ["web", "web", "web", "app", "mini-program"]
# Local hour of activity in Beijing (weights for 0..23h).
_HOUR_WEIGHTS = [1, 1, 0.5, 0.3, 0.3, 0.5, 1, 3, 6, 9, 10, 10, 8, 9, 10, 10, 9, 8, 7, 7, 8,
                 7, 5, 3]
_HOURS = list(range(24))
_CUM_HOURS = [sum(_HOUR_WEIGHTS[: h + 1]) for h in _HOURS]


@lru_cache(maxsize=1024)
def _hour_prefix(hour: int) -> str:
    return _time.strftime("%Y-%m-%dT%H:", _time.gmtime(hour * 3600))


def _iso(ms: int) -> str:
    """RFC 3339 UTC with milliseconds: ``2024-01-01T08:00:00.123Z``."""
    hour, rest = divmod(ms, HOUR)
    minute, rest = divmod(rest, MIN)
    second, millis = divmod(rest, SEC)
    return f"{_hour_prefix(hour)}{minute:02d}:{second:02d}.{millis:03d}Z"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _between(r: random.Random, lo: int, hi: int) -> int:
    """A uniform integer in [lo, hi) (cheaper than ``randrange``)."""
    return lo + int(r.random() * (hi - lo))


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


# --- shared data payloads -------------------------------------------------------------------
# Payloads that do not depend on the person are built and JSON-encoded once, then shared by
# every event that carries them: a life in progress holds references, not copies.


class _Payload(dict):  # type: ignore[type-arg]
    """An event's ``data``, JSON-encoded once when built. Never mutated afterwards."""

    __slots__ = ("json",)

    def __init__(self, data: dict[str, Any]):
        super().__init__(data)
        self.json = _dumps(data)


def _collected(categories: list[str], purpose: str, store: str, *,
               source: str | dict[str, Any] = "subject", mechanism: str = "form",
               retention: int | None = None, protection: str = "encrypted",
               optional: bool = False, location: str = "CN", backups: list[str] | None = None,
               **extra: Any) -> _Payload:
    data: dict[str, Any] = {"categories": categories,
                            "source": source if isinstance(source, dict) else {"kind": source},
                            "purpose": purpose}
    if optional:
        data["optional"] = True
    data.update(extra)
    data.update(mechanism=mechanism, store=store, store_location=location,
                backups=BACKUPS.get(store, []) if backups is None else backups)
    if retention is not None:
        data["retention_days"] = retention
    data["protection"] = protection
    return _Payload(data)


def _used(categories: list[str], purpose: str, system: str, **extra: Any) -> _Payload:
    return _Payload({"categories": categories, "purpose": purpose, "system": system, **extra})


def _shared(recipient: str, categories: list[str], purpose: str, clause: str | None = "5.1.1",
            **extra: Any) -> _Payload:
    data: dict[str, Any] = {"recipient": recipient, "recipient_kind": _KIND[recipient],
                            "categories": categories, "purpose": purpose}
    if clause is not None:
        data["clause"] = clause
        if _AGREEMENT.get(recipient):
            data["agreement_ref"] = _AGREEMENT[recipient]
    data.update(extra)
    return _Payload(data)


def _erased(categories: list[str], store: str, reason: str, method: str = "erased",
            **extra: Any) -> _Payload:
    return _Payload({"categories": categories, "stores": [store, *BACKUPS.get(store, [])],
                     "method": method, "reason": reason, **extra})


_REG_ACCOUNT = _collected([USERNAME, EMAIL, PHONE], AUTH, ACCOUNTS)
_REG_PASSWORD = _collected([PASSWORD], AUTH, ACCOUNTS, protection="hashed")
_REG_PASSWORD_PLAIN = _collected([PASSWORD], AUTH, ACCOUNTS, protection="plain")
_REG_CODE = _collected([CODE], AUTH, "otp-service", retention=0, protection="hashed", backups=[])
_SHARE_SMS_CODE = _shared(SMS, [PHONE], N_SMS)
_SEND_CODE = _used([PHONE], N_SMS, "otp-service")
_SHARE_MAIL_NOTICES = _shared(MAIL, [EMAIL], N_EMAIL)
_PROFILE_CATS = [NAME, ADDRESS, INDUSTRY]
_PROFILE = _collected(_PROFILE_CATS, "essential.service", PROFILE, optional=True)
_PROFILE_ENTERPRISE = _collected([NAME, ORG, JOB, INDUSTRY, ADDRESS], "essential.service",
                                 PROFILE, optional=True)
_PROFILE_REFUSED = {"categories": _PROFILE_CATS, "purpose": "essential.service"}
_DENIED_NO_REAL_NAME = {"service": "cloud-host purchase",
                        "reason": "real-name verification is required by law before buying "
                                  "cloud hosts", "missing_categories": [ID_NUMBER]}
_DENIED_PROFILE = {"service": "object-storage bucket creation",
                   "reason": "account profile incomplete", "missing_categories": [NAME, ADDRESS]}
# Real-name verification (2.1.1(2)).
_KYC_ID = _collected([NAME, ID_NUMBER], VERIFY, KYC)
_KYC_FACE = _collected([FACE], VERIFY, "face-compare", mechanism="face_scan", retention=0,
                       backups=[])
_KYC_FACE_STORED = _collected([FACE], VERIFY, KYC, mechanism="face_scan", retention=365)
_SHARE_FACE = _shared(IDV, [FACE, NAME, ID_NUMBER], VERIFY, "5.1.3")
_KYC_PHOTO = _collected([NAME, ID_NUMBER, ID_PHOTO], VERIFY, KYC)
_SHARE_PHOTO = _shared(IDV, [NAME, ID_NUMBER, ID_PHOTO], VERIFY, "5.1.3")
_KYC_BANK = _collected([NAME, ID_NUMBER, BANK], VERIFY, KYC)
_USE_BANK_CHECK = _used([BANK], VERIFY, "kyc-microdeposit")
_USE_KYC = _used([NAME, ID_NUMBER], VERIFY, "kyc-service")
_KYC_ENTERPRISE = _collected([ORG, CREDIT_CODE, LICENCE], VERIFY, KYC)
_KYC_ENTERPRISE_BANK = _collected([ORG, CREDIT_CODE, LICENCE, BANK], VERIFY, KYC)
_SHARE_ENTERPRISE = _shared(IDV, [ORG, CREDIT_CODE, LICENCE], VERIFY, "5.1.3")
_USE_ENTERPRISE = _used([ORG, CREDIT_CODE], VERIFY, "kyc-service")
_DISCLOSE_POLICE = _shared(POLICE, [NAME, ID_NUMBER, PHONE], "essential.legal_obligation",
                           "5.3.4", legal_ground="5.3.4")
# Payments and invoices (2.1.1(3)).
_PAY_FIRST = {m: _collected([m, PAYMENT_RECORD], PAYMENT, BILLING) for m in (BANK, CARD)}
_SHARE_PAY_FIRST = {m: _shared(PAY, [m, PAYMENT_RECORD], PAYMENT) for m in (BANK, CARD)}
_PAY = _collected([PAYMENT_RECORD], PAYMENT, BILLING, mechanism="api")
_SHARE_PAY = _shared(PAY, [PAYMENT_RECORD], PAYMENT)
_FRAUD = _used([PAYMENT_RECORD, IP], FRAUD, "risk-engine")
_INVOICE = _collected([INVOICE], INVOICING, BILLING)
_SHARE_INVOICE = _shared(PAY, [INVOICE], INVOICING)
_NOTICE_BILL = _used([EMAIL], N_EMAIL, "notify-service", message_kind=N_EMAIL)
_NOTICE_SMS = _used([PHONE], N_SMS, "notify-service", message_kind=N_SMS)
# Device, log and location data collected in use (2.1.2).
_SESSION_CATS = [DEVICE_ID, IP, TELEMETRY, BROWSING, AREA]
_SESSION_SEARCH_CATS = [DEVICE_ID, IP, TELEMETRY, BROWSING, SEARCH, AREA]
_SESSION = {
    (mech, search): _collected(_SESSION_SEARCH_CATS if search else _SESSION_CATS,
                               "essential.service.operations", LOGS, source="device",
                               mechanism=mech, retention=LOG_RETENTION_DAYS)
    for mech in ("server_log", "sdk") for search in (False, True)
}
_SESSION_ABROAD = _collected(_SESSION_CATS, "essential.service.operations", "log-lake-sg",
                             source="device", mechanism="server_log",
                             retention=LOG_RETENTION_DAYS, location="SG", backups=[])
_LOGIN = _used([PHONE, PASSWORD], AUTH, "auth-service")
_SECURITY = {g: _used([IP, DEVICE_ID, USERNAME], SECURITY, "risk-engine",
                      **({"legal_ground": "3.5.8"} if g else {})) for g in (False, True)}
_COOKIES = _collected([COOKIE_ID, PREFERENCES], "functional.storage.privacy_preferences",
                      COOKIES, source="device", mechanism="cookie", retention=LOG_RETENTION_DAYS)
_COOKIES_REFUSED = {"categories": [COOKIE_ID], "purpose": "functional.storage.privacy_preferences"}
_LINK_SECURITY = {"categories": [DEVICE_ID, IP, BROWSING], "purpose": SECURITY,
                  "authorised": True, "de_identified": False}
_LINK_ANALYTICS = {"categories": [DEVICE_ID, BROWSING], "purpose": "analytics.reporting",
                   "authorised": False, "de_identified": True}
_LINK_UNAUTHORISED = {"categories": [DEVICE_ID, BROWSING], "purpose": "marketing.communications",
                      "authorised": False, "de_identified": False}
_USE_LINKED = _used([DEVICE_ID, BROWSING], "marketing.communications", "crm-segmentation")
_ANALYTICS = _used([BROWSING, TELEMETRY], "analytics.reporting", "analytics-warehouse",
                   anonymised=True, legal_ground="3.5.9")
_ANALYTICS_RAW = _used([BROWSING, USERNAME], "analytics.reporting", "analytics-warehouse")
_SHARE_ANALYTICS = _shared(ANALYTICS_PARTNER, [TELEMETRY, BROWSING], "analytics.reporting",
                           "5.1.3")
_SHARE_ANALYTICS_BARE = _shared(ANALYTICS_PARTNER, [BROWSING, DEVICE_ID], "analytics.reporting",
                                None)
# Support tickets (3.1).
_TICKET = _collected([TICKET], SUPPORT, TICKETS, retention=TICKET_RETENTION_DAYS)
_USE_TICKET = _used([TICKET, EMAIL], SUPPORT, "ticket-system")
_CUSTOMER_CONTENT = _collected(["user.content.private.customer_data"], SUPPORT, TICKETS)
_TRAIN_AI = _used([TICKET, BROWSING], "train_ai_system", "llm-finetune")
# Marketing (3.3, 4.2).
_MARKETING_EMAIL = _used([EMAIL], M_EMAIL, "campaign-mailer", message_kind=M_EMAIL)
_MARKETING_SMS = _used([PHONE], M_SMS, "campaign-sms", message_kind=M_SMS)
_SHARE_MAIL_MARKETING = _shared(MAIL, [EMAIL], M_EMAIL)
_SHARE_SMS_MARKETING = _shared(SMS, [PHONE], M_SMS)
_TRACKING = _used([EMAIL, IP], TRACKING, "campaign-mailer")
_ID_FOR_MARKETING = _used([ID_NUMBER], "marketing.communications", "crm-segmentation")
_SHARE_ID_TO_PAY = _shared(PAY, [ID_NUMBER, NAME], PAYMENT)
_SHARE_PAY_TO_ADTECH = _shared(ADTECH, [PAYMENT_RECORD, DEVICE_ID],
                               "marketing.advertising.third_party", "5.1.3")
_UNSUBSCRIBE = {k: {"kind": k, "subscribed": False} for k in (M_EMAIL, M_SMS, TRACKING, N_EMAIL)}
# Profiling and third-party data (2.1.3, 3.2b).
_DMP = {"kind": "third_party", "party": "dmp-partner", "provenance_verified": True,
        "authorised_scope": [PROFILING]}
_BROKER_UNVERIFIED = {"kind": "third_party", "party": "risk-data-broker",
                      "provenance_verified": False, "authorised_scope": [FRAUD]}
_COLLECT_UNVERIFIED = _collected([BEHAVIOR], FRAUD, "risk-engine-db", backups=[],
                                 source=_BROKER_UNVERIFIED)
_USE_UNVERIFIED = _used([BEHAVIOR], FRAUD, "risk-engine")
_PROFILE_CONSENT_CATS = [BROWSING, SEARCH, BEHAVIOR]
_WITHDRAWN_ERASURE = _erased([BEHAVIOR], PROFILES, "consent_withdrawn")
# Erasure.
_EXPIRED = {store: _erased(cats, store, "retention_expired")
            for store, cats in ((LOGS, _SESSION_SEARCH_CATS), (COOKIES, [COOKIE_ID, PREFERENCES]),
                                (TICKETS, [TICKET]), (PROMO, [SPECIAL]),
                                (INVITES, [INVITATION]), (PROFILES, [BEHAVIOR]))}
_EXPIRED_SG = {"categories": _SESSION_CATS, "stores": ["log-lake-sg"], "method": "erased",
               "reason": "retention_expired"}
_EXPIRED_SKIP_BACKUP = {"categories": _SESSION_SEARCH_CATS, "stores": [LOGS], "method": "erased",
                        "reason": "retention_expired"}
_FRIEND_EXPIRED = _erased([EMAIL], INVITES, "retention_expired")
_SMS_AFTER_CLOSURE = _shared(SMS, [PHONE], M_SMS)
_EMAIL_AFTER_CLOSURE = _used([EMAIL], M_EMAIL, "campaign-mailer", message_kind=M_EMAIL)
_INCIDENT_CATS = [IP, DEVICE_ID, BROWSING]


class _Person:
    """A life in progress: the rest of its plan, latest event first.

    Each planned event is ``(time, seq, head, data, personal, subject)``, the last four
    already JSON-encoded (``personal`` and ``subject`` may be None), so rendering is string
    concatenation and a plan holds shared strings rather than dicts.
    """

    __slots__ = ("plan",)

    def __init__(self, plan: list[tuple[Any, ...]]):
        self.plan = plan


@cache
def _head(source: str, event_type: str) -> str:
    return f'"source":{_dumps(source)},"type":{_dumps(event_type)}'


class _Life:
    """Builds one person's plan; every decision is drawn from the simulation's RNG."""

    def __init__(self, sim: _Simulation, index: int, t0: int):
        self.sim = sim
        self.r = sim.rng
        self.t0 = t0
        self.kinds = frozenset(sim.violators.get(index))
        self.subject = account_id(index)
        self.values: dict[str, str] = {}
        # (time, seq, source, type, data, personal, subject override)
        self.entries: list[tuple[Any, ...]] = []

    # -- helpers ------------------------------------------------------------------------

    def add(self, t: int, event_type: str, data: dict[str, Any], source: str,
            personal: tuple[str, ...] | dict[str, str] | None = None,
            subject: str | None = None) -> int:
        self.entries.append((t, len(self.entries), source, event_type, data, personal, subject))
        return t

    def daytime(self, t: int, lo: int | None = None, hi: int | None = None) -> int:
        """A time on the Beijing day of ``t``, at an hour people are awake, within [lo, hi]."""
        local_day = (t + BEIJING) // DAY * DAY - BEIJING
        hour = bisect_left(_CUM_HOURS, self.r.random() * _CUM_HOURS[-1])
        value = local_day + hour * HOUR + int(self.r.random() * HOUR)
        if lo is not None:
            value = max(value, lo)
        if hi is not None:
            value = min(value, hi)
        return value

    def some_day(self, lo: int, hi: int) -> int:
        """A waking-hours time between ``lo`` and ``hi``."""
        if hi <= lo:
            return lo
        return self.daytime(lo + int(self.r.random() * (hi - lo)), lo, hi)

    def consent(self, t: int, purpose: str, categories: list[str], notice: str,
                cross_border: dict[str, Any] | None = None) -> tuple[str, str]:
        """Record a consent granted at ``t``; returns (consent id, policy version)."""
        n = sum(1 for e in self.entries if e[3] == "consent.granted") + 1
        cid = f"cns-{self.subject}-{n}"
        version = self.sim.version_for_new(t)
        data: dict[str, Any] = {"consent_id": cid, "purpose": purpose, "policy_version": version,
                                "categories": categories, "notice_ref": f"{notice}-{version}"}
        if cross_border is not None:
            data["cross_border"] = cross_border
        self.add(t, "consent.granted", data, S_PRIVACY)
        return cid, version

    def request(self, t: int, kind: str, categories: list[str] | None = None,
                verified: bool = True) -> tuple[str, int]:
        """A rights request received at ``t``, identity verified; returns (id, verified time)."""
        n = sum(1 for e in self.entries if e[3] == "request.received") + 1
        rid = f"req-{self.subject}-{n}"
        data: dict[str, Any] = {"request_id": rid, "kind": kind, "due": _iso(t + REQUEST_DEADLINE)}
        if categories:
            data["categories"] = categories
        self.add(t, "request.received", data, S_PRIVACY)
        if not verified:
            return rid, t
        tv = t + _between(self.r, 5 * MIN, 20 * HOUR)
        method = "sms_code" if self.r.random() < 0.7 else "id_document"
        self.add(tv, "request.identity_verified", {"request_id": rid, "method": method},
                 S_PRIVACY)
        return rid, tv

    # -- the life ---------------------------------------------------------------------------

    def build(self) -> _Person:
        r, sim, kinds = self.r, self.sim, self.kinds
        t0 = self.t0
        enterprise = not kinds and r.random() < 0.12
        self.make_values(enterprise)

        u = r.random()
        days = r.uniform(0.5, 30) if u < 0.35 else r.uniform(30, 365) if u < 0.8 else \
            r.uniform(365, 730)
        if kinds:
            days = max(days, r.uniform(300, 500))
        end = t0 + int(days * DAY)  # last day of activity
        closes = bool(kinds & _CLOSURE_KINDS) or r.random() < 0.12
        web = r.random() < 0.75
        channel = "web" if web else r.choice(CHANNELS[3:])

        # Registration (2.1.1(1)a).
        self.add(t0, "subject.registered",
                 sim.registered(("enterprise_contact" if enterprise else "user"), channel, t0),
                 S_ACCOUNTS)
        t = t0 + _between(r, 1 * SEC, 3 * SEC)
        self.add(t, "data.shared", _SHARE_SMS_CODE, S_ACCOUNTS)
        self.add(t + 200, "data.used", _SEND_CODE, S_ACCOUNTS)
        t += _between(r, 20 * SEC, 90 * SEC)
        self.add(t, "data.collected", _REG_CODE, S_ACCOUNTS)
        t += _between(r, 2 * SEC, 30 * SEC)
        self.add(t, "data.collected", _REG_ACCOUNT, S_ACCOUNTS, (USERNAME, EMAIL, PHONE))
        self.add(t + 5, "data.collected",
                 _REG_PASSWORD_PLAIN if "password_stored_plain" in kinds else _REG_PASSWORD,
                 S_ACCOUNTS)
        self.add(t + 900, "data.shared", _SHARE_MAIL_NOTICES, S_NOTIFY)
        self.add(t + 1000, "data.used", _NOTICE_BILL, S_NOTIFY)  # welcome notice
        if web:
            if r.random() < 0.1:
                self.add(t + 2 * SEC, "data.collection_refused", _COOKIES_REFUSED, S_CONSOLE)
            else:
                self.add(t + 2 * SEC, "data.collected", _COOKIES, S_CONSOLE)
                self.expire(t + 2 * SEC, COOKIES, LOG_RETENTION_DAYS)
        first_session = t + _between(r, 5 * SEC, 60 * SEC)

        # Subscriptions, decided up front so that nothing is sent after an opt-out.
        def opt_out(probability: float, forced: bool) -> int | None:
            if forced:
                return self.some_day(t0 + 10 * DAY, t0 + 40 * DAY)
            if r.random() < probability and end - t0 > 3 * DAY:
                return self.some_day(t0 + 2 * DAY, end)
            return None

        forced_email_out = bool(kinds & {"marketing_after_opt_out", "tracking_after_unsubscribe"})
        email_out = opt_out(0.15, forced_email_out)
        gets_sms = r.random() < 0.35
        sms_out = opt_out(0.10, False) if gets_sms else None
        tracking_out = opt_out(0.05, False)
        notices_out = opt_out(0.03, False)
        for when, kind in ((email_out, M_EMAIL), (sms_out, M_SMS), (tracking_out, TRACKING),
                           (notices_out, N_EMAIL)):
            if when is not None:
                self.add(when, "subscription.changed", _UNSUBSCRIBE[kind], S_CONSOLE)

        def subscribed(when: int | None, at: int) -> bool:
            return when is None or at < when

        # Optional profile (2.1.1(1)c).
        profile = False
        if "service_denied_after_refusal" in kinds or r.random() < 0.12:
            tr = self.some_day(t0 + 5 * MIN, min(end, t0 + 3 * DAY))
            self.add(tr, "data.collection_refused", _PROFILE_REFUSED, S_CONSOLE)
            if "service_denied_after_refusal" in kinds:
                self.add(tr + _between(r, 1 * MIN, 2 * DAY), "service.denied", _DENIED_PROFILE,
                         S_CONSOLE)
        elif r.random() < 0.65:
            profile = True
            tp = self.some_day(t0 + 5 * MIN, min(end, t0 + 20 * DAY))
            keys: tuple[str, ...] = (NAME, ORG, JOB, INDUSTRY, ADDRESS) if enterprise else \
                (NAME, ADDRESS, INDUSTRY)
            self.add(tp, "data.collected", _PROFILE_ENTERPRISE if enterprise else _PROFILE,
                     S_CONSOLE, keys)

        # Real-name verification (2.1.1(2)).
        kyc_kinds = {"face_data_stored", "id_number_used_for_marketing",
                     "id_number_shared_not_for_verification", "payment_data_to_ad_tech"}
        verified_at: int | None = None
        has_id_number = False
        if kinds & kyc_kinds or r.random() < (0.8 if enterprise else 0.7):
            tv = self.some_day(t0 + 10 * MIN, min(end, t0 + 7 * DAY))
            verified_at = tv
            if enterprise:
                bank = r.random() < 0.4
                keys = (ORG, CREDIT_CODE, LICENCE, BANK) if bank else (ORG, CREDIT_CODE, LICENCE)
                self.add(tv, "data.collected", _KYC_ENTERPRISE_BANK if bank else _KYC_ENTERPRISE,
                         S_KYC, keys)
                self.add(tv + 2 * SEC, "data.shared", _SHARE_ENTERPRISE, S_KYC)
                self.add(tv + _between(r, 1 * MIN, 2 * DAY), "data.used", _USE_ENTERPRISE, S_KYC)
            else:
                has_id_number = True
                route = r.random()
                if "face_data_stored" in kinds or route < 0.55:
                    self.add(tv, "data.collected", _KYC_ID, S_KYC, (NAME, ID_NUMBER))
                    self.add(tv + 30 * SEC, "data.collected",
                             _KYC_FACE_STORED if "face_data_stored" in kinds else _KYC_FACE, S_KYC)
                    self.add(tv + 31 * SEC, "data.shared", _SHARE_FACE, S_KYC)
                    self.add(tv + 35 * SEC, "data.used", _USE_KYC, S_KYC)
                elif route < 0.9:
                    self.add(tv, "data.collected", _KYC_PHOTO, S_KYC, (NAME, ID_NUMBER, ID_PHOTO))
                    self.add(tv + 5 * SEC, "data.shared", _SHARE_PHOTO, S_KYC)
                    self.add(tv + _between(r, 1 * MIN, 1 * DAY), "data.used", _USE_KYC, S_KYC)
                else:
                    self.add(tv, "data.collected", _KYC_BANK, S_KYC, (NAME, ID_NUMBER, BANK))
                    self.add(tv + _between(r, 1 * HOUR, 2 * DAY), "data.used", _USE_BANK_CHECK,
                             S_KYC)
                    self.add(tv + 2 * DAY + int(r.random() * HOUR), "data.used", _USE_KYC,
                             S_KYC)
            if subscribed(notices_out, tv + 3 * DAY) and tv + 3 * DAY < end:
                self.add(tv + 3 * DAY, "data.used", _NOTICE_BILL, S_NOTIFY)  # result notice
            if has_id_number and r.random() < 0.004:  # a police request (5.3.4)
                self.add(self.some_day(tv + DAY, end), "data.shared", _DISCLOSE_POLICE, S_LEGAL)
        elif r.random() < 0.3:
            self.add(self.some_day(t0 + HOUR, end), "service.denied", _DENIED_NO_REAL_NAME,
                     S_CONSOLE)

        # Payments and invoices (2.1.1(3)).
        pay_kinds = {"payment_data_to_ad_tech", "id_number_shared_not_for_verification"}
        payments: list[int] = []
        if verified_at is not None and end - verified_at > HOUR and (
                kinds & pay_kinds or r.random() < 0.6):
            n = 1 + min(int(r.expovariate(1 / 3)), 24)
            first = self.some_day(verified_at + 10 * MIN, min(end, verified_at + 5 * DAY))
            payments = sorted({first, *(self.some_day(first, end) for _ in range(n - 1))})
            method = BANK if r.random() < 0.3 else CARD
            amounts = (50, 100, 200, 500, 1000, 5000) if enterprise else (10, 20, 50, 100, 200)
            for k, tp in enumerate(payments):
                record = (f"top-up ¥{r.choice(amounts)}, order "
                          f"{_iso(tp)[:10].replace('-', '')}{int(r.random() * 10**8):08d}")
                if k == 0:
                    self.add(tp, "data.collected", _PAY_FIRST[method], S_BILLING,
                             {method: self.values[method], PAYMENT_RECORD: record})
                    self.add(tp + 400, "data.shared", _SHARE_PAY_FIRST[method], S_BILLING)
                else:
                    self.add(tp, "data.collected", _PAY, S_BILLING, {PAYMENT_RECORD: record})
                    self.add(tp + 400, "data.shared", _SHARE_PAY, S_BILLING)
                if r.random() < 0.3:
                    self.add(tp + 900, "data.used", _FRAUD, S_SECURITY)
                if subscribed(notices_out, tp + 2000):
                    self.add(tp + 2000, "data.used", _NOTICE_BILL, S_BILLING)
            if r.random() < (0.7 if enterprise else 0.25):
                ti = self.some_day(payments[0] + HOUR, end)
                self.add(ti, "data.collected", _INVOICE, S_BILLING, (INVOICE,))
                self.add(ti + 300, "data.shared", _SHARE_INVOICE, S_BILLING)
            if "payment_data_to_ad_tech" in kinds:
                self.add(self.some_day(payments[0] + DAY, payments[0] + 60 * DAY), "data.shared",
                         _SHARE_PAY_TO_ADTECH, S_MARKETING)
            if "id_number_shared_not_for_verification" in kinds:
                self.add(payments[0] + 500, "data.shared", _SHARE_ID_TO_PAY, S_BILLING)
        if "id_number_used_for_marketing" in kinds and verified_at is not None:
            self.add(self.some_day(verified_at + 2 * DAY, verified_at + 40 * DAY), "data.used",
                     _ID_FOR_MARKETING, S_MARKETING)

        # Device, log and location data (2.1.2), logins and security (3.4).
        n_sessions = 1 + min(int((end - t0) / DAY / r.uniform(20, 60)), 14)
        sessions = sorted([first_session] + [self.some_day(t0 + HOUR, end)
                                             for _ in range(n_sessions - 1)])
        mech = "server_log" if web else "sdk"
        device = self.values[DEVICE_ID]
        skip_backup = "erasure_skipped_backup" in kinds
        logs_erased: list[tuple[int, int]] = []  # (collected, erased by retention)
        for k, ts in enumerate(sessions):
            search = r.random() < 0.3
            ip = _ip(r)
            self.add(ts, "data.collected", _SESSION[(mech, search)], S_LOGS,
                     {DEVICE_ID: device, IP: ip})
            if k:
                self.add(ts + 100, "data.used", _LOGIN, S_ACCOUNTS)
            if r.random() < 0.25:
                self.add(ts + _between(r, 1 * SEC, 10 * MIN), "data.used",
                         _SECURITY[r.random() < 0.5], S_SECURITY)
            if skip_backup and k == 0:
                erased = self.add(self.nightly(ts + LOG_RETENTION_DAYS * DAY), "data.erased",
                                  _EXPIRED_SKIP_BACKUP, S_RETENTION)
            else:
                erased = self.expire(ts, LOGS, LOG_RETENTION_DAYS)
            logs_erased.append((ts, erased))
        if "store_outside_china" in kinds:
            ts = self.some_day(t0 + 2 * DAY, t0 + 30 * DAY)
            self.add(ts, "data.collected", _SESSION_ABROAD, S_LOGS, {IP: _ip(r)})
            self.add(self.nightly(ts + LOG_RETENTION_DAYS * DAY), "data.erased", _EXPIRED_SG,
                     S_RETENTION)
        if r.random() < 0.3 and end - t0 > DAY:
            tl = self.some_day(t0 + HOUR, end)
            self.add(tl, "data.linked", _LINK_SECURITY if r.random() < 0.6 else _LINK_ANALYTICS,
                     S_SECURITY)
        if "linked_without_authorisation" in kinds:
            tl = self.some_day(t0 + 3 * DAY, t0 + 60 * DAY)
            self.add(tl, "data.linked", _LINK_UNAUTHORISED, S_MARKETING)
            self.add(tl + _between(r, HOUR, 5 * DAY), "data.used", _USE_LINKED, S_MARKETING)
        if "third_party_data_unverified" in kinds:
            tb = self.some_day(t0 + 3 * DAY, t0 + 60 * DAY)
            self.add(tb, "data.collected", _COLLECT_UNVERIFIED, S_SECURITY)
            self.add(tb + _between(r, MIN, 3 * DAY), "data.used", _USE_UNVERIFIED, S_SECURITY)

        # Anonymised analytics (3.2a) and the analytics partner (5.1.3).
        for _ in range(int(r.random() * 3)):
            self.add(self.some_day(t0 + DAY, end), "data.used", _ANALYTICS, S_ANALYTICS)
        if r.random() < 0.1:
            self.add(self.some_day(t0 + DAY, end), "data.shared", _SHARE_ANALYTICS, S_ANALYTICS)
        if "non_anonymised_analytics" in kinds:
            self.add(self.some_day(t0 + 5 * DAY, t0 + 90 * DAY), "data.used", _ANALYTICS_RAW,
                     S_ANALYTICS)
        if "disclosure_without_clause_or_consent" in kinds:
            self.add(self.some_day(t0 + 5 * DAY, t0 + 90 * DAY), "data.shared",
                     _SHARE_ANALYTICS_BARE, S_ANALYTICS)

        # Support tickets (3.1), cross-border support (6.3d), customer content (1.3).
        xb_kinds = {"cross_border_without_consent", "cross_border_missing_fields"}
        ticket_at: int | None = None
        if kinds & (xb_kinds | {"undeclared_purpose_without_consent",
                                "customer_content_recorded"}) or r.random() < 0.2:
            ticket_at = self.some_day(t0 + HOUR, min(end, t0 + 60 * DAY))
            self.add(ticket_at, "data.collected", _TICKET, S_SUPPORT,
                     {TICKET: r.choice(TICKETS_TEXT) + f" (工单 #{_between(r, 10**6, 10**7)})"})
            self.add(ticket_at + _between(r, 5 * MIN, 6 * HOUR), "data.used", _USE_TICKET,
                     S_SUPPORT)
            self.expire(ticket_at, TICKETS, TICKET_RETENTION_DAYS)
            if "customer_content_recorded" in kinds:
                self.add(ticket_at + 30 * MIN, "data.collected", _CUSTOMER_CONTENT, S_SUPPORT)
            tx = ticket_at + _between(r, 10 * MIN, 2 * HOUR)
            if "cross_border_missing_fields" in kinds or (not kinds and r.random() < 0.06):
                cid, _ = self.consent(tx, SUPPORT, SG_CROSS_BORDER["categories"],
                                      "notice-cross-border-sg", SG_CROSS_BORDER)
                block = SG_CROSS_BORDER
                if "cross_border_missing_fields" in kinds:
                    block = {k: v for k, v in SG_CROSS_BORDER.items()
                             if k not in ("recipient_contact", "rights_howto")}
                self.add(tx + _between(r, MIN, HOUR), "data.shared",
                         _shared(AFFILIATE_SG, SG_CROSS_BORDER["categories"], SUPPORT,
                                 consent_id=cid, cross_border=block), S_SUPPORT)
            if "cross_border_without_consent" in kinds:
                self.add(tx + 2 * HOUR, "data.shared",
                         _shared(AFFILIATE_SG, SG_CROSS_BORDER["categories"], SUPPORT,
                                 cross_border=SG_CROSS_BORDER), S_SUPPORT)
            if "undeclared_purpose_without_consent" in kinds:
                self.add(ticket_at + _between(r, DAY, 30 * DAY), "data.used", _TRAIN_AI,
                         S_ANALYTICS)

        # Invited friends (3.1): non-users with a subject of their own.
        if not kinds and r.random() < 0.1 and end - t0 > HOUR:
            for _ in range(1 + int(r.random() * 2)):
                self.invite(self.some_day(t0 + HOUR, end))

        # Consent-based uses: profiling (3.2b), recommendations (3.4b), promotions (2.1.1(4)).
        if "profiling_without_consent" in kinds:
            self.add(self.some_day(t0 + 5 * DAY, t0 + 60 * DAY), "data.used",
                     _used(_PROFILE_CONSENT_CATS, PROFILING, "profile-engine"), S_PROFILE)
        elif "profiling_after_withdrawal" in kinds or r.random() < 0.25:
            self.consent_uses(PROFILING, end,
                              forced_withdrawal="profiling_after_withdrawal" in kinds)
        if not kinds and r.random() < 0.05:
            self.consent_uses(RECOMMEND, end)
        if "held_past_retention" in kinds or (not kinds and r.random() < 0.04):
            tc = self.some_day(t0 + DAY, min(end, t0 + 20 * DAY))
            cid, _ = self.consent(tc, PROMOTION, [SPECIAL], "notice-student-plan")
            self.add(tc + _between(r, MIN, HOUR), "data.collected",
                     _collected([SPECIAL], PROMOTION, PROMO, retention=SHORT_RETENTION_DAYS,
                                consent_id=cid, notice_ref=f"notice-student-plan-"
                                f"{sim.version_for_new(tc)}"), S_MARKETING, (SPECIAL,))
            if "held_past_retention" not in kinds:
                self.expire(tc, PROMO, SHORT_RETENTION_DAYS)
        if "promotion_data_without_consent" in kinds:
            tc = self.some_day(t0 + DAY, t0 + 30 * DAY)
            self.add(tc, "data.collected",
                     _collected([SPECIAL], PROMOTION, PROMO, retention=SHORT_RETENTION_DAYS),
                     S_MARKETING, (SPECIAL,))
            self.expire(tc, PROMO, SHORT_RETENTION_DAYS)

        # Marketing by e-mail and SMS (3.3) with tracking pixels (4.2).
        campaign = sim.start + 7 * DAY + 10 * HOUR - BEIJING
        if campaign < t0 + DAY:
            campaign += ((t0 + DAY - campaign) // CAMPAIGN_EVERY + 1) * CAMPAIGN_EVERY
        shared_mail = shared_sms = False
        k = 0
        while campaign < end:
            k += 1
            at = campaign + int(r.random() * 3 * HOUR)
            if subscribed(email_out, at) and r.random() < 0.8:
                if not shared_mail:
                    self.add(at - 1000, "data.shared", _SHARE_MAIL_MARKETING, S_MARKETING)
                    shared_mail = True
                self.add(at, "data.used", _MARKETING_EMAIL, S_MARKETING)
                opened = at + _between(r, 10 * MIN, 2 * DAY)
                if (r.random() < 0.4 and subscribed(tracking_out, opened)
                        and subscribed(email_out, opened) and opened < end):
                    self.add(opened, "data.used", _TRACKING, S_MARKETING)
            if gets_sms and k % 2 == 0 and subscribed(sms_out, at + HOUR):
                if not shared_sms:
                    self.add(at + HOUR - 1000, "data.shared", _SHARE_SMS_MARKETING, S_MARKETING)
                    shared_sms = True
                self.add(at + HOUR, "data.used", _MARKETING_SMS, S_MARKETING)
            campaign += CAMPAIGN_EVERY
        if email_out is not None and "marketing_after_opt_out" in kinds:
            self.add(self.some_day(email_out + 3 * DAY, email_out + 20 * DAY), "data.used",
                     _MARKETING_EMAIL, S_MARKETING)
        if email_out is not None and "tracking_after_unsubscribe" in kinds:
            self.add(self.some_day(email_out + 2 * DAY, email_out + 20 * DAY), "data.used",
                     _TRACKING, S_MARKETING)
        if gets_sms and r.random() < 0.5:
            ts = self.some_day(t0 + DAY, end)
            if ts < end:
                self.add(ts, "data.used", _NOTICE_SMS, S_NOTIFY)

        # Rights requests (7.1, 7.5, 9.2).
        if "request_never_fulfilled" in kinds:
            self.request(self.some_day(t0 + 10 * DAY, t0 + 60 * DAY), "access")
        if "request_fulfilled_unverified" in kinds:
            rid, tv = self.request(self.some_day(t0 + 10 * DAY, t0 + 60 * DAY), "access",
                                   verified=False)
            self.add(tv + _between(r, HOUR, 3 * DAY), "request.fulfilled", {"request_id": rid},
                     S_PRIVACY)
        last_request = end - 12 * DAY if closes else end  # answered before any closure
        if not kinds and r.random() < 0.08 and last_request - t0 > 2 * DAY:
            self.rights_request(self.some_day(t0 + DAY, last_request), profile)

        # The material policy change (8): notices to everyone with an account.
        notice = sim.start + V2_PUBLISHED + int(r.random() * 2 * DAY)
        if t0 < sim.start + V2_PUBLISHED and (notice < end or not closes):  # account still open
            self.add(notice, "policy.notice_sent",
                     sim.notice_email if r.random() < 0.8 else sim.notice_sms, S_NOTIFY)

        # Closure (7.6): erase every store, hold payment records for the legal minimum.
        closure_erased = self.close(end, bool(payments)) if closes else {}

        # A breach of the log lake (6.2.1a): notify everybody whose log data was in it at
        # some time in the incident's window (closed accounts included).
        w0, w1 = sim.start + INCIDENT_WINDOW[0], sim.start + INCIDENT_WINDOW[1]
        gone = closure_erased.get(LOGS, 1 << 62)
        if any(ts <= w1 and min(erased, gone) >= w0 for ts, erased in logs_erased):
            told = sim.start + INCIDENT_OPENED + 28 * HOUR + int(r.random() * 6 * HOUR)
            self.add(told, "incident.subject_notified", sim.incident_notice, S_SECURITY)
        return self.finish()

    def make_values(self, enterprise: bool) -> None:
        r, v = self.r, self.values
        sur, sur_py = r.choice(SURNAMES)
        given, given_py = r.choice(GIVEN)
        year = _between(r, 1965, 2005)
        style = r.random()
        if style < 0.4:
            username = f"{given_py}{sur_py}{int(r.random() * 100)}"
        elif style < 0.7:
            username = f"{sur_py}_{given_py}{year % 100:02d}"
        else:
            username = f"{sur_py}{given_py}{year}"
        v[USERNAME] = username
        v[NAME] = sur + given
        v[PHONE] = f"13{_between(r, 5, 10)}{int(r.random() * 10**8):08d}"
        province, city, districts = r.choice(CITIES)
        v[ADDRESS] = (f"{province}{'' if city == province else city}{r.choice(districts)}"
                      f"{r.choice(ROADS)}{_between(r, 1, 999)}号")
        v[INDUSTRY] = r.choice(INDUSTRIES)
        birth = f"{year}{_between(r, 1, 13):02d}{_between(r, 1, 29):02d}"
        body = f"99{int(r.random() * 10**4):04d}{birth}{int(r.random() * 1000):03d}"
        v[ID_NUMBER] = body + _id_check(body)
        v[ID_PHOTO] = f"kyc-vault://id-photos/{r.getrandbits(64):016x}.jpg"
        v[BANK] = f"6299{int(r.random() * 10**12):012d}"
        v[CARD] = "6299 " + " ".join(f"{int(r.random() * 10**4):04d}" for _ in range(3))
        v[DEVICE_ID] = f"{r.getrandbits(64):016x}"
        v[SPECIAL] = f"学生证 {int(r.random() * 10**9):09d}"
        if enterprise:
            word, word_py = r.choice(COMPANY_WORDS)
            prefix = province.removesuffix("省").removesuffix("市")
            v[ORG] = f"{prefix}{word}{r.choice(COMPANY_KINDS)}有限公司"
            v[JOB] = r.choice(JOBS)
            v[CREDIT_CODE] = f"9199{int(r.random() * 10**14):014d}"
            v[LICENCE] = f"kyc-vault://licences/{r.getrandbits(64):016x}.pdf"
            v[EMAIL] = f"{given_py}.{sur_py}@{word_py}-tech.example"
            v[INVOICE] = f"{v[ORG]} 税号 {v[CREDIT_CODE]}"
        else:
            v[EMAIL] = f"{username.replace('_', '.')}@{r.choice(MAIL_DOMAINS)}"
            v[INVOICE] = f"个人 {sur}{given}"

    def nightly(self, t: int) -> int:
        """The retention job's run after ``t``: 02:00-03:00 Beijing time the next night."""
        night = (t + BEIJING) // DAY * DAY + DAY + 2 * HOUR - BEIJING
        return night + int(self.r.random() * HOUR)

    def expire(self, collected: int, store: str, days: int) -> int:
        """Plan the retention erasure of a collection (dropped later if a closure comes first)."""
        return self.add(self.nightly(collected + days * DAY), "data.erased", _EXPIRED[store],
                        S_RETENTION)

    def invite(self, t: int) -> None:
        r = self.r
        friend = f"{r.choice(GIVEN)[1]}{r.choice(SURNAMES)[1]}{int(r.random() * 1000)}@" \
                 f"{r.choice(MAIL_DOMAINS)}"
        self.add(t, "data.collected",
                 _collected([INVITATION], "functional.service.invitation", INVITES,
                            retention=SHORT_RETENTION_DAYS), S_CONSOLE, {INVITATION: friend})
        self.expire(t, INVITES, SHORT_RETENTION_DAYS)
        self.add(t + 1, "subject.registered", self.sim.friend_registered, S_CONSOLE,
                 subject=friend)
        self.add(t + 2, "data.collected", self.sim.friend_collected, S_CONSOLE, {EMAIL: friend},
                 subject=friend)
        self.add(t + 3, "data.shared", self.sim.friend_shared, S_CONSOLE, subject=friend)
        self.add(t + 500, "data.used", self.sim.friend_used, S_CONSOLE, subject=friend)
        self.add(self.nightly(t + SHORT_RETENTION_DAYS * DAY), "data.erased", _FRIEND_EXPIRED,
                 S_RETENTION, subject=friend)

    def consent_uses(self, purpose: str, end: int, forced_withdrawal: bool = False) -> None:
        """A consent, uses while it is valid, maybe a withdrawal and a renewal under v2."""
        r, sim, t0 = self.r, self.sim, self.t0
        if end - t0 < 2 * DAY:
            return
        granted = self.some_day(t0 + HOUR, min(end, t0 + 60 * DAY))
        if forced_withdrawal:
            granted = self.some_day(t0 + DAY, t0 + 10 * DAY)
        notice = "notice-profiling" if purpose == PROFILING else "notice-recommendations"
        cid, version = self.consent(granted, purpose, _PROFILE_CONSENT_CATS, notice)
        withdrawn: int | None = None
        if forced_withdrawal:
            withdrawn = self.some_day(granted + 15 * DAY, granted + 45 * DAY)
        elif r.random() < 0.2:
            withdrawn = self.some_day(granted + DAY, end)
        # Valid until: withdrawal, end of life, or the v2 change for a v1 consent not renewed.
        until = min(x for x in (withdrawn, end) if x is not None)
        effective = sim.start + V2_EFFECTIVE
        renewed_cid: str | None = None
        if version == V1 and until > effective:
            renew = self.some_day(sim.start + V2_PUBLISHED + 2 * DAY, effective - DAY)
            if r.random() < 0.65 and renew > granted:
                renewed_cid, _ = self.consent(renew, purpose, _PROFILE_CONSENT_CATS, notice)
            else:
                until = min(until, effective - 1)  # stops relying on the superseded consent
        system = "profile-engine" if purpose == PROFILING else "console-recommender"
        if purpose == PROFILING and r.random() < 0.5:
            at = granted + _between(r, HOUR, 3 * DAY)
            if at < until:
                data = _collected([BEHAVIOR], PROFILING, PROFILES, retention=LOG_RETENTION_DAYS,
                                  source=_DMP, consent_id=cid if at < effective or not renewed_cid
                                  else renewed_cid)
                self.add(at, "data.collected", data, S_PROFILE)
                if withdrawn is None or self.nightly(at + LOG_RETENTION_DAYS * DAY) < withdrawn:
                    self.expire(at, PROFILES, LOG_RETENTION_DAYS)
        at = granted + _between(r, DAY, 20 * DAY)
        while at < until:
            current = renewed_cid if renewed_cid and at >= effective else cid
            self.add(at, "data.used", sim.consent_use(purpose, system, current), S_PROFILE)
            at += _between(r, 15 * DAY, 60 * DAY)
        if withdrawn is not None:
            current = renewed_cid if renewed_cid and withdrawn >= effective else cid
            # Withdrawing is for the purpose: the renewed consent and the one it replaced.
            for given in dict.fromkeys((cid, renewed_cid or cid)):
                self.add(withdrawn, "consent.withdrawn", {"consent_id": given, "purpose": purpose},
                         S_PRIVACY)
            if purpose == PROFILING:
                self.add(self.nightly(withdrawn), "data.erased", _WITHDRAWN_ERASURE, S_PROFILE)
            if forced_withdrawal:
                self.add(self.some_day(withdrawn + 5 * DAY, withdrawn + 20 * DAY), "data.used",
                         sim.consent_use(purpose, system, current), S_PROFILE)

    def rights_request(self, t: int, profile: bool) -> None:
        r = self.r
        u = r.random()
        if u < 0.35:
            rid, tv = self.request(t, "access")
        elif u < 0.6:
            rid, tv = self.request(t, "correction", [EMAIL])
            new_email = f"{self.values[USERNAME].replace('_', '.')}." \
                        f"{int(r.random() * 100)}@{r.choice(MAIL_DOMAINS)}"
            self.add(tv + _between(r, MIN, 2 * DAY), "data.corrected",
                     {"categories": [EMAIL], "store": ACCOUNTS, "request_id": rid}, S_ACCOUNTS,
                     {EMAIL: new_email})
            tv += 2 * DAY
        elif u < 0.75 and profile:
            rid, tv = self.request(t, "erasure", _PROFILE_CATS)
            tv += _between(r, HOUR, 3 * DAY)
            self.add(tv, "data.erased",
                     _erased(_PROFILE_CATS, PROFILE, "subject_request", request_id=rid), S_PRIVACY)
        elif u < 0.85:
            rid, tv = self.request(t, "correction", ["user.unique_id"])
            self.add(tv + _between(r, HOUR, 2 * DAY), "request.refused",
                     {"request_id": rid, "reason": "the assigned account id cannot be changed "
                                                   "(policy 7.1)"}, S_PRIVACY)
            return
        else:
            rid, tv = self.request(t, "complaint")
        self.add(tv + _between(r, HOUR, 8 * DAY), "request.fulfilled", {"request_id": rid},
                 S_PRIVACY)

    def close(self, end: int, paid: bool) -> dict[str, int]:
        """Plan the closure asked for at ``end``; returns when each store is erased."""
        r, kinds = self.r, self.kinds
        rid, tv = self.request(end, "closure")
        closed = tv + _between(r, HOUR, 3 * DAY)
        data: dict[str, Any] = {"reason": "user_request", "request_id": rid}
        hold = [PAYMENT_RECORD, INVOICE] if paid else []
        if hold:
            data["legal_hold_categories"] = hold
            data["legal_hold_until"] = _iso(closed + LEGAL_HOLD)
        self.add(closed, "subject.closed", data, S_ACCOUNTS)
        # Nothing of this person is used or shared after the closure request, and the
        # retention erasures still to come are replaced by the closure's.
        self.entries = [e for e in self.entries
                        if (e[0] < end or e[3] in _AFTER_CLOSURE)
                        and not (e[3] == "data.erased" and e[0] > closed and e[6] is None)]
        # Erase every store the person's data went to, backups included.
        stores: dict[str, dict[str, None]] = {}
        for e in self.entries:
            if e[3] == "data.collected" and e[6] is None and e[4].get("retention_days") != 0:
                cats = stores.setdefault(e[4]["store"], {})
                cats.update(dict.fromkeys(c for c in e[4]["categories"] if c not in hold))
        t = closed + _between(r, MIN, HOUR)
        erased: dict[str, int] = {}
        for store, cats in stores.items():
            if cats:
                method = "anonymised" if store == LOGS else "erased"
                erased[store] = self.add(t, "data.erased", _erased(
                    list(cats), store, "account_closed", method, request_id=rid), S_PRIVACY)
                t += _between(r, SEC, 10 * MIN)
        self.add(t + _between(r, MIN, HOUR), "request.fulfilled", {"request_id": rid}, S_PRIVACY)
        if paid:
            self.add(self.nightly(closed + LEGAL_HOLD), "data.erased",
                     _erased([PAYMENT_RECORD, INVOICE], BILLING, "legal_hold_expired"),
                     S_RETENTION)
        if "use_after_closure" in kinds:
            self.add(self.some_day(closed + 5 * DAY, closed + 30 * DAY), "data.used",
                     _EMAIL_AFTER_CLOSURE, S_MARKETING)
        if "disclosure_after_closure" in kinds:
            self.add(self.some_day(closed + 5 * DAY, closed + 30 * DAY), "data.shared",
                     _SMS_AFTER_CLOSURE, S_MARKETING)
        return erased

    def finish(self) -> _Person:
        """Encode the plan, latest event first."""
        self.entries.sort(reverse=True)
        assert self.entries[-1][0] >= self.t0, "a life cannot start before its registration"
        subject = _dumps(self.subject)
        values = self.values
        plan = []
        for t, seq, source, event_type, data, personal, other in self.entries:
            if personal is not None and not isinstance(personal, dict):
                personal = {k: values[k] for k in personal}
            plan.append((t, seq, _head(source, event_type),
                         data.json if type(data) is _Payload else _dumps(data),
                         None if personal is None else _dumps(personal),
                         subject if other is None else _dumps(other)))
        return _Person(plan)


#: Event types a person may still have after asking to close the account.
_AFTER_CLOSURE = frozenset({"request.identity_verified", "request.received", "subject.closed",
                            "data.erased", "request.fulfilled"})


def _ip(r: random.Random) -> str:
    net = r.choice(("192.0.2", "198.51.100", "203.0.113"))
    return f"{net}.{_between(r, 1, 255)}"


def _id_check(body: str) -> str:
    """The ISO 7064 MOD 11-2 check character of a resident ID number."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]


class _Simulation:
    def __init__(self, people: int, seed: int, start: datetime | None):
        if people < 0:
            raise ValueError("people must be >= 0")
        start = DEFAULT_START if start is None else start
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.people = people
        self.rng = random.Random(seed)
        self.start = _ms(start)
        self.violators = _Violators(people)
        span_days = max(people / MAX_SIGNUPS_PER_DAY, min(people, SIGNUP_SPAN_DAYS))
        self.mean_gap = span_days * DAY / max(people, 1)
        self.notice_email = {"policy_version": V2, "channel": "email"}
        self.notice_sms = {"policy_version": V2, "channel": "sms"}
        self.incident_notice = {"incident_id": "inc-2024-001", "channel": "email"}
        self.friend_registered = {"subject_kind": "non_user", "channel": "invitation"}
        self.friend_collected = _collected(
            [EMAIL], "functional.service.invitation", INVITES, retention=SHORT_RETENTION_DAYS,
            source={"kind": "third_party", "party": "inviting user", "provenance_verified": True,
                    "authorised_scope": ["functional.service.invitation"]})
        self.friend_shared = _shared(MAIL, [EMAIL], "functional.service.invitation")
        self.friend_used = _used([EMAIL], "functional.service.invitation", "invite-mailer")
        self._registered: dict[tuple[str, str, str], dict[str, Any]] = {}

    def version_for_new(self, t: int) -> str:
        """The policy version a person accepts at ``t`` (v2 from its publication)."""
        return V2 if t >= self.start + V2_PUBLISHED else V1

    def registered(self, kind: str, channel: str, t: int) -> dict[str, Any]:
        key = (kind, channel, self.version_for_new(t))
        data = self._registered.get(key)
        if data is None:
            data = self._registered[key] = {"subject_kind": kind, "channel": channel,
                                            "policy_version": key[2]}
        return data

    def consent_use(self, purpose: str, system: str, cid: str) -> dict[str, Any]:
        return _used([BROWSING, SEARCH], purpose, system, consent_id=cid)

    def global_events(self) -> _Person:
        """The company's own events: policy versions, recipients, the incident."""
        s = self.start
        entries: list[tuple[Any, ...]] = []

        def add(t: int, event_type: str, data: dict[str, Any], source: str) -> None:
            entries.append((t, len(entries), source, event_type, data, None, None))

        add(s, "policy.published", {
            "policy_version": V1, "effective_at": _iso(s), "material": False,
            "summary": "灵境云隐私政策 (privacy policy of 2022-05-16)"}, S_LEGAL)
        for k, recipient in enumerate(RECIPIENTS):
            add(s + (k + 1) * SEC, "recipient.registered", recipient, S_LEGAL)
        add(s + V2_PUBLISHED, "policy.published", {
            "policy_version": V2, "effective_at": _iso(s + V2_EFFECTIVE), "material": True,
            "summary": "adds 24x7 support by the Singapore affiliate (6.3) and profiling with "
                       "partner data (3.2); earlier consents must be renewed"}, S_LEGAL)
        w0, w1 = s + INCIDENT_WINDOW[0], s + INCIDENT_WINDOW[1]
        add(s + INCIDENT_OPENED, "incident.opened", {
            "incident_id": "inc-2024-001",
            "description": "a misconfigured log-lake export bucket was publicly readable",
            "stores": [LOGS], "window_start": _iso(w0), "window_end": _iso(w1),
            "categories": _INCIDENT_CATS}, S_SECURITY)
        add(s + INCIDENT_OPENED + 20 * HOUR, "incident.reported",
            {"incident_id": "inc-2024-001", "authority": REGULATOR}, S_SECURITY)
        add(s + INCIDENT_OPENED + 21 * DAY, "incident.closed", {"incident_id": "inc-2024-001"},
            S_SECURITY)
        entries.sort(reverse=True)
        return _Person([(t, seq, _head(source, event_type), _dumps(data), None, None)
                        for t, seq, source, event_type, data, _, _ in entries])

    def render(self, entry: tuple[Any, ...]) -> str:
        t, _, head, data, personal, subject = entry
        line = (f'{{"specversion":"1.0","id":"{uuid7(t, self.rng.randbytes(10))}",{head},'
                f'"time":"{_iso(t)}"')
        if subject is not None:
            line += f',"subject":{subject}'
        line += f',"data":{data}'
        if personal is not None:
            line += f',"personal":{personal}'
        return line + "}"

    def run(self) -> Iterator[str]:
        heap: list[tuple[int, int, _Person]] = []
        g = self.global_events()
        heap.append((g.plan[-1][0], -1, g))
        r = self.rng
        index = 0
        arrival = self.start + 5 * MIN
        while heap or index < self.people:
            if index < self.people and (not heap or arrival <= heap[0][0]):
                person = _Life(self, index, arrival).build()
                heapq.heappush(heap, (person.plan[-1][0], index, person))
                index += 1
                arrival += max(1, int(r.expovariate(1.0) * self.mean_gap))
                continue
            _, key, person = heap[0]
            entry = person.plan.pop()
            line = self.render(entry)
            if person.plan:
                heapq.heapreplace(heap, (person.plan[-1][0], key, person))
            else:
                heapq.heappop(heap)
            yield line


def simulate(people: int, seed: int = 1, start: datetime | None = None) -> Iterator[str]:
    """JSON Lines (wire format, no newline) of ``people`` lives, time-ordered, reproducible.

    ``start`` (timezone-aware, default 2024-01-01T00:00Z) is when the policy is first
    published; sign-ups follow. Lazy: nothing is generated before the first ``next()``.
    """
    return _Simulation(people, seed, start).run()
