"""The rule registry: every rule with its clause, the event types it reads, and for a timed
rule its clock.

An *event rule* looks at one event as it is applied, with the state the earlier events left
(``Batch``), and returns why the event breaks its clause, or None::

    @rule("3.3", "marketing after opt-out", reads=(ev.DataUsed,))
    def marketing_after_opt_out(batch: Batch, item: Item, data: ev.DataUsed) -> str | None:
        ...

A rule may declare ``when``: a Python expression over ``data``, ``item``, ``batch`` and
``person`` (the event's person's state, ``batch.person(item)``) and the names of its
module, that is false only when the rule would return None. The compiled handler of the
event type tests it inline and calls the rule only when it holds: most rules return at
their first test, and a call costs more than the test (``view._compile``)::

    @rule("3.2a", "non-anonymised analytics without consent", reads=(ev.DataUsed,),
          when="data.purpose in ANALYTICS and not data.anonymised")

A *timed rule* depends on the clock: it cannot be stored when the event happens, so
``list_findings`` runs it over the view at the moment asked for::

    @timed("7.1", "rights request not answered by its due date", clock="deadline_days",
           reads=(ev.RequestReceived, ev.RequestFulfilled, ev.RequestRefused))
    def request_overdue(store: ViewStore, clocks: Clocks) -> Iterator[Finding]:
        ...

Rules live in ``consumers/findings/rules/<family>.py``; importing ``rules`` registers them
all. ``CLAUSES`` (clause -> what its findings mean) is derived from the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

from schemas import events as ev

if TYPE_CHECKING:
    from consumers.findings.store import Batch
    from consumers.projection import Item
    from consumers.views import ViewStore


@dataclass(frozen=True)
class Finding:
    """One broken promise: which clause, whose data, which event, when, and why; and the
    later event that remedied it, if any (7.4: the data erased or corrected)."""

    clause: str
    pseudonym: str | None
    event_id: str
    partition: int
    offset: int
    time: datetime
    explanation: str
    remedied_by: str | None = None
    remedied_at: datetime | None = None

    @property
    def status(self) -> str:
        """``open``, or ``remedied`` once a later event put it right."""
        return "open" if self.remedied_by is None else "remedied"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (times in ISO 8601)."""
        return {
            "clause": self.clause,
            "pseudonym": self.pseudonym,
            "event_id": self.event_id,
            "partition": self.partition,
            "offset": self.offset,
            "time": self.time.isoformat(),
            "explanation": self.explanation,
            "status": self.status,
            "remedied_by": self.remedied_by,
            "remedied_at": self.remedied_at.isoformat() if self.remedied_at else None,
        }


@dataclass(frozen=True)
class Clocks:
    """The moment timed rules are evaluated at, and the periods they allow (days)."""

    now: int  # microseconds since the epoch
    deadline_days: int
    closure_days: int
    erasure_grace_days: int
    incident_report_hours: int = 72
    incident_contingency_hours: int = 24
    incident_containment_hours: int = 72


#: The clocks a timed rule may name (``Clocks`` fields other than ``now``): each is a
#: threshold of ``consumers.findings.thresholds`` (a setting, cited or "assumed").
CLOCKS: Final = ("deadline_days", "closure_days", "erasure_grace_days", "incident_report_hours",
                 "incident_contingency_hours", "incident_containment_hours")

EventCheck = Callable[["Batch", "Item", Any], "str | None"]
TimedCheck = Callable[["ViewStore", Clocks], Iterator[Finding]]


@dataclass(frozen=True)
class Rule:
    """A registered rule (exactly one of ``check`` and ``evaluate`` is set)."""

    clause: str
    title: str
    reads: tuple[type[ev.EventData], ...]
    family: str
    name: str
    check: EventCheck | None = None
    evaluate: TimedCheck | None = None
    #: the clocks a timed rule depends on (``CLOCKS``)
    clocks: tuple[str, ...] = ()
    #: an event rule's guard: an expression false only when ``check`` returns None
    when: str | None = None
    #: the module that registered it, whose names its guard reads
    module: str = ""

    @property
    def types(self) -> tuple[str, ...]:
        """The event types (``ev.X.TYPE``) it reads."""
        return tuple(model.TYPE for model in self.reads)


#: Every rule, in registration order (family modules in ``rules.FAMILIES`` order).
RULES: list[Rule] = []

F = TypeVar("F", bound=Callable[..., Any])


def _family(module: str) -> str:
    return module.rsplit(".", 1)[-1]


def _register(new: Rule) -> None:
    if not new.reads or not all(isinstance(m, type) and issubclass(m, ev.EventData)
                                for m in new.reads):
        raise TypeError(f"rule {new.name} ({new.clause}) must read event data models")
    if any(r.name == new.name and r.family == new.family for r in RULES):
        return  # the family module was imported again (reloaded): already registered
    RULES.append(new)


def rule(clause: str, title: str, *, reads: tuple[type[ev.EventData], ...],
         when: str | None = None) -> Callable[[F], F]:
    """Register an event rule: ``check(batch, item, data) -> explanation or None``, called
    only when its guard ``when`` (if given) holds."""
    if when is not None:
        try:
            compile(when, f"<guard of a {clause} rule>", "eval")
        except SyntaxError as exc:
            raise ValueError(f"the guard of a {clause} rule is not an expression: {exc}") from exc

    def register(check: F) -> F:
        _register(Rule(clause, title, tuple(reads), _family(check.__module__), check.__name__,
                       check=check, when=when, module=check.__module__))
        return check

    return register


def timed(clause: str, title: str, *, clock: str | tuple[str, ...],
          reads: tuple[type[ev.EventData], ...]) -> Callable[[F], F]:
    """Register a timed rule: ``evaluate(store, clocks) -> findings``, run by
    ``list_findings`` at the moment asked for."""
    clocks = (clock,) if isinstance(clock, str) else tuple(clock)
    unknown = [c for c in clocks if c not in CLOCKS]
    if unknown:
        raise ValueError(f"unknown clock {unknown[0]!r}: one of {', '.join(CLOCKS)}")

    def register(evaluate: F) -> F:
        _register(Rule(clause, title, tuple(reads), _family(evaluate.__module__),
                       evaluate.__name__, evaluate=evaluate, clocks=clocks))
        return evaluate

    return register


def clauses(rules: list[Rule]) -> dict[str, str]:
    """Clause -> what its findings mean (its rules' titles, in registration order)."""
    titles: dict[str, list[str]] = {}
    for r in rules:
        seen = titles.setdefault(r.clause, [])
        if r.title not in seen:
            seen.append(r.title)
    return {clause: "; ".join(titles[clause]) for clause in sorted(titles, key=clause_order)}


def clause_order(clause: str) -> tuple[Any, ...]:
    """Sort key of clause ids as the policy numbers them (2.1.1(1)a before 2.1.2, 6 < 10)."""
    parts: list[Any] = []
    for piece in clause.replace("(", ".").replace(")", "").replace("-", ".").split("."):
        parts.append((0, int(piece), "") if piece.isdigit() else
                     (0, int(piece.rstrip("abcdefgh")), piece.lstrip("0123456789"))
                     if piece[:1].isdigit() else (1, 0, piece))
    return tuple(parts)
