"""The event catalogue: every type valid and invalid, versions, ids, taxonomy, generated docs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pdl.cli import main
from schemas import EVENT_TYPES, EventInvalid, decode, encode, parse_wire, uuid7
from schemas.docs import render_catalogue
from schemas.examples import EXAMPLES
from schemas.taxonomy import CATEGORIES, EXTENSION, FIDESLANG, USES, is_sensitive

ROOT = Path(__file__).resolve().parent.parent
TYPES = sorted(EVENT_TYPES)


def test_every_event_type_has_an_example() -> None:
    assert set(EXAMPLES) == set(EVENT_TYPES)
    assert len(EVENT_TYPES) >= 25


@pytest.mark.parametrize("event_type", TYPES)
def test_valid_example_parses_and_round_trips(event_type: str) -> None:
    event = parse_wire(EXAMPLES[event_type])
    assert event.type == event_type
    assert event.specversion == "1.0"
    assert event.dataschema == f"urn:pdl:schema:{event_type}:{EVENT_TYPES[event_type].SCHEMA_VERSION}"
    assert event.id is not None
    assert decode(encode(event)) == event
    assert parse_wire(json.dumps(EXAMPLES[event_type])) == event  # text and dict agree


def _errors(obj: Any) -> list[str]:
    with pytest.raises(EventInvalid) as info:
        parse_wire(obj)
    return [str(e) for e in info.value.errors]


@pytest.mark.parametrize("event_type", TYPES)
def test_unknown_data_field_is_refused_by_name(event_type: str) -> None:
    bad = copy.deepcopy(EXAMPLES[event_type])
    bad["data"]["surprise"] = 1
    assert _errors(bad) == ["data.surprise: unknown field (not in the schema)"]


@pytest.mark.parametrize("event_type", TYPES)
def test_missing_required_data_field_is_refused_by_name(event_type: str) -> None:
    model = EVENT_TYPES[event_type]
    required = [n for n, f in model.model_fields.items() if f.is_required()]
    bad = copy.deepcopy(EXAMPLES[event_type])
    if required:
        del bad["data"][required[0]]
        assert _errors(bad) == [f"data.{required[0]}: Field required"]
    else:  # nothing required: a wrongly typed field is named instead
        field = next(iter(model.model_fields))
        bad["data"][field] = {"not": "valid"}
        assert all(e.startswith(f"data.{field}") for e in _errors(bad))


@pytest.mark.parametrize("event_type", TYPES)
def test_time_without_offset_is_refused(event_type: str) -> None:
    bad = {**EXAMPLES[event_type], "time": "2026-11-01T09:30:00"}
    assert _errors(bad) == ["time: Input should have timezone info"]


@pytest.mark.parametrize("event_type", TYPES)
def test_subject_rule(event_type: str) -> None:
    model = EVENT_TYPES[event_type]
    if model.SUBJECT_REQUIRED:
        bad = {k: v for k, v in EXAMPLES[event_type].items() if k != "subject"}
        assert _errors(bad) == [f"subject: required for {event_type} events"]
    else:
        bad = copy.deepcopy(EXAMPLES[event_type])
        bad["subject"] = "acct:1"
        bad["data"]["personal"] = {"user.name": "x"}
        assert _errors(bad) == [f"data.personal: {event_type} events are not about a person"]
        # the same in envelope 1's form (personal at the top level), upcast first
        old = {**EXAMPLES[event_type], "subject": "acct:1", "personal": {"user.name": "x"}}
        assert _errors(old) == [f"data.personal: {event_type} events are not about a person"]


def test_field_errors_name_the_path_and_reason() -> None:
    bad = copy.deepcopy(EXAMPLES["data.collected"])
    bad["data"]["categories"] = ["user.contact.email", "user.nope"]
    bad["data"]["store_location"] = "China"
    bad["data"]["source"] = {"kind": "third_party"}
    errors = _errors(bad)
    assert "data.categories[1]: unknown data category 'user.nope' (see docs/events.md for the list)" in errors
    assert "data.store_location: must be an ISO 3166-1 alpha-2 country code such as 'CN'" in errors
    assert "data.source: party is required when kind is third_party" in errors


def test_unknown_type_bad_json_and_clear_personal_keys() -> None:
    assert _errors({**EXAMPLES["data.used"], "type": "data.stolen"}) == [
        "type: unknown event type 'data.stolen' (see docs/events.md)"
    ]
    assert _errors("{not json") [0].startswith("(line): not valid JSON")
    assert _errors({**EXAMPLES["data.used"], "personal": {"user.bogus": "x"}})[0].startswith(
        "data.personal.user.bogus"
    )
    assert _errors({**EXAMPLES["data.used"], "sealed": "v1.x"}) == [
        "sealed: set by the ledger; send values in 'data.personal'"
    ]
    assert _errors({**EXAMPLES["data.used"], "publisher": "svc-x"}) == [
        "publisher: set by the ledger from the authenticated principal"
    ]


def test_version_1_record_still_reads_after_the_schema_gained_a_field() -> None:
    # A subject.registered event as stored before version 2 added subject_kind.
    stored_v1 = (
        b'{"specversion":"1.0","id":"0190a1b2-0000-7000-8000-000000000001","source":"svc/accounts",'
        b'"type":"subject.registered","time":"2024-06-01T00:00:00Z","subject":"p_abc",'
        b'"datacontenttype":"application/json","dataschema":"urn:pdl:schema:subject.registered:1",'
        b'"schemaversion":1,"data":{"channel":"app"}}'
    )
    event = decode(stored_v1)
    assert event.schemaversion == 3  # through v2 (subject_kind) and v3 (residence)
    assert event.data.subject_kind == "user"  # type: ignore[attr-defined]
    assert event.data.channel == "app"  # type: ignore[attr-defined]
    assert event.data.residence is None  # type: ignore[attr-defined]
    assert event.dataschema == "urn:pdl:schema:subject.registered:3"
    # and a producer still sending version 1 is upcast on the way in
    wire = {**EXAMPLES["subject.registered"], "schemaversion": 1}
    wire["data"] = {"channel": "web"}
    assert parse_wire(wire).data.subject_kind == "user"  # type: ignore[attr-defined]


def test_incident_reported_v1_reads_with_no_duty_named() -> None:
    stored_v1 = (
        b'{"specversion":"1.0","id":"0190a1b2-0000-7000-8000-000000000002","source":"svc/sec",'
        b'"type":"incident.reported","time":"2024-06-01T00:00:00Z",'
        b'"schemaversion":1,"data":{"incident_id":"inc-1","authority":"CAC"}}'
    )
    event = decode(stored_v1)
    assert event.schemaversion == 2
    assert event.data.duty is None  # type: ignore[attr-defined]
    assert event.data.authority == "CAC"  # type: ignore[attr-defined]


def test_a_judged_grade_needs_its_justification() -> None:
    wire = {**EXAMPLES["incident.graded"]}
    wire["data"] = {**wire["data"], "justification": "  "}
    with pytest.raises(EventInvalid) as info:
        parse_wire(wire)
    assert "justification is required" in str(info.value.errors)


def test_ids_are_uuid7_time_ordered_and_derived_deterministically() -> None:
    a, b = uuid7(1_700_000_000_000), uuid7(1_700_000_000_001)
    assert a[14] == "7" and a < b
    without_id = {k: v for k, v in EXAMPLES["data.used"].items() if k != "id"}
    first, again = parse_wire(without_id), parse_wire(copy.deepcopy(without_id))
    assert first.id == again.id  # a retried publish is not a duplicate
    changed = copy.deepcopy(without_id)
    changed["data"]["system"] = "other"
    assert parse_wire(changed).id != first.id
    assert parse_wire({**without_id, "id": "given-1"}).id == "given-1"


def test_taxonomy_keys_exist_in_fideslang_or_are_documented_extensions() -> None:
    import fideslang  # a runtime dependency: never skipped

    taxonomy = fideslang.DEFAULT_TAXONOMY
    fides_categories = {c.fides_key for c in taxonomy.data_category}
    fides_uses = {u.fides_key for u in taxonomy.data_use}
    for key, category in CATEGORIES.items():
        if category.origin == FIDESLANG:
            assert key in fides_categories, f"{key} is not a fideslang data category"
        else:
            assert category.origin == EXTENSION and key not in fides_categories, key
    for key, use in USES.items():
        if use.origin == FIDESLANG:
            assert key in fides_uses, f"{key} is not a fideslang data use"
        else:
            assert use.origin == EXTENSION and key not in fides_uses, key


def test_pipl_sensitive_flags() -> None:
    for key in ("user.biometric.face", "user.government_id.national_identification_number",
                "user.financial.bank_account", "user.location.precise", "user.childrens"):
        assert is_sensitive(key), key
    for key in ("user.contact.email", "user.device.ip_address", "user.location.imprecise"):
        assert not is_sensitive(key), key


def test_events_md_is_generated_from_the_models() -> None:
    committed = (ROOT / "docs" / "events.md").read_text()
    assert committed == render_catalogue(), (
        "docs/events.md is stale: run `pdl schema docs --output docs/events.md`"
    )


def test_schema_export_writes_one_json_schema_per_type(tmp_path: Path) -> None:
    assert main(["schema", "export", str(tmp_path)]) == 0
    files = sorted(tmp_path.glob("*.schema.json"))
    assert len(files) == len(EVENT_TYPES)
    schema = json.loads((tmp_path / "data.shared.schema.json").read_text())
    assert schema["$id"] == "urn:pdl:schema:data.shared:1"
    assert {"source", "type", "time", "data"} <= set(schema["required"])
    assert schema["properties"]["type"]["const"] == "data.shared"


def test_a_personal_value_in_a_vocabulary_field_is_not_echoed() -> None:
    bad = copy.deepcopy(EXAMPLES["data.used"])
    bad["data"]["purpose"] = "alice@example.cn"
    assert _errors(bad) == ["data.purpose: unknown data use (value not shown) "
                            "(see docs/events.md for the list)"]
