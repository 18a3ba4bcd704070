"""Accountable reads: every query is audited with its principal before it is answered."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Query, Response
from pydantic import BeforeValidator, Field, WithJsonSchema
from pydantic_core import to_json

from consumers.replay import QueryTime
from consumers.views import ViewStore
from ledger.errors import NotFound
from pdl.api.deps import ApiState, Principal
from pdl.api.problems import BadRequest
from pdl.service import query_time
from schemas.events import MAX_TIME, MIN_TIME
from schemas.taxonomy import CATEGORIES

T = TypeVar("T")

#: A page's ``warnings`` field (the models of the reads that take ``as_of``/``valid_at``).
Warnings = Annotated[list[str], Field(default_factory=list, description=(
    "why the answer may be empty: as_of before the log's first record, valid_at before "
    "the first event"))]


#: The years a time given to the API may name, in its own offset (the contract's range:
#: ``schemas.events.MIN_TIME``..``MAX_TIME``). Declared as a pattern in the OpenAPI
#: document, so a client (or a fuzzer) knows which times are valid before it sends one.
TIME_PATTERN = (r"^(19[7-9][0-9]|2[01][0-9]{2}|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
                r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
                r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")  # RFC 3339, as format date-time
_TIME_SHAPE = re.compile(TIME_PATTERN)
_TIME_RANGE = "an ISO 8601 time with a zone, in the years 1970 to 2200 (e.g. 2026-01-01T00:00:00Z)"


def _iso_time(value: object) -> datetime:
    """An ISO 8601 time with a zone, from text only (not a number of seconds), in UTC.

    A time whose own year is within 1970..2200 but which falls just outside the contract's
    range once converted to UTC (``1970-01-01T00:00+08:00``) is clamped to it: no event
    can be outside that range, so the answer is the same.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a time needs a zone (add Z or +08:00)")
        moment = value
    elif not isinstance(value, str):
        # pydantic reports a ValueError as a validation error (a TypeError would be a 500)
        raise ValueError(f"expected {_TIME_RANGE}")  # noqa: TRY004
    else:
        if _TIME_SHAPE.fullmatch(value) is None:
            raise ValueError(f"expected {_TIME_RANGE}")
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"expected {_TIME_RANGE}") from None
        if moment.tzinfo is None:
            raise ValueError("a time needs a zone (add Z or +08:00)")
    if not 1970 <= moment.year <= 2200:
        raise ValueError(f"expected {_TIME_RANGE}")
    return min(max(moment, MIN_TIME), MAX_TIME).astimezone(UTC)


#: A time: ISO 8601 text with a zone (no bare numbers, no zone-less times), in UTC.
Time = Annotated[datetime, BeforeValidator(_iso_time),
                 WithJsonSchema({"type": "string", "format": "date-time",
                                 "pattern": TIME_PATTERN})]
TimeParam = Annotated[Time | None, Query(description="ISO 8601 time with a zone")]
AsOf = Annotated[Time | None, Query(description="recorded time: answer from the log as it "
                                   "stood at this time (ISO 8601 with a zone)")]
ValidAt = Annotated[Time | None, Query(description="event time: the state of the world at "
                                       "this time, from the events that happened by then "
                                       "whenever recorded (ISO 8601 with a zone); combines "
                                       "with as_of")]
#: A data category key (fideslang or a documented extension).
CategoryKey = Literal[tuple(CATEGORIES)]  # type: ignore[valid-type]


def categories(text: str | None, name: str = "categories") -> list[str]:
    """Comma-separated category keys, each known; else a 400 naming ``name``."""
    keys = [c for c in (text or "").split(",") if c]
    unknown = [c for c in keys if c not in CATEGORIES]
    if unknown:
        raise BadRequest(f"{name}: unknown data category (see docs/events.md)", field=name)
    return keys


def utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None


def at(as_of: datetime | None, valid_at: datetime | None = None) -> QueryTime:
    """The two time parameters as one ``QueryTime`` (in UTC)."""
    return QueryTime(as_of=utc(as_of), valid_at=utc(valid_at))


def read(api: ApiState, principal: Principal, query: str,
         arguments: Mapping[str, str | None], *, as_of: datetime | QueryTime | None,
         needs: str,
         answer: Callable[[ViewStore], T], people: Sequence[str] = (),
         reason: str | None = None, clear: bool = False,
         warnings: list[str] | None = None) -> T:
    """Audit the query in the principal's name, then answer it from views caught up now
    or replayed to ``as_of`` (recorded time) and/or ``valid_at`` (event time).

    The audit record is durable before the answer is worked out; if appending it fails,
    the caller gets that error and no answer. Concurrent questions share their appends
    (``ledger.application.GroupCommit``): no lock is held while appending. A question about
    now sees every record the log held when it was asked: the views are caught up through
    the log's end taken before the audit (nothing is read if only audit records came
    since, see ``QueryService.catch_up_through``).

    A time before the log's first record or the first event gives an empty answer for
    that reason: an answer that is an object then carries ``warnings`` saying so, and
    they are added to ``warnings`` if given (for a caller that builds the object)."""
    service = api.service
    moment = query_time(as_of)
    end = service.end_position() if moment.now and api.catch_up else None
    service.audit(query, {**arguments, **moment.arguments()}, actor=principal.name,
                  role=principal.role.value, people=people, reason=reason, clear=clear)
    with service.lock:
        if end is not None:
            # only the view this question reads: the others catch up when they are asked
            service.catch_up_through(end, [needs])
        with service.answering(moment, needs=[needs]) as answering:
            told = [w.replace("--as-of", "as_of").replace("--valid-at", "valid_at")
                    for w in answering.warnings]
            try:
                result = answer(answering.views)
            except NotFound as exc:
                exc.warnings = told  # type: ignore[attr-defined]  # the 404 says why too
                raise
    if told:
        if warnings is not None:
            warnings.extend(told)
        if isinstance(result, dict):
            return {**result, "warnings": told}  # type: ignore[return-value]
    return result


def json_answer(value: Any) -> Response:
    """``value`` as a JSON response, as it is: for a route whose ``response_model`` only
    documents an answer built by our own code (FastAPI would otherwise validate it again,
    on one more hand-over to a worker thread)."""
    return Response(to_json(value), media_type="application/json")


def page_of(items: list[dict[str, Any]], limit: int, key: Callable[[dict[str, Any]], list[Any]]
            ) -> dict[str, Any]:
    """A page from ``limit + 1`` fetched items: the first ``limit``, and a cursor if more."""
    from pdl.api.deps import encode_cursor

    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next": encode_cursor(key(items[-1])) if more and items else None}
