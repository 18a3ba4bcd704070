"""The browser dashboard: server-rendered pages on the API's app, under ``/ui``.

Sign-in exchanges a token (the API's, from ``pdl token issue``) for a server-side session
(``pdl.web.sessions``); each page checks its roles with the API's ``check_role``, the
same roles as the JSON routes it mirrors. Every form carries the session's CSRF token;
every ``/ui`` response carries a CSP without inline script and ``frame-ancestors 'none'``.
A person's identifier is only ever sent in a POST body, never in a URL.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pdl.web.pages import (
    ACTIVITY_VIEWS,
    GROUP_VIEWS,
    activity_from_json,
    install_handlers,
    router,
)
from pdl.web.residence import Residences
from pdl.web.sessions import SessionStore
from pdl.web.summary import AuditStableCache, FindingsSummaryCache, KeyedAuditStableCache

__all__ = ["SecurityHeaders", "install", "warm"]

STATIC = Path(__file__).parent / "static"
#: The overview's last findings summary, kept in the data directory for the next server.
KEPT_FINDINGS = "dashboard-findings.json"
#: The overview's last activity chart, likewise.
KEPT_ACTIVITY = "dashboard-activity.json"

HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


def install(app: FastAPI) -> None:
    """Add the dashboard's pages, static files, sessions and headers to ``app``."""
    app.state.web = SessionStore()
    data_dir = app.state.pdl.service.ledger.settings.data_dir
    app.state.web_findings = FindingsSummaryCache(keep=Path(data_dir) / KEPT_FINDINGS)
    app.state.web_residences = Residences()
    app.state.web_activity = AuditStableCache(ACTIVITY_VIEWS, Path(data_dir) / KEPT_ACTIVITY,
                                              activity_from_json)
    app.state.web_groups = KeyedAuditStableCache(GROUP_VIEWS)
    install_handlers(app)
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    app.add_middleware(SecurityHeaders)


def warm(app: FastAPI) -> None:
    """At the server's start: the overview's findings, as the last server kept them
    (shown labelled as not current), else judged aside from now on."""
    app.state.web_findings.warm(app.state.pdl.service)


class SecurityHeaders:
    """The dashboard's security headers on every ``/ui`` response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/ui"):
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {n for n, _ in HEADERS}
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
                message = {**message, "headers": kept + HEADERS}
            await send(message)

        await self.app(scope, receive, sending)
