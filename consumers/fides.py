"""The data map as Fides manifests: fideslang ``System``, ``Dataset``, and the taxonomy
extensions they use, validated by fideslang's own models so that Fides can import them.

- One ``System`` per store (from collections; backups are stores too) and per system that
  uses data (from ``data.used``); one privacy declaration per observed purpose, its data
  categories those observed for it, its data subjects the fideslang subjects of the kinds
  of people registered (``schemas.taxonomy.FIDES_DATA_SUBJECTS``).
- A declaration whose purpose and categories were also disclosed (the disclosure register)
  names those recipients as its third parties, with the categories shared.
- One ``System`` per registered recipient (system type "Third party"), declaring what it
  received, for which purposes.
- One ``Dataset`` per store: one collection, a field per category held there.
- ``data_category`` / ``data_use`` entries for the ledger's own extensions, each with its
  fideslang parent, so the keys the declarations use resolve.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from consumers.inventory import inventory
from consumers.rows import categories_of
from consumers.views import ViewStore
from schemas.taxonomy import (
    CATEGORIES,
    EXTENSION,
    FIDES_DATA_SUBJECTS,
    USES,
    SubjectKind,
)

ORGANIZATION = "default_organization"


def fides_key(name: str) -> str:
    """A valid fides key (letters, digits, ``_``, ``-``, ``.``) for a store or recipient."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "unnamed"


def _parent(key: str) -> str | None:
    return key.rpartition(".")[0] or None


def _subjects(views: ViewStore) -> list[str]:
    kinds = {k for (k,) in views.query("SELECT DISTINCT kind FROM dm_subjects") if k}
    subjects = sorted({FIDES_DATA_SUBJECTS[SubjectKind(k)] for k in kinds
                       if k in SubjectKind.__members__.values()})
    return subjects or ["customer"]


def _disclosed(views: ViewStore) -> dict[str, dict[str, set[str]]]:
    """purpose -> recipient -> categories disclosed for it."""
    out: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for recipient, purpose, mask in views.query(
            "SELECT recipient, purpose, categories FROM disclosures "
            "GROUP BY recipient, purpose, categories"):
        out[purpose][recipient].update(categories_of(int(mask)))
    return out


def _recipients(views: ViewStore) -> dict[str, dict[str, Any]]:
    return {r: {"name": n, "kind": k, "location": loc, "agreement_ref": a}
            for r, n, k, loc, a in views.query(
                "SELECT recipient, name, kind, location, agreement_ref FROM recipients")}


def manifests(views: ViewStore) -> dict[str, list[dict[str, Any]]]:
    """Fides manifests of what the views hold: ``system``, ``dataset``, ``data_category``
    and ``data_use`` lists (a fideslang ``Taxonomy``), plain dicts ready for YAML."""
    subjects = _subjects(views)
    disclosed = _disclosed(views)
    recipients = _recipients(views)
    rows = inventory(views)
    used_categories: set[str] = set()
    used_uses: set[str] = set()

    by_system: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_system[row["system"]].append(row)
    systems: list[dict[str, Any]] = []
    datasets: list[dict[str, Any]] = []
    for name, entries in sorted(by_system.items()):
        key = fides_key(name)
        roles = {e["role"] for e in entries}
        declarations = []
        for e in entries:
            cats = e["categories"]
            used_categories.update(cats)
            used_uses.add(e["purpose"])
            declaration: dict[str, Any] = {
                "name": f"{e['purpose']} ({e['role']})", "data_use": e["purpose"],
                "data_categories": cats, "data_subjects": list(subjects),
                "dataset_references": [key] if e["role"] != "use" else [],
            }
            shared = {r: sorted(c & set(cats)) for r, c in disclosed.get(e["purpose"], {}).items()
                      if c & set(cats)}
            if shared:
                declaration["data_shared_with_third_parties"] = True
                declaration["third_parties"] = ", ".join(
                    (recipients.get(r) or {}).get("name") or r for r in sorted(shared))
                declaration["shared_categories"] = sorted(set().union(*shared.values()))
            declarations.append(declaration)
        locations = sorted({e["location"] for e in entries if e["location"]})
        stores = roles - {"use"}
        systems.append({
            "fides_key": key, "organization_fides_key": ORGANIZATION, "name": name,
            "description": (f"{' and '.join(sorted(roles))} of personal data observed by the "
                            "ledger" + (f"; located in {', '.join(locations)}"
                                        if locations else "")),
            "system_type": "Database" if stores else "Service",
            "privacy_declarations": declarations,
            "dataset_references": [key] if stores else [],
            "processes_personal_data": True,
            "does_international_transfers": any(loc != "CN" for loc in locations),
        })
        if stores:
            held = sorted({c for e in entries if e["role"] != "use" for c in e["categories"]})
            datasets.append({
                "fides_key": key, "organization_fides_key": ORGANIZATION, "name": name,
                "description": f"personal data held in {name}",
                "data_categories": held,
                "collections": [{"name": key, "fields": [
                    {"name": c, "data_categories": [c]} for c in held]}],
            })
    per_recipient: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for purpose, by_rcpt in disclosed.items():
        for rcpt, cats in by_rcpt.items():
            per_recipient[rcpt][purpose] |= cats
    for rcpt in sorted(set(recipients) | set(per_recipient)):
        info = recipients.get(rcpt) or {}
        declarations = []
        for purpose, cats in sorted(per_recipient.get(rcpt, {}).items()):
            used_categories.update(cats)
            used_uses.add(purpose)
            declarations.append({"name": f"{purpose} (received)", "data_use": purpose,
                                 "data_categories": sorted(cats), "data_subjects": list(subjects)})
        systems.append({
            "fides_key": fides_key(f"recipient-{rcpt}"), "organization_fides_key": ORGANIZATION,
            "name": info.get("name") or rcpt,
            "description": (f"third party ({info.get('kind') or 'not registered'}) in "
                            f"{info.get('location') or 'unknown'}; agreement "
                            f"{info.get('agreement_ref') or 'none recorded'}"),
            "system_type": "Third Party", "privacy_declarations": declarations,
            "processes_personal_data": True,
            "does_international_transfers": (info.get("location") or "CN") != "CN",
        })
    return {"system": systems, "dataset": datasets,
            "data_category": _extensions(used_categories, CATEGORIES),
            "data_use": _extensions(used_uses, USES)}


def _extensions(keys: set[str], known: dict[str, Any]) -> list[dict[str, Any]]:
    """Our extension keys among ``keys`` (and extension ancestors), each with its parent."""
    wanted: set[str] = set()
    for key in keys:
        while key and key in known and known[key].origin == EXTENSION:
            wanted.add(key)
            key = _parent(key) or ""
    return [{"fides_key": k, "organization_fides_key": ORGANIZATION, "name": k,
             "description": known[k].description, "parent_key": _parent(k)}
            for k in sorted(wanted)]


def validate(manifest: dict[str, list[dict[str, Any]]]) -> Any:
    """Validate with fideslang's models; every key a declaration or dataset uses must be in
    fideslang's default taxonomy or among the manifest's own extensions. Returns the
    fideslang ``Taxonomy``; raises ``ValueError`` naming what is wrong."""
    import fideslang
    from fideslang.models import Taxonomy

    taxonomy = Taxonomy.model_validate(manifest)
    default = fideslang.DEFAULT_TAXONOMY
    categories = {c.fides_key for c in default.data_category} | {
        c.fides_key for c in taxonomy.data_category}
    uses = {u.fides_key for u in default.data_use} | {u.fides_key for u in taxonomy.data_use}
    subjects = {s.fides_key for s in default.data_subject}
    datasets = {d.fides_key for d in taxonomy.dataset}
    problems = []
    for ext, known in ((taxonomy.data_category, categories), (taxonomy.data_use, uses)):
        problems += [f"{e.fides_key}: parent {e.parent_key} unknown" for e in ext
                     if e.parent_key not in known]
    for system in taxonomy.system:
        for d in system.privacy_declarations:
            problems += [f"{system.fides_key}: data use {d.data_use} unknown"] * (
                d.data_use not in uses)
            problems += [f"{system.fides_key}: category {c} unknown"
                         for c in d.data_categories if c not in categories]
            problems += [f"{system.fides_key}: subject {s} unknown"
                         for s in d.data_subjects if s not in subjects]
        problems += [f"{system.fides_key}: dataset {r} unknown"
                     for r in system.dataset_references or [] if r not in datasets]
    if problems:
        raise ValueError("; ".join(problems[:10]))
    return taxonomy
