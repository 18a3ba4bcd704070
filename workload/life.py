"""One person's life: a plan of events built step by step from the world's RNG.

``Life(world, index, t0).build()`` runs the steps in a fixed order (registration,
subscriptions, profile, real-name verification, payments, sessions, analytics, support,
invitations, consented uses, marketing, requests, the policy notice, closure, the breach
notice); each step reads what earlier ones decided from the ``Life``'s attributes.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from functools import cache
from typing import Any

from workload.tables import (
    _ANALYTICS,
    _ANALYTICS_RAW,
    _COLLECT_UNVERIFIED,
    _COOKIES,
    _COOKIES_REFUSED,
    _CUM_HOURS,
    _CUSTOMER_CONTENT,
    _DENIED_NO_REAL_NAME,
    _DENIED_PROFILE,
    _DISCLOSE_POLICE,
    _DMP,
    _EMAIL_AFTER_CLOSURE,
    _EXPIRED,
    _EXPIRED_SG,
    _EXPIRED_SKIP_BACKUP,
    _FRAUD,
    _FRIEND_EXPIRED,
    _ID_FOR_MARKETING,
    _INVOICE,
    _KYC_BANK,
    _KYC_ENTERPRISE,
    _KYC_ENTERPRISE_BANK,
    _KYC_FACE,
    _KYC_FACE_STORED,
    _KYC_ID,
    _KYC_PHOTO,
    _LINK_ANALYTICS,
    _LINK_SECURITY,
    _LINK_UNAUTHORISED,
    _LOGIN,
    _MARKETING_EMAIL,
    _MARKETING_SMS,
    _NOTICE_BILL,
    _NOTICE_SMS,
    _PAY,
    _PAY_FIRST,
    _PROFILE,
    _PROFILE_CATS,
    _PROFILE_CONSENT_CATS,
    _PROFILE_ENTERPRISE,
    _PROFILE_REFUSED,
    _REG_ACCOUNT,
    _REG_CODE,
    _REG_PASSWORD,
    _REG_PASSWORD_PLAIN,
    _SECURITY,
    _SEND_CODE,
    _SESSION,
    _SESSION_ABROAD,
    _SHARE_ANALYTICS,
    _SHARE_ANALYTICS_BARE,
    _SHARE_ENTERPRISE,
    _SHARE_FACE,
    _SHARE_ID_TO_PAY,
    _SHARE_INVOICE,
    _SHARE_MAIL_MARKETING,
    _SHARE_MAIL_NOTICES,
    _SHARE_PAY,
    _SHARE_PAY_FIRST,
    _SHARE_PAY_TO_ADTECH,
    _SHARE_PHOTO,
    _SHARE_SMS_CODE,
    _SHARE_SMS_MARKETING,
    _SMS_AFTER_CLOSURE,
    _TICKET,
    _TRACKING,
    _TRAIN_AI,
    _UNSUBSCRIBE,
    _USE_BANK_CHECK,
    _USE_ENTERPRISE,
    _USE_KYC,
    _USE_LINKED,
    _USE_TICKET,
    _USE_UNVERIFIED,
    _WITHDRAWN_ERASURE,
    ACCOUNTS,
    ADDRESS,
    AFFILIATE_HK,
    AFFILIATE_SG,
    BANK,
    BEHAVIOR,
    BEIJING,
    BILLING,
    CAMPAIGN_EVERY,
    CARD,
    CHANNELS,
    CITIES,
    COMPANY_KINDS,
    COMPANY_WORDS,
    COOKIES,
    CREDIT_CODE,
    DAY,
    DEVICE_ID,
    EMAIL,
    GIVEN,
    HOUR,
    ID_NUMBER,
    ID_PHOTO,
    INCIDENT_OPENED,
    INCIDENT_WINDOW,
    INDUSTRIES,
    INDUSTRY,
    INVITATION,
    INVITES,
    INVOICE,
    IP,
    JOB,
    JOBS,
    LEGAL_HOLD,
    LICENCE,
    LOG_RETENTION_DAYS,
    LOGS,
    M_EMAIL,
    M_SMS,
    MAIL_DOMAINS,
    MIN,
    N_EMAIL,
    NAME,
    ORG,
    PAYMENT_RECORD,
    PHONE,
    PROFILE,
    PROFILES,
    PROFILING,
    PROMO,
    PROMOTION,
    RECOMMEND,
    REQUEST_DEADLINE,
    ROADS,
    S_ACCOUNTS,
    S_ANALYTICS,
    S_BILLING,
    S_CONSOLE,
    S_KYC,
    S_LEGAL,
    S_LOGS,
    S_MARKETING,
    S_NOTIFY,
    S_PRIVACY,
    S_PROFILE,
    S_RETENTION,
    S_SECURITY,
    S_SUPPORT,
    SEC,
    HK_CROSS_BORDER,
    SG_CROSS_BORDER,
    SHORT_RETENTION_DAYS,
    EXTENDED_RETENTION_DAYS,
    _ADDRESS_DELETED,
    _ADDRESS_ERASED,
    _ADDRESS_USED,
    _DENIED_AFTER_WITHDRAWAL,
    _NAME_CORRECTED,
    SPECIAL,
    SUPPORT,
    SURNAMES,
    TICKET,
    TICKET_RETENTION_DAYS,
    TICKETS,
    TICKETS_TEXT,
    TRACKING,
    USERNAME,
    V1,
    V2_EFFECTIVE,
    V2_PUBLISHED,
    _between,
    _collected,
    _dumps,
    _erased,
    _iso,
    _Payload,
    _shared,
    _used,
    account_id,
)
from workload.violations import CLOSURE_KINDS, Planted
from workload.world import World


class Person:
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


def _subscribed(opted_out: int | None, at: int) -> bool:
    """Whether someone who opted out at ``opted_out`` (None: never) still gets mail at ``at``."""
    return opted_out is None or at < opted_out


#: Kinds planted during real-name verification, payments and support: they need that step.
_KYC_KINDS = frozenset({Planted.FACE_DATA_STORED, Planted.ID_NUMBER_USED_FOR_MARKETING,
                        Planted.ID_NUMBER_SHARED_NOT_FOR_VERIFICATION,
                        Planted.PAYMENT_DATA_TO_AD_TECH})
_PAY_KINDS = frozenset({Planted.PAYMENT_DATA_TO_AD_TECH,
                        Planted.ID_NUMBER_SHARED_NOT_FOR_VERIFICATION})
_TICKET_KINDS = frozenset({Planted.CROSS_BORDER_WITHOUT_CONSENT, Planted.OVERSEAS_UNCHECKED,
                           Planted.CROSS_BORDER_MISSING_FIELDS,
                           Planted.UNDECLARED_PURPOSE_WITHOUT_CONSENT,
                           Planted.CUSTOMER_CONTENT_RECORDED})


class Life:
    """Builds one person's plan; every decision is drawn from the simulation's RNG."""

    def __init__(self, sim: World, index: int, t0: int):
        self.sim = sim
        self.r = sim.rng
        self.t0 = t0
        self.kinds = frozenset(sim.violators.get(index))
        self.subject = account_id(index)
        self.values: dict[str, str] = {}
        # (time, seq, source, type, data, personal, subject override)
        self.entries: list[tuple[Any, ...]] = []
        # What the steps of ``build`` decide and later steps read, in the order decided.
        self.enterprise = False
        self.end = t0
        self.closes = False
        self.web = False
        self.channel = "web"
        self.first_session = t0
        self.email_out: int | None = None
        self.sms_out: int | None = None
        self.tracking_out: int | None = None
        self.notices_out: int | None = None
        self.gets_sms = False
        self.has_profile = False
        self.verified_at: int | None = None
        self.has_id_number = False
        self.payments: list[int] = []
        self.logs_erased: list[tuple[int, int]] = []  # (collected, erased by retention)
        self.closure_erased: dict[str, int] = {}

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

    # -- the life, step by step ---------------------------------------------------------------

    def build(self) -> Person:
        """The person's whole plan. The steps run in this order and each draws from the
        simulation's RNG, so the order is part of the output (same seed, same bytes)."""
        self.begin()
        self.register()
        self.subscriptions()
        self.optional_profile()
        self.real_name_verification()
        self.payments_and_invoices()
        self.sessions_and_devices()
        self.analytics()
        self.support_tickets()
        self.invited_friends()
        self.consented_uses()
        self.marketing()
        self.rights_requests()
        self.policy_notice()
        self.closure_erased = self.close(self.end, bool(self.payments)) if self.closes else {}
        self.breach_notice()
        return self.finish()

    def begin(self) -> None:
        """Who the person is, how long they stay, whether they close, where they sign up."""
        r, kinds = self.r, self.kinds
        self.enterprise = not kinds and r.random() < 0.12
        self.make_values(self.enterprise)
        u = r.random()
        days = r.uniform(0.5, 30) if u < 0.35 else r.uniform(30, 365) if u < 0.8 else \
            r.uniform(365, 730)
        if kinds:
            days = max(days, r.uniform(300, 500))
        self.end = self.t0 + int(days * DAY)  # last day of activity
        self.closes = bool(kinds & CLOSURE_KINDS) or r.random() < 0.12
        self.web = r.random() < 0.75
        self.channel = "web" if self.web else r.choice(CHANNELS[3:])

    def register(self) -> None:
        """Registration (2.1.1(1)a): code, account, password, welcome notice, cookies."""
        r, t0, kinds = self.r, self.t0, self.kinds
        self.add(t0, "subject.registered",
                 self.sim.registered(("enterprise_contact" if self.enterprise else "user"),
                                     self.channel, t0),
                 S_ACCOUNTS)
        t = t0 + _between(r, 1 * SEC, 3 * SEC)
        self.add(t, "data.shared", _SHARE_SMS_CODE, S_ACCOUNTS)
        self.add(t + 200, "data.used", _SEND_CODE, S_ACCOUNTS)
        t += _between(r, 20 * SEC, 90 * SEC)
        self.add(t, "data.collected", _REG_CODE, S_ACCOUNTS)
        t += _between(r, 2 * SEC, 30 * SEC)
        self.add(t, "data.collected", _REG_ACCOUNT, S_ACCOUNTS, (USERNAME, EMAIL, PHONE))
        self.add(t + 5, "data.collected",
                 _REG_PASSWORD_PLAIN if Planted.PASSWORD_STORED_PLAIN in kinds
                 else _REG_PASSWORD,
                 S_ACCOUNTS)
        self.add(t + 900, "data.shared", _SHARE_MAIL_NOTICES, S_NOTIFY)
        self.add(t + 1000, "data.used", _NOTICE_BILL, S_NOTIFY)  # welcome notice
        if self.web:
            if r.random() < 0.1:
                self.add(t + 2 * SEC, "data.collection_refused", _COOKIES_REFUSED, S_CONSOLE)
            else:
                self.add(t + 2 * SEC, "data.collected", _COOKIES, S_CONSOLE)
                self.expire(t + 2 * SEC, COOKIES, LOG_RETENTION_DAYS)
        self.first_session = t + _between(r, 5 * SEC, 60 * SEC)

    def subscriptions(self) -> None:
        """Opt-outs, decided up front so that nothing is sent after one."""
        r, t0, end = self.r, self.t0, self.end

        def opt_out(probability: float, forced: bool) -> int | None:
            if forced:
                return self.some_day(t0 + 10 * DAY, t0 + 40 * DAY)
            if r.random() < probability and end - t0 > 3 * DAY:
                return self.some_day(t0 + 2 * DAY, end)
            return None

        forced_email_out = bool(self.kinds & {Planted.MARKETING_AFTER_OPT_OUT,
                                              Planted.TRACKING_AFTER_UNSUBSCRIBE})
        self.email_out = opt_out(0.15, forced_email_out)
        self.gets_sms = r.random() < 0.35
        self.sms_out = opt_out(0.10, False) if self.gets_sms else None
        self.tracking_out = opt_out(0.05, False)
        self.notices_out = opt_out(0.03, False)
        for when, kind in ((self.email_out, M_EMAIL), (self.sms_out, M_SMS),
                           (self.tracking_out, TRACKING), (self.notices_out, N_EMAIL)):
            if when is not None:
                self.add(when, "subscription.changed", _UNSUBSCRIBE[kind], S_CONSOLE)

    def optional_profile(self) -> None:
        """The optional profile (2.1.1(1)c): refused, given, or neither."""
        r, t0, end, kinds = self.r, self.t0, self.end, self.kinds
        self.has_profile = False
        if Planted.SERVICE_DENIED_AFTER_REFUSAL in kinds or r.random() < 0.12:
            tr = self.some_day(t0 + 5 * MIN, min(end, t0 + 3 * DAY))
            self.add(tr, "data.collection_refused", _PROFILE_REFUSED, S_CONSOLE)
            if Planted.SERVICE_DENIED_AFTER_REFUSAL in kinds:
                self.add(tr + _between(r, 1 * MIN, 2 * DAY), "service.denied", _DENIED_PROFILE,
                         S_CONSOLE)
        elif Planted.DELETED_DATA_USED in kinds or r.random() < 0.65:
            self.has_profile = True
            tp = self.some_day(t0 + 5 * MIN, min(end, t0 + 20 * DAY))
            keys: tuple[str, ...] = (NAME, ORG, JOB, INDUSTRY, ADDRESS) if self.enterprise else \
                (NAME, ADDRESS, INDUSTRY)
            self.add(tp, "data.collected", _PROFILE_ENTERPRISE if self.enterprise else _PROFILE,
                     S_CONSOLE, keys)
            planted = Planted.DELETED_DATA_USED in kinds
            if (planted or (not kinds and r.random() < 0.05)) and tp + DAY < end:
                # 6.3: the person deletes their address; it is erased (source and backup)
                # the next night, as after a closure
                td = self.some_day(tp + DAY, min(end, tp + 30 * DAY))
                self.add(td, "data.deleted_by_subject", _ADDRESS_DELETED, S_CONSOLE)
                self.add(self.nightly(td), "data.erased", _ADDRESS_ERASED, S_PRIVACY)
                if planted:
                    self.add(self.some_day(td + 5 * DAY, td + 20 * DAY), "data.used",
                             _ADDRESS_USED, S_SUPPORT)

    def real_name_verification(self) -> None:
        """Real-name verification (2.1.1(2)): enterprise papers, face, ID photo or bank."""
        r, t0, end, kinds = self.r, self.t0, self.end, self.kinds
        self.verified_at = None
        self.has_id_number = False
        if kinds & _KYC_KINDS or r.random() < (0.8 if self.enterprise else 0.7):
            tv = self.some_day(t0 + 10 * MIN, min(end, t0 + 7 * DAY))
            self.verified_at = tv
            if self.enterprise:
                bank = r.random() < 0.4
                keys = (ORG, CREDIT_CODE, LICENCE, BANK) if bank else (ORG, CREDIT_CODE, LICENCE)
                self.add(tv, "data.collected", _KYC_ENTERPRISE_BANK if bank else _KYC_ENTERPRISE,
                         S_KYC, keys)
                self.add(tv + 2 * SEC, "data.shared", _SHARE_ENTERPRISE, S_KYC)
                self.add(tv + _between(r, 1 * MIN, 2 * DAY), "data.used", _USE_ENTERPRISE, S_KYC)
            else:
                self.has_id_number = True
                route = r.random()
                if Planted.FACE_DATA_STORED in kinds or route < 0.55:
                    self.add(tv, "data.collected", _KYC_ID, S_KYC, (NAME, ID_NUMBER))
                    self.add(tv + 30 * SEC, "data.collected",
                             _KYC_FACE_STORED if Planted.FACE_DATA_STORED in kinds else _KYC_FACE,
                             S_KYC)
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
            if _subscribed(self.notices_out, tv + 3 * DAY) and tv + 3 * DAY < end:
                self.add(tv + 3 * DAY, "data.used", _NOTICE_BILL, S_NOTIFY)  # result notice
            if self.has_id_number and r.random() < 0.004:  # a police request (5.3.4)
                self.add(self.some_day(tv + DAY, end), "data.shared", _DISCLOSE_POLICE, S_LEGAL)
        elif r.random() < 0.3:
            self.add(self.some_day(t0 + HOUR, end), "service.denied", _DENIED_NO_REAL_NAME,
                     S_CONSOLE)

    def payments_and_invoices(self) -> None:
        """Top-ups and invoices (2.1.1(3)), once verified."""
        r, end, kinds, verified_at = self.r, self.end, self.kinds, self.verified_at
        self.payments = []
        if verified_at is not None and end - verified_at > HOUR and (
                kinds & _PAY_KINDS or r.random() < 0.6):
            n = 1 + min(int(r.expovariate(1 / 3)), 24)
            first = self.some_day(verified_at + 10 * MIN, min(end, verified_at + 5 * DAY))
            payments = self.payments = sorted(
                {first, *(self.some_day(first, end) for _ in range(n - 1))})
            method = BANK if r.random() < 0.3 else CARD
            amounts = (50, 100, 200, 500, 1000, 5000) if self.enterprise else (10, 20, 50, 100, 200)
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
                if _subscribed(self.notices_out, tp + 2000):
                    self.add(tp + 2000, "data.used", _NOTICE_BILL, S_BILLING)
            if r.random() < (0.7 if self.enterprise else 0.25):
                ti = self.some_day(payments[0] + HOUR, end)
                self.add(ti, "data.collected", _INVOICE, S_BILLING, (INVOICE,))
                self.add(ti + 300, "data.shared", _SHARE_INVOICE, S_BILLING)
            if Planted.PAYMENT_DATA_TO_AD_TECH in kinds:
                self.add(self.some_day(payments[0] + DAY, payments[0] + 60 * DAY), "data.shared",
                         _SHARE_PAY_TO_ADTECH, S_MARKETING)
            if Planted.ID_NUMBER_SHARED_NOT_FOR_VERIFICATION in kinds:
                self.add(payments[0] + 500, "data.shared", _SHARE_ID_TO_PAY, S_BILLING)
        if Planted.ID_NUMBER_USED_FOR_MARKETING in kinds and verified_at is not None:
            self.add(self.some_day(verified_at + 2 * DAY, verified_at + 40 * DAY), "data.used",
                     _ID_FOR_MARKETING, S_MARKETING)

    def sessions_and_devices(self) -> None:
        """Device, log and location data (2.1.2), logins and security (3.4), linking and
        third-party data (2.1.2 note, 2.1.3)."""
        r, t0, end, kinds = self.r, self.t0, self.end, self.kinds
        n_sessions = 1 + min(int((end - t0) / DAY / r.uniform(20, 60)), 14)
        sessions = sorted([self.first_session] + [self.some_day(t0 + HOUR, end)
                                                  for _ in range(n_sessions - 1)])
        mech = "server_log" if self.web else "sdk"
        device = self.values[DEVICE_ID]
        skip_backup = Planted.ERASURE_SKIPPED_BACKUP in kinds
        self.logs_erased = []
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
            self.logs_erased.append((ts, erased))
        if Planted.STORE_OUTSIDE_CHINA in kinds:
            ts = self.some_day(t0 + 2 * DAY, t0 + 30 * DAY)
            self.add(ts, "data.collected", _SESSION_ABROAD, S_LOGS, {IP: _ip(r)})
            self.add(self.nightly(ts + LOG_RETENTION_DAYS * DAY), "data.erased", _EXPIRED_SG,
                     S_RETENTION)
        if r.random() < 0.3 and end - t0 > DAY:
            tl = self.some_day(t0 + HOUR, end)
            self.add(tl, "data.linked", _LINK_SECURITY if r.random() < 0.6 else _LINK_ANALYTICS,
                     S_SECURITY)
        if Planted.LINKED_WITHOUT_AUTHORISATION in kinds:
            tl = self.some_day(t0 + 3 * DAY, t0 + 60 * DAY)
            self.add(tl, "data.linked", _LINK_UNAUTHORISED, S_MARKETING)
            self.add(tl + _between(r, HOUR, 5 * DAY), "data.used", _USE_LINKED, S_MARKETING)
        if Planted.THIRD_PARTY_DATA_UNVERIFIED in kinds:
            tb = self.some_day(t0 + 3 * DAY, t0 + 60 * DAY)
            self.add(tb, "data.collected", _COLLECT_UNVERIFIED, S_SECURITY)
            self.add(tb + _between(r, MIN, 3 * DAY), "data.used", _USE_UNVERIFIED, S_SECURITY)

    def analytics(self) -> None:
        """Anonymised analytics (3.2a) and the analytics partner (5.1.3)."""
        r, t0, end, kinds = self.r, self.t0, self.end, self.kinds
        for _ in range(int(r.random() * 3)):
            self.add(self.some_day(t0 + DAY, end), "data.used", _ANALYTICS, S_ANALYTICS)
        if r.random() < 0.1:
            self.add(self.some_day(t0 + DAY, end), "data.shared", _SHARE_ANALYTICS, S_ANALYTICS)
        if Planted.NON_ANONYMISED_ANALYTICS in kinds:
            self.add(self.some_day(t0 + 5 * DAY, t0 + 90 * DAY), "data.used", _ANALYTICS_RAW,
                     S_ANALYTICS)
        if Planted.DISCLOSURE_WITHOUT_CLAUSE_OR_CONSENT in kinds:
            self.add(self.some_day(t0 + 5 * DAY, t0 + 90 * DAY), "data.shared",
                     _SHARE_ANALYTICS_BARE, S_ANALYTICS)

    def support_tickets(self) -> None:
        """Support tickets (3.1), cross-border support (6.3d), customer content (1.3)."""
        r, t0, end, kinds = self.r, self.t0, self.end, self.kinds
        if kinds & _TICKET_KINDS or r.random() < 0.2:
            ticket_at = self.some_day(t0 + HOUR, min(end, t0 + 60 * DAY))
            self.add(ticket_at, "data.collected", _TICKET, S_SUPPORT,
                     {TICKET: r.choice(TICKETS_TEXT) + f" (工单 #{_between(r, 10**6, 10**7)})"})
            self.add(ticket_at + _between(r, 5 * MIN, 6 * HOUR), "data.used", _USE_TICKET,
                     S_SUPPORT)
            self.expire(ticket_at, TICKETS, TICKET_RETENTION_DAYS)
            if Planted.CUSTOMER_CONTENT_RECORDED in kinds:
                self.add(ticket_at + 30 * MIN, "data.collected", _CUSTOMER_CONTENT, S_SUPPORT)
            tx = ticket_at + _between(r, 10 * MIN, 2 * HOUR)
            if Planted.CROSS_BORDER_MISSING_FIELDS in kinds or (not kinds and r.random() < 0.06):
                cid, _ = self.consent(tx, SUPPORT, SG_CROSS_BORDER["categories"],
                                      "notice-cross-border-sg", SG_CROSS_BORDER)
                block = SG_CROSS_BORDER
                if Planted.CROSS_BORDER_MISSING_FIELDS in kinds:
                    block = {k: v for k, v in SG_CROSS_BORDER.items()
                             if k not in ("recipient_contact", "rights_howto")}
                self.add(tx + _between(r, MIN, HOUR), "data.shared",
                         _shared(AFFILIATE_SG, SG_CROSS_BORDER["categories"], SUPPORT,
                                 consent_id=cid, cross_border=block), S_SUPPORT)
            if Planted.OVERSEAS_UNCHECKED in kinds:  # consented and told, but never inspected
                cid, _ = self.consent(tx, SUPPORT, HK_CROSS_BORDER["categories"],
                                      "notice-cross-border-hk", HK_CROSS_BORDER)
                self.add(tx + _between(r, MIN, HOUR), "data.shared",
                         _shared(AFFILIATE_HK, HK_CROSS_BORDER["categories"], SUPPORT,
                                 consent_id=cid, cross_border=HK_CROSS_BORDER), S_SUPPORT)
            if Planted.CROSS_BORDER_WITHOUT_CONSENT in kinds:
                self.add(tx + 2 * HOUR, "data.shared",
                         _shared(AFFILIATE_SG, SG_CROSS_BORDER["categories"], SUPPORT,
                                 cross_border=SG_CROSS_BORDER), S_SUPPORT)
            if Planted.UNDECLARED_PURPOSE_WITHOUT_CONSENT in kinds:
                self.add(ticket_at + _between(r, DAY, 30 * DAY), "data.used", _TRAIN_AI,
                         S_ANALYTICS)

    def invited_friends(self) -> None:
        """Invited friends (3.1): non-users with a subject of their own."""
        r, t0, end = self.r, self.t0, self.end
        if not self.kinds and r.random() < 0.1 and end - t0 > HOUR:
            for _ in range(1 + int(r.random() * 2)):
                self.invite(self.some_day(t0 + HOUR, end))

    def consented_uses(self) -> None:
        """Consent-based uses: profiling (3.2b), recommendations (3.4b), promotions (2.1.1(4))."""
        r, t0, end, kinds, sim = self.r, self.t0, self.end, self.kinds, self.sim
        if Planted.PROFILING_WITHOUT_CONSENT in kinds:
            self.add(self.some_day(t0 + 5 * DAY, t0 + 60 * DAY), "data.used",
                     _used(_PROFILE_CONSENT_CATS, PROFILING, "profile-engine"), S_PROFILE)
        elif Planted.DENIED_AFTER_WITHDRAWAL in kinds:
            # withdrawn by day 55 at the latest; then a core service is refused for it (3.2)
            self.consent_uses(PROFILING, end, forced_withdrawal=True)
            self.add(self.some_day(t0 + 60 * DAY, t0 + 90 * DAY), "service.denied",
                     _DENIED_AFTER_WITHDRAWAL, S_CONSOLE)
        elif Planted.PROFILING_AFTER_WITHDRAWAL in kinds or r.random() < 0.25:
            self.consent_uses(PROFILING, end,
                              forced_withdrawal=Planted.PROFILING_AFTER_WITHDRAWAL in kinds)
        if not kinds and r.random() < 0.05:
            self.consent_uses(RECOMMEND, end)
        unfounded = Planted.RETENTION_EXTENDED_WITHOUT_BASIS in kinds
        if Planted.HELD_PAST_RETENTION in kinds or unfounded or (not kinds and r.random() < 0.04):
            tc = self.some_day(t0 + DAY, min(end, t0 + 20 * DAY))
            cid, _ = self.consent(tc, PROMOTION, [SPECIAL], "notice-student-plan")
            self.add(tc + _between(r, MIN, HOUR), "data.collected",
                     _collected([SPECIAL], PROMOTION, PROMO, retention=SHORT_RETENTION_DAYS,
                                consent_id=cid, notice_ref=f"notice-student-plan-"
                                f"{sim.version_for_new(tc)}"), S_MARKETING, (SPECIAL,))
            if Planted.HELD_PAST_RETENTION in kinds:
                pass  # never erased
            elif unfounded or (not kinds and r.random() < 0.3 and tc + 25 * DAY < end):
                # 6.3: the proof kept longer, on the person's consent (planted: a consent
                # never given), and erased at the extended date
                te = self.some_day(tc + 10 * DAY, tc + 25 * DAY)
                keep = f"cns-{self.subject}-renewal"
                if not unfounded:
                    keep, _ = self.consent(te, PROMOTION, [SPECIAL], "notice-proof-renewal")
                self.add(te + _between(r, MIN, HOUR), "data.retention_extended", {
                    "categories": [SPECIAL], "stores": [PROMO],
                    "until": _iso(tc + EXTENDED_RETENTION_DAYS * DAY), "basis": "consent",
                    "consent_id": keep}, S_MARKETING)
                self.expire(tc, PROMO, EXTENDED_RETENTION_DAYS)
            else:
                self.expire(tc, PROMO, SHORT_RETENTION_DAYS)
        if Planted.PROMOTION_DATA_WITHOUT_CONSENT in kinds:
            tc = self.some_day(t0 + DAY, t0 + 30 * DAY)
            self.add(tc, "data.collected",
                     _collected([SPECIAL], PROMOTION, PROMO, retention=SHORT_RETENTION_DAYS),
                     S_MARKETING, (SPECIAL,))
            self.expire(tc, PROMO, SHORT_RETENTION_DAYS)

    def marketing(self) -> None:
        """Marketing by e-mail and SMS (3.3) with tracking pixels (4.2)."""
        r, t0, end, kinds = self.r, self.t0, self.end, self.kinds
        email_out, tracking_out, sms_out = self.email_out, self.tracking_out, self.sms_out
        campaign = self.sim.start + 7 * DAY + 10 * HOUR - BEIJING
        if campaign < t0 + DAY:
            campaign += ((t0 + DAY - campaign) // CAMPAIGN_EVERY + 1) * CAMPAIGN_EVERY
        shared_mail = shared_sms = False
        k = 0
        while campaign < end:
            k += 1
            at = campaign + int(r.random() * 3 * HOUR)
            if _subscribed(email_out, at) and r.random() < 0.8:
                if not shared_mail:
                    self.add(at - 1000, "data.shared", _SHARE_MAIL_MARKETING, S_MARKETING)
                    shared_mail = True
                self.add(at, "data.used", _MARKETING_EMAIL, S_MARKETING)
                opened = at + _between(r, 10 * MIN, 2 * DAY)
                if (r.random() < 0.4 and _subscribed(tracking_out, opened)
                        and _subscribed(email_out, opened) and opened < end):
                    self.add(opened, "data.used", _TRACKING, S_MARKETING)
            if self.gets_sms and k % 2 == 0 and _subscribed(sms_out, at + HOUR):
                if not shared_sms:
                    self.add(at + HOUR - 1000, "data.shared", _SHARE_SMS_MARKETING, S_MARKETING)
                    shared_sms = True
                self.add(at + HOUR, "data.used", _MARKETING_SMS, S_MARKETING)
            campaign += CAMPAIGN_EVERY
        if email_out is not None and Planted.MARKETING_AFTER_OPT_OUT in kinds:
            self.add(self.some_day(email_out + 3 * DAY, email_out + 20 * DAY), "data.used",
                     _MARKETING_EMAIL, S_MARKETING)
        if email_out is not None and Planted.TRACKING_AFTER_UNSUBSCRIBE in kinds:
            self.add(self.some_day(email_out + 2 * DAY, email_out + 20 * DAY), "data.used",
                     _TRACKING, S_MARKETING)
        if self.gets_sms and r.random() < 0.5:
            ts = self.some_day(t0 + DAY, end)
            if ts < end:
                self.add(ts, "data.used", _NOTICE_SMS, S_NOTIFY)

    def rights_requests(self) -> None:
        """Rights requests (7.1, 7.5, 9.2), answered before any closure."""
        r, t0, kinds = self.r, self.t0, self.kinds
        if Planted.REQUEST_NEVER_FULFILLED in kinds:
            self.request(self.some_day(t0 + 10 * DAY, t0 + 60 * DAY), "access")
        if Planted.REQUEST_FULFILLED_UNVERIFIED in kinds:
            rid, tv = self.request(self.some_day(t0 + 10 * DAY, t0 + 60 * DAY), "access",
                                   verified=False)
            self.add(tv + _between(r, HOUR, 3 * DAY), "request.fulfilled", {"request_id": rid},
                     S_PRIVACY)
        if Planted.REAL_NAME_CHANGED_UNVERIFIED in kinds:
            self.add(self.some_day(t0 + 10 * DAY, t0 + 60 * DAY), "data.corrected",
                     _NAME_CORRECTED, S_ACCOUNTS, (NAME,))
        last_request = self.end - 12 * DAY if self.closes else self.end
        if not kinds and r.random() < 0.08 and last_request - t0 > 2 * DAY:
            self.rights_request(self.some_day(t0 + DAY, last_request), self.has_profile)

    def policy_notice(self) -> None:
        """The material policy change (8): notices to everyone with an account."""
        sim = self.sim
        notice = sim.start + V2_PUBLISHED + int(self.r.random() * 2 * DAY)
        if Planted.NOTICE_AFTER_CHANGE in self.kinds:  # told only once it was in effect
            notice = max(sim.start + V2_EFFECTIVE, self.t0) + _between(self.r, DAY, 5 * DAY)
            self.add(notice, "policy.notice_sent", sim.notice_email, S_NOTIFY)
        elif self.t0 < sim.start + V2_PUBLISHED and (notice < self.end or not self.closes):
            self.add(notice, "policy.notice_sent",
                     sim.notice_email if self.r.random() < 0.8 else sim.notice_sms, S_NOTIFY)

    def breach_notice(self) -> None:
        """A breach of the log lake (6.2.1a): notify everybody whose log data was in it at
        some time in the incident's window (closed accounts included)."""
        sim = self.sim
        w0, w1 = sim.start + INCIDENT_WINDOW[0], sim.start + INCIDENT_WINDOW[1]
        gone = self.closure_erased.get(LOGS, 1 << 62)
        if any(ts <= w1 and min(erased, gone) >= w0 for ts, erased in self.logs_erased):
            told = sim.start + INCIDENT_OPENED + 28 * HOUR + int(self.r.random() * 6 * HOUR)
            self.add(told, "incident.subject_notified", sim.incident_notice, S_SECURITY)

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
            if forced_withdrawal and Planted.PROFILING_AFTER_WITHDRAWAL in self.kinds:
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

    def finish(self) -> Person:
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
        return Person(plan)


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
