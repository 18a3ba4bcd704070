"""The findings' thresholds: figures the project chose, not the policy. Each is a setting,
with its source: a citation, or the word "assumed" and why. ``pdl findings --explain``
shows them with their values.

The policy itself names no deadline: it says 及时 (promptly) for breach reports (6.2.1)
and for answers to requests (9.2), and "the shortest period the law requires" for keeping
data after closure (6.3). A finding that depends on one of these figures is only as good
as the figure; change it with its variable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ledger.settings import Settings


@dataclass(frozen=True)
class Threshold:
    """A figure a timed rule judges by: its ``Clocks`` field, setting, unit and source."""

    clock: str
    setting: str  # the Settings field
    variable: str
    unit: str
    clauses: tuple[str, ...]
    source: str

    def value(self, settings: Settings) -> int:
        return int(getattr(settings, self.setting))

    def as_dict(self, settings: Settings) -> dict[str, Any]:
        return {"clock": self.clock, "variable": self.variable, "value": self.value(settings),
                "default": int(getattr(Settings, self.setting)), "unit": self.unit,
                "clauses": list(self.clauses), "source": self.source}


THRESHOLDS: Final[tuple[Threshold, ...]] = (
    Threshold("deadline_days", "request_deadline_days", "LEDGER_REQUEST_DEADLINE_DAYS", "days",
              ("7.1",),
              "assumed: the policy says only that requests are handled after verifying "
              "identity (9.2); GB/T 35273-2020 §8.7 asks for an answer within 15 working days "
              "(to be confirmed by counsel)"),
    Threshold("closure_days", "closure_erasure_days", "LEDGER_CLOSURE_ERASURE_DAYS", "days",
              ("2.1.1(1)d",),
              "assumed: the policy says data is deleted or anonymised on closure (2.1.1(1), "
              "7.6) without a period; the same 15 days as a request"),
    Threshold("erasure_grace_days", "erasure_grace_days", "LEDGER_ERASURE_GRACE_DAYS", "days",
              ("6.3a", "2.1.1(1)d"),
              "assumed: erasure jobs run nightly, so data is gone by the second night after "
              "its deadline"),
    Threshold("incident_report_hours", "incident_report_hours", "LEDGER_INCIDENT_REPORT_HOURS",
              "hours", ("6.2.1a",),
              "assumed: the policy says 及时 (promptly) under the national cybersecurity "
              "incident emergency plan; 72 h as GDPR art. 33 sets for reports to a regulator; "
              "the security advice (安全处理建议) goes with the notice to the people"),
    Threshold("incident_contingency_hours", "incident_contingency_hours",
              "LEDGER_INCIDENT_CONTINGENCY_HOURS", "hours", ("6.2.1a",),
              "assumed: the policy says 启动应急预案 (start the contingency plan) with no "
              "period; a day from opening"),
    Threshold("incident_containment_hours", "incident_containment_hours",
              "LEDGER_INCIDENT_CONTAINMENT_HOURS", "hours", ("6.2.1a",),
              "assumed: the policy says 阻止安全事件扩大 (stop the incident spreading) with no "
              "period; the same 72 h as the report"),
)


def clock_values(settings: Settings) -> dict[str, int]:
    """``Clocks`` keyword arguments (other than ``now``) from the settings."""
    return {t.clock: t.value(settings) for t in THRESHOLDS}
