"""The application factory: routers, problem handlers, HEAD/OPTIONS, request log, docs.

The docs page (``/docs``) and its scripts are served from this process (the
``fastapi-offline`` package ships Swagger UI): no CDN, so it works air-gapped.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consumers.scope_index import ScopeIndex
from ledger.principals import SQLitePrincipalStore
from pdl.api import problems
from pdl.api.deps import ApiState, route_roles
from pdl.api.routes import (
    access,
    cases,
    disclosures,
    events,
    findings,
    health,
    log,
    principals,
    scope,
    subjects,
    tokens,
)
from pdl.service import QueryService

ROUTERS = (health, events, subjects, disclosures, findings, scope, log, access, principals,
           tokens, cases)

request_log = logging.getLogger("pdl.api.requests")

DESCRIPTION = """
The Personal-Data Ledger's queries, over HTTP.

Every route but `/health` needs `Authorization: Bearer <token>` (`pdl token issue`).
Each route names the roles that may call it. Every query is recorded in the log with the
caller's principal, role, the people concerned (by pseudonym) and the reason given.
A person's real identifier never goes in a URL: send it in a POST body.
Errors are RFC 9457 problem details (`application/problem+json`).
"""


def create_app(service: QueryService, principals: SQLitePrincipalStore | None = None, *,
               catch_up: bool = True, quiet: bool = False) -> FastAPI:
    """The API over ``service``, authenticating against ``principals`` (default: the
    store in the ledger's data directory)."""
    if principals is None:
        principals = SQLitePrincipalStore.for_data_dir(service.ledger.settings.data_dir)
    app = FastAPIOffline(
        title="Personal-Data Ledger", version="2", description=DESCRIPTION,
        docs_url="/docs", redoc_url=None, static_url="/docs/static",
        swagger_ui_parameters={"persistAuthorization": False},
    )
    scope_index = (ScopeIndex.attach(service.views)
                   if service.ledger.settings.scope_index else None)
    app.state.pdl = ApiState(service, principals, catch_up, scope_index)
    problems.install(app)
    for module in ROUTERS:
        _declare_roles(module.router)
        app.include_router(module.router)
    app.add_middleware(Edges, api=app, quiet=quiet)
    return app


def _declare_roles(router: APIRouter) -> None:
    """Name each route's roles in the OpenAPI document (``x-pdl-roles``) and its text."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        roles = route_roles(route.dependant)
        if roles is None:
            continue
        names = [r.value for r in roles]
        route.openapi_extra = {**(route.openapi_extra or {}), "x-pdl-roles": names}


class Edges:
    """HEAD as GET without a body, OPTIONS answered from the routes (204 + Allow), and one
    request-log line per request naming the route template, never the path as sent."""

    def __init__(self, app: ASGIApp, api: FastAPI, quiet: bool = False):
        self.app = app
        self.api = api
        self.quiet = quiet

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and method == "HEAD":
                message = {**message, "body": b""}
            await send(message)

        if method == "OPTIONS":
            status = await self._options(scope, send)
        else:
            inner = {**scope, "method": "GET"} if method == "HEAD" else scope
            await self.app(inner, receive, sending)
            scope = inner
        route = getattr(scope.get("route"), "path", None) or "(no route)"
        state = self.api.state.pdl
        state.metrics.answered(route, status)
        if not self.quiet:
            who = (scope.get("state") or {}).get("principal", "-")
            client = scope.get("client") or ("-", 0)
            request_log.info("%s %s %s %s %s", client[0], method, route, status, who)

    async def _options(self, scope: Scope, send: Send) -> int:
        allowed: set[str] = set()
        routes = [*self.api.router.routes, *(r for m in ROUTERS for r in m.router.routes)]
        matched = [r for r in routes if getattr(r, "methods", None)
                   and r.matches({**scope, "method": "GET"})[0] is not Match.NONE]
        # /subjects/export also matches /subjects/{pseudonym}: a literal path wins
        exact = [r for r in matched if getattr(r, "path", None) == scope["path"]]
        for route in exact or matched:
            allowed |= set(route.methods)
        if not allowed:
            response: Any = problems.problem(404, "no such resource (see /docs)")
        else:
            if "GET" in allowed:
                allowed.add("HEAD")
            allowed.add("OPTIONS")
            from starlette.responses import Response

            response = Response(status_code=204, headers={"Allow": ", ".join(sorted(allowed))})
        await response(scope, _no_body, send)
        return int(response.status_code)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
