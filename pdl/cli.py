"""``pdl``: the one command-line entry point, with subcommands.

Exit codes scripts can trust: 0 ok; 1 a check found problems (findings, tampering);
65 bad input (nothing appended); 66 not found; 74/75 storage failure (75: try again);
78 configuration; 2 usage.

Subcommand groups live in their own modules and register themselves through
``register(subparsers, add)``: ``pdl.cli`` (log), ``pdl.cli_queries`` (projections and
queries), ``pdl.cli_consume`` (the long-lived consumer), ``pdl.cli_access`` (principals, tokens,
the access log). A new group is a module
``pdl/cli_<area>.py`` added to ``GROUPS`` below. They share ``pdl.output`` (consoles,
``--json``, progress, times) and ``pdl.context`` (settings and the ledger), never this module.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from ledger.errors import ConfigurationError, InvalidInput, LedgerError
from ledger.settings import generate_key
from pdl import (
    cli_access,
    cli_cases,
    cli_consume,
    cli_quarantine,
    cli_queries,
    cli_vault,
    cli_verify,
)
from pdl.context import Handler, open_ledger
from pdl.output import console, emit, err_console, parse_time, progress_bar, report_invalid

#: The modules whose ``register(sub, add)`` adds their subcommands, in help order.
GROUPS = (cli_queries, cli_consume, cli_quarantine, cli_access, cli_cases, cli_vault,
          cli_verify)

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
    with open_ledger(args) as ledger:
        after = {0: args.after} if args.after is not None else None
        rows = []
        opened: list[str] = []  # pseudonyms of the people whose values were unsealed
        for record, event in ledger.events(after, until=args.as_of, subject=args.subject,
                                           limit=None if args.subject else args.limit):
            item = event.model_dump(mode="json", exclude_none=True)
            item["position"] = f"{record.partition}:{record.offset}"
            item["recorded_at"] = record.recorded_at.isoformat()
            if args.unseal:
                item["personal"] = ledger.unseal(event)
                item.pop("sealed", None)
                if event.sealed and event.subject:
                    opened.append(event.subject)
            rows.append(item)
            if args.subject and len(rows) >= args.limit:
                break
        if args.unseal:
            ledger.audit("log --unseal", {"count": str(len(rows))}, people=opened,
                         reason=args.reason, clear=True)

        def render() -> None:
            table = Table(title=f"{len(rows)} event(s)")
            for col in ("position", "time", "type", "subject", "data", "personal"):
                table.add_column(col, overflow="fold")
            for r in rows:
                personal = r.get("personal") if args.unseal else ("sealed" if r.get("sealed") else "")
                table.add_row(r["position"], r["time"], r["type"], r.get("subject") or "",
                              json.dumps(r["data"], ensure_ascii=False)[:160],
                              json.dumps(personal, ensure_ascii=False) if args.unseal else personal)
            console.print(table)

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
        sys.stdout.write(f"{signer}\n{signer.verifier}\n")
        return 0
    sys.stdout.write(generate_key() + "\n")
    return 0


def cmd_schema_export(args: argparse.Namespace) -> int:
    from schemas import EVENT_TYPES, json_schema

    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    for event_type in sorted(EVENT_TYPES):
        (out / f"{event_type}.schema.json").write_text(
            json.dumps(json_schema(event_type), indent=2, ensure_ascii=False) + "\n"
        )
    console.print(f"wrote {len(EVENT_TYPES)} JSON Schema file(s) to {out}")
    return 0


def cmd_schema_docs(args: argparse.Namespace) -> int:
    from schemas.docs import render_catalogue

    text = render_catalogue()
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
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
    err_console.print(f"simulated {n} event(s) for {args.people} people (seed {args.seed})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pdl", description="Personal-Data Ledger: record, prove and query personal-data use."
    )
    parser.add_argument("--data-dir", help="where the embedded log, vault and views live "
                        "(LEDGER_DATA_DIR; default .pdl-data)")
    parser.add_argument("--demo", action="store_true",
                        help="use a generated master key kept in the data dir (LEDGER_DEMO=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help: str, json_flag: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(handler=handler)
        return p

    p = add("publish", cmd_publish, "validate, seal and append JSON Lines events (FILE or -)")
    p.add_argument("file", help="JSON Lines file in the wire format, or - for stdin")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--results", action="store_true", help="report each event's position")

    p = add("log", cmd_log, "show events in the log (personal values stay sealed by default)")
    p.add_argument("--after", type=int, help="start after this position")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--subject", help="only this person's events (real identifier)")
    p.add_argument("--as-of", type=parse_time, help="the log as it stood at this time")
    p.add_argument("--unseal", action="store_true",
                   help="open sealed values (audited: whose values were opened, and why)")
    p.add_argument("--reason", metavar="TEXT",
                   help="why the values are opened (a ticket or reason; recorded)")

    p = add("erase", cmd_erase, "crypto-shred a person: destroy their key, record the erasure")
    p.add_argument("subject", help="the person's real identifier")
    p.add_argument("--reason", default="request")
    p.add_argument("--request-id")
    p.add_argument("--record-anyway", action="store_true",
                   help="record an erasure request for an id the ledger never saw "
                        "(else: exit 66, nothing recorded)")

    p = add("keygen", cmd_keygen, "print a new random master key for LEDGER_MASTER_KEY", False)
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--signing", metavar="NAME", help="instead: a checkpoint signing key "
                      "(LEDGER_SIGNING_KEY) and, on the next line, its verifier key")
    kind.add_argument("--witness", metavar="NAME", help="instead: a witness's cosigning key "
                      "and its verifier key")

    p = add("schema", lambda a: 2, "the event catalogue", False)
    schema_sub = p.add_subparsers(dest="schema_command", required=True)
    e = schema_sub.add_parser("export", help="write one JSON Schema per event type to DIR")
    e.add_argument("dir")
    e.set_defaults(handler=cmd_schema_export)
    d = schema_sub.add_parser("docs", help="print the event catalogue as Markdown")
    d.add_argument("--output", default="-")
    d.set_defaults(handler=cmd_schema_docs)

    p = add("simulate", cmd_simulate, "generate a realistic, deterministic workload", False)
    p.add_argument("--people", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--output", "-o", default="-")

    for group in GROUPS:
        group.register(sub, add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigurationError as exc:
        err_console.print(f"configuration error: {exc}", style="bold red", markup=False)
        return exc.exit_code
    except LedgerError as exc:
        retry = " (temporary: try again)" if exc.retriable else ""
        err_console.print(f"error: {exc}{retry}", style="bold red", markup=False)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``pdl simulate | head``): end quietly, as a shell pipeline
        # expects, and keep the interpreter's last flush of stdout from failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE


if __name__ == "__main__":
    raise SystemExit(main())
