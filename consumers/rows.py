"""Helpers the projections share: time columns, category masks, batched keyed writes.

Times in views are integer microseconds since the Unix epoch (UTC): compact, exact, and
ordered the same way in every SQL backend (``BIGINT``).

Sets of data categories are stored as bit masks (``BIGINT``, one bit per taxonomy key), so
a collection of five categories into a store and its backup is two rows, not ten, and
"which of these categories" is one ``&`` in SQL or Python. Bits follow the taxonomy's
order; ``TAXONOMY_FINGERPRINT`` lets a view notice it was built under another order.

``WriteCache`` lets a projection remember across batches what it wrote, so that events
which change nothing (a category used again for the same purpose) cost no SQL at all.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Hashable, Iterable, Sequence
from datetime import datetime, timedelta
from enum import Enum
from functools import lru_cache
from itertools import islice
from typing import Any

from consumers.projection import EPOCH, Projection
from consumers.projection import to_us as to_us  # noqa: PLC0414 - re-exported, one definition
from consumers.views import ViewTransaction
from ledger.errors import ConfigurationError
from ledger.settings import Settings
from schemas.taxonomy import CATEGORIES, covers, is_sensitive


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def iso(value: int | None) -> str | None:
    """A time column as ISO 8601 (UTC), or ``None``."""
    return None if value is None else from_us(value).isoformat()


# --- category masks ---------------------------------------------------------------------

CATEGORY_ORDER: tuple[str, ...] = tuple(CATEGORIES)
if len(CATEGORY_ORDER) > 62:  # masks are signed 64-bit integers in every SQL backend
    raise ImportError("more than 62 data categories: category masks need a wider type")
BIT: dict[str, int] = {key: 1 << i for i, key in enumerate(CATEGORY_ORDER)}
TAXONOMY_FINGERPRINT = hashlib.sha256(",".join(CATEGORY_ORDER).encode()).hexdigest()[:16]


def mask_of(categories: Iterable[str]) -> int:
    """The mask of these categories (keys outside the taxonomy are refused upstream)."""
    mask = 0
    for key in categories:
        mask |= BIT[key]
    return mask


@lru_cache(maxsize=8192)
def categories_of(mask: int) -> tuple[str, ...]:
    """The category keys of a mask, in taxonomy order."""
    return tuple(key for key in CATEGORY_ORDER if mask & BIT[key])


#: Each key with every key under it: erasing ``user.contact`` erases ``user.contact.email``.
COVER: dict[str, int] = {
    key: mask_of(k for k in CATEGORY_ORDER if covers(key, k)) for key in CATEGORY_ORDER
}
#: Each key with the keys under it and above it: an incident exposing ``user.contact.email``
#: exposes a held ``user.contact`` too (it may contain the e-mail address).
RELATED: dict[str, int] = {
    key: mask_of(k for k in CATEGORY_ORDER if covers(key, k) or covers(k, key))
    for key in CATEGORY_ORDER
}
SENSITIVE_MASK = mask_of(k for k in CATEGORY_ORDER if is_sensitive(k))
#: Categories through which a person can be contacted (a notice needs one of them).
CONTACT_MASK = mask_of(k for k in CATEGORY_ORDER
                       if covers("user.contact", k) and k != "user.contact.organization")


def cover_mask(categories: Iterable[str]) -> int:
    mask = 0
    for key in categories:
        mask |= COVER[key]
    return mask


def related_mask(categories: Iterable[str]) -> int:
    mask = 0
    for key in categories:
        mask |= RELATED[key]
    return mask


META_SCHEMA = """CREATE TABLE IF NOT EXISTS view_meta (
    projection TEXT PRIMARY KEY,
    taxonomy   TEXT NOT NULL,
    token      TEXT
)"""


def create_meta(tx: ViewTransaction, projection: str) -> None:
    """Record the category order a projection's masks use; refuse views built under another.

    Call from ``create``; ``drop_meta`` from ``drop``.
    """
    tx.execute(META_SCHEMA)
    rows = tx.query("SELECT taxonomy FROM view_meta WHERE projection = ?", (projection,))
    if not rows:
        tx.execute("INSERT INTO view_meta (projection, taxonomy) VALUES (?, ?)",
                   (projection, TAXONOMY_FINGERPRINT))
    elif rows[0][0] != TAXONOMY_FINGERPRINT:
        raise ConfigurationError(
            f"the {projection!r} view was built under another version of the category "
            f"taxonomy: rebuild it (`pdl rebuild {projection}`)"
        )


def drop_meta(tx: ViewTransaction, projection: str) -> None:
    tx.execute(META_SCHEMA)
    tx.execute("DELETE FROM view_meta WHERE projection = ?", (projection,))


class MaskedProjection(Projection):
    """A projection whose views hold category masks: it records the taxonomy they use."""

    def create(self, tx: ViewTransaction, *, indexes: bool = True) -> None:
        super().create(tx, indexes=indexes)
        create_meta(tx, self.name)

    def drop(self, tx: ViewTransaction) -> None:
        super().drop(tx)
        drop_meta(tx, self.name)


#: Entries a projection's ``WriteCache`` keeps between batches (``LEDGER_VIEW_CACHE_ENTRIES``):
#: (person, store) pairs for the data map and holdings, a quarter as many people's states
#: for findings (a state is ~4x bigger). 150,000 is ~6 pairs for each of 25,000 people;
#: measured on a 1M-event log (bench/replay.py), all views from one process: 79.7 -> 71.4
#: CPU s against 40,000, for +58 MB of resident memory (a fixed amount, whatever the
#: number of people). The default is ``Settings.view_cache_entries``'s.
DEFAULT_CACHE_ENTRIES = Settings.view_cache_entries


class WriteCache:
    """What a projection knows its view holds, kept across batches to skip reads and
    writes that would change nothing.

    It is trusted only for partitions this process was the last to write: every entry is
    about one person (the subject of the events that wrote it), and a person's events
    live in one partition, so the view's rows a batch reads and writes are those of its
    partitions' people. Each batch stamps a fresh token on the partitions it brings,
    inside its transaction (``view_meta.token`` holds ``{"*": generation, partition:
    token}``, as JSON). A batch that finds, on one of its partitions, a token other than
    the one this process last wrote there (another member of the group wrote that
    partition, after a rebalance; or this process's transaction there rolled back), or
    another generation (the view was dropped, rebuilt or swapped in: ``create_meta``
    leaves no token and the first writer draws a generation), starts from an empty
    cache. Members owning disjoint partitions thus keep their caches. Tokens of
    partitions a batch does not bring are left as they are.

    Past ``capacity`` entries the least recently used half goes (``recent`` marks use), and
    the cache is no longer complete.
    """

    def __init__(self, projection: str, capacity: int = DEFAULT_CACHE_ENTRIES):
        self.projection = projection
        self.capacity = capacity
        self.entries: dict[Any, Any] = {}
        #: True while the entries are everything the view holds (set by the projection
        #: when it starts on an empty view: a missing key means no row. An eviction ends
        #: it.) Only the batch's partitions' people are ever looked up, and those were
        #: written by this process alone since the cache started.
        self.complete = False
        #: True if the last ``begin`` found the cache stale and emptied it.
        self.restarted = False
        #: The tokens as this process last left them (a partition as a string: JSON keys).
        self._tokens: dict[str, str] = {}

    def begin(self, tx: ViewTransaction, items: Sequence[Any]) -> dict[Any, Any]:
        """Check and renew the tokens of the partitions of ``items`` (the batch's items
        this projection applies); return the entries valid in this transaction."""
        rows = tx.query("SELECT token FROM view_meta WHERE projection = ?", (self.projection,))
        stored = _tokens(rows[0][0] if rows else None)
        partitions = [str(p) for p in {item.record.partition for item in items}]
        mine = self._tokens
        self.restarted = ("*" not in stored or stored["*"] != mine.get("*")
                          or any(mine.get(p) != stored.get(p) for p in partitions))
        if self.restarted:
            self.entries.clear()
            self.complete = False
            # an empty cache agrees with the view on every partition, as it now stands
            mine = self._tokens = dict(stored)
            mine.setdefault("*", secrets.token_hex(8))
        token = secrets.token_hex(8)
        for p in partitions:
            mine[p] = token
        # the other partitions' tokens are written back as they were read (other members'
        # stay valid); executemany: no row count wanted, so no round trip on PostgreSQL
        stored.update({p: token for p in partitions}, **{"*": mine["*"]})
        tx.executemany("UPDATE view_meta SET token = ? WHERE projection = ?",
                       [(json.dumps(stored, sort_keys=True), self.projection)])
        if len(self.entries) > self.capacity:
            for key in list(islice(self.entries, len(self.entries) // 2)):
                del self.entries[key]
            self.complete = False
        return self.entries


def _tokens(text: str | None) -> dict[str, str]:
    """``view_meta.token`` as a map; empty if none was written (or by an older version,
    one token per projection: then no generation, and every cache restarts once)."""
    if not text or not text.startswith("{"):
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def recent(entries: dict[Any, Any], key: Any) -> Any:
    """``entries[key]`` marked as the most recently used (eviction drops the least), or None."""
    value = entries.pop(key, None)
    if value is not None:
        entries[key] = value
    return value


# --- enum values ------------------------------------------------------------------------


class _Values(dict[Enum, Any]):
    """Enum member -> its value, filled on first sight: a dictionary hit costs a fifth of
    ``member.value`` (a descriptor), read for every event by the projections."""

    def __missing__(self, member: Enum) -> Any:
        value = self[member] = member.value
        return value


VALUE: dict[Enum, Any] = _Values()


# --- batched writes ---------------------------------------------------------------------


class KeyedWrites:
    """Writes to one table, kept in order per row key and batched across keys.

    Statements about different keys commute; statements about one key do not (an erasure
    after a collection in the same batch must apply to it). ``flush`` runs every key's
    first write, then every key's second write, and so on, with one ``executemany`` per
    statement in each round. ``merge`` folds a write into the key's previous one when
    both use the same statement, so repeats inside a batch cost one row.
    """

    __slots__ = ("_ops",)

    def __init__(self) -> None:
        self._ops: dict[Hashable, list[tuple[str, Any]]] = {}

    def add(self, key: Hashable, sql: str, row: Any, merge: Any = None) -> None:
        ops = self._ops.get(key)
        if ops is None:
            self._ops[key] = [(sql, row)]
        elif merge is not None and ops[-1][0] == sql:
            merge(ops[-1][1], row)
        else:
            ops.append((sql, row))

    def flush(self, tx: ViewTransaction) -> None:
        rounds: list[dict[str, list[Sequence[Any]]]] = []
        for ops in self._ops.values():
            for i, (sql, row) in enumerate(ops):
                if i == len(rounds):
                    rounds.append({})
                rounds[i].setdefault(sql, []).append(row)
        for statements in rounds:
            for sql, rows in statements.items():
                tx.executemany(sql, rows)
        self._ops.clear()


def chunks(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    """``items`` in slices small enough for an ``IN (?, ...)`` list."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def marks(n: int) -> str:
    return ",".join("?" * n)
