"""``pdl``: the one command-line entry point, with subcommands.

Exit codes scripts can trust: 0 ok; 1 a check found problems (findings, tampering);
65 bad input (nothing appended); 66 not found; 74/75 storage failure (75: try again);
78 configuration; 2 usage.

Subcommand groups live in their own modules and register themselves through
``register(subparsers, add)``: ``pdl.cli`` (log), ``pdl.cli_queries`` (projections and
queries), ``pdl.cli_consume`` (the long-lived consumer), ``pdl.cli_access`` (principals, tokens,
the access log), ``pdl.cli_policy`` (the policy's vocabulary: ``fides export``). A new group is a module
``pdl/cli_<area>.py`` added to ``GROUPS`` below. They share ``pdl.output`` (consoles,
``--json``, progress, times) and ``pdl.context`` (settings and the ledger), never this module.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

from rich.table import Table

from ledger.errors import ConfigurationError, InvalidInput, LedgerError
from ledger.settings import generate_key
from pdl import (
    cli_access,
    cli_cases,
    cli_consume,
    cli_policy,
    cli_quarantine,
    cli_queries,
    cli_vault,
    cli_verify,
)
from pdl.context import Handler, open_ledger
from pdl.output import (
    TIME_HELP,
    console,
    cut,
    emit,
    err_console,
    json_option,
    parse_time,
    progress_bar,
    report_invalid,
)

#: The modules whose ``register(sub, add)`` adds their subcommands, in help order.
GROUPS = (cli_queries, cli_consume, cli_quarantine, cli_access, cli_cases, cli_vault,
          cli_verify, cli_policy)

# --- log commands ---------------------------------------------------------------------


def cmd_publish(args: argparse.Namespace) -> int:
    with open_ledger(args) as ledger:
        total = None
        if args.file != "-":
            path = Path(args.file)
            if path.exists():
                with path.open("rb") as fh:
                    total = sum(1 for _ in fh)
        with progress_bar() as bar:
            task = bar.add_task("publishing", total=total, rate="")
            try:
                summary = ledger.publish_file(
                    args.file,
                    batch_size=args.batch_size,
                    progress=lambda n: bar.advance(task, n),
                    keep_results=args.results,
                )
            except InvalidInput as exc:
                report_invalid(args, exc)
                return exc.exit_code
        out: dict[str, Any] = summary.as_dict()
        if args.results:
            out["results"] = [
                {"id": r.event_id, "partition": r.partition, "offset": r.offset,
                 "duplicate": r.duplicate, "acknowledged": True}
                for r in summary.results
            ]
        emit(args, out, lambda: console.print(
            f"published {summary.appended} event(s) in {summary.batches} batch(es); "
            f"{summary.duplicates} duplicate(s) already in the log"
        ))
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    from consumers.replay import QueryTime, time_warnings

    filtered = args.subject is not None or args.valid_at is not None
    with open_ledger(args) as ledger:
        after = {0: args.after} if args.after is not None else None
        rows = []
        opened: list[str] = []  # pseudonyms of the people whose values were unsealed
        for record, event in ledger.events(after, until=args.as_of, subject=args.subject,
                                           limit=None if filtered else args.limit):
            if args.valid_at is not None and event.time > args.valid_at:
                continue
            item = event.model_dump(mode="json", exclude_none=True)
            item["position"] = f"{record.partition}:{record.offset}"
            item["recorded_at"] = record.recorded_at.isoformat()
            if args.unseal:
                item["personal"] = ledger.unseal(event)
                item.pop("sealed", None)
                if event.sealed and event.subject:
                    opened.append(event.subject)
            rows.append(item)
            if filtered and len(rows) >= args.limit:
                break
        if args.unseal:
            ledger.audit("log --unseal", {"count": str(len(rows))}, people=opened,
                         reason=args.reason, clear=True)
        warnings = time_warnings(ledger.log, QueryTime(as_of=args.as_of), None)
        if args.valid_at is not None and not rows and not warnings:
            warnings.append(f"no event recorded happened by --valid-at {args.valid_at.isoformat()}")

        def render() -> None:
            for w in warnings:
                err_console.print(f"warning: {w}", style="yellow", markup=False)
            table = Table(title=f"{len(rows)} event(s)")
            for col in ("position", "time", "type", "subject", "data", "personal"):
                table.add_column(col, overflow="ellipsis")
            for r in rows:
                personal = r.get("personal") if args.unseal else ("sealed" if r.get("sealed") else "")
                table.add_row(r["position"], r["time"], r["type"], r.get("subject") or "",
                              cut(json.dumps(r["data"], ensure_ascii=False), 160),
                              json.dumps(personal, ensure_ascii=False) if args.unseal else personal)
            console.print(table)

        if warnings and getattr(args, "json", False):
            err_console.file.write(json.dumps({"warnings": warnings}) + "\n")
        emit(args, rows, render)
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    with open_ledger(args) as ledger:
        result = ledger.erase(args.subject, reason=args.reason, request_id=args.request_id,
                              record_anyway=args.record_anyway)
        where = f"{result.partition}:{result.offset}"
        emit(args, {"erased": True, "already": result.already, "partition": result.partition,
                    "offset": result.offset},
             lambda: console.print(f"already erased (recorded at {where}); nothing appended"
                                   if result.already else
                                   f"key destroyed; erasure recorded at {where}"))
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    if args.signing or args.witness:
        from ledger.checkpoint import ALG_COSIGNATURE_V1, ALG_ED25519, NoteError, Signer

        try:
            signer = Signer.generate(args.signing or args.witness,
                                     ALG_COSIGNATURE_V1 if args.witness else ALG_ED25519)
        except NoteError as exc:
            raise InvalidInput(f"key name: {exc}", [(0, "name", str(exc))]) from None
        if args.json:
            sys.stdout.write(json.dumps({"key": str(signer), "verifier": str(signer.verifier)}) + "\n")
        else:
            sys.stdout.write(f"{signer}\n{signer.verifier}\n")
        return 0
    key = generate_key()
    if args.json:
        sys.stdout.write(json.dumps({"key": key}) + "\n")
    else:
        sys.stdout.write(key + "\n")
    return 0


def cmd_schema_export(args: argparse.Namespace) -> int:
    from schemas import EVENT_TYPES, json_schema

    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    for event_type in sorted(EVENT_TYPES):
        (out / f"{event_type}.schema.json").write_text(
            json.dumps(json_schema(event_type), indent=2, ensure_ascii=False) + "\n"
        )
    emit(args, {"written": len(EVENT_TYPES), "dir": str(out)},
         lambda: console.print(f"wrote {len(EVENT_TYPES)} JSON Schema file(s) to {out}"))
    return 0


def cmd_schema_docs(args: argparse.Namespace) -> int:
    from schemas.docs import render_catalogue

    text = render_catalogue()
    if args.output == "-":
        emit(args, {"markdown": text}, lambda: sys.stdout.write(text))
    else:
        Path(args.output).write_text(text)
        emit(args, {"written": args.output}, lambda: None)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from workload import simulate

    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        n = 0
        for line in simulate(people=args.people, seed=args.seed):
            out.write(line + "\n")
            n += 1
    finally:
        if out is not sys.stdout:
            out.close()
    summary = {"events": n, "people": args.people, "seed": args.seed, "output": args.output}
    if args.json and args.output != "-":
        sys.stdout.write(json.dumps(summary) + "\n")
    elif args.json:  # stdout carries the events
        err_console.file.write(json.dumps(summary) + "\n")
    else:
        err_console.print(f"simulated {n} event(s) for {args.people} people (seed {args.seed})")
    return 0


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as JSON on stdout when ``--json`` was given (exit 2)."""

    json_errors = False

    def error(self, message: str) -> NoReturn:
        if Parser.json_errors:
            sys.stdout.write(json.dumps({"error": message, "exit_code": 2, "usage":
                                         self.format_usage().strip()}) + "\n")
            raise SystemExit(2)
        super().error(message)


def _version() -> str:
    try:
        return metadata.version("personal-data-ledger")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="pdl", description="Personal-Data Ledger: record, prove and query personal-data use.",
        epilog="Exit codes: 0 ok, 1 a check found problems, 2 usage, 65 bad input, 66 not "
               "found, 74 storage failure, 75 temporary failure (retry), 78 configuration. "
               "Settings: LEDGER_* environment variables (docs/settings.md).",
    )
    parser.add_argument("--version", action="version", version=f"pdl {_version()}",
                        help="print the version and exit")
    parser.add_argument("--data-dir", help="where the embedded log, vault and views live "
                        "(LEDGER_DATA_DIR; default .pdl-data)")
    parser.add_argument("--demo", action="store_true",
                        help="use a generated master key kept in the data dir (LEDGER_DEMO=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help: str, json_flag: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        if json_flag:
            json_option(p)
        p.set_defaults(handler=handler)
        return p

    p = add("publish", cmd_publish, "validate, seal and append JSON Lines events (FILE or -)")
    p.set_defaults(prepares_log=True)
    p.add_argument("file", help="JSON Lines file in the wire format, or - for stdin")
    p.add_argument("--batch-size", type=int, default=1000, metavar="N",
                   help="events per append transaction (default 1000)")
    p.add_argument("--results", action="store_true", help="report each event's position")

    p = add("log", cmd_log, "show events in the log (personal values stay sealed by default)")
    p.add_argument("--after", type=int, metavar="OFFSET", help="start after this position")
    p.add_argument("--limit", type=int, default=50, metavar="N",
                   help="show at most N events (default 50)")
    p.add_argument("--subject", help="only this person's events (real identifier)")
    p.add_argument("--as-of", type=parse_time, metavar="TIME",
                   help=f"recorded time: the log as it stood at TIME ({TIME_HELP})")
    p.add_argument("--valid-at", type=parse_time, metavar="TIME",
                   help="event time: only events that happened by TIME (same formats)")
    p.add_argument("--unseal", action="store_true",
                   help="open sealed values (audited: whose values were opened, and why)")
    p.add_argument("--reason", metavar="TEXT",
                   help="why the values are opened (a ticket or reason; recorded)")

    p = add("erase", cmd_erase, "crypto-shred a person: destroy their key, record the erasure")
    p.set_defaults(prepares_log=True)
    p.add_argument("subject", help="the person's real identifier")
    p.add_argument("--reason", default="request",
                   help="why, recorded in the erasure event (default: request)")
    p.add_argument("--request-id", help="the rights request this erasure answers, if any")
    p.add_argument("--record-anyway", action="store_true",
                   help="record an erasure request for an id the ledger never saw "
                        "(else: exit 66, nothing recorded)")

    p = add("keygen", cmd_keygen, "print a new random master key for LEDGER_MASTER_KEY")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--signing", metavar="NAME", help="instead: a checkpoint signing key "
                      "(LEDGER_SIGNING_KEY) and, on the next line, its verifier key")
    kind.add_argument("--witness", metavar="NAME", help="instead: a witness's cosigning key "
                      "and its verifier key")

    p = add("schema", lambda a: 2, "the event catalogue", False)
    schema_sub = p.add_subparsers(dest="schema_command", required=True, metavar="COMMAND")
    e = schema_sub.add_parser("export", help="write one JSON Schema per event type to DIR")
    e.add_argument("dir", help="folder to write the *.schema.json files to (created)")
    json_option(e)
    e.set_defaults(handler=cmd_schema_export)
    d = schema_sub.add_parser("docs", help="print the event catalogue as Markdown")
    d.add_argument("--output", default="-", metavar="FILE",
                   help="write to FILE instead of stdout (docs/events.md is this output)")
    json_option(d)
    d.set_defaults(handler=cmd_schema_docs)

    p = add("simulate", cmd_simulate, "generate a realistic, deterministic workload")
    p.add_argument("--people", type=int, default=1000, metavar="N",
                   help="simulated people (default 1000)")
    p.add_argument("--seed", type=int, default=1, metavar="S",
                   help="random seed: the same seed gives the same events (default 1)")
    p.add_argument("--output", "-o", default="-", metavar="FILE",
                   help="JSON Lines file to write (default - : stdout)")

    for group in GROUPS:
        group.register(sub, add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    Parser.json_errors = "--json" in words
    try:
        args = parser.parse_args(words)
    finally:
        Parser.json_errors = False
    try:
        return int(args.handler(args))
    except ConfigurationError as exc:
        return _fail(args, f"configuration error: {exc}", exc)
    except LedgerError as exc:
        retry = " (temporary: try again)" if exc.retriable else ""
        return _fail(args, f"error: {exc}{retry}", exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``pdl simulate | head``): end quietly, as a shell pipeline
        # expects, and keep the interpreter's last flush of stdout from failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE


def _fail(args: argparse.Namespace, text: str, exc: LedgerError) -> int:
    """Report an error: one JSON object on stdout with ``--json``, else a line on stderr."""
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps({"error": str(exc), "type": type(exc).__name__,
                                     "exit_code": exc.exit_code,
                                     "retriable": exc.retriable}) + "\n")
    else:
        err_console.print(text, style="bold red", markup=False)
    return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
