"""Drafts of the notices and reports an incident needs, rendered with Jinja2.

Each draft is a set of fields (the items the law asks for) built from the incident, its
scope snapshot and the responder's facts (cause, harm, remedies, advice, contact: a JSON
file), then rendered as Markdown by a template under ``cases/templates/`` and as JSON (the
same fields). Every draft cites the snapshot's hash. A fact not given is a visible
``[to be completed: ...]`` and is listed under ``missing``; a draft is never sent from here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from cases.domain import GRADE_NAMES_ZH, Incident
from cases.snapshot import folder
from ledger.files import private_dir, write_private
from schemas.taxonomy import CATEGORIES

DRAFTS = ("notice_zh", "notice_en", "report_cac", "report_gdpr")
FACTS = {
    "company": "the company's name (单位名称)",
    "cause": "the cause of the incident (原因)",
    "harm": "the harm it may cause (可能造成的危害)",
    "remedies": "the remedial steps taken (已采取的补救措施)",
    "advice": "what people can do to reduce the harm (个人可以采取的措施)",
    "contact": "how people reach the company (联系方式)",
    "dpo_contact": "the data protection officer's contact (GDPR 33(3)(b))",
}
TODO = "[to be completed: {}]"

_env = Environment(loader=PackageLoader("cases", "templates"), undefined=StrictUndefined,
                   autoescape=False, keep_trailing_newline=True, trim_blocks=True,
                   lstrip_blocks=True)


def _facts(given: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    unknown = sorted(set(given) - set(FACTS))
    if unknown:
        from ledger.errors import InvalidInput

        raise InvalidInput(f"facts: unknown field(s) {', '.join(unknown)} "
                           f"(known: {', '.join(FACTS)})",
                           [(1, f"facts.{k}", "unknown field") for k in unknown])
    facts = {k: (given.get(k) or "").strip() or TODO.format(v) for k, v in FACTS.items()}
    return facts, [k for k in FACTS if not (given.get(k) or "").strip()]


def _category(key: str) -> dict[str, Any]:
    c = CATEGORIES.get(key)
    return {"key": key, "name": c.description if c else key,
            "sensitive": bool(c and c.sensitive)}


def fields(draft: str, incident: Incident, snapshot: dict[str, Any],
           given: dict[str, str]) -> dict[str, Any]:
    """The items of one draft, as data (what the JSON rendering holds)."""
    facts, missing = _facts(given)
    counts = snapshot["counts"]
    categories = [_category(k) for k in counts["categories"]]
    base: dict[str, Any] = {
        "draft": draft,
        "incident_id": incident.incident_id,
        "snapshot_hash": snapshot["hash"],
        "snapshot_taken_at": snapshot["taken_at"],
        "missing": missing,
    }
    if draft in ("notice_zh", "notice_en"):
        return {**base, 
            "categories": categories,
            "sensitive_categories": [c for c in categories if c["sensitive"]],
            "cause": facts["cause"], "harm": facts["harm"], "remedies": facts["remedies"],
            "advice": facts["advice"], "contact": facts["contact"],
            "dpo_contact": facts["dpo_contact"],
            "window_start": snapshot["window_start"], "window_end": snapshot["window_end"],
            "description": incident.description
        }
    grade = incident.grade or "not graded"
    common = {
        "company": facts["company"],
        "description": incident.description,
        "window_start": snapshot["window_start"], "window_end": snapshot["window_end"],
        "discovered_at": incident.discovered_at.isoformat(),
        "stores": snapshot["stores"],
        "people": counts["people"], "records": counts["records"],
        "categories": categories,
        "sensitive_records": counts["sensitive_records"],
        "people_with_sensitive_data": counts["people_with_sensitive_data"],
        "cross_border_people": counts["cross_border_people"],
        "residence": counts["residence"],
        "reachable": counts["reachable"], "unreachable": counts["unreachable"],
        "erased": counts["erased"],
        "cause": facts["cause"], "harm": facts["harm"], "remedies": facts["remedies"],
        "contact": facts["contact"],
    }
    if draft == "report_cac":
        return {**base, **common, "grade": grade, "grade_zh": GRADE_NAMES_ZH.get(grade, "未分级"),
                "grade_basis": incident.grade_basis, "duties": list(incident.duties)}
    if draft == "report_gdpr":
        eea = [d.split(":", 1)[1] for d in incident.duties if d.startswith("gdpr33:")]
        return {**base, **common, "dpo_contact": facts["dpo_contact"],
                "authorities": {c: counts["residence"].get(c, 0) for c in eea}}
    raise KeyError(draft)


def render(draft: str, items: dict[str, Any]) -> tuple[str, str]:
    """(Markdown, JSON) of one draft's fields."""
    markdown = _env.get_template(f"{draft}.md.j2").render(**items)
    return markdown, json.dumps(items, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def write(data_dir: Path, incident: Incident, snapshot: dict[str, Any], given: dict[str, str],
          drafts: tuple[str, ...] = DRAFTS) -> dict[str, dict[str, str]]:
    """Render and write each draft (0600) under the incident's folder; per draft: its paths
    and the SHA-256 of its Markdown (recorded as ``incident.notice_drafted``)."""
    out_dir = private_dir(folder(data_dir, incident.incident_id) / "drafts")
    written: dict[str, dict[str, str]] = {}
    for draft in drafts:
        markdown, as_json = render(draft, fields(draft, incident, snapshot, given))
        md = write_private(out_dir / f"{draft}.md", markdown)
        js = write_private(out_dir / f"{draft}.json", as_json)
        written[draft] = {"markdown": str(md), "json": str(js),
                          "digest": hashlib.sha256(markdown.encode()).hexdigest()}
    return written
