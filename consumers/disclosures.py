"""The disclosure register (policy section 5): who received which person's data, and why.

One row per disclosure event, its categories a mask (see ``consumers.rows``); the register
filters by recipient, person and time with an index each, by clause and category with a
test on the rows of the range. The registered recipients sit beside it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from consumers.projection import Item
from consumers.rows import VALUE, MaskedProjection, mask_of
from consumers.views import ViewTransaction
from schemas.events import DataShared, RecipientRegistered

SCHEMA = (
    # No key of its own: the runner applies each event once (positions tracked with the
    # rows, duplicates filtered for Kafka), and every index costs each disclosure a write.
    """CREATE TABLE IF NOT EXISTS disclosures (
        event_id          TEXT NOT NULL,
        pseudonym         TEXT NOT NULL,
        recipient         TEXT NOT NULL,
        recipient_kind    TEXT NOT NULL,
        time              BIGINT NOT NULL,
        clause            TEXT,
        legal_ground      TEXT,
        consent_id        TEXT,
        purpose           TEXT NOT NULL,
        categories        BIGINT NOT NULL,
        agreement_ref     TEXT,
        cross_border_to   TEXT,
        cross_border      TEXT,
        log_partition     INTEGER NOT NULL,
        log_offset        BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS recipients (
        recipient          TEXT PRIMARY KEY,
        name               TEXT NOT NULL,
        kind               TEXT NOT NULL,
        location           TEXT NOT NULL,
        roles              TEXT NOT NULL,
        allowed_purposes   TEXT NOT NULL,
        allowed_categories TEXT NOT NULL,
        agreement_ref      TEXT,
        confidentiality    INTEGER NOT NULL,
        registered_at      BIGINT NOT NULL
    )""",
)
TABLES = ("disclosures", "recipients")
# Read by the register's filters only; a rebuild creates them after its replay.
INDEXES = (
    "CREATE INDEX IF NOT EXISTS disclosures_recipient ON disclosures (recipient, time)",
    "CREATE INDEX IF NOT EXISTS disclosures_subject ON disclosures (pseudonym, time)",
    "CREATE INDEX IF NOT EXISTS disclosures_time ON disclosures (time)",
)

INSERT_DISCLOSURE = """
INSERT INTO disclosures (event_id, pseudonym, recipient, recipient_kind, time, clause,
    legal_ground, consent_id, purpose, categories, agreement_ref, cross_border_to,
    cross_border, log_partition, log_offset)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
UPSERT_RECIPIENT = """
INSERT INTO recipients (recipient, name, kind, location, roles, allowed_purposes,
    allowed_categories, agreement_ref, confidentiality, registered_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (recipient) DO UPDATE SET
    name = excluded.name, kind = excluded.kind, location = excluded.location,
    roles = excluded.roles, allowed_purposes = excluded.allowed_purposes,
    allowed_categories = excluded.allowed_categories, agreement_ref = excluded.agreement_ref,
    confidentiality = excluded.confidentiality, registered_at = excluded.registered_at
"""


class DisclosureProjection(MaskedProjection):
    """The register of disclosures per recipient and per person, and the recipients known."""

    name = "disclosures"
    topics = frozenset({DataShared.TYPE, RecipientRegistered.TYPE})
    schema = SCHEMA
    indexes = INDEXES
    tables = TABLES
    cost = 1.0

    def apply(self, tx: ViewTransaction, items: Sequence[Item]) -> None:
        shared: list[tuple[Any, ...]] = []
        recipients: list[tuple[Any, ...]] = []
        for item in items:
            event = item.event
            data = event.data
            t = item.at
            if isinstance(data, DataShared):
                if event.subject is None:
                    continue
                cb = data.cross_border
                cb_to = cb.destination_country if cb else None
                cb_json = cb.model_dump_json(exclude_none=True) if cb else None
                record = item.record
                shared.append((
                    event.id, event.subject, data.recipient, VALUE[data.recipient_kind], t,
                    VALUE[data.clause] if data.clause else None,
                    VALUE[data.legal_ground] if data.legal_ground else None,
                    data.consent_id, data.purpose, mask_of(data.categories),
                    data.agreement_ref, cb_to, cb_json, record.partition, record.offset,
                ))
            elif isinstance(data, RecipientRegistered):
                recipients.append((
                    data.recipient, data.name, data.kind.value, data.location,
                    json.dumps([r.value for r in data.roles]),
                    json.dumps(data.allowed_purposes), json.dumps(data.allowed_categories),
                    data.agreement_ref, int(data.confidentiality), t,
                ))
        if shared:
            tx.executemany(INSERT_DISCLOSURE, shared)
        if recipients:
            tx.executemany(UPSERT_RECIPIENT, recipients)
