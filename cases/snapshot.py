"""The scope snapshot of an incident: taken from the ledger's views, hashed so it can be cited.

A snapshot is the breach-scope answer (``consumers.queries.scope``) for the incident's
stores, window and categories, with everything a grade, a duty or a draft needs: people
and records, per category and for sensitive categories, per country of residence and for
cross-border transfers, reachable, unreachable and erased people, and the list of people by
pseudonym with why each cannot be reached. Its hash is the SHA-256 of its canonical JSON
(keys sorted, no spaces, UTF-8): anyone holding the snapshot file can recompute it. The file
holds pseudonyms only, never a clear value.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from cases.domain import Incident
from consumers.queries import UNREACHABLE_ERASED, scope
from consumers.views import ViewStore
from ledger.files import private_dir, write_private
from ledger.persistence import EventLog
from schemas import decode
from schemas.events import SubjectRegistered

UNKNOWN = "unknown"


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(obj: Any) -> str:
    return hashlib.sha256(canonical(obj)).hexdigest()


def residences(log: EventLog, pseudonyms: set[str]) -> dict[str, str]:
    """Country of residence per person, from their latest registration that names one."""
    out: dict[str, str] = {}
    for record in log.read():
        if record.event_type == SubjectRegistered.TYPE and record.subject in pseudonyms:
            data = decode(record.payload).data
            assert isinstance(data, SubjectRegistered)
            if data.residence:
                out[record.subject] = data.residence
    return out


def cross_border(store: ViewStore, pseudonyms: set[str]) -> set[str]:
    """The people whose data the disclosure register shows sent out of the country."""
    rows = store.query("SELECT DISTINCT pseudonym FROM disclosures "
                       "WHERE cross_border_to IS NOT NULL")
    return {r[0] for r in rows if r[0] in pseudonyms}


def take(incident: Incident, store: ViewStore, log: EventLog, taken_at: datetime) -> dict[str, Any]:
    """The snapshot of the incident's scope on the views as they are now, with its hash."""
    answer = scope(store, incident.stores, incident.window_start, incident.window_end,
                   incident.categories or None, incident_id=incident.incident_id)
    people = {p.pseudonym: p for p in answer.people}
    where = residences(log, set(people))
    abroad = cross_border(store, set(people))
    per_country = Counter(where.get(p, UNKNOWN) for p in people)
    unreachable = Counter(p.unreachable_reason for p in answer.people if not p.reachable)
    counts = {
        "people": answer.counts["people"],
        "records": answer.counts["records"],
        "reachable": answer.counts["reachable"],
        "unreachable": answer.counts["unreachable"],
        "erased": unreachable.get(UNREACHABLE_ERASED, 0),
        "unreachable_reasons": dict(sorted((str(k), v) for k, v in unreachable.items())),
        "categories": answer.counts["categories"],
        "sensitive_categories": answer.counts["sensitive_categories"],
        "sensitive_records": answer.counts["sensitive_records"],
        "people_with_sensitive_data": answer.counts["people_with_sensitive_data"],
        "residence": dict(sorted(per_country.items())),
        "cross_border_people": len(abroad),
    }
    body = {
        "incident_id": incident.incident_id,
        "taken_at": taken_at.isoformat(),
        "stores": list(incident.stores),
        "window_start": incident.window_start.isoformat(),
        "window_end": incident.window_end.isoformat(),
        "categories": list(incident.categories),
        "counts": counts,
        "people": [
            {"pseudonym": p, "reachable": a.reachable, "unreachable_reason": a.unreachable_reason,
             "categories": list(a.categories), "residence": where.get(p, UNKNOWN),
             "cross_border": p in abroad}
            for p, a in sorted(people.items())
        ],
    }
    return {**body, "hash": digest(body)}


def verify(snapshot: dict[str, Any]) -> bool:
    """Whether a snapshot still matches its hash."""
    body = {k: v for k, v in snapshot.items() if k != "hash"}
    return digest(body) == snapshot.get("hash")


def folder(data_dir: Path, incident_id: str) -> Path:
    """Where an incident's snapshots, notify lists and drafts are written (0700)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in incident_id)
    private_dir(data_dir / "cases")
    return private_dir(data_dir / "cases" / safe)


def save(snapshot: dict[str, Any], data_dir: Path) -> Path:
    path = folder(data_dir, snapshot["incident_id"]) / f"snapshot-{snapshot['hash'][:16]}.json"
    return write_private(path, json.dumps(snapshot, ensure_ascii=False, indent=1, sort_keys=True))


def load(data_dir: Path, incident_id: str, snapshot_hash: str) -> dict[str, Any]:
    path = folder(data_dir, incident_id) / f"snapshot-{snapshot_hash[:16]}.json"
    snapshot: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return snapshot


def people_of(snapshot: dict[str, Any], reachable: bool) -> Iterable[dict[str, Any]]:
    return (p for p in snapshot["people"] if p["reachable"] is reachable)
