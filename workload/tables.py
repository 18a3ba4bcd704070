"""The workload's data: time units and dates, the company's systems, stores and recipients,
the categories and purposes it uses, fictitious people's names and places, and the event
payloads that do not depend on the person (built and JSON-encoded once).
"""

from __future__ import annotations

import json
import random
import time as _time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

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

V1, V2 = "v1", "v2"
V2_PUBLISHED = 165 * DAY  # offsets from the start of the simulation
V2_EFFECTIVE = 195 * DAY
INCIDENT_OPENED = 250 * DAY + 3 * HOUR
INCIDENT_WINDOW = (248 * DAY, 250 * DAY)
CAMPAIGN_EVERY = 45 * DAY  # marketing e-mail campaigns
LOG_RETENTION_DAYS = 180
TICKET_RETENTION_DAYS = 365
SHORT_RETENTION_DAYS = 30  # invitations, promotion proofs
EXTENDED_RETENTION_DAYS = 90  # a promotion proof kept longer on the person's consent (6.3)
LEGAL_HOLD = 3 * YEAR  # payment records after closure (e-commerce / tax law)
REQUEST_DEADLINE = 15 * DAY
#: Share of people who break a promise (at least one violator per kind for people >= 200).
VIOLATOR_SHARE = 0.02


def account_id(index: int) -> str:
    """The account id (the wire ``subject``) of the person with this index."""
    return str(1_000_000_000 + index)


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
#: An overseas affiliate never inspected on site: only the planted 6.3e transfer goes there.
AFFILIATE_HK = "lingjing-hk"
REGULATOR, POLICE, ADTECH = "cac-jiangsu", "psb-wuxi", "jingzhun-ads"

_PAYMENT_CATEGORIES = [
    "user.financial.bank_account", "user.financial.credit_card",
    "user.financial.payment_password", "user.financial.payment_record",
    "user.financial.invoice",
]

#: (actor, role) of the staff allowed to read personal data (``staff.access_granted``, 6.2.1);
#: the last one leaves when policy v2 is published. ``make demo`` queries as the first.
STAFF: list[tuple[str, str]] = [
    ("dpo@lingjing.cn", "privacy_officer"), ("oncall@lingjing.cn", "responder"),
    ("intern@lingjing.cn", "compliance"),
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
    {"recipient": AFFILIATE_HK, "name": "Lingjing Cloud Hong Kong Ltd.",
     "kind": "affiliate", "location": "HK", "roles": ["other"],
     "allowed_purposes": ["essential.service.operations.support"],
     "allowed_categories": ["user.contact.email", "user.account.username",
                            "user.content.support_ticket"],
     "agreement_ref": "IGDTA-2024-HK-002"},
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
HK_CROSS_BORDER: dict[str, Any] = {
    **SG_CROSS_BORDER, "destination_country": "HK",
    "recipient_name": "Lingjing Cloud Hong Kong Ltd.",
    "recipient_contact": "dpo@hk.lingjing-cloud.example, +852 3000 0000",
    "rights_howto": "e-mail dpo@hk.lingjing-cloud.example or call 400-181-6806 ext. 2",
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
_DENIED_AFTER_WITHDRAWAL = {"service": "console dashboard",
                            "reason": "personalisation consent withdrawn",
                            "missing_categories": []}
#: 7.1: the real name changed with no verified correction request.
_NAME_CORRECTED = {"categories": [NAME], "store": PROFILE}
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
#: 6.3: the person deletes their address from the profile; erased from source and backup.
_ADDRESS_DELETED = _Payload({"categories": [ADDRESS]})
_ADDRESS_ERASED = _erased([ADDRESS], PROFILE, "user_request")
_ADDRESS_USED = _used([ADDRESS], "essential.service.operations.support", "ticket-system")
_SMS_AFTER_CLOSURE = _shared(SMS, [PHONE], M_SMS)
_EMAIL_AFTER_CLOSURE = _used([EMAIL], M_EMAIL, "campaign-mailer", message_kind=M_EMAIL)
_INCIDENT_CATS = [IP, DEVICE_ID, BROWSING]
