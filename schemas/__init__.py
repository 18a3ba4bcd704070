"""The wire contract of the Personal-Data Ledger: event models, taxonomy, and the codec.

This package imports nothing else of the project's.
"""

from schemas.codec import (
    ENVELOPES,
    EVENT_ADAPTER,
    EventInvalid,
    FieldError,
    content_id,
    current_version,
    decode,
    encode,
    encode_sealed,
    json_schema,
    parse_wire,
    parse_wire_lines,
    upcast,
    upcast_envelope,
    uuid7,
)
from schemas.events import DATA_MODELS, EVENT_TYPES, Event, EventData

__all__ = [
    "DATA_MODELS",
    "ENVELOPES",
    "EVENT_ADAPTER",
    "EVENT_TYPES",
    "Event",
    "EventData",
    "EventInvalid",
    "FieldError",
    "content_id",
    "current_version",
    "decode",
    "encode",
    "encode_sealed",
    "json_schema",
    "parse_wire",
    "parse_wire_lines",
    "upcast",
    "upcast_envelope",
    "uuid7",
]
