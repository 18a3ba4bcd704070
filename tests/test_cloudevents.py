"""CloudEvents conformance: what the ledger accepts and stores is read by the CloudEvents SDK
(``cloudevents`` 2.x core API) with nothing lost, and envelope 1 producers still work."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st
from cloudevents.core.bindings import kafka as kafka_binding
from cloudevents.core.bindings.kafka import KafkaMessage
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from conftest import kafka_settings
from kafka import KafkaConsumer, KafkaProducer  # type: ignore[import-untyped]

from ledger.application import Ledger, Publisher
from ledger.settings import Settings
from schemas import ENVELOPES, decode, encode, encode_sealed, json_schema, parse_wire
from schemas.examples import EXAMPLES

FORMAT = JSONFormat()
TYPES = sorted(EXAMPLES)
SCALARS = (str, int, bool, datetime)


def sdk_read(body: str | bytes) -> CloudEvent:
    event = FORMAT.read(None, body)
    assert isinstance(event, CloudEvent)
    return event


def assert_scalar_attributes(event: CloudEvent) -> None:
    """CloudEvents attributes (extensions included) are scalars; only data is structured."""
    for name, value in event.get_attributes().items():
        assert isinstance(value, SCALARS), f"attribute {name} is {type(value).__name__}"


@pytest.mark.parametrize("event_type", TYPES)
def test_every_accepted_example_reads_with_the_sdk_and_back_with_nothing_lost(
        event_type: str) -> None:
    wire = EXAMPLES[event_type]
    ours = parse_wire(copy.deepcopy(wire))
    theirs = sdk_read(json.dumps(wire))  # validates required attributes and extension names
    assert_scalar_attributes(theirs)
    assert theirs.get_id() == ours.id and theirs.get_type() == event_type
    assert theirs.get_time() == ours.time and theirs.get_subject() == ours.subject
    assert theirs.get_data() == wire["data"]
    # written back by the SDK, the event is the same event to the ledger
    assert parse_wire(FORMAT.write(theirs)) == ours


@pytest.mark.parametrize("event_type", TYPES)
def test_the_stored_form_reads_with_the_sdk_and_back_with_nothing_lost(event_type: str) -> None:
    event = parse_wire(copy.deepcopy(EXAMPLES[event_type]))
    token = "v1.c2VhbGVk" if event.data.personal else None
    stored = encode_sealed(event, "p_abc" if event.subject else None, token, "publisher-1")
    theirs = sdk_read(stored)
    assert_scalar_attributes(theirs)
    assert theirs.get_extension("publisher") == "publisher-1"
    assert theirs.get_extension("sealed") == token
    assert theirs.get_extension("schemaversion") == event.schemaversion
    data = theirs.get_data()
    assert isinstance(data, dict) and "personal" not in data
    assert decode(FORMAT.write(theirs)) == decode(stored)


def test_an_event_made_with_the_sdk_is_accepted_as_made() -> None:
    made = CloudEvent(
        {"id": "sdk-1", "source": "svc/sdk", "type": "data.collected", "subject": "acct:9",
         "time": datetime.fromisoformat("2026-11-01T09:30:00+08:00"), "schemaversion": 1},
        {**EXAMPLES["data.collected"]["data"], "personal": {"user.contact.email": "s@x.cn"}},
    )
    event = parse_wire(FORMAT.write(made))
    assert (event.id, event.source, event.subject) == ("sdk-1", "svc/sdk", "acct:9")
    assert event.data.personal == {"user.contact.email": "s@x.cn"}
    assert event.time == made.get_time()


def test_published_schemas_require_id_and_specversion_and_hold_no_object_attribute() -> None:
    for event_type in ENVELOPES:
        schema = json_schema(event_type)
        assert {"id", "specversion", "source", "type", "time", "data"} <= set(schema["required"])
        for name, prop in schema["properties"].items():
            if name == "data":
                continue
            kinds = [p.get("type") for p in prop.get("anyOf", [prop])]
            assert "object" not in kinds and "$ref" not in json.dumps(prop), name
        data = schema["$defs"][ENVELOPES[event_type].model_fields["data"].annotation.__name__]
        assert "personal" in data["properties"]


# Ids given by envelope 1 to id-less lines, taken before envelope 2: they must not change,
# or a producer retrying an old line after the upgrade would store it twice. (The schema
# version is part of the hashed content, so a type whose data schema gains a version gets
# new derived ids, as it always did: subject.registered went to version 3 since.)
ENVELOPE_1_IDS = {
    "data.collected": "01a194ba-4dc0-7463-89eb-13b89fc57e74",
    "data.shared": "01a194ba-4dc0-729a-ad97-8306f84ef296",
    "policy.published": "01a194ba-4dc0-743d-9b15-95b4994e0d9c",
}


def envelope_1(event_type: str) -> dict[str, Any]:
    old = copy.deepcopy(EXAMPLES[event_type])
    del old["id"], old["specversion"]
    if "personal" in old["data"]:
        old["personal"] = old["data"].pop("personal")
    return old


@pytest.mark.parametrize("event_type", sorted(ENVELOPE_1_IDS))
def test_envelope_1_is_upcast_and_keeps_its_content_id(event_type: str) -> None:
    old = envelope_1(event_type)
    for given in (old, json.dumps(old), json.dumps(old).encode()):
        event = parse_wire(given)
        assert event.id == ENVELOPE_1_IDS[event_type]
        assert event.data.personal == EXAMPLES[event_type]["data"].get("personal")
    # the same event in envelope 2 without an id gets that id too
    new = copy.deepcopy(EXAMPLES[event_type])
    del new["id"]
    assert parse_wire(new).id == ENVELOPE_1_IDS[event_type]
    # and the upcast event, written out, is a CloudEvent
    assert_scalar_attributes(sdk_read(parse_wire(old).model_dump_json(exclude_none=True)))


def test_clear_values_given_in_both_places_are_refused_by_name() -> None:
    both = envelope_1("data.collected")
    both["data"]["personal"] = both["personal"]
    with pytest.raises(ValueError, match=r"^personal: given twice"):
        parse_wire(both)


# --- the ledger's own records on Kafka ----------------------------------------------------


@pytest.mark.kafka
def test_kafka_records_are_binary_mode_cloudevents(settings: Settings,
                                                  kafka_bootstrap: str) -> None:
    """Read back with kafka-python, each of the ledger's records parses with the SDK's Kafka
    binding (binary mode: ce_* headers, the data as value) into the event the ledger reads,
    with nothing lost; a record in the stored form (no ce_* headers) still reads."""
    kafka = kafka_settings(settings, kafka_bootstrap, partitions=2)
    events = [copy.deepcopy(EXAMPLES[t]) for t in ("data.collected", "data.used",
                                                     "recipient.registered")]
    events[1]["source"] = 'svc/"quoted" 服务'  # a value that needs JSON escaping
    with Ledger(kafka) as ledger:
        ledger.publish_lines([json.dumps(e, ensure_ascii=False) for e in events],
                             publisher=Publisher("svc-example",
                                                 frozenset(e["source"] for e in events)))
        log = ledger.log
        topic = log.topic  # type: ignore[attr-defined]
        # a record as written before binary mode: the stored form as value, no ce_* headers
        before = parse_wire({**copy.deepcopy(EXAMPLES["data.used"]), "id": "stored-form-1"})
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        producer.send(topic, key=b"p_before", value=encode(before.model_copy(
            update={"subject": "p_before"})), headers=[("pdl-event-id", b"stored-form-1")])
        producer.flush()
        producer.close()
        read = {r.event_id: decode(r.payload) for r in log.read()}
    assert read.pop("stored-form-1").model_copy(update={"subject": None}) == \
        before.model_copy(update={"subject": None})
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             isolation_level="read_committed", enable_auto_commit=False,
                             consumer_timeout_ms=5000)
    try:
        consumer.subscribe([topic])
        raw = [r for r in consumer if r.key != b"p_before"]
    finally:
        consumer.close()
    assert len(raw) == 2 + 2  # the recipient (about no one) is on both partitions
    for record in raw:
        headers = dict(record.headers)
        assert headers["content-type"] == b"application/json"
        assert {"ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time"} <= set(headers)
        event = kafka_binding.from_kafka(
            KafkaMessage(headers=headers, key=record.key, value=record.value), FORMAT)
        assert_scalar_attributes(event)
        stored = read[event.get_id()]
        assert (event.get_type(), event.get_source(), event.get_time()) == (
            stored.type, stored.source, stored.time)
        assert event.get_subject() == stored.subject and event.get_subject() != "acct:10001"
        assert event.get_extension("publisher") == "svc-example"
        assert event.get_extension("sealed") == stored.sealed
        assert event.get_data() == stored.data.model_dump(mode="json", exclude_none=True)
        # nothing lost: the SDK's event, written out (less the key it adds), is the event
        attributes = {k: v for k, v in event.get_attributes().items() if k != "partitionkey"}
        attributes["schemaversion"] = int(attributes["schemaversion"])
        assert decode(FORMAT.write(CloudEvent(attributes, event.get_data()))) == stored


_HEADER_NAMES = ["ce_specversion", "ce_id", "ce_type", "ce_schemaversion", "content-type",
                 "pdl-event-id", "ce_subject", "ce_50%off", "other"]
_HEADER_VALUES = [b"1.0", b"e1", b"12", b'say "hi"', "é".encode(), None, b"", b"a\\b", b"\n"]


@examples(max_examples=400, deadline=None)
@given(headers=st.lists(st.tuples(st.sampled_from(_HEADER_NAMES),
                                  st.sampled_from(_HEADER_VALUES)), max_size=7),
       value=st.sampled_from([b'{"a":1}', b"", None]))
def test_from_kafka_layouts_give_what_escaping_each_value_gives(
        headers: list[tuple[str, bytes | None]], value: bytes | None) -> None:
    from schemas.cloudevents import _from_kafka_escaped, from_kafka

    made = from_kafka(headers, value)  # type: ignore[arg-type]
    assert made == _from_kafka_escaped(headers, value)  # type: ignore[arg-type]
    if made is not None:
        assert json.loads(made)["specversion"] is not None
