"""Ingest (publisher): ``POST /events`` in every CloudEvents content mode; the JSON Schemas.

The work is ``ledger.ingest.Ingest``'s; this module reads the body (at most
``LEDGER_INGEST_MAX_BYTES``, refused with 413 past it before it is all read) and maps the
outcome to HTTP. The schemas are the published wire contract, like docs/events.md:
anyone may read them, with no token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ledger.application import Publisher
from ledger.ingest import Ingest, TooLarge, UnsupportedMediaType
from pdl.api.deps import Principal, Role, require, state, strict_query
from pdl.api.problems import ERROR_RESPONSES, PROBLEM_JSON, Problem, problem
from schemas import ENVELOPES, current_version, json_schema
from schemas.cloudevents import ACCEPTED, BATCH, STRUCTURED
from schemas.events import dataschema_uri

router = APIRouter(tags=["ingest"], responses=ERROR_RESPONSES)


class EventResult(BaseModel):
    """Where one event of the request landed."""

    line: int = Field(description="its place in the request (JSON Lines: its line), from 1")
    id: str = Field(description="the event id (kept, or derived from the content)")
    partition: int
    offset: int
    duplicate: bool = Field(description="already in the log: not stored again")


class IngestResult(BaseModel):
    """What a request did: every event was appended or found already there."""

    events: int
    appended: int
    duplicates: int
    results: list[EventResult]


def _body_schema(items: bool = False) -> dict[str, Any]:
    event = {"type": "object", "description": "a wire event: see /schemas/{event_type}"}
    return {"type": "array", "items": event} if items else event


_EVENTS_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "CloudEvents 1.0: one event in structured mode, a batch, or JSON Lines; or "
            "binary mode: `ce-*` headers (ce-specversion, ce-id, ce-source, ce-type, "
            "ce-time, ce-subject, ce-schemaversion) and the event's data as an "
            "`application/json` body. Each event must match its type's schema "
            "(/schemas/{event_type}); see docs/ingest.md."),
        "content": {
            STRUCTURED: {"schema": _body_schema()},
            BATCH: {"schema": _body_schema(items=True)},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    },
}
_TOO_LARGE = {"model": Problem, "description": "more than LEDGER_INGEST_MAX_BYTES or "
              "LEDGER_INGEST_MAX_EVENTS", "content": {PROBLEM_JSON: {}}}
_UNSUPPORTED = {"model": Problem, "description": "a content type the ledger does not read",
                "content": {PROBLEM_JSON: {}}}


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body is {declared} bytes; the most one request takes is {limit} "
                       "(LEDGER_INGEST_MAX_BYTES): send smaller batches")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is over {limit} bytes, the most one request takes "
                           "(LEDGER_INGEST_MAX_BYTES): send smaller batches")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/events", response_model=IngestResult, openapi_extra=_EVENTS_OPENAPI,
             responses={413: _TOO_LARGE, 415: _UNSUPPORTED})
async def post_events(request: Request,
                      principal: Annotated[Principal, require(Role.PUBLISHER)]) -> Any:
    """Publish events (publisher, for its registered sources only): all or none.

    Same validation, sealing and idempotency as `pdl publish`: a retried request stores
    nothing twice and reports each event as a duplicate. 422 names each bad event's line
    and field; 403 a source not registered to the caller; 413 a request over the limits.
    """
    ingest = Ingest(state(request).service.ledger)
    publisher = Publisher(principal.name, frozenset(principal.sources))
    try:
        body = await _read_body(request, ingest.max_bytes)
        answer = await run_in_threadpool(
            ingest.publish, publisher, request.headers.get("content-type"),
            request.headers.items(), body)
    except TooLarge as exc:
        return problem(413, str(exc), kind="too-large")
    except UnsupportedMediaType as exc:
        return problem(415, str(exc), kind="unsupported-media-type",
                       headers={"Accept-Post": ", ".join((*ACCEPTED, "application/json"))})
    return answer.as_dict()


# --- the wire contract ------------------------------------------------------------------------


class SchemaEntry(BaseModel):
    type: str
    version: int
    id: str = Field(description="the schema's $id (the dataschema attribute of such events)")
    url: str


EventType = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[a-z_]+(\.[a-z_]+)+$",
                                description="an event type, e.g. data.collected")]


@router.get("/schemas", response_model=list[SchemaEntry],
            dependencies=[Depends(strict_query)])
def schemas() -> list[dict[str, Any]]:
    """The JSON Schema of every event type's wire form (no token needed)."""
    return [{"type": t, "version": current_version(t),
             "id": dataschema_uri(t, current_version(t)), "url": f"/schemas/{t}"}
            for t in ENVELOPES]


@router.get("/schemas/{event_type}", dependencies=[Depends(strict_query)],
            responses={200: {"content": {"application/schema+json": {}},
                             "description": "a JSON Schema (draft 2020-12)"}})
def schema(event_type: EventType) -> JSONResponse:
    """One event type's JSON Schema (no token needed)."""
    if event_type not in ENVELOPES:
        return problem(404, "no such event type (see /schemas)", kind="not-found")
    return JSONResponse(json_schema(event_type), media_type="application/schema+json")
