"""Hypothesis strategies drawn from the contract's own JSON Schemas (``pdl schema export``).

hypothesis-jsonschema would do this, but its last release (0.23.1) calls an internal of
Hypothesis that 6.1xx removed (``many.more``); this covers the keywords pydantic writes for
our models. Values are mostly valid, with the boundary values of every bound (the
inclusive edges, and one step beyond) and the inputs issue 12 found (epoch numbers, NUL,
huge integers, times at the ends of the calendar) drawn often enough to be met.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from schemas.codec import json_schema
from schemas.events import EVENT_TYPES, MAX_TIME, MIN_TIME

_OFFSETS = [timezone(timedelta(hours=h)) for h in (-12, -5, 0, 8, 14)]


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[1]])
                return walk({**target, **{k: v for k, v in node.items() if k != "$ref"}})
            return {k: walk(v) for k, v in node.items() if k not in ("$defs", "$id")}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)  # type: ignore[no-any-return]


_SAFE = st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"))


def _times() -> st.SearchStrategy[str]:
    """Times inside the bounds, with their inclusive edges met often."""
    edges = [MIN_TIME.isoformat(), MAX_TIME.isoformat(), "1970-01-01T08:00:00+08:00",
             "2200-12-31T18:59:59-05:00", "2024-02-29T12:00:00Z"]
    normal = st.builds(
        lambda d, tz: d.replace(tzinfo=UTC).astimezone(tz).isoformat(),
        st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2199, 1, 1)),
        st.sampled_from(_OFFSETS))
    return st.one_of(normal, normal, normal, st.sampled_from(edges))


def _text(node: dict[str, Any]) -> st.SearchStrategy[str]:
    if node.get("format") == "date-time":
        return _times()
    if "pattern" in node:
        return st.from_regex(node["pattern"], fullmatch=True)
    low = max(int(node.get("minLength", 0)), 1)
    high = int(node.get("maxLength", 60))
    plain = st.text(_SAFE, min_size=low, max_size=min(high, 24))
    if "maxLength" in node and high <= 256:
        return st.one_of(plain, plain, plain, st.text(_SAFE, min_size=high, max_size=high))
    return plain


def _integer(node: dict[str, Any]) -> st.SearchStrategy[int]:
    low, high = node.get("minimum"), node.get("maximum")
    edges = [v for v in (low, high) if v is not None] or [0]
    return st.one_of(st.integers(min_value=low, max_value=high), st.sampled_from(edges))


def from_schema(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A strategy for valid JSON values of this (inlined) schema node, its bounds' edges
    included."""
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if "anyOf" in node:
        return st.one_of([from_schema(option) for option in node["anyOf"]])
    kind = node.get("type")
    if kind == "string":
        return _text(node)
    if kind == "integer":
        return _integer(node)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = from_schema(node.get("items", {}))
        return st.lists(items, min_size=int(node.get("minItems", 0)), max_size=3)
    if kind == "object":
        return _object(node)
    return st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10))


def _object(node: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties: dict[str, Any] = node.get("properties", {})
    if not properties:
        keys = (from_schema(node["propertyNames"]) if "propertyNames" in node
                else st.text(_SAFE, min_size=1, max_size=12))
        values = (from_schema(node["additionalProperties"])
                  if isinstance(node.get("additionalProperties"), dict) else st.text(_SAFE))
        return st.dictionaries(keys, values, max_size=3)
    required = set(node.get("required", ()))
    fields = {name: from_schema(sub) for name, sub in properties.items()
              if name not in ("sealed", "dataschema")}  # set by the ledger, not producers

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        return {name: draw(strategy) for name, strategy in fields.items()
                if name in required or draw(st.booleans())}

    return build()


#: Values issue 12 found a way in with, and the first step beyond each bound.
WILD: list[Any] = [
    10**12, 2**63, -(2**63) - 1, 10**30, -1, 36_501, 1_700_000_000, 1.7e9, "1700000000",
    "0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-05:00", "1970-01-01T07:59:59+08:00",
    (MAX_TIME + timedelta(microseconds=1)).isoformat(), "2024-05-01T08:00:00",
    "a\u0000b", "\u0000", "", " ", "x" * 4097, None, [], {}, [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]],
]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if path else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


@st.composite
def _mutated(draw: st.DrawFn, event: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A valid-looking event with one value replaced by a wild one."""
    out = copy.deepcopy(draw(event))
    path = draw(st.sampled_from(_paths(out)))
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = draw(st.sampled_from(WILD))
    return out


def _plausible(event_type: str, body: st.SearchStrategy[dict[str, Any]]
               ) -> st.SearchStrategy[dict[str, Any]]:
    """The schema alone cannot say which events need a subject, or that ``personal`` keys
    are among the categories: mostly follow those rules, sometimes not."""
    needs_subject = EVENT_TYPES[event_type].SUBJECT_REQUIRED

    @st.composite
    def fix(draw: st.DrawFn) -> dict[str, Any]:
        event = draw(body)
        if draw(st.integers(0, 9)) == 0:
            return event
        if needs_subject:
            event.setdefault("subject", draw(st.sampled_from(PEOPLE)))
        else:
            event.pop("personal", None)
        categories = (event.get("data") or {}).get("categories")
        personal = event.get("personal")
        if isinstance(personal, dict) and categories:
            event["personal"] = {c: v for c, v in zip(categories, personal.values())} or None
        return event

    return fix()


#: A few real identifiers, so that events about one person meet in the views.
PEOPLE = ["acct:1", "acct:2", "ent:contact-3", "李雷-4"]

#: One strategy per event type, from its own JSON Schema.
EVENT_STRATEGIES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    event_type: _plausible(event_type, from_schema(_inline(json_schema(event_type))))
    for event_type in EVENT_TYPES
}


def any_event() -> st.SearchStrategy[dict[str, Any]]:
    """An event of any type drawn from that type's JSON Schema: three in four as the
    schema says, one in four with a value replaced by a wild one (``WILD``)."""
    valid = st.one_of(list(EVENT_STRATEGIES.values()))
    return st.one_of(valid, valid, valid, _mutated(valid))
