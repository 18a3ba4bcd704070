"""Every error the API answers is RFC 9457 problem details (``application/problem+json``).

This module is the one place that maps errors to problems: the ledger's own error tree,
request validation, unknown routes and methods, and anything unexpected (a 500 that tells
the client nothing of internals). A problem never quotes the request's values: a field
name and a reason, never the input (it may be a person's identifier).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.errors import (
    CaseRefused,
    ConfigurationError,
    Forbidden,
    InvalidInput,
    LedgerError,
    NotFound,
    Unauthenticated,
)

log = logging.getLogger("pdl.api")

PROBLEM_JSON = "application/problem+json"


class FieldProblem(BaseModel):
    """One refused field: where and why (never the value)."""

    field: str
    reason: str
    line: int | None = None


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(default="about:blank", description="a URI naming the kind of problem")
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldProblem] | None = Field(default=None,
                                              description="each refused field, with a reason")


class BadRequest(Exception):
    """A request the API refuses with 400 (``field``: what to change)."""

    def __init__(self, detail: str, field: str | None = None):
        self.field = field
        super().__init__(detail)


def problem(status: int, detail: str | None = None, *, kind: str | None = None,
            errors: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None,
            warnings: list[str] | None = None) -> JSONResponse:
    """A problem+json response (``warnings``: what the time asked explains, e.g. why no
    store was known yet)."""
    title = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": f"urn:pdl:problem:{kind}" if kind else "about:blank",
        "title": title, "status": status,
    }
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    if warnings:
        body["warnings"] = warnings
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON,
                        headers={"Cache-Control": "no-store", **(headers or {})})


def _loc(loc: tuple[Any, ...]) -> tuple[str, str]:
    where = str(loc[0]) if loc else "request"
    path = ".".join(str(p) for p in loc[1:]) or where
    return where, path


def validation_problem(exc: RequestValidationError) -> JSONResponse:
    errors = []
    in_body = False
    for e in exc.errors():
        where, path = _loc(tuple(e.get("loc", ())))
        in_body = in_body or where == "body"
        # e["msg"] describes the rule; e["input"] (the value) is left out on purpose.
        errors.append({"field": path, "reason": str(e.get("msg", "invalid"))})
    status = 422 if in_body else 400
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:5])
    return problem(status, detail, kind="invalid-request", errors=errors)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(exc)

    @app.exception_handler(BadRequest)
    async def _bad(request: Request, exc: BadRequest) -> JSONResponse:
        errors = [{"field": exc.field, "reason": str(exc)}] if exc.field else None
        return problem(400, str(exc), kind="invalid-request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else None
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such resource (see /docs)"
        return problem(exc.status_code, detail, headers=dict(exc.headers or {}))

    @app.exception_handler(LedgerError)
    async def _ledger(request: Request, exc: LedgerError) -> JSONResponse:
        return ledger_problem(exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The type only: an exception's message might quote a value from the request.
        log.error("internal error %s in %s %s", type(exc).__name__, request.method,
                  _route(request))
        return problem(500, "internal error", kind="internal")


def ledger_problem(exc: LedgerError) -> JSONResponse:
    """The problem for one of the ledger's own errors."""
    if isinstance(exc, Unauthenticated):
        return problem(401, "a valid bearer token is needed (Authorization: Bearer pdl_...)",
                       kind="unauthenticated", headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, Forbidden):
        return problem(403, str(exc), kind="forbidden")
    if isinstance(exc, InvalidInput):
        errors = [{"field": f, "reason": r, **({"line": n} if n else {})}
                  for n, f, r in exc.errors]
        return problem(422, str(exc), kind="invalid-input", errors=errors or None)
    if isinstance(exc, NotFound):
        return problem(404, str(exc), kind="not-found", warnings=getattr(exc, "warnings", None))
    if isinstance(exc, CaseRefused):
        return problem(409, str(exc), kind="case-refused")
    if exc.retriable:
        return problem(503, f"{exc} (temporary: try again)", kind="unavailable",
                       headers={"Retry-After": "5"})
    if isinstance(exc, ConfigurationError):
        log.error("configuration error answering a request")
        return problem(500, "the ledger is misconfigured (see the server log)", kind="internal")
    log.error("ledger error %s", type(exc).__name__)
    return problem(500, "the ledger failed (see the server log)", kind="internal")


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", "(unknown)")


#: Documented on every route, so clients (and schemathesis) know the error shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": HTTPStatus(status).phrase,
             "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for status in (400, 401, 403, 404, 409, 422, 503)
}
