"""Renders the event catalogue (``docs/events.md``) from the models, so it cannot go stale."""

from __future__ import annotations

import json
from typing import Any

from schemas.codec import ENVELOPES, json_schema
from schemas.events import (
    DATA_MODELS,
    MAX_DEPTH,
    MAX_LINE_BYTES,
    MAX_RETENTION_DAYS,
    MAX_SCHEMA_VERSION,
    MAX_TIME,
    MIN_TIME,
    Event,
    EventData,
)
from schemas.examples import EXAMPLES
from schemas.events import CrossBorder, Source
from schemas.taxonomy import (
    CATEGORIES,
    EXTENSION,
    FIDES_DATA_SUBJECTS,
    RENAMED_CATEGORIES,
    USES,
    ErasureMethod,
    LegalGround,
    Mechanism,
    Protection,
    RecipientKind,
    RecipientRole,
    RequestKind,
    SharingClause,
    SourceKind,
    SubjectKind,
)

#: Types fields refer to, defined in the catalogue's "Types" section.
TYPES: tuple[type, ...] = (Source, CrossBorder, SubjectKind, SourceKind, Mechanism, Protection,
                           RecipientKind, RecipientRole, ErasureMethod, RequestKind,
                           LegalGround, SharingClause)


def _type_of(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "enum" in prop:
        values = prop["enum"]
        if set(values) == set(CATEGORIES):
            return "data category ([keys](#data-categories))"
        if set(values) == set(USES):
            return "data use ([keys](#data-uses-purposes))"
        return "one of " + ", ".join(f"`{v}`" for v in values[:6]) + (" …" if len(values) > 6 else "")
    if "const" in prop:
        return f"`{prop['const']}`"
    if "anyOf" in prop:
        return " or ".join(_type_of(p, defs) for p in prop["anyOf"])
    if prop.get("type") == "array":
        return f"list of {_type_of(prop.get('items', {}), defs)}"
    return str(prop.get("type", "any"))


def _types() -> list[str]:
    """The "Types" section: every object and enumeration a field refers to."""
    out = ["## Types", ""]
    for t in TYPES:
        doc = " ".join((t.__doc__ or "").split())
        out += [f"### {t.__name__}", "", doc, ""]
        if hasattr(t, "model_fields"):
            schema = t.model_json_schema()
            out += ["| field | type | required | meaning |", "|---|---|---|---|"]
            req = set(schema.get("required", []))
            for name, prop in schema["properties"].items():
                desc = (t.model_fields[name].description or "").replace("|", "/")
                out.append(f"| `{name}` | {_type_of(prop, {})} | "
                           f"{'yes' if name in req else 'no'} | {desc} |")
        else:
            out.append("One of: " + ", ".join(f"`{m.value}`" for m in t) + ".")
        out.append("")
    return out


def render_catalogue() -> str:
    out = [
        "# Event catalogue",
        "",
        "Generated from `schemas/` by `pdl schema docs --output docs/events.md`; "
        "`tests/test_schemas.py` fails if this file is stale. JSON Schemas for producers in "
        "other languages: `pdl schema export DIR`.",
        "",
        "## The envelope (CloudEvents 1.0)",
        "",
        "| field | type | required | meaning |",
        "|---|---|---|---|",
    ]
    envelope = Event.model_json_schema()
    required = set(envelope.get("required", []))
    for name, prop in envelope["properties"].items():
        if name == "data":
            continue
        desc = Event.model_fields[name].description or ""
        out.append(f"| `{name}` | {_type_of(prop, {})} | {'yes' if name in required else 'no'} | {desc} |")
    personal = EventData.model_fields["personal"].description
    out.append(f"| `data.personal` | object: data category -> string | no | {personal} |")
    out += [
        "",
        "On the wire `subject` is the person's real identifier and `data.personal` (a "
        "member of every event type's data, reserved for this) maps data categories to "
        "clear values; the ledger stores the keyed pseudonym and a `sealed` token instead. "
        "Every attribute but `data` is a scalar, so each accepted event is a CloudEvents 1.0 "
        "event that any CloudEvents SDK reads with nothing lost; `sealed` and `publisher` "
        "appear only in the log, set by the ledger (a producer sending them is refused).",
        "",
        "### Ids",
        "",
        "`id` and `specversion` are required. A producer that cannot keep an id across "
        "retries may still leave `id` out (the old form): the ledger then derives a UUIDv7 "
        "from the event's time and content before validation, so a retried publish is not a "
        "duplicate. Keeping your own id is better: two events identical in time and content "
        "would otherwise count as one.",
        "",
        "### Envelope versions",
        "",
        "Envelope 2 (this one) carries clear values in `data.personal`. Envelope 1 had them "
        "in a top-level `personal` object (which CloudEvents extension attributes may not "
        "be) and let `id` and `specversion` be left out. Producers of envelope 1 keep "
        "working: `schemas.codec.upcast_envelope` moves `personal` into `data`, sets "
        "`specversion` and derives the id exactly as envelope 1 did. Stored events never "
        "held `personal`, so the log needs no upcasting for this.",
        "",
        "## Bounds",
        "",
        "Every event the contract accepts can be stored by every view and answered by every "
        "query (`tests/test_robustness.py` checks this on random events generated from these "
        "schemas). So the contract refuses, with the line and the field, exit 65:",
        "",
        "| what | bound |",
        "|---|---|",
        f"| a line | at most {MAX_LINE_BYTES:,} bytes of UTF-8 (invalid UTF-8 is refused) |",
        f"| nesting | objects and arrays at most {MAX_DEPTH} levels deep (a valid event needs 4) |",
        f"| every time (`time`, `effective_at`, `due`, `window_*`, `legal_hold_until`) | an "
        f"ISO 8601 string with an offset (epoch numbers refused), between "
        f"{MIN_TIME:%Y-%m-%dT%H:%M:%SZ} and {MAX_TIME:%Y-%m-%dT%H:%M:%SZ} once converted to UTC |",
        f"| `data.retention_days` | 0 to {MAX_RETENTION_DAYS} (100 years), or null |",
        f"| `schemaversion` | 1 to the type's current version (at most {MAX_SCHEMA_VERSION}) |",
        "| every string, key or value | no NUL character (`\\u0000`) |",
        "| keys of `data.personal` | among the event's `data.categories` (or under one of them), "
        "where the event lists categories |",
        "",
        "## Event types",
        "",
    ]
    for model in DATA_MODELS:
        schema = json_schema(model.TYPE)
        data_schema = schema["$defs"][model.__name__]
        defs = schema.get("$defs", {})
        req = set(data_schema.get("required", []))
        subject = "required" if model.SUBJECT_REQUIRED else "none (not about one person)"
        out += [
            f"### `{model.TYPE}` (version {model.SCHEMA_VERSION})",
            "",
            (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else "",
            "",
            f"Subject: {subject}.",
            "",
            "| field | type | required | meaning |",
            "|---|---|---|---|",
        ]
        for name, prop in data_schema.get("properties", {}).items():
            if name == "personal":
                continue  # the same for every type: described with the envelope
            desc = (model.model_fields[name].description or "").replace("|", "/")
            out.append(f"| `{name}` | {_type_of(prop, defs)} | {'yes' if name in req else 'no'} | {desc} |")
        out += ["", "Example (wire form):", "", "```json",
                json.dumps(EXAMPLES[model.TYPE], ensure_ascii=False), "```", ""]
    out += _types()
    out += ["## Data subjects", "",
            "Each subject kind maps to a fideslang data subject (`pdl fides export` uses it).",
            "", "| subject_kind | fideslang data subject |", "|---|---|"]
    out += [f"| `{k.value}` | `{v}` |" for k, v in FIDES_DATA_SUBJECTS.items()]
    out += ["", "## Data categories", "",
            "PIPL sensitive: PIPL art. 28 (breach scope counts these). Policy sensitive: the "
            "policy's own 个人敏感信息 (2.1.1(1)), shown in data maps. An extension's parent "
            "is a fideslang key or another extension under one.", "",
            "| key | PIPL sensitive | policy sensitive | origin | meaning |",
            "|---|---|---|---|---|"]
    for c in CATEGORIES.values():
        origin = (f"extension of `{c.key.rpartition('.')[0]}`" if c.origin == EXTENSION
                  else c.origin)
        out.append(f"| `{c.key}` | {'yes' if c.sensitive else ''} | "
                   f"{'yes' if c.policy_sensitive else ''} | {origin} | {c.description} |")
    out += ["", "Retired keys, read as their replacement: " + ", ".join(
        f"`{old}` → `{new}`" for old, new in RENAMED_CATEGORIES.items()) + "."]
    out += ["", "## Data uses (purposes)", "", "| key | declared in the policy | origin | meaning |",
            "|---|---|---|---|"]
    for u in USES.values():
        origin = (f"extension of `{u.key.rpartition('.')[0]}`" if u.origin == EXTENSION
                  else u.origin)
        out.append(f"| `{u.key}` | {'yes' if u.declared else 'no: needs consent (3.4b)'} | {origin} | {u.description} |")
    out += ["", "## Legal grounds", "", ", ".join(f"`{g.value}`" for g in LegalGround), "",
            "## Sharing clauses", "", ", ".join(f"`{c.value}`" for c in SharingClause), ""]
    assert set(ENVELOPES) == {m.TYPE for m in DATA_MODELS}
    return "\n".join(out)
