"""The dashboard's routes: sign-in, overview, disclosure register (+ CSV), a person.

Roles mirror the JSON routes: the register is compliance's (``GET /disclosures``), a
person's data map compliance's and the privacy officer's (``POST /subjects/lookup``), the
unsealed export the privacy officer's alone (``POST /subjects/export``). Every query is
audited in the log like the API's, in the signed-in principal's name.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from consumers import queries
from consumers.findings import CLAUSES
from ledger.errors import Forbidden, LedgerError, NotFound, Unauthenticated
from ledger.principals import Principal, Role
from pdl.api.deps import ApiState, check_role, resolve_token, state
from pdl.api.reads import read
from pdl.service import findings_summary
from pdl.web import charts
from pdl.web.sessions import COOKIE, LOGIN_COOKIE, Session, SessionStore, same
from pdl.web.summary import (
    AuditStableCache,
    FindingsSummaryCache,
    Judgement,
    KeyedAuditStableCache,
)

router = APIRouter(prefix="/ui", include_in_schema=False)

TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                        autoescape=select_autoescape(["html"]))

#: Who sees what (the JSON routes' roles).
SIGNED_IN = (Role.COMPLIANCE, Role.RESPONDER, Role.PRIVACY_OFFICER, Role.ADMIN)
REGISTER_ROLES = (Role.COMPLIANCE,)
PERSON_ROLES = (Role.COMPLIANCE, Role.PRIVACY_OFFICER)
UNSEAL_ROLES = (Role.PRIVACY_OFFICER,)
PAGE_SIZE = 50
#: Who may read a case file's drafts (notices and reports: counts and categories, no
#: personal value): the responder and the privacy officer.
DRAFT_ROLES = (Role.RESPONDER, Role.PRIVACY_OFFICER)
DRAFT_NAMES = {"notice_zh": "Notice to individuals (Chinese)",
               "notice_en": "Notice to individuals (English)",
               "report_cac": "Report to the CAC (Chinese)",
               "report_gdpr": "Report under GDPR art. 33"}


class SignIn(Exception):
    """No live session: back to the sign-in form."""


class WebError(Exception):
    """A page refused: its status and a message naming the reason (never a value)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Viewer:
    """The signed-in principal and its session."""

    principal: Principal
    session: Session

    def may(self, roles: tuple[Role, ...]) -> bool:
        return self.principal.role in roles


def _sessions(request: Request) -> SessionStore:
    return request.app.state.web  # type: ignore[no-any-return]


def signed_in(request: Request, roles: tuple[Role, ...]) -> Viewer:
    """The viewer, resolved from the session's token by the API's ``resolve_token`` and
    checked by its ``check_role``; ``SignIn`` without a live session, 403 without the role."""
    store = _sessions(request)
    cookie = request.cookies.get(COOKIE)
    session = store.get(cookie)
    if session is None:
        raise SignIn()
    try:
        principal = resolve_token(state(request), session.token)
    except Unauthenticated:
        store.close(cookie)
        raise SignIn() from None
    request.state.principal = principal.name
    try:
        check_role(principal, frozenset(roles))
    except Forbidden as exc:
        raise WebError(403, str(exc)) from None
    return Viewer(principal, session)


def page(*roles: Role) -> Any:
    """A dependency: the signed-in viewer if its role is one of ``roles``."""
    def viewer(request: Request) -> Viewer:
        return signed_in(request, roles)

    return Depends(viewer)


async def form_of(request: Request) -> dict[str, str]:
    """The POSTed form (urlencoded), its CSRF token checked against the session's."""
    if request.headers.get("content-type", "").split(";")[0] != \
            "application/x-www-form-urlencoded":
        raise WebError(400, "the form must be sent as application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > 16_384:
        raise WebError(400, "the form is too large")
    try:
        fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        raise WebError(400, "the form could not be read") from None
    if request.url.path == "/ui/login":
        expected = request.cookies.get(LOGIN_COOKIE)
    else:
        session = _sessions(request).get(request.cookies.get(COOKIE))
        expected = session.csrf if session else None
    if not same(fields.get("csrf"), expected):
        raise WebError(403, "the form's CSRF token is missing or stale: reload the page")
    return fields


Form = Annotated[dict[str, str], Depends(form_of)]


def render(request: Request, template: str, viewer: Viewer | None, status: int = 200,
           **context: Any) -> HTMLResponse:
    html = TEMPLATES.get_template(template).render(
        viewer=viewer, csrf=viewer.session.csrf if viewer else context.pop("csrf", ""),
        roles=Role, register_roles=REGISTER_ROLES, person_roles=PERSON_ROLES, **context)
    return HTMLResponse(html, status_code=status)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(SignIn)
    async def _sign_in(request: Request, exc: SignIn) -> Response:
        return RedirectResponse("/ui/login", status_code=303)

    @app.exception_handler(WebError)
    async def _refused(request: Request, exc: WebError) -> Response:
        return render(request, "error.html", None, status=exc.status, message=exc.message)


def _cookie(response: Response, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/ui", httponly=True, secure=True,
                        samesite="strict")


# --- sign-in ----------------------------------------------------------------------------

@router.get("/login")
def login_form(request: Request) -> Response:
    import secrets

    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", None, csrf=token, message=None)
    _cookie(response, LOGIN_COOKIE, token, max_age=600)
    return response


@router.post("/login")
def login(request: Request, form: Form) -> Response:
    token = form.get("token", "").strip()
    api = state(request)
    try:
        if not token or len(token) > 400:
            raise Unauthenticated("no token")
        principal = resolve_token(api, token)
    except Unauthenticated:
        return render(request, "login.html", None, status=401, csrf=form["csrf"],
                      message="That token was not accepted (unknown, expired or revoked).")
    if principal.role is Role.PUBLISHER:
        return render(request, "login.html", None, status=403, csrf=form["csrf"],
                      message="The publisher role has no pages: it only sends events.")
    _sessions(request).close(request.cookies.get(COOKIE))  # a new id at every sign-in
    cookie, _ = _sessions(request).open(token)
    response = RedirectResponse("/ui/", status_code=303)
    _cookie(response, COOKIE, cookie)
    response.delete_cookie(LOGIN_COOKIE, path="/ui")
    return response


@router.post("/logout")
def logout(request: Request, viewer: Annotated[Viewer, page()], form: Form) -> Response:
    _sessions(request).close(request.cookies.get(COOKIE))
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui", secure=True, httponly=True, samesite="strict")
    return response


# --- overview ---------------------------------------------------------------------------

def _day(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).date().isoformat()


#: The views the activity chart reads (its answer is cached while they only read audit
#: records, ``pdl.web.summary.AuditStableCache``).
ACTIVITY_VIEWS = ("datamap", "disclosures")
#: The views the register's groups read (cached likewise, per filter).
GROUP_VIEWS = ("disclosures", "findings")


def activity(views: Any, days: int = 30) -> tuple[list[str], dict[str, list[int]]]:
    """Per day (the last ``days`` with activity): first collections, first uses,
    disclosures and erasures recorded in the views."""
    sources = {
        "collected": "SELECT first_at AS t FROM dm_collections",
        "used": "SELECT first_at AS t FROM dm_uses",
        "shared": "SELECT time AS t FROM disclosures",
        "erased": "SELECT erased_at AS t FROM dm_stores WHERE erased_at IS NOT NULL",
    }
    counts: dict[str, Counter[str]] = {}
    for name, sql in sources.items():
        rows = views.query(f"SELECT CAST(t / 86400000000 AS INTEGER) AS d, COUNT(*) "
                           f"FROM ({sql}) AS s GROUP BY d")
        c: Counter[str] = Counter()
        for d, n in rows:
            c[(date(1970, 1, 1) + timedelta(days=int(d))).isoformat()] += int(n)
        counts[name] = c
    all_days = sorted(set().union(*counts.values()))[-days:]
    return all_days, {name: [c.get(d, 0) for d in all_days] for name, c in counts.items()}


def activity_from_json(value: Any) -> tuple[list[str], dict[str, list[int]]]:
    """``activity``'s answer as kept in JSON (``pdl.web.kept``)."""
    days, series = value
    return ([str(d) for d in days],
            {str(name): [int(n) for n in counts] for name, counts in series.items()})


@router.get("/")
def overview(request: Request, viewer: Annotated[Viewer, page(*SIGNED_IN)]) -> Response:
    api = state(request)
    service = api.service
    role = viewer.principal.role
    projections = _lags(service)
    quarantine = service.quarantine_counts()
    findings = incidents = reqs = judged = None
    now = datetime.now(UTC)

    def answer(views: Any) -> dict[str, Any]:
        nonlocal findings, incidents, judged
        service.catch_up(names=["datamap"])
        chart = _activity(request).latest(service, views, activity)
        days, series = chart.value
        if role is Role.COMPLIANCE:
            service.catch_up(names=["findings"])
            judged = _summaries(request).judgement(service, views, now)
            findings = [{**row, "meaning": CLAUSES.get(row["clause"], "")}
                        for row in judged.rows]
        if role is Role.RESPONDER:
            service.catch_up(names=["holdings"])
            incidents = [i for i in queries.incidents(views) if not i["closed_at"]]
        return {"chart": charts.stacked_bars(days, series, title="Activity per day by kind"),
                "chart_as_of": None if chart.current else
                {"position": f"{chart.records:,}", "behind": f"{chart.behind:,}"}}

    data = read(api, viewer.principal, "dashboard overview", {}, as_of=None,
                needs="disclosures", answer=answer)
    if role in (Role.COMPLIANCE, Role.PRIVACY_OFFICER):
        reqs = _open_requests(request)
    case_files = _case_files(request) if viewer.may(DRAFT_ROLES) else None
    return render(request, "overview.html", viewer, projections=projections, quarantine=quarantine,
                  findings=findings, incidents=incidents, requests=reqs, case_files=case_files,
                  drafts=DRAFT_NAMES, judged=judged and as_of(judged), **data)


def as_of(judged: Judgement) -> dict[str, Any]:
    """What the overview says of the findings it shows: the log position (records the
    findings view had read) and the minute the clock rules were judged at, and whether that
    is current or an earlier answer shown while a fresh one is judged."""
    return {"current": judged.current, "position": f"{judged.records:,}",
            "behind": f"{judged.behind:,}",
            "minute": judged.minute.strftime("%Y-%m-%d %H:%M UTC"),
            "at": judged.judged.strftime("%H:%M:%S UTC")}


def _lags(service: Any) -> list[dict[str, Any]]:
    """Each projection's position and lag, as ``QueryService.status`` without its
    ``audit_lag``: that one reads every record a projection lags behind (up to 100,000 per
    projection), and under continuous ingestion the projections no page catches up lag
    further on every request; the page only shows the lag."""
    with service.lock:
        return service.runner().status()  # type: ignore[no-any-return]


def _activity(request: Request) -> AuditStableCache[tuple[list[str], dict[str, list[int]]]]:
    return request.app.state.web_activity  # type: ignore[no-any-return]


def _summaries(request: Request) -> FindingsSummaryCache:
    return request.app.state.web_findings  # type: ignore[no-any-return]


def _case_files(request: Request) -> list[dict[str, Any]]:
    """The incidents' case files: id, open or closed, and the drafts written."""
    from cases.desk import CaseDesk

    service = state(request).service
    with service.lock:
        desk = CaseDesk(service.ledger)
        try:
            return [{"incident_id": i.incident_id,
                     "status": "closed" if i.closed_at else "open",
                     "grade": i.grade, "drafts": sorted(i.drafts)}
                    for i in desk.cases.incidents()]
        finally:
            desk.close()


def _open_requests(request: Request) -> list[dict[str, Any]]:
    from cases.desk import CaseDesk

    service = state(request).service
    now = datetime.now(UTC)
    with service.lock:
        desk = CaseDesk(service.ledger)
        try:
            rows = [desk.request_status(r, now) for r in desk.cases.requests()]
        finally:
            desk.close()
    return sorted((r for r in rows if r["status"] == "open"), key=lambda r: r["due"])[:20]


# --- disclosure register ----------------------------------------------------------------

REGISTER_PARAMS = ("from", "until", "recipient", "clause", "category", "cross_border",
                   "flagged", "group", "page")


@dataclass
class RegisterQuery:
    """The register's filters, from the query string (never a personal value)."""

    since: datetime | None
    until: datetime | None
    recipient: str | None
    clause: str | None
    category: str | None
    cross_border: str  # "", "yes", "no"
    flagged: bool
    group: str  # "", "clause", "recipient"
    page: int

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> RegisterQuery:
        unknown = sorted(set(params) - set(REGISTER_PARAMS))
        if unknown:
            raise WebError(400, f"unknown filter {unknown[0][:40]!r}")

        def text(name: str) -> str | None:
            value = params.get(name, "").strip()
            if len(value) > 200:
                raise WebError(400, f"{name}: at most 200 characters")
            return value or None

        def moment(name: str) -> datetime | None:
            value = text(name)
            if value is None:
                return None
            try:
                return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
            except ValueError:
                raise WebError(400, f"{name}: not a date (YYYY-MM-DD)") from None

        category = text("category")
        if category is not None and category not in _category_keys():
            raise WebError(400, "category: not a data category key")
        cross = params.get("cross_border", "")
        if cross not in ("", "yes", "no"):
            raise WebError(400, "cross_border: yes, no or empty")
        group = params.get("group", "")
        if group not in ("", "clause", "recipient"):
            raise WebError(400, "group: clause, recipient or empty")
        try:
            number = int(params.get("page") or 1)
        except ValueError:
            raise WebError(400, "page: not a number") from None
        if not 1 <= number <= 1_000_000:
            raise WebError(400, "page: 1 or more")
        return cls(moment("from"), moment("until"), text("recipient"), text("clause"),
                   category, cross, params.get("flagged", "") == "yes", group, number)

    def query_string(self, **changes: Any) -> str:
        values = {
            "from": self.since.date().isoformat() if self.since else "",
            "until": self.until.date().isoformat() if self.until else "",
            "recipient": self.recipient or "", "clause": self.clause or "",
            "category": self.category or "", "cross_border": self.cross_border,
            "flagged": "yes" if self.flagged else "", "group": self.group,
            "page": str(self.page),
        }
        values.update({k: str(v) for k, v in changes.items()})
        if values["page"] == "1":
            del values["page"]
        return urlencode({k: v for k, v in values.items() if v})


def _category_keys() -> set[str]:
    from schemas.taxonomy import CATEGORIES

    return set(CATEGORIES)


COLUMNS = ("time", "recipient", "recipient_name", "clause", "legal_ground", "purpose",
           "categories", "cross_border", "flagged", "pseudonym", "event_id")
GROUP_COLUMNS = ("key", "disclosures", "people", "cross_border", "flagged", "first", "last")


def register_rows(api: ApiState, principal: Principal, q: RegisterQuery,
                  group_cache: KeyedAuditStableCache[list[dict[str, Any]]]
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, int]:
    """The page of rows shown (with the groups, if grouped) and the total matching.
    The groups counted in SQL are kept in ``group_cache`` per filter while the disclosures and
    findings views read only audit records (the stored findings those make name the audit
    event, never a disclosure, so no group's flagged count changes)."""

    total = 0
    # without a filter or grouping SQL cannot express, SQL counts and reads one page
    paged = not (q.cross_border or q.flagged)
    sql_groups: list[dict[str, Any]] | None = None

    def answer(views: Any) -> list[dict[str, Any]]:
        nonlocal total, sql_groups
        if paged:
            where, params = queries.DisclosureFilter(q.recipient, q.clause, q.category,
                                                     q.since, q.until).where()
            total = int(views.query(f"SELECT COUNT(*) FROM disclosures d{where}", params)[0][0])
            if q.group:
                api.service.catch_up(names=["findings"])
                sql_groups = group_cache.get(
                    (q.group, where, tuple(params)), api.service, views,
                    lambda: _groups_sql(views, q.group, where, params))
            rows = queries.disclosures(views, q.recipient, q.clause, q.category, q.since,
                                       q.until, limit=q.page * PAGE_SIZE
                                       )[(q.page - 1) * PAGE_SIZE:]
        else:
            rows = queries.disclosures(views, q.recipient, q.clause, q.category, q.since,
                                       q.until)
        flagged: set[str] = set()
        if rows:
            # a disclosure is flagged when a finding names its event (findings that hang on
            # a clock name the event that started it, never a disclosure)
            api.service.catch_up(names=["findings"])
            if paged:
                ids = [r["event_id"] for r in rows]
                flagged = {r[0] for r in views.query(
                    "SELECT DISTINCT event_id FROM findings WHERE event_id IN "
                    f"({', '.join('?' for _ in ids)})", ids)}
            else:
                flagged = {r[0] for r in views.query(
                    "SELECT DISTINCT f.event_id FROM findings f "
                    "JOIN disclosures d ON d.event_id = f.event_id")}
        out = []
        for r in rows:
            crossing = bool(r["cross_border"])
            if (q.cross_border == "yes" and not crossing) or \
                    (q.cross_border == "no" and crossing):
                continue
            is_flagged = r["event_id"] in flagged
            if q.flagged and not is_flagged:
                continue
            cb = r["cross_border"]
            out.append({
                "time": r["time"], "recipient": r["recipient"],
                "recipient_name": r["recipient_name"] or "", "clause": r["clause"] or "",
                "legal_ground": r["legal_ground"] or "", "purpose": r["purpose"] or "",
                "categories": " ".join(r["categories"]),
                "cross_border": (cb.get("country") or "yes") if isinstance(cb, dict)
                else ("yes" if cb else ""),
                "flagged": "yes" if is_flagged else "", "pseudonym": r["pseudonym"],
                "event_id": r["event_id"]})
        return out

    arguments = {"from": q.since.isoformat() if q.since else None,
                 "until": q.until.isoformat() if q.until else None,
                 "recipient": q.recipient, "clause": q.clause, "category": q.category,
                 "cross_border": q.cross_border or None, "flagged": "yes" if q.flagged else None}
    rows = read(api, principal, "disclosures", arguments, as_of=None, needs="disclosures",
                answer=answer)
    groups = sql_groups
    if q.group and not paged:
        by: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            by[r[q.group] or "(none)"].append(r)
        groups = [{"key": k, "disclosures": len(v), "people": len({r["pseudonym"] for r in v}),
                   "cross_border": sum(1 for r in v if r["cross_border"]),
                   "flagged": sum(1 for r in v if r["flagged"]),
                   "first": v[0]["time"], "last": v[-1]["time"]}
                  for k, v in sorted(by.items())]
    if paged:
        return rows, groups, total
    start = (q.page - 1) * PAGE_SIZE
    return rows[start:start + PAGE_SIZE], groups, len(rows)


def _groups_sql(views: Any, group: str, where: str, params: list[Any]
                ) -> list[dict[str, Any]]:
    """The register's groups by ``clause`` or ``recipient``, counted in SQL."""
    from consumers.rows import iso

    column = {"clause": "d.clause", "recipient": "d.recipient"}[group]
    rows = views.query(
        f"SELECT COALESCE(NULLIF({column}, ''), '(none)') AS k, COUNT(*), "
        "COUNT(DISTINCT d.pseudonym), "
        "SUM(CASE WHEN d.cross_border IS NOT NULL AND d.cross_border NOT IN "
        "('', 'null', '{}', '[]') THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN d.event_id IN (SELECT event_id FROM findings) THEN 1 ELSE 0 END), "
        f"MIN(d.time), MAX(d.time) FROM disclosures d{where} GROUP BY k ORDER BY k", params)
    return [{"key": k, "disclosures": n, "people": people, "cross_border": crossing,
             "flagged": flagged, "first": iso(first), "last": iso(last)}
            for k, n, people, crossing, flagged, first, last in rows]


@router.get("/register")
def register(request: Request, viewer: Annotated[Viewer, page(*REGISTER_ROLES)]) -> Response:
    q = RegisterQuery.parse(request.query_params)
    shown, groups, total = register_rows(state(request), viewer.principal, q,
                                         request.app.state.web_groups)
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    return render(request, "register.html", viewer, q=q, rows=shown, groups=groups,
                  total=total, pages=pages, columns=COLUMNS, group_columns=GROUP_COLUMNS,
                  categories=sorted(_category_keys()),
                  csv_link="/ui/register.csv?" + q.query_string(),
                  prev_link=("?" + q.query_string(page=q.page - 1)) if q.page > 1 else None,
                  next_link=("?" + q.query_string(page=q.page + 1)) if q.page < pages else None)


@router.get("/register.csv")
def register_csv(request: Request, viewer: Annotated[Viewer, page(*REGISTER_ROLES)]
                 ) -> Response:
    """Exactly what the page with the same query string shows: its groups (if grouped)
    and its page of rows."""
    q = RegisterQuery.parse(request.query_params)
    shown, groups, _ = register_rows(state(request), viewer.principal, q,
                                     request.app.state.web_groups)
    out = io.StringIO()
    writer = csv.writer(out)
    if groups is not None:
        writer.writerow([q.group, *GROUP_COLUMNS[1:]])
        writer.writerows([[g[c] for c in GROUP_COLUMNS] for g in groups])
        writer.writerow([])
    writer.writerow(COLUMNS)
    writer.writerows([[r[c] for c in COLUMNS] for r in shown])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "content-disposition": 'attachment; filename="disclosure-register.csv"'})


# --- a person ---------------------------------------------------------------------------

def timeline(data_map: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The data map as dated steps per category: collected, stored/erased, used, shared."""
    steps = []
    for cat in data_map["categories"]:
        def step(when: str | None, what: str, where: str, c: Mapping[str, Any] = cat) -> None:
            steps.append({"time": when or "", "category": c["category"],
                          "sensitive": c["sensitive"], "what": what, "where": where})
        for s in cat["sources"]:
            step(s["first"], "collected", f"{s['source']} {s['party'] or ''} for {s['purpose']}")
        for s in cat["stores"]:
            step(s["since"], s["status"] if s["status"] != "held" else "stored",
                 s["store"] + (" (backup)" if s["backup"] else "") +
                 (" - retention overdue" if s["overdue"] else ""))
        for u in cat["uses"]:
            step(u["first"], "used", u["purpose"])
        for r in cat["recipients"]:
            step(r["first"], "shared", r["recipient"])
    return sorted(steps, key=lambda s: (s["time"], s["category"]))


@router.get("/person")
def person_form(request: Request, viewer: Annotated[Viewer, page(*PERSON_ROLES)]) -> Response:
    return render(request, "person.html", viewer, found=None)


def _subject(form: Mapping[str, str]) -> str:
    subject = form.get("subject", "").strip()
    if not subject or len(subject) > 256:
        raise WebError(400, "subject: between 1 and 256 characters")
    return subject


def _reason(form: Mapping[str, str], required: bool) -> str | None:
    reason = form.get("reason", "").strip()
    if len(reason) > 200:
        raise WebError(400, "reason: at most 200 characters")
    if required and not reason:
        raise WebError(400, "reason: required to unseal (a ticket number or why)")
    return reason or None


@router.post("/person")
def person(request: Request, viewer: Annotated[Viewer, page(*PERSON_ROLES)],
           form: Form) -> Response:
    api = state(request)
    subject = _subject(form)
    pseudonym = api.service.pseudonym(subject)
    now = datetime.now(UTC)

    def answer(views: Any) -> dict[str, Any]:
        try:
            data_map = queries.subject_map(views, pseudonym)
        except NotFound:
            return {}
        api.service.catch_up(names=["disclosures", "findings"])
        return {"map": data_map, "steps": timeline(data_map),
                "requests": person_requests(request, views, pseudonym, now),
                "disclosures": queries.disclosures(views, pseudonym=pseudonym),
                "findings": [{**f, "meaning": CLAUSES.get(f["clause"], "")}
                             for f in _summaries(request).findings(api.service, views, now)
                             if f["pseudonym"] == pseudonym]}

    found = read(api, viewer.principal, "subject", {}, as_of=None, needs="datamap",
                 people=[pseudonym], reason=_reason(form, False), answer=answer)
    if not found:
        return render(request, "person.html", viewer, status=404, found=None,
                      message="The ledger knows nothing about this person.")
    return render(request, "person.html", viewer, found=found, subject=subject,
                  may_unseal=viewer.may(UNSEAL_ROLES))


def person_requests(request: Request, views: Any, pseudonym: str, now: datetime
                    ) -> list[dict[str, Any]]:
    """The person's rights requests: each one the log holds (received, due, answered, as
    the findings view keeps them), with its case file's status, identity check and clock
    where one was opened with ``pdl request``; newest first."""
    from cases.desk import CaseDesk
    from consumers.findings.store import REQUESTS_TABLE
    from consumers.findings.thresholds import clock_values
    from consumers.rows import from_us

    deadline = timedelta(days=clock_values(state(request).service.ledger.settings)[
        "deadline_days"])
    rows: dict[str, dict[str, Any]] = {}
    for request_id, kind, received, due, answered in views.query(
            f"SELECT request_id, kind, received_at, due, answered_at FROM {REQUESTS_TABLE} "
            "WHERE pseudonym = ?", (pseudonym,)):
        received_at = from_us(received) if received is not None else None
        due_at = from_us(due) if due is not None else (
            received_at + deadline if received_at is not None else None)
        answered_at = from_us(answered) if answered is not None else None
        late = due_at is not None and due_at < now and (answered_at is None
                                                        or answered_at > due_at)
        rows[request_id] = {
            "request_id": request_id, "kind": kind or "",
            "received_at": received_at.isoformat() if received_at else "",
            "due": due_at.isoformat() if due_at else "",
            "status": "answered" if answered_at else "open",
            "answered_at": answered_at.isoformat() if answered_at else "",
            "overdue": late, "verified": None, "case": False}
    service = state(request).service
    with service.lock:
        desk = CaseDesk(service.ledger)
        try:
            for r in desk.cases.requests():
                if r.subject != pseudonym:
                    continue
                status = desk.request_status(r, now)
                row = rows.setdefault(r.request_id, {
                    "request_id": r.request_id, "answered_at": "", "overdue": False})
                row.update({"kind": status["kind"], "received_at": status["received_at"],
                            "due": status["due"], "status": status["status"],
                            "verified": status["verified"], "case": True,
                            "overdue": bool(status["clock"].get("finding")) or row["overdue"]})
        finally:
            desk.close()
    return sorted(rows.values(), key=lambda r: (r["received_at"], r["request_id"]),
                  reverse=True)


@router.post("/person/export")
def person_export(request: Request, viewer: Annotated[Viewer, page(*UNSEAL_ROLES)],
                  form: Form) -> Response:
    api = state(request)
    subject = _subject(form)
    reason = _reason(form, True)
    pseudonym = api.service.pseudonym(subject)
    try:
        exported = read(api, viewer.principal, "export", {"format": "html"}, as_of=None,
                        needs="datamap", people=[pseudonym], reason=reason, clear=True,
                        answer=lambda views: api.service.export(views, subject, None))
    except NotFound:
        raise WebError(404, "the ledger holds no event about this person") from None
    except LedgerError as exc:
        raise WebError(400, str(exc)) from None
    return render(request, "export.html", viewer, exported=exported,
                  events=exported["events"], pseudonym=pseudonym)



# --- findings ---------------------------------------------------------------------------

FINDINGS_ROLES = (Role.COMPLIANCE,)


def _promises() -> dict[str, dict[str, str]]:
    """Each clause's promise in English (COMMITMENTS.md) and the policy's Chinese text
    (privacy-policy.zh.txt, its numbered section), bundled as ``promises.json``."""
    import json

    promises: dict[str, dict[str, str]] = json.loads(
        (Path(__file__).parent / "promises.json").read_text(encoding="utf-8"))
    return promises


def _clause_param(params: Mapping[str, str], allowed: tuple[str, ...]) -> str | None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise WebError(400, f"unknown parameter {unknown[0][:40]!r}")
    clause = params.get("clause", "").strip() or None
    if clause is not None and clause not in CLAUSES:
        raise WebError(400, "clause: not a clause the findings rules check")
    return clause


@router.get("/findings")
def findings_page(request: Request, viewer: Annotated[Viewer, page(*FINDINGS_ROLES)]
                  ) -> Response:
    """By clause with the promise (Chinese and English), its meaning and how many are still
    open, a monthly trend, and one clause's findings down to the events (``?clause=``),
    each open or remedied (7.4), ``?status=`` keeping one or the other. Under ingestion,
    the last findings judged, labelled as not current while fresh ones are judged."""
    api = state(request)
    clause = _clause_param(request.query_params, ("clause", "status"))
    status = request.query_params.get("status", "") or None
    if status not in (None, "open", "remedied"):
        raise WebError(400, "status: open, remedied or empty")

    now = datetime.now(UTC)

    def answer(views: Any) -> Judgement:
        api.service.catch_up(names=["findings"])
        return _summaries(request).judgement(api.service, views, now)

    judged = read(api, viewer.principal, "findings", {"clause": clause, "status": status},
                  as_of=None, needs="findings", answer=answer)
    found = judged.found
    promises = _promises()
    clauses = [{**row, "meaning": CLAUSES.get(row["clause"], ""),
                "promise": promises.get(row["clause"], {})}
               for row in findings_summary(found)]
    months = sorted({f["time"][:7] for f in found})
    per_month = Counter(f["time"][:7] for f in found)
    chart = charts.stacked_bars(months, {"findings": [per_month[m] for m in months]},
                                title="Findings per month")
    detail = [f for f in found if f["clause"] == clause
              and (status is None or f.get("status", "open") == status)] if clause else None
    return render(request, "findings.html", viewer, clauses=clauses, chart=chart,
                  judged=as_of(judged), clause=clause, shown_status=status, detail=detail,
                  promise=promises.get(clause or "", {}), meaning=CLAUSES.get(clause or "", ""))


# --- incident: breach scope -------------------------------------------------------------

INCIDENT_ROLES = (Role.RESPONDER,)
SCOPE_PARAMS = ("incident", "stores", "from", "until", "categories")


def _scope_query(params: Mapping[str, str]) -> dict[str, Any] | None:
    unknown = sorted(set(params) - set(SCOPE_PARAMS))
    if unknown:
        raise WebError(400, f"unknown parameter {unknown[0][:40]!r}")
    if not any(params.get(k) for k in SCOPE_PARAMS):
        return None
    for name in SCOPE_PARAMS:
        if len(params.get(name, "")) > 2000:
            raise WebError(400, f"{name}: at most 2000 characters")
    incident = params.get("incident", "").strip() or None
    stores = [s.strip() for s in params.get("stores", "").split(",") if s.strip()]
    categories = [c.strip() for c in params.get("categories", "").split(",") if c.strip()]
    bad = [c for c in categories if c not in _category_keys()]
    if bad:
        raise WebError(400, f"categories: {bad[0][:60]!r} is not a data category key")
    window = []
    for name in ("from", "until"):
        value = params.get(name, "").strip()
        try:
            window.append(datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
                          if value else None)
        except ValueError:
            raise WebError(400, f"{name}: not a date (YYYY-MM-DD)") from None
    if incident is None:
        if not stores or window[0] is None or window[1] is None:
            raise WebError(400, "stores, from and until are needed (or an incident id)")
        if window[1] < window[0]:
            raise WebError(400, "until: before from")
    return {"incident": incident, "stores": stores, "since": window[0], "until": window[1],
            "categories": categories}


@router.get("/incident")
def incident_page(request: Request, viewer: Annotated[Viewer, page(*INCIDENT_ROLES)]
                  ) -> Response:
    """The breach-scope form; its counts, per-category and per-country bars and, for a
    case file, its clocks, notify counts and drafts."""
    api = state(request)
    q = _scope_query(request.query_params)
    result = case = None
    people: set[str] = set()
    if q is not None:
        def answer(views: Any) -> dict[str, Any]:
            if q["incident"]:
                found = queries.incident_scope(views, q["incident"])
            else:
                found = queries.scope(views, q["stores"], q["since"], q["until"],
                                      q["categories"] or None)
            people.update(found.people.pseudonyms())
            return {"counts": found.counts}

        try:
            result = read(api, viewer.principal, "scope", {
                "incident": q["incident"], "stores": ",".join(q["stores"]) or None,
                "from": q["since"].isoformat() if q["since"] else None,
                "until": q["until"].isoformat() if q["until"] else None,
                "categories": ",".join(q["categories"]) or None}, as_of=None,
                needs="holdings", answer=answer)
        except LedgerError as exc:
            raise WebError(404 if isinstance(exc, NotFound) else 400, str(exc)) from None
        if q["incident"]:
            case = _case(request, q["incident"])
    bars = None
    if result is not None:
        cats = sorted(result["counts"].get("categories", {}).items(), key=lambda kv: -kv[1])
        bars = {"categories": charts.hbars(cats, title="People per category")}
        countries = per_country(request, people)
        bars["countries"] = charts.hbars(sorted(countries.items(), key=lambda kv: (-kv[1], kv[0])),
                                         title="People per country of residence")
        result["countries"] = countries
        residence = ((case or {}).get("snapshot") or {}).get("residence") or {}
        if residence:
            bars["snapshot_countries"] = charts.hbars(
                sorted(residence.items(), key=lambda kv: (-kv[1], kv[0])),
                title="People per country of residence (case snapshot)")
    return render(request, "incident.html", viewer, params=request.query_params,
                  result=result, case=case, bars=bars, drafts=DRAFT_NAMES,
                  may_read_drafts=viewer.may(DRAFT_ROLES))


def per_country(request: Request, people: set[str]) -> dict[str, int]:
    """People per country of residence (their latest registration naming one; "unknown"
    otherwise), as the case file's snapshot counts them."""
    from pdl.web.residence import UNKNOWN, Residences

    residences: Residences = request.app.state.web_residences
    where = residences.of(state(request).service.ledger.log, people)
    return dict(sorted(Counter(where.get(p, UNKNOWN) for p in people).items()))


@router.get("/incident/draft")
def incident_draft(request: Request, viewer: Annotated[Viewer, page(*DRAFT_ROLES)]
                   ) -> Response:
    """One draft of an incident's case file, as written to its folder: shown only if its
    SHA-256 is the one the case file recorded when it was drafted."""
    import hashlib

    from cases.snapshot import folder

    unknown = sorted(set(request.query_params) - {"incident", "draft"})
    if unknown:
        raise WebError(400, f"unknown parameter {unknown[0][:40]!r}")
    incident_id = request.query_params.get("incident", "").strip()
    name = request.query_params.get("draft", "")
    if name not in DRAFT_NAMES:
        raise WebError(400, f"draft: one of {', '.join(DRAFT_NAMES)}")
    if not incident_id or len(incident_id) > 200:
        raise WebError(400, "incident: between 1 and 200 characters")
    api = state(request)
    api.service.audit("incident draft", {"incident_id": incident_id, "draft": name},
                      actor=viewer.principal.name, role=viewer.principal.role.value)
    case = _case(request, incident_id)
    if case is None:
        raise WebError(404, "no case file for this incident")
    digest = case["drafts"].get(name)
    if digest is None:
        raise WebError(404, "this draft has not been written for this incident")
    path = folder(api.service.ledger.settings.data_dir, case["incident_id"]) / "drafts" / \
        f"{name}.md"
    try:
        text = path.read_text("utf-8")
    except OSError:
        raise WebError(404, "the draft's file is missing from the case folder") from None
    if hashlib.sha256(text.encode()).hexdigest() != digest:
        raise WebError(409, "the draft's file differs from the one the case file recorded")
    return render(request, "draft.html", viewer, case=case, name=name,
                  title=DRAFT_NAMES[name], text=text, digest=digest)


def _case(request: Request, incident_id: str) -> dict[str, Any] | None:
    from cases.desk import CaseDesk, incident_summary

    service = state(request).service
    with service.lock:
        desk = CaseDesk(service.ledger)
        try:
            return incident_summary(desk.cases.incident(incident_id), desk.settings,
                                    datetime.now(UTC))
        except LedgerError:
            return None  # no case file for this incident (yet): scope and counts alone
        finally:
            desk.close()
