"""``pdl incident``, ``pdl incidents``, ``pdl request``, ``pdl requests``: the case files.

Every step is refused, with the rule it breaks and exit 65, before any event exists; a step
taken is saved in the case store and copied to the ledger log as its catalogue event.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from cases import clocks, snapshot
from cases.desk import CaseDesk, incident_summary, read_facts
from ledger.files import write_private
from pdl.context import Add, open_ledger
from pdl.output import console, emit, json_option, parse_time, progress_bar
from schemas.taxonomy import RequestKind


@contextmanager
def _desk(args: argparse.Namespace) -> Iterator[CaseDesk]:
    ledger = open_ledger(args)
    desk = CaseDesk(ledger)
    try:
        yield desk
    finally:
        desk.close()
        ledger.close()


@contextmanager
def _views(desk: CaseDesk) -> Iterator[Any]:
    """The views, caught up with the log (the case's own events included)."""
    from pdl.service import QueryService

    service = QueryService(desk.ledger)
    try:
        with progress_bar(transient=True) as bar:
            task = bar.add_task("projecting", total=service.lag(), rate="")
            service.catch_up(progress=lambda n: bar.advance(task, n))
        yield service.views
    finally:
        service.views.close()


def _now(args: argparse.Namespace) -> datetime:
    return getattr(args, "now", None) or datetime.now(UTC)


def _split(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def _left(seconds: float | None) -> str:
    if seconds is None:
        return ""
    sign = "-" if seconds < 0 else ""
    s = abs(int(seconds))
    days, rest = divmod(s, 86400)
    return f"{sign}{days}d {rest // 3600:02d}h{rest % 3600 // 60:02d}m" if days else \
        f"{sign}{rest // 3600}h{rest % 3600 // 60:02d}m"


_STYLE = {"overdue": "bold red", "late": "red", "running": "yellow", "met": "green",
          "exempted": "cyan"}


def render_status(s: dict[str, Any]) -> None:
    head = f"[bold]incident {s['incident_id']}[/] ({s['status']})"
    grade = s["grade"]
    head += f" — grade [bold]{grade}[/] ({s['grade_basis']})" if grade else " — not graded"
    console.print(head)
    console.print(f"discovered {s['discovered_at']}" +
                  (f", closed {s['closed_at']}" if s["closed_at"] else ""), markup=False)
    snap = s["snapshot"]
    if snap:
        console.print(f"scope snapshot {snap['hash']}: {snap['people']} people, "
                      f"{snap['records']} records; reachable {snap['reachable']}, "
                      f"unreachable {snap['unreachable']} (erased {snap['erased']}); "
                      f"{snap['people_with_sensitive_data']} with sensitive data; "
                      f"{snap['cross_border_people']} cross-border; residence "
                      + ", ".join(f"{k} {v}" for k, v in snap["residence"].items()),
                      markup=False, highlight=False)
    table = Table(title=f"clocks at {s['now']}")
    for col in ("duty", "state", "due", "left", "done", "citation"):
        table.add_column(col, overflow="fold")
    for c in s["clocks"]:
        style = _STYLE.get(c["state"], "")
        table.add_row(c["duty"], f"[{style}]{c['state']}[/]" if style else c["state"],
                      c["due"] or ("on closing" if c["state"] == "waiting" else "undue delay"),
                      _left(c["remaining_s"]), c["done_at"] or "", c["citation"][:90])
    console.print(table)
    if s["notify"]:
        n = s["notify"]
        console.print(f"notify list: {n['listed']} reachable people with a contact; "
                      f"{n['announcement']} to the public announcement (公告): "
                      f"{n['reasons']}", markup=False, highlight=False)
    for name, digest in s["drafts"].items():
        console.print(f"draft {name}: {s['folder']}/drafts/{name}.md (.json), "
                      f"sha256 {digest[:16]}…", markup=False)
    if s["findings"]:
        console.print(f"[bold red]findings[/]: overdue or late clocks: {', '.join(s['findings'])}")


# --- incident commands -------------------------------------------------------------------


def cmd_incident_open(args: argparse.Namespace) -> int:
    with _desk(args) as desk:
        incident = desk.open_incident(args.id, args.description, _split(args.stores),
                                      args.since, args.until, _split(args.categories),
                                      at=args.discovered_at)
        emit(args, {"incident_id": incident.incident_id, "status": "open"},
             lambda: console.print(f"incident {incident.incident_id} opened; next: "
                                   f"pdl incident scope {incident.incident_id}", markup=False))
    return 0


def cmd_incident_adopt(args: argparse.Namespace) -> int:
    with _desk(args) as desk, _views(desk) as views:
        incident = desk.adopt(args.id, views, args.grade, args.justification)
        s = incident_summary(incident, desk.settings, _now(args))
        emit(args, s, lambda: console.print(
            f"incident {args.id} adopted from the log ({s['status']}): scope snapshot "
            f"{(s['snapshot'] or {}).get('hash')}, grade {s['grade']} ({s['grade_basis']}); "
            f"duties: {', '.join(s['duties']) or 'none'}", markup=False))
    return 0


def cmd_incident_scope(args: argparse.Namespace) -> int:
    with _desk(args) as desk, _views(desk) as views:
        snap = desk.take_scope(args.id, views)
        assessment = clocks.assess(snap["counts"], desk.settings)
        out = {"incident_id": args.id, "snapshot_hash": snap["hash"], "counts": snap["counts"],
               "assessment": assessment.as_dict(),
               "file": str(snapshot.folder(desk.settings.data_dir, args.id)
                           / f"snapshot-{snap['hash'][:16]}.json")}

        def render() -> None:
            c = snap["counts"]
            console.print(f"snapshot {snap['hash']} ({out['file']})", markup=False)
            console.print(f"{c['people']} people, {c['records']} records; reachable "
                          f"{c['reachable']}, unreachable {c['unreachable']} (erased "
                          f"{c['erased']}); sensitive {c['people_with_sensitive_data']}; "
                          f"cross-border {c['cross_border_people']}; residence {c['residence']}",
                          markup=False, highlight=False)
            if assessment.computed_grade:
                console.print(f"grade by threshold: {assessment.computed_grade}; next: "
                              f"pdl incident grade {args.id}", markup=False)
            else:
                console.print(f"[yellow]judgment needed[/]: {assessment.prompt}")

        emit(args, out, render)
    return 0


def cmd_incident_grade(args: argparse.Namespace) -> int:
    with _desk(args) as desk:
        incident = desk.grade(args.id, args.grade, args.justification, at=args.at)
        emit(args, {"incident_id": args.id, "grade": incident.grade,
                    "basis": incident.grade_basis, "duties": incident.duties},
             lambda: console.print(f"graded {incident.grade} ({incident.grade_basis}); "
                                   f"duties: {', '.join(incident.duties) or 'none'}",
                                   markup=False))
    return 0


def _step(args: argparse.Namespace, do: Callable[[CaseDesk], Any], said: str) -> int:
    with _desk(args) as desk:
        do(desk)
        s = incident_summary(desk.cases.incident(args.id), desk.settings, _now(args))
        emit(args, s, lambda: console.print(said, markup=False))
    return 0


def cmd_incident_report(args: argparse.Namespace) -> int:
    return _step(args, lambda d: d.report(args.id, args.duty, args.authority, at=args.at),
                 f"{args.duty} report to {args.authority} recorded")


def cmd_incident_exempt(args: argparse.Namespace) -> int:
    return _step(args, lambda d: d.exempt(args.id, args.duty, args.justification, at=args.at),
                 f"{args.duty}: exemption recorded")


def cmd_incident_notices_sent(args: argparse.Namespace) -> int:
    return _step(args, lambda d: d.notices_sent(args.id, args.duty, args.channel, args.people,
                                                at=args.at),
                 f"{args.duty}: notices to {args.people} people recorded")


def cmd_incident_announce(args: argparse.Namespace) -> int:
    return _step(args, lambda d: d.announce(args.id, args.channel, at=args.at),
                 f"announcement on {args.channel} recorded")


def cmd_incident_respond(args: argparse.Namespace) -> int:
    return _step(args, lambda d: d.respond(args.id, args.step, args.detail, at=args.at),
                 f"{args.step} step recorded")


def cmd_incident_close(args: argparse.Namespace) -> int:
    return _step(args, lambda d: d.close_incident(args.id, at=args.at),
                 f"incident {args.id} closed")


def cmd_incident_status(args: argparse.Namespace) -> int:
    with _desk(args) as desk:
        s = desk.status(args.id, _now(args))
        emit(args, s, lambda: render_status(s))
    return 1 if s["findings"] else 0


def cmd_incident_notify_list(args: argparse.Namespace) -> int:
    with _desk(args) as desk:
        answer = desk.notify_list(args.id, args.reason)
        out = Path(args.output) if args.output else (
            snapshot.folder(desk.settings.data_dir, args.id)
            / f"notify-{answer['snapshot_hash'][:16]}.json")
        write_private(out, json.dumps(answer, ensure_ascii=False, indent=1) + "\n")
        summary = {k: v for k, v in answer.items() if k != "people"} | {"file": str(out)}
        emit(args, summary, lambda: console.print(
            f"notify list: {answer['counts']['listed']} reachable people with a contact "
            f"written to {out} (0600); {answer['announcement']['people']} routed to the "
            f"public announcement: {answer['announcement']['reasons']}; audited as event "
            f"{answer['audit_event_id']}", markup=False, highlight=False))
    return 0


def cmd_incident_draft(args: argparse.Namespace) -> int:
    with _desk(args) as desk:
        written = desk.draft(args.id, read_facts(args.facts))

        def render() -> None:
            for name, info in written.items():
                console.print(f"{name}: {info['markdown']} and .json "
                              f"(sha256 {info['digest'][:16]}…)", markup=False)

        emit(args, written, render)
    return 0


def cmd_incidents(args: argparse.Namespace) -> int:
    now = _now(args)
    with _desk(args) as desk:
        rows = [incident_summary(i, desk.settings, now) for i in desk.cases.incidents()]
    if args.status:
        rows = [r for r in rows if r["status"] == args.status]
    if args.overdue:
        rows = [r for r in rows if r["findings"]]

    def render() -> None:
        table = Table(title=f"{len(rows)} incident(s)")
        for col in ("incident", "status", "grade", "people", "duties", "findings"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(r["incident_id"], r["status"], r["grade"] or "-",
                          str((r["snapshot"] or {}).get("people", "-")),
                          ", ".join(r["duties"]), ", ".join(r["findings"]))
        console.print(table)

    emit(args, rows, render)
    return 0


# --- request commands --------------------------------------------------------------------


def cmd_request_open(args: argparse.Namespace) -> int:
    with _desk(args) as desk:
        r = desk.open_request(args.id, args.kind, args.subject, _split(args.categories),
                              due=args.due, at=args.at)
        emit(args, desk.request_status(r, _now(args)),
             lambda: console.print(f"request {r.request_id} ({r.kind}) open, due "
                                   f"{r.due.isoformat()}", markup=False))
    return 0


def _request_step(args: argparse.Namespace, do: Callable[[CaseDesk], Any], said: str) -> int:
    with _desk(args) as desk:
        r = do(desk)
        emit(args, desk.request_status(r, _now(args)), lambda: console.print(said, markup=False))
    return 0


def cmd_request_verify(args: argparse.Namespace) -> int:
    return _request_step(args, lambda d: d.verify(args.id, args.method, at=args.at),
                         f"request {args.id}: identity verified ({args.method})")


def cmd_request_refuse(args: argparse.Namespace) -> int:
    return _request_step(args, lambda d: d.refuse(args.id, args.reason, at=args.at),
                         f"request {args.id} refused: {args.reason}")


def cmd_request_fulfil(args: argparse.Namespace) -> int:
    with _desk(args) as desk:
        r, exported = desk.fulfil(args.id, args.subject, at=args.at)
        out = desk.request_status(r, _now(args))
        if exported is not None:
            path = Path(args.output) if args.output else (
                desk.settings.data_dir / "cases" / f"export-{args.id}.json")
            write_private(path, json.dumps(exported, ensure_ascii=False, indent=1))
            out["export_file"] = str(path)
        emit(args, out, lambda: console.print(
            f"request {args.id} fulfilled" + "".join(
                f"; {link['action']} = ledger event {link['event_id']}" for link in r.links)
            + (f"; export written to {out['export_file']} (0600)" if exported else ""),
            markup=False))
    return 0


def cmd_requests(args: argparse.Namespace) -> int:
    now = _now(args)
    with _desk(args) as desk:
        rows = [desk.request_status(r, now) for r in desk.cases.requests()]
    if args.status:
        rows = [r for r in rows if r["status"] == args.status]
    if args.kind:
        rows = [r for r in rows if r["kind"] == args.kind]
    if args.overdue:
        rows = [r for r in rows if r["clock"]["finding"]]

    def render() -> None:
        table = Table(title=f"{len(rows)} request(s)")
        for col in ("request", "kind", "status", "due", "left", "verified", "linked"):
            table.add_column(col, overflow="fold")
        for r in rows:
            c = r["clock"]
            state = c["state"]
            left = _left(c["remaining_s"]) if state in ("running", "overdue") else state
            table.add_row(r["request_id"], r["kind"], r["status"], r["due"],
                          f"[red]{left}[/]" if c["finding"] else left,
                          "yes" if r["verified"] else "no",
                          ", ".join(f"{x['action']}:{x['event_id']}" for x in r["links"]))
        console.print(table)

    emit(args, rows, render)
    return 1 if any(r["clock"]["finding"] for r in rows) and args.overdue else 0


# --- registration ------------------------------------------------------------------------


def _at(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--at", type=parse_time, metavar="TIME",
                   help="when it happened (ISO 8601 with a zone, or a plain date 2024-07-01 = midnight UTC; default now)")
    return p


def _stepper(steps: argparse._SubParsersAction, id_help: str  # type: ignore[type-arg]
             ) -> Callable[[str, Callable[[argparse.Namespace], int], str],
                           argparse.ArgumentParser]:
    """A maker of one case-file step: its parser with the case id and ``--json``."""
    def step(name: str, handler: Callable[[argparse.Namespace], int],
             help: str) -> argparse.ArgumentParser:
        p = steps.add_parser(name, help=help, description=help)
        p.add_argument("id", help=id_help)
        json_option(p)
        p.set_defaults(handler=handler)
        return p
    return step


def register(sub: argparse._SubParsersAction, add: Add) -> None:  # type: ignore[type-arg]
    """Add ``incident``, ``incidents``, ``request`` and ``requests`` to ``pdl``."""
    inc = add("incident", lambda a: 2, "an incident's case file (6.2.1)", False)
    isub = inc.add_subparsers(dest="incident_command", required=True, metavar="STEP")

    step = _stepper(isub, "the incident id, e.g. inc-2026-001")

    p = step("open", cmd_incident_open, "open a case file for a new incident")
    p.add_argument("--description", required=True, help="what happened")
    p.add_argument("--stores", required=True, help="comma-separated stores exposed")
    p.add_argument("--from", dest="since", type=parse_time, required=True, metavar="TIME", help="start of the exposure window (ISO 8601 with a zone, or a plain date 2024-07-01 = midnight UTC)")
    p.add_argument("--until", type=parse_time, required=True, metavar="TIME", help="end of the exposure window (same formats)")
    p.add_argument("--categories", help="comma-separated categories exposed (default: all)")
    p.add_argument("--discovered-at", type=parse_time, metavar="TIME",
                   help="when it was discovered (starts the clocks; ISO 8601 with a zone, or a plain date 2024-07-01 = midnight UTC; default now)")

    p = step("adopt", cmd_incident_adopt,
             "open a case file for an incident a producer recorded in the log")
    p.add_argument("--grade", help="the grade, if judged (below the thresholds)")
    p.add_argument("--justification", help="why, for a judged grade")

    step("scope", cmd_incident_scope,
         "take the scope snapshot from the ledger (hashed, to be cited) and assess the grade")
    p = _at(step("grade", cmd_incident_grade,
                 "grade the incident from its scope (or by judgment, with a justification)"))
    p.add_argument("--grade", choices=("general", "relatively_major", "major",
                                       "especially_major"), help="the grade judged")
    p.add_argument("--justification", help="why this grade")
    p = _at(step("report", cmd_incident_report, "record a report filed with an authority"))
    p.add_argument("--duty", required=True, help="the duty it discharges (pdl incident status)")
    p.add_argument("--authority", required=True, help="the authority reported to")
    p = _at(step("exempt", cmd_incident_exempt,
                 "record why a duty does not apply (stands in for its report)"))
    p.add_argument("--duty", required=True, help="the duty that does not apply")
    p.add_argument("--justification", required=True, help="why it does not apply")
    p = _at(step("notices-sent", cmd_incident_notices_sent,
                 "record that the notice to individuals went out"))
    p.add_argument("--duty", required=True, help="pipl57_individuals or gdpr34:CC")
    p.add_argument("--channel", required=True, help="how the people were told")
    p.add_argument("--people", type=int, required=True, help="how many people were told")
    p = _at(step("announce", cmd_incident_announce,
                 "record the public announcement (公告) for the people who cannot be reached"))
    p.add_argument("--channel", required=True, help="where it was published, e.g. website")
    for name, recorded, option, what, detail in (
            ("contingency", "contingency", "--plan",
             "record that the contingency plan (应急预案) was started",
             "the plan started, e.g. its document reference"),
            ("contain", "contained", "--measures",
             "record that the incident's spread was stopped (what was done)",
             "what stopped the spread"),
            ("advise", "advice", "--channel",
             "record that security advice (安全处理建议) was given to the people affected",
             "how it was given, e.g. email")):
        p = _at(step(name, cmd_incident_respond, what + " (6.2.1)"))
        p.add_argument(option, dest="detail", required=True, metavar=option[2:].upper(),
                       help=detail)
        p.set_defaults(step=recorded)
    _at(step("close", cmd_incident_close,
             "close the case (refused while a report is neither filed nor exempted)"))
    p = step("status", cmd_incident_status,
             "grade, scope and each clock counting down (exit 1 if a clock is overdue or late)")
    p.add_argument("--now", type=parse_time, metavar="TIME", help="as if it were then (ISO 8601 with a zone, or a plain date 2024-07-01 = midnight UTC)")
    p = step("notify-list", cmd_incident_notify_list,
             "privacy officer: the reachable people with their contact (audited; 0600 file)")
    p.add_argument("--reason", required=True, help="why the contacts are needed (audited)")
    p.add_argument("--output", "-o", help="file to write (default: the incident's folder)")
    p = step("draft", cmd_incident_draft,
             "render the notices and reports (Markdown and JSON) from the scope snapshot")
    p.add_argument("--facts", help="JSON file: company, cause, harm, remedies, advice, "
                   "contact, dpo_contact")

    p = add("incidents", cmd_incidents, "the incident case files, with their clocks")
    p.add_argument("--status", choices=("open", "closed"), help="only open or closed incidents")
    p.add_argument("--overdue", action="store_true", help="only those with a finding")
    p.add_argument("--now", type=parse_time, metavar="TIME", help="as if it were then (ISO 8601 with a zone, or a plain date 2024-07-01 = midnight UTC)")

    req = add("request", lambda a: 2, "a rights request's case file (7, 9.2)", False)
    rsub = req.add_subparsers(dest="request_command", required=True, metavar="STEP")

    def rstep(name: str, handler: Callable[[argparse.Namespace], int],
              help: str) -> argparse.ArgumentParser:
        return _at(request_step(name, handler, help))

    request_step = _stepper(rsub, "the request id")

    p = rstep("open", cmd_request_open, "receive a request (due in LEDGER_REQUEST_DEADLINE_DAYS)")
    p.add_argument("--subject", required=True, help="the person's identifier (pseudonymised)")
    p.add_argument("--kind", required=True, choices=[k.value for k in RequestKind], help="what the person asks")
    p.add_argument("--categories", help="comma-separated categories (corrections)")
    p.add_argument("--due", type=parse_time, metavar="TIME", help="due date (ISO 8601 with a zone, or a plain date 2024-07-01 = midnight UTC); default LEDGER_REQUEST_DEADLINE_DAYS after receipt")
    p = rstep("verify", cmd_request_verify, "record that the person's identity was verified")
    p.add_argument("--method", required=True, help="how the identity was verified, e.g. sms_code")
    p = rstep("fulfil", cmd_request_fulfil,
              "fulfil: access runs export, erasure runs erase, linked by event id")
    p.add_argument("--subject", help="the person's identifier (access and erasure)")
    p.add_argument("--output", "-o", help="where the export is written (0600)")
    p = rstep("refuse", cmd_request_refuse, "refuse, with the reason")
    p.add_argument("--reason", required=True, help="why it is refused")
    for name, parser in (("list", rsub.add_parser("list", help="the requests and their due dates")),
                         ("requests", add("requests", cmd_requests,
                                          "the rights requests and their due dates"))):
        if name == "list":
            json_option(parser)
            parser.set_defaults(handler=cmd_requests)
        parser.add_argument("--status", choices=("open", "fulfilled", "refused"), help="only requests in this state")
        parser.add_argument("--kind", choices=[k.value for k in RequestKind], help="only requests of this kind")
        parser.add_argument("--overdue", action="store_true", help="only those past due")
        parser.add_argument("--now", type=parse_time, metavar="TIME", help="as if it were then (ISO 8601 with a zone, or a plain date 2024-07-01 = midnight UTC)")
