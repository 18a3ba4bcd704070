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

from schemas.events import (
    DATA_MODELS,
    EVENT_TYPES,
    MAX_DEPTH,
    MAX_LINE_BYTES,
    MAX_TIME,
    MIN_TIME,
    Event,
    EventData,
    Personal,
    dataschema_uri,
)
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
        schemaversion=(int, Field(default=model.SCHEMA_VERSION, ge=1, le=model.SCHEMA_VERSION,
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
    ("subject.registered", 2): lambda d: d,  # residence: unknown
    ("incident.reported", 1): lambda d: d,  # duty: none named
    ("ledger.queried", 1): lambda d: _queried_v2(d),
}

#: v1 queries that opened sealed values.
_CLEAR_V1 = ("export", "log --unseal")


def _queried_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 named the person in ``arguments.pseudonym`` and gave no role nor reason."""
    arguments = data.get("arguments")
    person = arguments.get("pseudonym") if isinstance(arguments, dict) else None
    return {"role": None, "people": [person] if isinstance(person, str) else [],
            "reason": None, "clear": data.get("query") in _CLEAR_V1, **data}


def current_version(event_type: str) -> int:
    return EVENT_TYPES[event_type].SCHEMA_VERSION


def _renamed(value: Any) -> Any:
    """``value`` with retired category keys (``RENAMED_CATEGORIES``) replaced, in lists,
    nested objects and object keys (``data.personal``)."""
    if isinstance(value, str):
        return RENAMED_CATEGORIES.get(value, value)
    if isinstance(value, list):
        return [_renamed(v) for v in value]
    if isinstance(value, dict):
        return {RENAMED_CATEGORIES.get(k, k): _renamed(v) for k, v in value.items()}
    return value


#: Placeholder id an id-less event is validated under before its content id replaces it.
_NO_ID = "-"


def upcast_envelope(obj: dict[str, Any]) -> dict[str, Any]:
    """Envelope 1 -> 2, for producers of the old form (a copy; ``obj`` is not changed).

    Envelope 1 had ``personal`` as a top-level attribute (an object, which CloudEvents
    extensions may not be) and let ``specversion`` and ``id`` be left out. Here the values
    move to ``data.personal``, a missing ``specversion`` becomes "1.0", and a missing id
    becomes a placeholder that ``parse_wire`` replaces by the content id (``content_id``),
    the same id envelope 1 derived, so a retry of an old id-less line is still no duplicate.
    """
    obj = dict(obj)
    obj.setdefault("specversion", "1.0")
    if obj.get("id") is None:
        obj["id"] = _NO_ID
    if "personal" in obj:
        data = obj.get("data")
        if obj["personal"] is None:
            del obj["personal"]
        elif isinstance(data, dict) and "personal" not in data:
            obj["data"] = {**data, "personal": obj.pop("personal")}
        # else: both forms at once; validation names the top-level one as unknown
    return obj


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
    if kind in ("greater_than_equal", "less_than_equal") and "datetime" in str(err.get("ctx")):
        return (f"must be between {MIN_TIME:%Y-%m-%dT%H:%M:%SZ} and "
                f"{MAX_TIME:%Y-%m-%dT%H:%M:%SZ} once converted to UTC")
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


_CANONICAL_EXCLUDE: Any = {"id": True, "sealed": True, "publisher": True, "data": {"personal"}}
_PERSONAL_JSON = TypeAdapter(Personal | None).serializer.to_json


def content_id(event: Event) -> str:
    """The id of an event published without one: UUIDv7 from its time and its content.

    Deterministic, so publishing the same id-less line twice (a retry) stores it once.
    The hashed form is envelope 1's JSON (``personal`` after ``data``, then a null
    ``sealed``), so an id-less line keeps the id it was given before envelope 2.
    """
    body = type(event).__pydantic_serializer__.to_json(event, exclude=_CANONICAL_EXCLUDE)
    canonical = (body[:-1] + b',"personal":' + _PERSONAL_JSON(event.data.personal)
                 + b',"sealed":null}')
    digest = hashlib.sha256(canonical).digest()
    return uuid7(int(event.time.timestamp() * 1000), digest[:10])


# --- parsing and serialising ------------------------------------------------------------


def _check_subject(event: Event) -> None:
    if type(event.data).SUBJECT_REQUIRED and not event.subject:
        raise EventInvalid([FieldError("subject", f"required for {event.type} events")])
    if not type(event.data).SUBJECT_REQUIRED and event.data.personal:
        raise EventInvalid(
            [FieldError("data.personal", f"{event.type} events are not about a person")]
        )
    _check_personal(event)


def _check_personal(event: Event) -> None:
    """Keys of ``personal`` must be among the event's ``categories`` (or under one of them),
    where the event lists categories: a value of a category the event does not declare
    would be sealed under a promise nobody made."""
    personal = event.data.personal
    if not personal:
        return
    declared: list[str] | None = getattr(event.data, "categories", None)
    if not declared:
        return
    stray = [k for k in personal
             if k not in declared and not any(k.startswith(c + ".") for c in declared)]
    if stray:
        raise EventInvalid([FieldError(f"data.personal.{k}", "not among data.categories")
                            for k in stray])


def _may_hold_nul(line: str | bytes | bytearray) -> bool:
    """Whether a JSON line may hold NUL: the escape ``\\u0000`` appears in it (a raw NUL
    byte is not valid JSON and fails parsing anyway). Such a line is parsed on the slow
    path, which finds the field."""
    return ("\\u0000" if isinstance(line, str) else b"\\u0000") in line


def _nul_path(obj: Any, path: str = "") -> str | None:
    """The dotted path of the first string (value or key) holding NUL in ``obj``."""
    if isinstance(obj, str):
        return (path or "(event)") if "\x00" in obj else None
    if isinstance(obj, dict):
        for k, v in obj.items():
            here = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and "\x00" in k:
                return path or "(event)"
            found = _nul_path(v, here)
            if found:
                return found
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found = _nul_path(v, f"{path}[{i}]")
            if found:
                return found
    return None


def _depth(obj: Any) -> int:
    if isinstance(obj, dict):
        return 1 + max(map(_depth, obj.values()), default=0)
    if isinstance(obj, list):
        return 1 + max(map(_depth, obj), default=0)
    return 0


def _as_bytes(text: str | bytes | bytearray) -> bytes:
    return text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)


def _check_line(text: str | bytes | bytearray) -> None:
    """The bound a line must keep before it is parsed at all: its size."""
    raw = _as_bytes(text)
    if len(raw) > MAX_LINE_BYTES:
        raise EventInvalid([FieldError(
            "(line)", f"longer than {MAX_LINE_BYTES} bytes ({len(raw)}); split the values")])


def _load(text: str | bytes | bytearray) -> Any:
    """``json.loads`` with every way it can fail reported as a line error."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventInvalid([FieldError(
                "(line)", f"not valid UTF-8 (byte {exc.start + 1} of the line)")]) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventInvalid([FieldError("(line)", f"not valid JSON: {exc.msg}")]) from None
    except RecursionError:
        raise EventInvalid([FieldError(
            "(line)", f"nested deeper than {MAX_DEPTH} levels")]) from None


def _check_tree(obj: Any) -> None:
    """Bounds on a parsed line: nesting depth, no NUL in any string."""
    if _depth(obj) > MAX_DEPTH:
        raise EventInvalid([FieldError("(line)", f"nested deeper than {MAX_DEPTH} levels")])
    where = _nul_path(obj)
    if where is not None:
        raise EventInvalid([FieldError(where, "contains a NUL character (\\u0000)")])


def parse_wire(obj: Any) -> Event:
    """Validate one wire event (a dict or JSON text); raise ``EventInvalid`` naming fields."""
    event: Event | None = None
    if isinstance(obj, (str, bytes, bytearray)):
        _check_line(obj)
        # Fast path: pydantic-core parses and validates the JSON in one go. An event of an
        # older schema version, one that fails, or one with a NUL escape takes the dict
        # path for upcasting and for the same error messages.
        try:
            event = _VALIDATE_JSON(obj)
            if (event.schemaversion != type(event.data).SCHEMA_VERSION
                    or _may_hold_nul(obj)):
                event = None
        except ValidationError:
            event = None
        if event is None:
            obj = _load(obj)
    if event is None:
        if not isinstance(obj, dict):
            raise EventInvalid([FieldError("(line)", "must be a JSON object")])
        _check_tree(obj)
        if obj.get("personal") is not None and isinstance(obj.get("data"), dict) \
                and "personal" in obj["data"]:
            raise EventInvalid([FieldError(
                "personal", "given twice (top level and data.personal): send only data.personal")])
        try:
            event = EVENT_ADAPTER.validate_python(upcast(upcast_envelope(obj)))
        except ValidationError as exc:
            raise EventInvalid(field_errors(exc)) from None
    if event.sealed is not None:
        raise EventInvalid(
            [FieldError("sealed", "set by the ledger; send values in 'data.personal'")])
    if event.publisher is not None:
        raise EventInvalid(
            [FieldError("publisher", "set by the ledger from the authenticated principal")])
    _check_subject(event)
    if event.id == _NO_ID:
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
        event: Event | None = None
        if len(line) <= MAX_LINE_BYTES // 4:  # longer ones: parse_wire measures in bytes
            try:
                event = validate(line)
            except ValidationError:
                event = None
        if event is not None:
            data = type(event.data)
            if (event.sealed is not None or event.publisher is not None
                    or event.id == _NO_ID or event.schemaversion != data.SCHEMA_VERSION
                    or (not event.subject if data.SUBJECT_REQUIRED else event.data.personal)
                    or _may_hold_nul(line)):
                event = None
            elif event.data.personal:
                try:
                    _check_personal(event)
                except EventInvalid as exc:
                    out.append(exc)
                    continue
        if event is None:
            try:
                event = parse_wire(line)
            except EventInvalid as exc:
                out.append(exc)
                continue
        out.append(event)
    return out


_NOT_STORED: Any = {"subject": True, "sealed": True, "publisher": True, "data": {"personal"}}


def encode(event: Event) -> bytes:
    """The stored form of an event (already sealed and pseudonymised by the ledger)."""
    return event.model_dump_json(exclude_none=True).encode()


def encode_sealed(event: Event, subject: str | None, sealed: str | None,
                  publisher: str | None = None) -> bytes:
    """The stored form of a wire event: its subject replaced, ``data.personal`` by a token.

    Same JSON as ``encode(event.model_copy(update=...))`` up to key order, without the
    cost of copying a pydantic model (the publish hot path). ``subject`` and ``sealed``
    are a pseudonym and a base64url token, plain ASCII that needs no JSON escaping;
    ``publisher`` (the principal's name, set by the ledger) is escaped.
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
    if publisher is not None:
        extra += b',"publisher":' + json.dumps(publisher).encode()
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
