"""Who is calling, and may they: authentication, role checks, strict queries, paging.

``authenticate`` resolves the ``Authorization: Bearer`` header to a ``Principal`` through
``resolve_token``, the one check a browser session (a cookie holding a token) uses too.
Routes declare their roles with ``require(Role.X, ...)``, which also refuses query
parameters the route does not know (400), after authentication: a caller without a valid
token learns nothing but 401.

A failed authentication appends nothing to the log: it is counted in ``Metrics`` and
logged as one line naming the reason, never the token.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.convertors import Convertor, register_url_convertor

from consumers.scope_index import ScopeIndex
from ledger.errors import Forbidden, Unauthenticated
from ledger.principals import Principal, Role, SQLitePrincipalStore
from pdl.api.problems import BadRequest
from pdl.service import QueryService

__all__ = ["ApiState", "CurrentPrincipal", "Cursor", "Limit", "Metrics", "Principal", "Role",
           "authenticate", "check_role", "require", "resolve_token", "state"]

log = logging.getLogger("pdl.api")


class Metrics:
    """Counters the API exposes at /metrics (Prometheus text format)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.auth_failures: Counter[str] = Counter()
        self.responses: Counter[tuple[str, int]] = Counter()

    def failed_auth(self, reason: str) -> None:
        with self._lock:
            self.auth_failures[reason] += 1

    def answered(self, route: str, status: int) -> None:
        with self._lock:
            self.responses[(route, status)] += 1

    def render(self) -> str:
        with self._lock:
            lines = ["# HELP pdl_auth_failures_total Requests refused for their credentials.",
                     "# TYPE pdl_auth_failures_total counter"]
            for reason, n in sorted(self.auth_failures.items()):
                lines.append(f'pdl_auth_failures_total{{reason="{reason}"}} {n}')
            lines += ["# HELP pdl_http_responses_total Responses by route template and status.",
                      "# TYPE pdl_http_responses_total counter"]
            for (route, status), n in sorted(self.responses.items()):
                lines.append(f'pdl_http_responses_total{{route="{route}",status="{status}"}} {n}')
        return "\n".join(lines) + "\n"


@dataclass
class ApiState:
    """What every request shares: the query service, the principals, the counters."""

    service: QueryService
    principals: SQLitePrincipalStore
    catch_up: bool = True
    scope_index: ScopeIndex | None = None
    metrics: Metrics = field(default_factory=Metrics)


def state(request: Request) -> ApiState:
    return request.app.state.pdl  # type: ignore[no-any-return]


def resolve_token(api: ApiState, token: str) -> Principal:
    """The principal a token string authenticates; else ``Unauthenticated``, counted and
    logged without the token."""
    try:
        return api.principals.resolve(token)
    except Unauthenticated as exc:
        reason = str(exc)
        api.metrics.failed_auth(reason.replace(" ", "_"))
        log.warning("authentication failed: %s", reason)
        raise


_bearer = HTTPBearer(auto_error=False, description="a token from `pdl token issue`")


async def authenticate(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``; 401 without a valid one.

    Asynchronous, like ``require``'s check: a known token is answered from memory after
    one ``data_version`` read (see ``ledger.principals``), so the check runs on the event
    loop instead of costing each request a hand-over to a worker thread and back."""
    api = state(request)
    if credentials is None:
        api.metrics.failed_auth("missing_token")
        log.warning("authentication failed: no bearer token")
        raise Unauthenticated("no bearer token")
    principal = resolve_token(api, credentials.credentials)
    request.state.principal = principal.name  # for the request log line
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


def _known_query(request: Request) -> set[str]:
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return set()
    known = getattr(route, "_pdl_query_names", None)
    if known is None:
        known = _query_names(dependant)
        route._pdl_query_names = known  # type: ignore[union-attr]
    return known


def _query_names(dependant: Any) -> set[str]:
    """The query parameters a route (and its dependencies) declare."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def strict_query(request: Request) -> None:
    """Refuse query parameters the route does not declare (a typo must not widen a query)."""
    known = _known_query(request)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        raise BadRequest(f"unknown query parameter {unknown[0]!r} (this route takes: {allowed})",
                         field=unknown[0][:100])


def check_role(principal: Principal, allowed: frozenset[Role] | set[Role]) -> Principal:
    """``principal`` if its role is one of ``allowed`` (any if empty), else ``Forbidden``
    (403): the one role check, for bearer tokens and browser sessions alike."""
    if allowed and principal.role not in allowed:
        names = ", ".join(sorted(r.value for r in allowed))
        raise Forbidden(f"the {principal.role.value} role may not do this (needs: {names})")
    return principal


def require(*roles: Role) -> Any:
    """A dependency: the authenticated caller, if its role is one of ``roles`` (any role
    if none are given); else 403. Unknown query parameters are then refused (400)."""
    allowed = frozenset(roles)

    async def check(request: Request, principal: CurrentPrincipal) -> Principal:
        check_role(principal, allowed)
        strict_query(request)
        return principal

    check.__doc__ = "roles: " + (", ".join(r.value for r in roles) or "any")
    check.pdl_roles = tuple(roles) or tuple(Role)  # type: ignore[attr-defined]
    return Depends(check)


def route_roles(dependant: Any) -> tuple[Role, ...] | None:
    """The roles ``require`` declared on a route (None: a public route)."""
    for sub in dependant.dependencies:
        roles = getattr(sub.call, "pdl_roles", None)
        if roles is not None:
            return roles  # type: ignore[no-any-return]
    return None


# --- path parameters -------------------------------------------------------------------

PSEUDONYM = r"p_[a-z2-7]{32}"


class PseudonymConvertor(Convertor[str]):
    """``{pseudonym:pseudonym}``: only a pseudonym matches, so ``/subjects/export`` is never
    taken for a person (GET on it is 405, not a bad pseudonym)."""

    regex = PSEUDONYM

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("pseudonym", PseudonymConvertor())


# --- paging ------------------------------------------------------------------------------

#: The most items one page holds.
MAX_LIMIT = 1000
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page (1 to 1000)")]
Cursor = Annotated[str | None, Query(max_length=400, pattern=r"^[A-Za-z0-9_-]+$",
                                     description="`next` of the previous page")]


def encode_cursor(key: list[Any]) -> str:
    """An opaque cursor for a page's last key."""
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()
                                    ).decode().rstrip("=")


def decode_cursor(cursor: str | None, shape: tuple[type, ...]) -> list[Any] | None:
    """The key a cursor holds, checked against ``shape``; 400 if it is not ours."""
    if cursor is None:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        key = None
    if (not isinstance(key, list) or len(key) != len(shape)
            or not all(isinstance(k, t) and not isinstance(k, bool) for k, t in zip(key, shape))):
        raise BadRequest("cursor: not a cursor this list gave out", field="cursor")
    return key
