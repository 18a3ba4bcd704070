"""What the rules compare against, worked out once over the closed taxonomy, and the small
helpers that word a finding (taxonomy keys and counts only, never a personal value)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Final

from schemas import events as ev
from schemas import taxonomy as tx


def _touching(group: Iterable[str]) -> frozenset[str]:
    """Category keys that are a member of ``group``, a part of one, or contain one."""
    members = tuple(group)
    return frozenset(
        c for c in tx.CATEGORIES if any(tx.covers(g, c) or tx.covers(c, g) for g in members)
    )


def _uses_under(group: Iterable[str]) -> frozenset[str]:
    """Use keys equal to or below a member of ``group``."""
    members = tuple(group)
    return frozenset(u for u in tx.USES if any(tx.covers(g, u) for g in members))


VERIFICATION_TOUCH: Final = _touching(tx.VERIFICATION_ONLY)
#: Enterprise verification data and its parts (2.1.1(2)c); the rest of VERIFICATION_TOUCH
#: reports as 2.1.1(2)b.
ENTERPRISE_TOUCH: Final = frozenset(
    c for c in tx.CATEGORIES if any(tx.covers(e, c) for e in tx.ENTERPRISE_VERIFICATION))
#: Real-name data and its parts, whose correction needs identity verification (7.1).
REAL_NAME: Final = frozenset(
    c for c in tx.CATEGORIES if any(tx.covers(r, c) for r in tx.REAL_NAME_CATEGORIES))
#: Purposes 3.4a lets any collected data serve: security and fraud prevention.
SECURITY: Final = _uses_under({"essential.service.security", "essential.fraud_detection"})
PAYMENT_TOUCH: Final = _touching(tx.PAYMENT_CATEGORIES)
BIOMETRIC_TOUCH: Final = _touching(tx.BIOMETRIC_CATEGORIES)
PASSWORD_TOUCH: Final = _touching(tx.PASSWORD_CATEGORIES)
MARKETING: Final = _uses_under(tx.MARKETING_USES)
TRACKING: Final = _uses_under(tx.TRACKING_USES)
PROFILING: Final = _uses_under(tx.PROFILING_USES)
# Web beacons sit under analytics.reporting but are tracking (4.2), not product analytics.
ANALYTICS: Final = _uses_under(tx.ANALYTICS_USES) - TRACKING
COMMERCIAL: Final = _uses_under(tx.COMMERCIAL_USES)
VERIFICATION: Final = _uses_under(tx.VERIFICATION_USES)
PROMOTION: Final = _uses_under({"marketing.promotion"})
LEGAL_OBLIGATION: Final = _uses_under({"essential.legal_obligation"})
UNDECLARED: Final = frozenset(u.key for u in tx.USES.values() if not u.declared)
USE_GROUNDS: Final = frozenset(g.value for g in tx.USE_GROUNDS)
DISCLOSURE_GROUNDS: Final = frozenset(g.value for g in tx.DISCLOSURE_GROUNDS)
PROCESSOR_ROLES: Final = frozenset(
    {tx.RecipientRole.PAYMENT_PROCESSOR.value, tx.RecipientRole.INVOICE_PROCESSOR.value}
)
#: The mailing a web beacon rides in when a tracking use names no message kind (4.2).
TRACKING_CARRIER: Final = "marketing.communications.email"
#: Per event data model, its fields that hold category lists (1.3 looks at all of them).
CATEGORY_FIELDS: Final[dict[type[ev.EventData], tuple[str, ...]]] = {
    model: tuple(f for f in ("categories", "missing_categories", "legal_hold_categories",
                             "allowed_categories") if f in model.model_fields)
    for model in ev.DATA_MODELS
}

#: A day in microseconds, the unit of every time the findings keep.
DAY_US: Final = 86_400_000_000


@functools.lru_cache(maxsize=1024)
def covered_by(keys: tuple[str, ...]) -> frozenset[str]:
    """Every category key equal to or below one of ``keys``."""
    return frozenset(c for c in tx.CATEGORIES if any(tx.covers(k, c) for k in keys))


# customer data and its parts; not the categories containing it ("user", a whole-person
# erasure, is not a record of customer data)
OUT_OF_SCOPE: Final = covered_by(tuple(tx.OUT_OF_SCOPE_CATEGORIES))


def names(keys: Iterable[str]) -> str:
    """Keys sorted and joined, each once: how a finding lists categories or stores."""
    return ", ".join(sorted(set(keys)))


def overlaps(a: str, b: str) -> bool:
    """Whether one key covers the other."""
    return tx.covers(a, b) or tx.covers(b, a)
