"""``pdl`` commands over the projections: project, rebuild, status, and the queries.

Queries catch the views up with the log first (unless ``--no-catch-up``), or answer from
the log replayed in memory: ``--as-of T`` as it stood at T (recorded time), ``--valid-at T``
the events that happened by T (event time), or both. A time before the log's first record
or before the first event is warned about (stderr; ``warnings`` in JSON objects, a JSON
line ``{"warnings": [...]}`` on stderr beside JSON lists). Every query is audited in the log.
``subject`` and ``export`` take a person's real identifier; it is pseudonymised at once
and never written anywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.table import Table

from consumers import queries
from consumers.projection import RunStats
from consumers.queries import DisclosureFilter
from consumers.registry import projection_names
from consumers.replay import QueryTime
from consumers.views import ViewStore
from pdl.context import Add, open_ledger
from pdl.output import TIME_HELP, console, emit, err_console, parse_time, progress_bar
from pdl.service import Answering, QueryService, findings_summary



def _service(args: argparse.Namespace) -> QueryService:
    return QueryService(open_ledger(args))


def _catch_up(service: QueryService, transient: bool = True) -> RunStats:
    with progress_bar(transient=transient) as bar:
        task = bar.add_task("projecting", total=service.lag(), rate="")
        return service.catch_up(progress=lambda n: bar.advance(task, n))


def _when(args: argparse.Namespace) -> QueryTime:
    return QueryTime(as_of=args.as_of, valid_at=getattr(args, "valid_at", None))


@contextmanager
def _views(service: QueryService, args: argparse.Namespace,
           needs: list[str]) -> Iterator[Answering]:
    """The views a query reads: caught up now, or the projections it ``needs`` replayed
    from the log to ``--as-of`` / ``--valid-at``; warnings about the time go to stderr."""
    when = _when(args)
    if when.now:
        if not args.no_catch_up:
            _catch_up(service)
        yield Answering(service.views, when)
        return
    label = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in when.arguments().items() if v)
    with progress_bar(transient=True) as bar:
        task = bar.add_task(f"replaying ({label})",
                            total=service.records_until(when.as_of), rate="")
        with service.answering(when, lambda n: bar.advance(task, n), needs) as answer:
            bar.update(task, visible=False)
            warn(args, answer.warnings)
            yield answer


def _check_today(service: QueryService, args: argparse.Namespace, projection: str,
                 **names: Any) -> None:
    """Before a question about another time, check the names it filters on against
    today's views (caught up unless ``--no-catch-up``): a name recorded only later is
    known, and answered "none then"; a misspelt one is not found. Questions about now
    check against the views they read."""
    if _when(args).now:
        return
    if not args.no_catch_up:
        _catch_up(service)
    if service.views.position(projection, service.ledger.log.log_id):
        queries.check_names(service.views, **names)


def warn(args: argparse.Namespace, warnings: list[str]) -> None:
    """Warnings on stderr: a line each for people, one JSON object with ``--json``."""
    if not warnings:
        return
    if getattr(args, "json", False):
        err_console.file.write(json.dumps({"warnings": warnings}) + "\n")
        return
    for w in warnings:
        err_console.print(f"warning: {w}", style="yellow", markup=False, highlight=False)


def _as_of(args: argparse.Namespace) -> dict[str, str | None]:
    return dict(_when(args).arguments())


def _with_warnings(answer: dict[str, Any], found: Answering) -> dict[str, Any]:
    return {**answer, **found.when.arguments(), "warnings": found.warnings}


def _positive(raw: str) -> int:
    """An argparse type: a whole number, 1 or more."""
    value = _count(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _count(raw: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _split(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def _usage_error(message: str) -> int:
    err_console.print(f"error: {message}", style="bold red", markup=False)
    return 2


# --- projections ------------------------------------------------------------------------


def cmd_project(args: argparse.Namespace) -> int:
    with _service(args) as service:
        stats = _catch_up(service, transient=False)
        status = service.status()
        emit(args, {"records": stats.records, "applied": stats.applied, "bad": stats.bad,
                    "projections": status},
             lambda: console.print(f"projected {stats.records} record(s); "
                                   f"{len(status)} projection(s) up to date"))
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    if bool(args.name) == bool(args.all):
        return _usage_error("name one projection or give --all "
                            f"(projections: {', '.join(projection_names())})")
    names = None if args.all else [args.name]
    with _service(args) as service:
        total = service.ledger.log.count()
        with progress_bar() as bar:
            task = bar.add_task(f"rebuilding {args.name or 'all'}", total=total, rate="")
            stats = service.rebuild(names, progress=lambda n: bar.advance(task, n),
                                    workers=args.workers)
        emit(args, {"rebuilt": names or projection_names(), "records": stats.records,
                    "applied": stats.applied, "bad": stats.bad},
             lambda: console.print(f"rebuilt {', '.join(names or projection_names())} "
                                   f"from {stats.records} record(s)"))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with _service(args) as service:
        rows = service.status()
        clock = service.clock()

        def render() -> None:
            table = Table(title="projections")
            for col in ("projection", "position", "end of log", "lag", "quarantined"):
                table.add_column(col)
            for r in rows:
                lag = str(r["lag"])
                if r["lag"] and r["audit_lag"] == r["lag"]:
                    lag += " (audit records only)"
                elif r["audit_lag"]:
                    lag += f" ({r['audit_lag']} audit)"
                table.add_row(r["projection"], _pos(r["position"]), _pos(r["end"]), lag,
                              str(r["quarantined"]))
            console.print(table)
            quarantined = max((r["quarantined"] for r in rows), default=0)
            if quarantined:
                console.print(f"[yellow]{quarantined} record(s) of the log quarantined[/]: "
                              "see pdl quarantine list")
            if any(r["audit_lag"] for r in rows):
                _note("Audit records (ledger.queried: every query records itself, 6.2.1b) are "
                     "appended after the views were caught up; no view reads them, and the "
                     "next catch-up (any query, or pdl project) passes over them.")
            if clock:
                _note(f"events about people: {clock['events']}, happened "
                     f"{_day(clock['first_event_at'])} – {_day(clock['last_event_at'])}, "
                     f"recorded {_day(clock['first_recorded_at'])} – "
                     f"{_day(clock['last_recorded_at'])}")
                _note(f"late events (recorded over {clock['late_after_hours']} h after they "
                     f"happened): {clock['late_events']}"
                     + (f", the longest {clock['longest_delay_hours']} h after"
                        if clock["late_events"] else ""))

            split = max((r["split_people"] for r in rows), default=0)
            if split:
                console.print(f"[bold red]{split} person(s) found in more than one partition[/]"
                              " (a producer not keying by pseudonym with murmur2; their views "
                              "may be wrong, see docs/robustness.md):")
                for person in rows[0]["split_examples"]:
                    console.print(f"  {person['pseudonym']}: partitions "
                                  + ", ".join(map(str, person["partitions"])), highlight=False)

        for r in rows:
            if r["projection"] == "clock":
                r["summary"] = clock
        if args.check_lag:
            return _check_lag(args, rows, service.ledger.settings.data_dir)
        emit(args, rows, render)
    return 0


def _note(text: str) -> None:
    """A paragraph for people: wrapped at word boundaries to the terminal's width."""
    console.print(text, markup=False, highlight=False)


def _check_lag(args: argparse.Namespace, rows: list[dict[str, Any]], data_dir: Any) -> int:
    from pathlib import Path

    from pdl.health import check_lag

    state = Path(args.state_file) if args.state_file else Path(data_dir) / "lag-check.json"
    code, message = check_lag(rows, state, args.stalled_after)
    emit(args, {"healthy": code == 0, "message": message, "projections": rows},
         lambda: (console if code == 0 else err_console).print(message, highlight=False))
    return code


def _pos(position: dict[int, int]) -> str:
    return ", ".join(f"{p}:{o}" for p, o in sorted(position.items())) or "-"


# --- subject and export -----------------------------------------------------------------


def cmd_subject(args: argparse.Namespace) -> int:
    with _service(args) as service:
        pseudonym = service.pseudonym(args.id)
        service.audit("subject", {**_as_of(args)}, people=[pseudonym], reason=args.reason)
        with _views(service, args, ["datamap"]) as found:
            answer = _with_warnings(
                queries.subject_map(found.views, pseudonym, now=found.when.reference), found)
        emit(args, answer, lambda: render_data_map(answer))
    return 0


def _day(iso: str | None) -> str:
    return iso[:10] if iso else "?"


def render_data_map(answer: dict[str, Any]) -> None:
    s = answer.get("subject") or {}
    head = f"[bold]{answer['pseudonym']}[/]"
    if s:
        head += f"  {s.get('kind') or ''}, registered {_day(s.get('registered_at'))}"
        if s.get("closed_at"):
            head += f", closed {_day(s['closed_at'])} ({s.get('close_reason')})"
        if s.get("erased"):
            head += f", [red]erased (key destroyed) {_day(s['erased_at'])}[/]"
    console.print(head)
    table = Table(title="data map", show_lines=True)
    for col in ("category", "collected from, for", "used for (ground / consent)", "stores",
                "sent to"):
        table.add_column(col, overflow="ellipsis")
    for c in answer["categories"]:
        sources = "\n".join(
            f"{x['source']}{' ' + x['party'] if x['party'] else ''}: {x['purpose']}"
            f"{'' if x['stored'] else ' (not stored)'}" for x in c["sources"])
        uses = "\n".join(
            f"{u['purpose']} ({u['legal_ground'] or u['consent_id'] or '-'})" for u in c["uses"])
        stores = "\n".join(
            f"{x['store']} {x['location']}{' backup' if x['backup'] else ''}: "
            + (f"held, keep until {_day(x['retention_deadline']) if x['retention_deadline'] else 'closure'}"
               + (" [red]OVERDUE[/]" if x["overdue"] else "")
               if x["status"] == "held" else f"[yellow]{x['status']}[/] {_day(x['since'])}")
            for x in c["stores"])
        recipients = "\n".join(f"{r['recipient']} (since {_day(r['first'])})"
                               for r in c["recipients"])
        name = c["category"] + ("\n[red]sensitive[/]" if c["sensitive"] else "")
        table.add_row(name, sources, uses, stores, recipients)
    console.print(table)
    if answer["consents"]:
        consents = Table(title="consents")
        for col in ("consent", "purpose", "policy", "granted", "withdrawn", "in force"):
            consents.add_column(col)
        for c in answer["consents"]:
            consents.add_row(c["consent_id"], c["purpose"], c["policy_version"] or "",
                             _day(c["granted_at"]) if c["granted_at"] else "",
                             _day(c["withdrawn_at"]) if c["withdrawn_at"] else "",
                             "yes" if c["in_force"] else "no")
        console.print(consents)
    if answer["opt_outs"]:
        console.print("opted out of: " + ", ".join(answer["opt_outs"]))


def cmd_export(args: argparse.Namespace) -> int:
    as_json = args.json or args.format == "json"
    with _service(args) as service:
        pseudonym = service.pseudonym(args.id)
        service.audit("export", {"format": "json" if as_json else "text", **_as_of(args)},
                      people=[pseudonym], reason=args.reason, clear=True)
        with _views(service, args, ["datamap"]) as found:
            answer = {**service.export(found.views, args.id, found.when),
                      "warnings": found.warnings}
    if as_json:
        args.json = True
        emit(args, answer, lambda: None)
    else:
        render_export(answer)
    return 0


def _say(text: str, style: str | None = None) -> None:
    """Print text as it is (no markup), wrapping like plain text rather than folding."""
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def render_export(answer: dict[str, Any]) -> None:
    """The access-request answer for a person to read: the data map, then every event."""
    _say(f"Everything the ledger holds about {answer['subject']}", "bold")
    _say(f"(pseudonym {answer['pseudonym']}; data key {answer['key']}"
         + (f"; as the log stood at {answer['as_of']}" if answer["as_of"] else "")
         + (f"; events that happened by {answer['valid_at']}" if answer.get("valid_at") else "")
         + ")")
    if answer["data_map"]:
        render_data_map(answer["data_map"])
    late = answer.get("late_events") or 0
    _say(f"\n{len(answer['events'])} event(s) by the time they happened, oldest first"
         + (f"; {late} recorded late (marked 'late')" if late else "") + ":", "bold")
    for e in answer["events"]:
        data = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in e["data"].items())
        mark = (f"  [late: recorded {e['recorded_at']}, {e['recorded_after_hours']} h after]"
                if e.get("late") else "")
        _say(f"{e['time']}  {e['type']}  {data}{mark}")
        personal = e.get("personal")
        if isinstance(personal, dict):
            for key, value in personal.items():
                _say(f"    {key}: {value}")
        elif personal:
            _say(f"    {personal}")


# --- disclosures ------------------------------------------------------------------------


def cmd_disclosures(args: argparse.Namespace) -> int:
    filters = DisclosureFilter(args.recipient, args.clause, args.category, args.since,
                               args.until)
    with _service(args) as service:
        service.audit("disclosures", {**filters.as_arguments(),
                                      "summary": "yes" if args.summary else None,
                                      **_as_of(args)})
        if filters.recipient or filters.clause:
            _check_today(service, args, "disclosures", recipient=filters.recipient,
                         clause=filters.clause)
        with _views(service, args, ["disclosures"]) as found:
            views = found.views
            check = found.when.now
            if args.summary:
                summary = queries.disclosure_summary(views, filters, check=check)
                emit(args, summary, lambda: _render_disclosure_summary(summary))
            else:
                rows = queries.disclosures(views, filters.recipient, filters.clause,
                                           filters.category, filters.since, filters.until,
                                           limit=args.limit, check=check)
                emit(args, rows, lambda: _render_disclosures(rows))
    return 0


def _leaf(category: str) -> str:
    return category.rpartition(".")[2]


def _render_disclosure_summary(rows: list[dict[str, Any]]) -> None:
    table = Table(title="disclosure register by recipient (--json for names and details)")
    table.add_column("recipient", no_wrap=True)
    for col in ("kind", "disclosures", "people", "categories", "clauses", "cross-border",
                "period"):
        table.add_column(col, overflow="ellipsis")
    for r in rows:
        table.add_row(
            r["recipient"], (r["kind"] or "").replace("_", " "), str(r["disclosures"]),
            str(r["people"]), ", ".join(_leaf(c) for c in r["categories"]),
            ", ".join(f"{c} ×{n}" for c, n in r["clauses"].items()),
            ", ".join(f"{c} ×{n}" for c, n in r["cross_border_to"].items()),
            f"{_day(r['first'])} – {_day(r['last'])}")
    console.print(table)


def _render_disclosures(rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"{len(rows)} disclosure(s)")
    table.add_column("day", no_wrap=True)
    for col in ("person", "recipient", "categories", "clause", "purpose", "cross-border"):
        table.add_column(col, overflow="ellipsis")
    for r in rows:
        cb = r["cross_border"]
        table.add_row(_day(r["time"]), r["pseudonym"], r["recipient"],
                      ", ".join(_leaf(c) for c in r["categories"]),
                      r["clause"] or r["legal_ground"] or "[red]none[/]", r["purpose"],
                      cb["destination_country"] if cb else "")
    console.print(table)


# --- scope ------------------------------------------------------------------------------


def cmd_scope(args: argparse.Namespace) -> int:
    stores = _split(args.stores)
    categories = _split(args.categories)
    if args.incident is None:
        if not stores or args.since is None or args.until is None:
            return _usage_error("give --stores, --from and --until (or --incident ID)")
        if args.until < args.since:
            return _usage_error("--until is before --from")
    with _service(args) as service:
        service.audit("scope", {
            "incident": args.incident, "stores": ",".join(stores) or None,
            "from": args.since.isoformat() if args.since else None,
            "until": args.until.isoformat() if args.until else None,
            "categories": ",".join(categories) or None, **_as_of(args)})
        if stores and args.incident is None:
            _check_today(service, args, "holdings", stores=stores)
        with _views(service, args, ["holdings"]) as found:
            views = found.views
            # a table shows --show people; JSON lists everyone unless paged with --limit
            limit = args.limit if args.limit is not None or args.json else args.show
            if args.incident is not None:
                result = queries.incident_scope(views, args.incident, limit=limit,
                                                after=args.after)
            else:
                result = queries.scope(views, stores, args.since, args.until,
                                       categories or None, limit=limit, after=args.after,
                                       check=found.when.now)
        if args.json:  # everyone, maybe: written from the answer's columns, no dict each
            sys.stdout.write(result.to_json(indent=2, extra={
                **found.when.arguments(), "warnings": found.warnings}) + "\n")
            return 0
        answer = _with_warnings(result.as_dict(), found)
        emit(args, answer, lambda: render_scope(answer, args.show))
    return 0


def render_scope(answer: dict[str, Any], show: int = 10) -> None:
    c = answer["counts"]
    title = (f"breach scope: {', '.join(answer['stores'])} "
             f"from {answer['window_start']} until {answer['window_end']}")
    if answer["categories"]:
        title += f" ({', '.join(answer['categories'])})"
    console.print(f"[bold]{title}[/]" + (f" incident {answer['incident_id']}"
                                         if answer["incident_id"] else ""))
    counts = Table(title="for the regulator")
    counts.add_column("count")
    counts.add_column("value", justify="right")
    for key in ("people", "records", "reachable", "unreachable", "sensitive_records",
                "people_with_sensitive_data", "notified", "not_notified"):
        if key in c:
            counts.add_row(key.replace("_", " "), str(c[key]))
    for cat, n in c["sensitive_categories"].items():
        counts.add_row(f"people with {cat} (sensitive)", str(n))
    console.print(counts)
    people = answer["people"]
    if people:
        table = Table(title=f"affected people ({min(show, len(people))} of {c['people']};"
                      " --json for all)")
        table.add_column("person", no_wrap=True)
        for col in ("categories", "stores", "records", "reachable"):
            table.add_column(col, overflow="ellipsis")
        for p in people[:show]:
            table.add_row(p["pseudonym"], "\n".join(p["categories"]), ", ".join(p["stores"]),
                          str(p["records"]),
                          "yes" if p["reachable"] else f"[red]no[/]: {p['unreachable_reason']}")
        console.print(table)
    for name, where in answer.get("links", {}).items():
        console.print(f"{name.replace('_', ' ')}: {where}", markup=False)


# --- findings ---------------------------------------------------------------------------


def cmd_findings(args: argparse.Namespace) -> int:
    if args.explain:
        with _service(args) as service:
            explained = service.explain_findings()
        emit(args, explained, lambda: _render_explanation(explained))
        return 0
    with _service(args) as service:
        service.audit("findings", {"clause": args.clause, "summary": "yes" if args.summary
                                   else None, **_as_of(args)})
        with _views(service, args, ["findings"]) as answering:
            found = service.findings(answering.views, args.clause, answering.when,
                                     settings=service.ledger.settings, status=args.status)
            if args.status != "remedied":
                found += _case_clock_findings(service, answering.views, args)
    if args.summary:
        summary = findings_summary(found)
        emit(args, summary, lambda: _render_findings_summary(summary))
    else:
        emit(args, found, lambda: _render_findings(found))
    return 1 if any(f.get("status", "open") == "open" for f in found) else 0


def _render_explanation(explained: dict[str, Any]) -> None:
    table = Table(title="what the findings check (docs/findings.md: the clause map)")
    for col in ("clause", "a finding means", "rules"):
        table.add_column(col, overflow="ellipsis")
    for c in explained["clauses"]:
        table.add_row(c["clause"], c["checks"], "\n".join(c["rules"]))
    console.print(table)
    table = Table(title="thresholds: the project's figures, not the policy's")
    for col in ("variable", "value", "default", "clauses", "source"):
        table.add_column(col, overflow="ellipsis")
    for t in explained["thresholds"]:
        table.add_row(t["variable"], f"{t['value']} {t['unit']}", str(t["default"]),
                      ", ".join(t["clauses"]), t["source"])
    console.print(table)


def _case_clock_findings(service: QueryService, views: ViewStore,
                         args: argparse.Namespace) -> list[dict[str, Any]]:
    """The case files' overdue or late deadline clocks (``pdl incident status``)."""
    from datetime import UTC, datetime

    from cases.desk import CaseDesk, clock_findings

    if not service.ledger.settings.cases_file.exists():
        return []
    desk = CaseDesk(service.ledger)
    try:
        return clock_findings(views, desk, _when(args).reference or datetime.now(UTC),
                              args.clause)
    finally:
        desk.close()


def _render_findings_summary(rows: list[dict[str, Any]]) -> None:
    table = Table(title="findings by clause")
    for col in ("clause", "findings", "open", "people"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["clause"], str(r["findings"]), str(r["open"]), str(r["people"]))
    console.print(table if rows else "[green]no findings[/]")


def _render_findings(rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"{len(rows)} finding(s)")
    for col in ("clause", "person", "time", "position", "status", "explanation"):
        table.add_column(col, overflow="ellipsis")
    for f in rows:
        status = f.get("status", "open")
        if f.get("remedied_by"):
            status += f" by {f['remedied_by']}"
        table.add_row(str(f["clause"]), str(f.get("pseudonym") or ""),
                      str(f["time"])[:16].replace("T", " "),
                      f"{f['partition']}:{f['offset']}", status, str(f["explanation"]))
    console.print(table if rows else "[green]no findings[/]")


# --- serve ------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from pdl.api.server import serve

    with _service(args) as service:
        serve(service, args.host, args.port)
    return 0


# --- registration -----------------------------------------------------------------------


def _query_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--as-of", type=parse_time, metavar="TIME",
                   help="recorded time: answer from the log as it stood at TIME, i.e. what "
                        "the ledger knew then (ISO 8601 with a zone, or a plain date "
                        "2024-07-01 = midnight UTC)")
    p.add_argument("--valid-at", type=parse_time, metavar="TIME",
                   help="event time: the state of the world at TIME, from the events that "
                        "happened by then, whenever they were recorded; combine with "
                        "--as-of (same formats)")
    p.add_argument("--reason", metavar="TEXT",
                   help="why you ask (a ticket or reason): recorded in the audit event")
    p.add_argument("--no-catch-up", action="store_true",
                   help="answer from the views as they are, without projecting new events")
    return p


def register(sub: argparse._SubParsersAction, add: Add) -> None:  # type: ignore[type-arg]
    """Add the projection and query commands to ``pdl``."""
    add("project", cmd_project, "catch every projection up with the log")
    p = add("rebuild", cmd_rebuild, "rebuild views from position zero (NAME or --all)")
    p.add_argument("name", nargs="?", help="the projection to rebuild")
    p.add_argument("--all", action="store_true", help="rebuild every projection")
    p.add_argument("--workers", type=_positive, default=None, metavar="N",
                   help="rebuild groups of projections in N processes, then swap the views "
                        "in at once (views in a SQLite file; either log backend; default: "
                        "2 for --all on the SQLite log with 2+ cores, else 1)")
    p = add("status", cmd_status, "each projection's position and lag behind the log")
    p.add_argument("--check-lag", action="store_true",
                   help="exit 1 if there is lag and no position moved for --stalled-after "
                        "seconds (a consumer's healthcheck; remembers the last check)")
    p.add_argument("--stalled-after", type=float, default=60.0, metavar="SECONDS",
                   help="with --check-lag: how long lag may stand still (default 60)")
    p.add_argument("--state-file", metavar="FILE",
                   help="where --check-lag keeps its last observation "
                        "(default DATA_DIR/lag-check.json)")

    p = _query_options(add("subject", cmd_subject,
                           "the data map of one person (real identifier; audited)"))
    p.add_argument("id", help="the person's real identifier (pseudonymised, never stored)")

    p = _query_options(add("export", cmd_export,
                           "everything the ledger holds about one person, unsealed (7.1)"))
    p.add_argument("id", help="the person's real identifier")
    p.add_argument("--format", choices=("json", "text"), default="text",
                   help="text for the person to read (default), or json (same as --json)")

    p = _query_options(add("disclosures", cmd_disclosures,
                           "the disclosure register (section 5), filtered"))
    p.add_argument("--recipient", help="a recipient id (unknown: exit 66 with the nearest)")
    p.add_argument("--clause", help="5.1.1, or 5.1 for all of 5.1.x, or none "
                   "(unknown: exit 66 with the nearest)")
    p.add_argument("--category", help="a data category; its sub-categories match too")
    p.add_argument("--from", dest="since", type=parse_time, metavar="TIME",
                   help=f"disclosures at or after TIME, event time ({TIME_HELP})")
    p.add_argument("--until", type=parse_time, metavar="TIME",
                   help="disclosures at or before TIME, event time (same formats)")
    p.add_argument("--limit", type=int, help="at most this many disclosures")
    p.add_argument("--summary", action="store_true", help="one row per recipient")

    p = _query_options(add("scope", cmd_scope,
                           "who a breach affected (6.2.1): stores and a time window"))
    p.add_argument("--stores", help="comma-separated stores or systems (unknown: exit 66 "
                   "with the nearest)")
    p.add_argument("--from", dest="since", type=parse_time, metavar="TIME",
                   help=f"start of the exposure window, event time ({TIME_HELP})")
    p.add_argument("--until", type=parse_time, metavar="TIME",
                   help="end of the exposure window, event time (same formats)")
    p.add_argument("--categories", help="comma-separated categories exposed (default: all)")
    p.add_argument("--incident", help="an incident recorded in the log, instead of the above")
    p.add_argument("--show", type=int, default=10, help="people listed in the table")
    p.add_argument("--limit", type=_count, help="list at most this many people (in pseudonym "
                   "order; the counts still cover everyone)")
    p.add_argument("--after", metavar="PSEUDONYM",
                   help="list the people after this one (the 'next' of the previous page)")

    p = _query_options(add("findings", cmd_findings,
                           "broken promises found in the log (exit 1 if any is open)"))
    p.add_argument("--clause", help="only findings of this policy clause or its sub-clauses "
                   "(unknown: exit 66 with the nearest)")
    p.add_argument("--status", choices=("open", "remedied"),
                   help="only open findings, or only those a later event remedied (7.4: the "
                        "data erased or corrected)")
    p.add_argument("--summary", action="store_true", help="counts per clause")
    p.add_argument("--explain", action="store_true",
                   help="what each clause's findings mean, and the thresholds (72 h, 15 days, "
                        "2-day grace ...) with their settings and sources; queries nothing")

    p = add("serve", cmd_serve, "serve the queries as an authenticated HTTP API (FastAPI)")
    p.set_defaults(prepares_log=True)  # it may publish
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")

