"""A small JSON HTTP API over the queries, on the standard library's ``ThreadingHTTPServer``.

    GET /health                       liveness (not audited)
    GET /status                       projections' positions and lag (not audited)
    GET /subjects/{id}                data map of a person (real identifier)
    GET /subjects/{id}/export         everything about a person, unsealed (7.1)
    GET /disclosures?recipient=&clause=&category=&from=&until=&summary=1&limit=
    GET /scope?stores=a,b&from=&until=&categories=   or   /scope?incident=ID
                                   (&limit=N&after=PSEUDONYM page the people)
    GET /findings?clause=&summary=1

Every query accepts ``as_of`` and is audited with the actor named by the ``X-Actor``
header (else ``LEDGER_ACTOR``). Errors are ``{"error": ...}`` with 400 or 404. The API has
no authentication of its own: it binds to loopback unless told otherwise. Request lines
are never logged as sent, because a path may carry a person's real identifier.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from consumers import queries
from consumers.queries import DisclosureFilter
from consumers.scope_index import ScopeIndex
from ledger.errors import InvalidInput, LedgerError, NotFound
from pdl.output import parse_time
from pdl.service import QueryService, findings_summary

_ACTOR = re.compile(r"^[\w.@:+-][\w .@:+-]{0,199}$")


#: People listed in a /scope answer unless ``limit`` says otherwise.
SCOPE_PAGE = 100


class BadRequest(Exception):
    """A request the API refuses with 400; the message says what to change."""


class LedgerHTTPServer(ThreadingHTTPServer):
    """The HTTP server, holding the one query service every request uses."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: QueryService, *,
                 catch_up: bool = True, quiet: bool = False):
        self.service = service
        self.catch_up = catch_up
        self.quiet = quiet
        #: Breach scope answered from memory (loaded on first use, or by ``serve``).
        self.scope_index = (ScopeIndex.attach(service.views)
                            if service.ledger.settings.scope_index else None)
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    """Routes GET requests to the query service; everything else is refused."""

    server: LedgerHTTPServer
    server_version = "pdl"
    route = "-"

    # --- plumbing -------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            status, payload = self._dispatch(url.path, params)
        except (BadRequest, InvalidInput) as exc:
            status, payload = HTTPStatus.BAD_REQUEST, {"error": str(exc)}
        except NotFound as exc:
            status, payload = HTTPStatus.NOT_FOUND, {"error": str(exc)}
        except LedgerError as exc:
            status = (HTTPStatus.SERVICE_UNAVAILABLE if exc.retriable
                      else HTTPStatus.INTERNAL_SERVER_ERROR)
            payload = {"error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - the client learns nothing of internals
            # Frames only: an exception's message might quote a value from the request.
            sys.stderr.write(f"{self.route}: internal error {type(exc).__name__}\n"
                             + "".join(traceback.format_tb(exc.__traceback__)))
            status, payload = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"}
        self._send(status, payload)

    def _refuse(self) -> None:
        self.route = "(method)"
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "only GET is supported"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload, ensure_ascii=False, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The route template, not the path: /subjects/{id} carries a real identifier.
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} {self.command} {self.route} {code}\n")

    def log_error(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} refused a malformed request\n")

    # --- routes ---------------------------------------------------------------------

    def _dispatch(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        service = self.server.service
        if parts == ["health"]:
            self.route = "/health"
            return HTTPStatus.OK, {"status": "ok"}
        if parts == ["status"]:
            self.route = "/status"
            return HTTPStatus.OK, service.status()
        routes: dict[str, Callable[[list[str], dict[str, str]], Any]] = {
            "subjects": self._subject, "disclosures": self._disclosures,
            "scope": self._scope, "findings": self._findings,
        }
        handler = routes.get(parts[0]) if parts else None
        if handler is None:
            self.route = "(unknown)"
            raise NotFound("no such resource; see /health, /status, /subjects/{id}, "
                           "/disclosures, /scope, /findings")
        return HTTPStatus.OK, handler(parts, params)

    def _actor(self) -> str | None:
        actor = self.headers.get("X-Actor")
        if actor is None:
            return None
        if not _ACTOR.match(actor):
            raise BadRequest("X-Actor must be 1 to 200 letters, digits, spaces or .@:+-_")
        return actor

    def _run(self, query: str, arguments: dict[str, str | None], as_of: datetime | None,
             needs: str, answer: Callable[[Any], Any]) -> Any:
        """Audit the query, then answer it from views caught up now or replayed to as_of."""
        service = self.server.service
        actor = self._actor()
        with service.lock:
            service.audit(query, {**arguments,
                                  "as_of": as_of.isoformat() if as_of else None}, actor)
            if as_of is None and self.server.catch_up:
                service.catch_up()
            with service.views_at(as_of, needs=[needs]) as views:
                return answer(views)

    def _subject(self, parts: list[str], params: dict[str, str]) -> Any:
        service = self.server.service
        if len(parts) == 2:
            self.route = "/subjects/{id}"
            export = False
        elif len(parts) == 3 and parts[2] == "export":
            self.route = "/subjects/{id}/export"
            export = True
        else:
            self.route = "(unknown)"
            raise NotFound("use /subjects/{id} or /subjects/{id}/export")
        subject_id = parts[1]
        if not subject_id:
            raise BadRequest("the person's identifier is missing")
        as_of = _time(params, "as_of")
        pseudonym = service.pseudonym(subject_id)
        if export:
            return self._run("export", {"pseudonym": pseudonym, "format": "json"}, as_of,
                             "datamap", lambda views: service.export(views, subject_id, as_of))
        return self._run("subject", {"pseudonym": pseudonym}, as_of, "datamap",
                         lambda views: queries.subject_map(views, pseudonym, now=as_of))

    def _disclosures(self, parts: list[str], params: dict[str, str]) -> Any:
        self.route = "/disclosures"
        _no_more(parts)
        filters = DisclosureFilter(params.get("recipient") or None, params.get("clause") or None,
                                   params.get("category") or None, _time(params, "from"),
                                   _time(params, "until"))
        summary = _flag(params, "summary")
        limit = _int(params, "limit")

        def answer(views: Any) -> Any:
            if summary:
                return queries.disclosure_summary(views, filters)
            return queries.disclosures(views, filters.recipient, filters.clause,
                                       filters.category, filters.since, filters.until,
                                       limit=limit)

        return self._run("disclosures", {**filters.as_arguments(),
                                         "summary": "yes" if summary else None},
                         _time(params, "as_of"), "disclosures", answer)

    def _scope(self, parts: list[str], params: dict[str, str]) -> Any:
        self.route = "/scope"
        _no_more(parts)
        incident = params.get("incident") or None
        stores = [s for s in (params.get("stores") or "").split(",") if s]
        categories = [c for c in (params.get("categories") or "").split(",") if c]
        since, until = _time(params, "from"), _time(params, "until")
        if incident is None:
            if not stores or since is None or until is None:
                raise BadRequest("give stores, from and until (or incident)")
            if until < since:
                raise BadRequest("until is before from")

        # Paged by default: a breach can name 100,000s of people; the counts always cover
        # everyone, and page.next fetches the rest (limit=all: everyone in one answer).
        if (params.get("limit") or "").lower() == "all":
            limit = None
        else:
            limit = _int(params, "limit")
            limit = SCOPE_PAGE if limit is None else limit
        after = params.get("after") or None

        def answer(views: Any) -> Any:
            if incident is not None:
                return queries.incident_scope(views, incident, limit=limit, after=after).as_dict()
            assert since is not None and until is not None
            return queries.scope(views, stores, since, until, categories or None, limit=limit,
                                 after=after).as_dict()

        return self._run("scope", {
            "incident": incident, "stores": ",".join(stores) or None,
            "from": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "categories": ",".join(categories) or None}, _time(params, "as_of"), "holdings",
            answer)

    def _findings(self, parts: list[str], params: dict[str, str]) -> Any:
        self.route = "/findings"
        _no_more(parts)
        clause = params.get("clause") or None
        summary = _flag(params, "summary")
        as_of = _time(params, "as_of")
        days = self.server.service.ledger.settings.request_deadline_days  # type: ignore[attr-defined]

        def answer(views: Any) -> Any:
            found = QueryService.findings(views, clause, as_of, days)
            return findings_summary(found) if summary else found

        return self._run("findings", {"clause": clause, "summary": "yes" if summary else None},
                         as_of, "findings", answer)


def _no_more(parts: list[str]) -> None:
    if len(parts) != 1:
        raise NotFound(f"no such resource under /{parts[0]}")


def _time(params: dict[str, str], name: str) -> datetime | None:
    raw = params.get(name)
    if not raw:
        return None
    try:
        return parse_time(raw)
    except argparse.ArgumentTypeError as exc:
        raise BadRequest(f"{name}: {exc}") from None


def _int(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number") from None
    if value < 0:
        raise BadRequest(f"{name} must not be negative")
    return value


def _flag(params: dict[str, str], name: str) -> bool:
    return params.get(name, "").lower() in ("1", "true", "yes")


def make_server(service: QueryService, host: str = "127.0.0.1", port: int = 8080,
                **kwargs: Any) -> LedgerHTTPServer:
    """A server bound to ``host:port`` (port 0 picks a free one); call ``serve_forever``."""
    return LedgerHTTPServer((host, port), service, **kwargs)


def serve(service: QueryService, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve until interrupted."""
    server = make_server(service, host, port)
    bound_host, bound_port = server.server_address[:2]
    if host not in ("127.0.0.1", "::1", "localhost"):
        sys.stderr.write(f"warning: the API has no authentication and listens on {host}\n")
    if server.scope_index is not None:
        started = time.perf_counter()
        with service.lock:
            if server.catch_up:
                service.catch_up()
            server.scope_index.refresh()
        stats = server.scope_index.stats()
        sys.stderr.write(f"breach-scope index: {stats['held'] + stats['ended']:,} segments of "
                         f"{stats['people']:,} people in memory "
                         f"({time.perf_counter() - started:.1f} s; LEDGER_SCOPE_INDEX=0 to "
                         "answer from SQL)\n")
    sys.stderr.write(f"serving the ledger's queries on http://{bound_host!s}:{bound_port}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
