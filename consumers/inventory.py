"""The data inventory: which system keeps or uses which categories, for which purposes.

One row per (system, role, purpose): ``store`` and ``backup`` rows from collections (the
store and its backups, with the store's location), ``use`` rows from uses (the ``system``
a use names); categories as a mask, with event counts and first/last event times. It is
what ``pdl fides export`` turns into fideslang ``System`` and ``Dataset`` manifests
(``consumers.fides``). A small, aggregate view: no person appears in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consumers.projection import Item
from consumers.rows import MaskedProjection, categories_of, iso, mask_of
from consumers.views import ViewStore, ViewTransaction
from schemas.events import DataCollected, DataUsed

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS inventory (
        system     TEXT NOT NULL,
        role       TEXT NOT NULL,
        purpose    TEXT NOT NULL,
        location   TEXT NOT NULL,
        categories BIGINT NOT NULL,
        events     BIGINT NOT NULL,
        first_at   BIGINT NOT NULL,
        last_at    BIGINT NOT NULL,
        PRIMARY KEY (system, role, purpose)
    )""",
)
UPSERT = """
INSERT INTO inventory (system, role, purpose, location, categories, events, first_at, last_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (system, role, purpose) DO UPDATE SET
    categories = inventory.categories | excluded.categories,
    events = inventory.events + excluded.events,
    first_at = CASE WHEN excluded.first_at < inventory.first_at
                    THEN excluded.first_at ELSE inventory.first_at END,
    last_at = CASE WHEN excluded.last_at > inventory.last_at
                   THEN excluded.last_at ELSE inventory.last_at END,
    location = excluded.location
"""


class InventoryProjection(MaskedProjection):
    """Per system, role and purpose: the categories seen, how often, since when."""

    name = "inventory"
    topics = frozenset({DataCollected.TYPE, DataUsed.TYPE})
    schema = SCHEMA
    tables = ("inventory",)
    cost = 0.3

    def apply(self, tx: ViewTransaction, items: Sequence[Item]) -> None:
        #: (system, role, purpose) -> [location, categories, events, first, last]
        rows: dict[tuple[str, str, str], list[Any]] = {}
        get = rows.get
        for item in items:
            data = item.event.data
            # exact types (no subclasses): cheaper than isinstance on pydantic's metaclass
            if type(data) is DataUsed:
                keys: Sequence[tuple[str, str, str]] = ((data.system, "use", data.purpose),)
                location = ""
            elif type(data) is DataCollected:
                purpose, location = data.purpose, data.store_location
                keys = ((data.store, "store", purpose),
                        *((backup, "backup", purpose) for backup in data.backups))
            else:
                continue
            mask, at = mask_of(data.categories), item.at
            for key in keys:
                row = get(key)
                if row is None:
                    rows[key] = [location, mask, 1, at, at]
                    continue
                row[0] = location
                row[1] |= mask
                row[2] += 1
                if at < row[3]:
                    row[3] = at
                elif at > row[4]:
                    row[4] = at
        if rows:
            tx.executemany(UPSERT, [(*k, *v) for k, v in rows.items()])

    def merge(self, tx: ViewTransaction, source: str) -> None:
        """Shares of a partition-split rebuild hold the same systems: add them up."""
        tx.execute(f"INSERT INTO main.inventory SELECT * FROM {source}.inventory WHERE true "
                   + UPSERT[UPSERT.index("ON CONFLICT"):])


def inventory(views: ViewStore) -> list[dict[str, Any]]:
    """The inventory rows as dicts, categories as keys."""
    return [{"system": s, "role": r, "purpose": p, "location": loc or None,
             "categories": list(categories_of(int(m))), "events": int(n),
             "first": iso(f), "last": iso(lt)}
            for s, r, p, loc, m, n, f, lt in views.query(
                "SELECT system, role, purpose, location, categories, events, first_at, last_at "
                "FROM inventory ORDER BY system, role, purpose")]
