"""The simulated world every life draws from: one RNG, one start, one population."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from workload.tables import (
    BROWSING,
    DAY,
    DEFAULT_START,
    EMAIL,
    INVITES,
    MAIL,
    MAX_SIGNUPS_PER_DAY,
    SEARCH,
    SHORT_RETENTION_DAYS,
    SIGNUP_SPAN_DAYS,
    V1,
    V2,
    V2_PUBLISHED,
    _collected,
    _ms,
    _shared,
    _used,
)
from workload.violations import Violators


class World:
    """What every life shares: the seeded RNG, the start, who breaks what, and payloads
    built once."""

    def __init__(self, people: int, seed: int, start: datetime | None):
        if people < 0:
            raise ValueError("people must be >= 0")
        start = DEFAULT_START if start is None else start
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.people = people
        self.rng = random.Random(seed)
        self.start = _ms(start)
        self.violators = Violators(people)
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
