"""A realistic, deterministic workload: the privacy policy's life cycle for N people.

``simulate(people, seed)`` yields JSON Lines in the wire format (each line passes
``schemas.parse_wire``) for a Chinese edge-cloud provider (object storage, cloud hosts, CDN):
the policy and its processors once, then per person registration, optional profile,
real-name verification, payments and invoices, device and log data, uses, marketing and
opt-outs, profiling consents, a few cross-border transfers, rights requests, closures,
retention expiries, a material policy change with notices, and one security incident.

About 2 % of people also break a promise, so that compliance checks have something to find.
``Planted`` names each kind and ``VIOLATIONS`` its clause in ``COMMITMENTS.md``;
``planted(people)`` says who breaks what. Everyone else keeps every promise.

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

Modules: ``tables`` (data and payloads), ``violations`` (what is planted, on whom),
``world`` (what every life shares), ``life`` (one person's plan, step by step), and this
module (the run that merges every life into one stream).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from schemas.codec import uuid7
from workload.life import Life, Person, _head
from workload.tables import (
    _INCIDENT_CATS,
    AFFILIATE_SG,
    DAY,
    DEFAULT_START,
    HOUR,
    INCIDENT_OPENED,
    INCIDENT_WINDOW,
    LOGS,
    MAX_SIGNUPS_PER_DAY,
    MIN,
    RECIPIENTS,
    REGULATOR,
    S_LEGAL,
    S_SECURITY,
    SEC,
    STAFF,
    V1,
    V2,
    V2_EFFECTIVE,
    V2_PUBLISHED,
    _dumps,
    _iso,
    account_id,
)
from workload.violations import PLANTED_INCIDENT, VIOLATIONS, Planted, Violation, planted
from workload.world import World

__all__ = [
    "DEFAULT_START",
    "MAX_SIGNUPS_PER_DAY",
    "RECIPIENTS",
    "VIOLATIONS",
    "Planted",
    "Violation",
    "account_id",
    "planted",
    "simulate",
]


class _Simulation(World):
    """The world and its run: every life merged into one time-ordered stream."""

    def global_events(self) -> Person:
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
        # 6.3: the overseas affiliate is checked on site before any transfer; 6.2.1: the
        # staff allowed to read personal data (the demo queries as the DPO).
        add(s + 30 * SEC, "recipient.inspected", {
            "recipient": AFFILIATE_SG, "method": "on_site", "passed": True,
            "report_ref": "AUD-2023-SG-01"}, S_LEGAL)
        for k, (actor, role) in enumerate(STAFF):
            add(s + (40 + k) * SEC, "staff.access_granted", {
                "actor": actor, "role": role, "approved_by": "ciso@lingjing.cn"}, S_SECURITY)
        add(s + V2_PUBLISHED, "staff.access_revoked", {"actor": STAFF[-1][0]}, S_SECURITY)
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
        # 6.2.1: the contingency plan at once, the spread stopped, the advice with the notice
        add(s + INCIDENT_OPENED + HOUR, "incident.contingency_started",
            {"incident_id": "inc-2024-001", "plan": "IRP-2024-v2"}, S_SECURITY)
        add(s + INCIDENT_OPENED + 4 * HOUR, "incident.contained",
            {"incident_id": "inc-2024-001",
             "measures": "bucket made private; export job disabled; access logs reviewed"},
            S_SECURITY)
        add(s + INCIDENT_OPENED + 20 * HOUR, "incident.reported",
            {"incident_id": "inc-2024-001", "authority": REGULATOR}, S_SECURITY)
        add(s + INCIDENT_OPENED + 28 * HOUR, "incident.advice_given",
            {"incident_id": "inc-2024-001", "channel": "email", "advice_ref": "notice_zh"},
            S_SECURITY)
        add(s + INCIDENT_OPENED + 21 * DAY, "incident.closed", {"incident_id": "inc-2024-001"},
            S_SECURITY)
        # Planted (an incident, not a person): a second incident reported and closed, with
        # neither its contingency plan started nor its spread stopped on record.
        late = s + INCIDENT_OPENED + 40 * DAY
        add(late, "incident.opened", {
            "incident_id": PLANTED_INCIDENT,
            "description": "a staging snapshot was copied to an unmanaged laptop",
            "stores": ["staging-db"], "window_start": _iso(late - DAY),
            "window_end": _iso(late)}, S_SECURITY)
        add(late + 10 * HOUR, "incident.reported",
            {"incident_id": PLANTED_INCIDENT, "authority": REGULATOR}, S_SECURITY)
        add(late + 5 * DAY, "incident.closed", {"incident_id": PLANTED_INCIDENT}, S_SECURITY)
        entries.sort(reverse=True)
        return Person([(t, seq, _head(source, event_type), _dumps(data), None, None)
                        for t, seq, source, event_type, data, _, _ in entries])

    def render(self, entry: tuple[Any, ...]) -> str:
        t, _, head, data, personal, subject = entry
        line = (f'{{"specversion":"1.0","id":"{uuid7(t, self.rng.randbytes(10))}",{head},'
                f'"time":"{_iso(t)}"')
        if subject is not None:
            line += f',"subject":{subject}'
        if personal is not None:  # envelope 2: the clear values are a member of data
            data = f'{data[:-1]},"personal":{personal}}}' if data != "{}" else \
                f'{{"personal":{personal}}}'
        return line + f',"data":{data}}}'

    def run(self) -> Iterator[str]:
        heap: list[tuple[int, int, Person]] = []
        g = self.global_events()
        heap.append((g.plan[-1][0], -1, g))
        r = self.rng
        index = 0
        arrival = self.start + 5 * MIN
        while heap or index < self.people:
            if index < self.people and (not heap or arrival <= heap[0][0]):
                person = Life(self, index, arrival).build()
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
