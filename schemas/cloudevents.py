"""CloudEvents protocol bindings of the wire contract: HTTP content modes in, Kafka headers out.

In (``POST /events``): a structured event (``application/cloudevents+json``), a batch
(``application/cloudevents-batch+json``), binary mode (``ce-*`` headers and the data as
the body) and JSON Lines all become JSON lines of wire events, which ``schemas.codec``
then validates like any other (nothing here validates an event's content).

Out (the Kafka log): each record is in the Kafka binding's binary mode: the value is the
event's ``data``, the attributes are ``ce_*`` headers and ``content-type`` is the data's
(``application/json``), so a consumer routes on type, source or subject without parsing
the value and any CloudEvents SDK reads the record. The ledger's own readers put the
stored event back together (``from_kafka``); a record without ``ce_*`` headers (written
before, or by a producer writing the stored form) is read as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
JSON_LINES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines")


class BindingError(ValueError):
    """A message is not a CloudEvent in the content mode it claims: ``field`` names where."""

    def __init__(self, field: str, reason: str, line: int = 1):
        self.field = field
        self.reason = reason
        #: which event of the message (from 1), as errors of the codec count them
        self.line = line
        super().__init__(f"{field}: {reason}")


def to_kafka(payload: bytes) -> tuple[list[tuple[str, bytes]], bytes] | None:
    """A stored event as a Kafka record in binary mode: (headers, value).

    The value is the event's ``data``; ``content-type`` is its ``datacontenttype`` and
    every other attribute is a ``ce_*`` header. None for a payload that is not a stored
    event: the log keeps what it is given as it is, and its readers report a bad record.
    """
    try:
        event = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(event, dict) or "specversion" not in event or "data" not in event:
        return None
    data = event.pop("data")
    headers = [("content-type", str(event.pop("datacontenttype", "application/json")).encode())]
    for name, value in event.items():
        if value is not None:
            headers.append(("ce_" + name, str(value).encode()))
    return headers, json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


#: Header values that can go between JSON quotes as they are (checked all at once).
_PLAIN = re.compile(rb'[^"\\\x00-\x1f\x7f-\xff]*').fullmatch
_INTEGERS = frozenset({"ce_schemaversion"})
_OPENING: dict[str, bytes] = {}  # header name -> '"attribute":', made once per name


def _opening(name: str) -> bytes:
    opening = _OPENING.get(name)
    if opening is None:
        opening = _OPENING[name] = json.dumps(name[3:]).encode() + b":"
    return opening


def _json_value(name: str, raw: bytes) -> bytes:
    if name in _INTEGERS and raw.isdigit():
        return raw
    return json.dumps(raw.decode("utf-8", "replace"), ensure_ascii=False).encode()


class KafkaLayout:
    """How the stored event of a record with a given list of header names is put back
    together (``kafka_layout``): the positions of its attribute headers, which of those
    are integers, and one bytes template holding everything around their values (from
    ``{`` up to ``"data":``, then the data and ``}``)."""

    __slots__ = ("at", "integers", "template")

    def __init__(self, at: tuple[int, ...], integers: tuple[int, ...], template: bytes):
        self.at = at
        self.integers = integers
        self.template = template


#: Header names of a record, in order -> how its event is put back together (``_layout``).
_LAYOUTS: dict[tuple[str, ...], KafkaLayout | None] = {}
#: Layouts remembered at most (a producer writing odd headers cannot grow it for ever).
MAX_LAYOUTS = 1024


def _layout(names: tuple[str, ...]) -> KafkaLayout | None:
    """The ``KafkaLayout`` of records with these header names; None if the names hold no
    ``ce_specversion``."""
    picked = [(i, "ce_datacontenttype" if n == "content-type" else n)
              for i, n in enumerate(names) if n.startswith("ce_") or n == "content-type"]
    if not any(n == "ce_specversion" for _, n in picked):
        return None
    pieces: list[bytes] = []
    integers: list[int] = []
    before = b"{"
    for k, (_, name) in enumerate(picked):
        if name in _INTEGERS:
            integers.append(k)
            pieces.append(before + _opening(name))
            before = b","
        else:
            pieces.append(before + _opening(name) + b'"')
            before = b'",'
    pieces.append(before + b'"data":')
    # one ``%`` formatting puts the values in (attribute names may hold a ``%``)
    template = b"%b".join(p.replace(b"%", b"%%") for p in pieces) + b"%b}"
    return KafkaLayout(tuple(i for i, _ in picked), tuple(integers), template)


def kafka_layout(names: tuple[str, ...]) -> KafkaLayout | None:
    """The layout of records with these header names (made once per set of names), or
    None if they are not a binary-mode CloudEvent's."""
    try:
        return _LAYOUTS[names]
    except KeyError:
        if len(_LAYOUTS) >= MAX_LAYOUTS:
            _LAYOUTS.clear()
        layout = _LAYOUTS[names] = _layout(names)
        return layout


def from_kafka(headers: Iterable[tuple[str, bytes | None]], value: bytes) -> bytes | None:
    """The stored event (structured JSON) of a binary-mode record; None if it is not one.

    The inverse of ``to_kafka`` up to key order, built by concatenation: this runs for
    every record a projection reads, so the bytes around the values are made once per
    set of header names (``kafka_layout``), and values needing no JSON escaping (the usual
    case, checked with one scan of all of them) are put between them as they are.
    """
    headers = headers if isinstance(headers, list) else list(headers)
    layout = kafka_layout(tuple([h[0] for h in headers]))
    if layout is None:
        return None
    return from_kafka_laid_out(layout, headers, value)


def from_kafka_laid_out(layout: KafkaLayout, headers: list[tuple[str, bytes | None]],
                        value: bytes) -> bytes | None:
    """``from_kafka`` for a record whose header names have this ``layout`` (a reader that
    looked the layout up itself, with other things it reads from the same names)."""
    raws = [headers[i][1] for i in layout.at]
    if None in raws or not _PLAIN(b"".join(raws)):  # type: ignore[arg-type]
        return _from_kafka_escaped(headers, value)
    for k in layout.integers:
        if not raws[k].isdigit():  # type: ignore[union-attr]
            return _from_kafka_escaped(headers, value)
    raws.append(value or b"null")  # type: ignore[arg-type]
    return layout.template % tuple(raws)


def _from_kafka_escaped(headers: Iterable[tuple[str, bytes | None]],
                        value: bytes) -> bytes | None:
    """``from_kafka`` for any headers: values escaped as JSON strings where they need it."""
    names: list[str] = []
    raws: list[bytes] = []
    for name, raw in headers:
        if raw is not None and (name.startswith("ce_") or name == "content-type"):
            names.append("ce_datacontenttype" if name == "content-type" else name)
            raws.append(raw)
    if "ce_specversion" not in names:
        return None
    body = b",".join([_opening(n) + _json_value(n, r) for n, r in zip(names, raws)])
    return b"{" + body + b',"data":' + (value or b"null") + b"}"


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, lower case, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def structured_lines(body: bytes) -> list[bytes]:
    """One structured-mode event: the body is the event."""
    return [body]


_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def batch_lines(body: bytes) -> list[str]:
    """A batched-mode body (a JSON array of structured events) as one line per event.

    Each event is the array element's own text, cut out where the JSON decoder found its
    end: not dumped again, so the codec's fast path validates it as sent.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BindingError("(body)", f"not valid UTF-8 (byte {exc.start + 1})") from None
    skip = _SPACE.match
    at = skip(text, 0).end()  # type: ignore[union-attr]
    if text[at:at + 1] != "[":
        raise BindingError("(body)", "a CloudEvents batch is a JSON array of events")
    at = skip(text, at + 1).end()  # type: ignore[union-attr]
    items: list[str] = []
    if text[at:at + 1] == "]":
        at += 1
    else:
        while True:
            try:
                _, end = _DECODER.raw_decode(text, at)
            except (ValueError, RecursionError) as exc:
                raise BindingError("(line)", f"not valid JSON: {exc}",
                                   line=len(items) + 1) from None
            items.append(text[at:end])
            at = skip(text, end).end()  # type: ignore[union-attr]
            if text[at:at + 1] == ",":
                at = skip(text, at + 1).end()  # type: ignore[union-attr]
            elif text[at:at + 1] == "]":
                at += 1
                break
            else:
                raise BindingError("(body)", "not valid JSON: expected ',' or ']' in the array")
    if text[at:].strip():
        raise BindingError("(body)", "not valid JSON: text after the array")
    return items


def json_lines(body: bytes) -> list[bytes]:
    """JSON Lines: one event per non-blank line; blank ones are kept (and skipped by the
    publisher) so that errors and results number lines as they were sent."""
    return body.splitlines()


def binary_lines(headers: Iterable[tuple[str, str]], body: bytes) -> list[bytes]:
    """Binary mode: attributes from ``ce-*`` headers (percent-decoded), the body is ``data``.

    ``ce-schemaversion`` is the one integer attribute of the contract; every other header
    value stays a string and the codec validates it as usual.
    """
    event: dict[str, Any] = {}
    for name, value in headers:
        key = name.lower()
        if key.startswith("ce-") and len(key) > 3:
            event[key[3:]] = unquote(value)
    if not event:
        raise BindingError("(headers)", "binary mode needs ce-* headers (ce-id, ce-type, ...)")
    version = event.get("schemaversion")
    if isinstance(version, str) and version.isdigit():
        event["schemaversion"] = int(version)
    try:
        event["data"] = json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BindingError("data", f"the body is not valid JSON: {exc}") from None
    event.setdefault("datacontenttype", "application/json")
    return [json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()]


def lines_of(content_type: str | None, headers: Mapping[str, str] | Iterable[tuple[str, str]],
             body: bytes) -> Sequence[bytes | str]:
    """The wire events of an HTTP message, one JSON line each, by its content mode.

    A message with ``ce-specversion`` among its headers is binary mode whatever its
    content type (the data's own, ``application/json``); otherwise the content type
    decides. Raises ``BindingError`` for a body that is not what it claims, and
    ``UnsupportedMediaType`` for a content type the ledger does not read.
    """
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if any(name.lower() == "ce-specversion" for name, _ in pairs):
        return binary_lines(pairs, body)
    kind = media_type(content_type)
    if kind == STRUCTURED:
        return structured_lines(body)
    if kind == BATCH:
        return batch_lines(body)
    if kind in JSON_LINES:
        return json_lines(body)
    raise UnsupportedMediaType(kind)


class UnsupportedMediaType(ValueError):
    """The content type is none the ledger reads (see ``ACCEPTED``)."""

    def __init__(self, kind: str):
        self.kind = kind
        super().__init__(
            f"content type {kind or '(none)'!r} is not accepted; send one of "
            f"{', '.join(ACCEPTED)}, or binary mode (ce-* headers and application/json)")


ACCEPTED = (STRUCTURED, BATCH, *JSON_LINES)
