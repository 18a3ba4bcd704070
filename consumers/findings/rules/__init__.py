"""The rules, one module per family of clauses. Importing this package registers them all
(``consumers.findings.registry.RULES``), family by family in ``FAMILIES`` order.

A new rule is one function in one family module, under ``@rule`` or ``@timed``; a new
family is a module here added to ``FAMILIES``.
"""

from __future__ import annotations

from consumers.findings.rules import (
    access,
    closure_retention,
    collection,
    consent,
    cross_border,
    disclosure,
    incidents,
    marketing,
    policy,
    requests,
)

#: The family modules, in the order their rules run on an event.
FAMILIES = (collection, consent, marketing, disclosure, cross_border, closure_retention,
            requests, incidents, policy, access)
