"""The one mapper between bytes and events: validation, upcasting, ids, error messages.

Every event passes through here on its way into the log (``parse_wire``) and on its way
out (``decode``), so the event type and its schema version always travel together and old
versions are upcast before validation.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time as _time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter, ValidationError, create_model

from schemas.events import DATA_MODELS, EVENT_TYPES, Event, EventData, dataschema_uri
from schemas.taxonomy import RENAMED_CATEGORIES

# --- typed envelopes ------------------------------------------------------------------


def _typed_envelope(model: type[EventData]) -> type[Event]:
    name = model.__name__ + "Event"
    return create_model(  # type: ignore[call-overload,no-any-return]
        name,
        __base__=Event,
        __doc__=f"Envelope of a {model.TYPE} event.",
        type=(Literal[model.TYPE], ...),
        data=(model, ...),
        schemaversion=(int, Field(default=model.SCHEMA_VERSION, ge=1,
                                  description="schema version of data; older ones are upcast")),
        dataschema=(str, dataschema_uri(model.TYPE, model.SCHEMA_VERSION)),
    )


ENVELOPES: dict[str, type[Event]] = {m.TYPE: _typed_envelope(m) for m in DATA_MODELS}
_ANY_EVENT = Annotated[Union[tuple(ENVELOPES.values())], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(_ANY_EVENT)
# The adapter's pydantic-core validator, called directly on the hot paths: same schema and
# result, without TypeAdapter's per-call Python wrapper.
_VALIDATE_JSON = EVENT_ADAPTER.validator.validate_json


# --- upcasting ------------------------------------------------------------------------

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
#: (event type, version it reads) -> function turning that version's data into the next.
UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("subject.registered", 1): lambda d: {"subject_kind": "user", **d},
}


def current_version(event_type: str) -> int:
    return EVENT_TYPES[event_type].SCHEMA_VERSION


def _renamed(value: Any) -> Any:
    """``value`` with retired category keys (``RENAMED_CATEGORIES``) replaced, in lists,
    nested objects and object keys (``personal``)."""
    if isinstance(value, str):
        return RENAMED_CATEGORIES.get(value, value)
    if isinstance(value, list):
        return [_renamed(v) for v in value]
    if isinstance(value, dict):
        return {RENAMED_CATEGORIES.get(k, k): _renamed(v) for k, v in value.items()}
    return value


def upcast(obj: dict[str, Any]) -> dict[str, Any]:
    """Bring an event dict written under an older schema version up to the current one,
    retired category keys renamed (any version: only events that fail the fast path get
    here)."""
    for field in ("data", "personal"):
        if isinstance(obj.get(field), dict):
            obj = {**obj, field: _renamed(obj[field])}
    event_type = obj.get("type")
    model = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if model is None:
        return obj
    version = obj.get("schemaversion", model.SCHEMA_VERSION)
    if not isinstance(version, int) or version > model.SCHEMA_VERSION:
        return obj  # validation reports it
    if version < model.SCHEMA_VERSION:
        data = obj.get("data")
        if isinstance(data, dict):
            for v in range(version, model.SCHEMA_VERSION):
                data = UPCASTERS[(model.TYPE, v)](data)
            obj = {**obj, "data": data}
    obj["schemaversion"] = model.SCHEMA_VERSION
    obj["dataschema"] = dataschema_uri(model.TYPE, model.SCHEMA_VERSION)
    return obj


# --- errors ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldError:
    """One reason an event was refused: where (a dotted field path) and why."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class EventInvalid(ValueError):
    """An event failed validation; ``errors`` names each field and reason."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(map(str, errors)))


def _path(loc: tuple[int | str, ...], kind: str) -> str:
    if kind.startswith("union_tag"):
        return "type"
    out = ""
    for i, part in enumerate(loc):
        if i == 0 and isinstance(part, str) and part in ENVELOPES:
            continue  # the discriminator tag pydantic puts first
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(event)"


_KEY_SHAPE = re.compile(r"[a-z][a-z_]*(\.[a-z_]+)*")


def _reason(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    if kind == "literal_error":
        value = err.get("input")
        expected = str(err.get("ctx", {}).get("expected", ""))
        if expected.count(",") > 5:
            what = "data category" if "'user." in expected else "data use"
            # Echo only what looks like a taxonomy key: a misplaced personal value (an
            # e-mail in a purpose field) must not reach an error message or a log line.
            shown = repr(value) if isinstance(value, str) and _KEY_SHAPE.fullmatch(value) else \
                "(value not shown)"
            return f"unknown {what} {shown} (see docs/events.md for the list)"
    if kind == "string_pattern_mismatch" and "A-Z" in str(err.get("ctx", {}).get("pattern")):
        return "must be an ISO 3166-1 alpha-2 country code such as 'CN'"
    if kind == "union_tag_invalid":
        return f"unknown event type {err.get('ctx', {}).get('tag')!r} (see docs/events.md)"
    if kind == "union_tag_not_found":
        return "missing: every event needs a 'type'"
    if kind == "extra_forbidden":
        return "unknown field (not in the schema)"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def field_errors(exc: ValidationError) -> list[FieldError]:
    return [FieldError(_path(tuple(e["loc"]), e["type"]), _reason(e)) for e in exc.errors()]


# --- ids ------------------------------------------------------------------------------


def uuid7(unix_ms: int | None = None, rand: bytes | None = None) -> str:
    """A time-ordered UUIDv7 (RFC 9562). With ``rand`` given it is deterministic."""
    ms = int(_time.time() * 1000) if unix_ms is None else unix_ms
    r = rand if rand is not None else os.urandom(10)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (int.from_bytes(r[:2], "big") & 0x0FFF) << 64
    value |= 0b10 << 62
    value |= int.from_bytes(r[2:10], "big") & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def content_id(event: Event) -> str:
    """The id of an event published without one: UUIDv7 from its time and its content.

    Deterministic, so publishing the same id-less line twice (a retry) stores it once.
    """
    canonical = event.model_dump_json(exclude={"id"}).encode()
    digest = hashlib.sha256(canonical).digest()
    return uuid7(int(event.time.timestamp() * 1000), digest[:10])


# --- parsing and serialising ------------------------------------------------------------


def _check_subject(event: Event) -> None:
    if type(event.data).SUBJECT_REQUIRED and not event.subject:
        raise EventInvalid([FieldError("subject", f"required for {event.type} events")])
    if not type(event.data).SUBJECT_REQUIRED and event.personal:
        raise EventInvalid(
            [FieldError("personal", f"{event.type} events are not about a person")]
        )


def parse_wire(obj: Any) -> Event:
    """Validate one wire event (a dict or JSON text); raise ``EventInvalid`` naming fields."""
    event: Event | None = None
    if isinstance(obj, (str, bytes, bytearray)):
        # Fast path: pydantic-core parses and validates the JSON in one go. An event of an
        # older schema version, or one that fails, takes the dict path for upcasting and
        # for the same error messages.
        try:
            event = _VALIDATE_JSON(obj)
            if event.schemaversion != type(event.data).SCHEMA_VERSION:
                event = None
        except ValidationError:
            event = None
        if event is None:
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as exc:
                raise EventInvalid([FieldError("(line)", f"not valid JSON: {exc.msg}")]) from None
    if event is None:
        if not isinstance(obj, dict):
            raise EventInvalid([FieldError("(line)", "must be a JSON object")])
        try:
            event = EVENT_ADAPTER.validate_python(upcast(dict(obj)))
        except ValidationError as exc:
            raise EventInvalid(field_errors(exc)) from None
    if event.sealed is not None:
        raise EventInvalid([FieldError("sealed", "set by the ledger; send values in 'personal'")])
    _check_subject(event)
    if event.id is None:
        event = event.model_copy(update={"id": content_id(event)})
    return event


def parse_wire_lines(lines: Sequence[str | bytes]) -> list[Event | EventInvalid]:
    """``parse_wire`` of each JSON line: its event, or the ``EventInvalid`` it raises.

    The common case (valid, current schema version, with an id) is checked inline; every
    other line goes through ``parse_wire`` itself, so results and messages are the same.
    """
    validate = _VALIDATE_JSON
    out: list[Event | EventInvalid] = []
    for line in lines:
        try:
            event: Event | None = validate(line)
        except ValidationError:
            event = None
        if event is not None:
            data = type(event.data)
            if (event.id is None or event.sealed is not None
                    or event.schemaversion != data.SCHEMA_VERSION
                    or (not event.subject if data.SUBJECT_REQUIRED else event.personal)):
                event = None
        if event is None:
            try:
                event = parse_wire(line)
            except EventInvalid as exc:
                out.append(exc)
                continue
        out.append(event)
    return out


_NOT_STORED = {"personal", "subject", "sealed"}


def encode(event: Event) -> bytes:
    """The stored form of an event (already sealed and pseudonymised by the ledger)."""
    return event.model_dump_json(exclude_none=True).encode()


def encode_sealed(event: Event, subject: str | None, sealed: str | None) -> bytes:
    """The stored form of a wire event: its subject replaced, ``personal`` replaced by a token.

    Same JSON as ``encode(event.model_copy(update=...))`` up to key order, without the
    cost of copying a pydantic model (the publish hot path). ``subject`` and ``sealed``
    are a pseudonym and a base64url token, plain ASCII that needs no JSON escaping.
    """
    # The model's serializer called directly: model_dump_json's bytes, without its
    # wrapper and the decode/encode round trip.
    body = type(event).__pydantic_serializer__.to_json(event, exclude_none=True,
                                                        exclude=_NOT_STORED)
    extra = b""
    if subject is not None:
        extra += b',"subject":"' + subject.encode() + b'"'
    if sealed is not None:
        extra += b',"sealed":"' + sealed.encode() + b'"'
    return body[:-1] + extra + b"}" if extra else body


def decode(payload: bytes | str) -> Event:
    """Read a stored event, upcasting old schema versions first."""
    try:
        event = _VALIDATE_JSON(payload)
        if event.schemaversion == type(event.data).SCHEMA_VERSION:
            return event
    except ValidationError:
        pass
    # An older schema version: rewrite its dict first. Current versions take the fast path.
    return EVENT_ADAPTER.validate_python(upcast(json.loads(payload)))


def json_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema of the wire form of one event type (for producers in other languages)."""
    schema = ENVELOPES[event_type].model_json_schema()
    schema["$id"] = dataschema_uri(event_type, current_version(event_type))
    schema["title"] = event_type
    return schema
