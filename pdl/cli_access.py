"""``pdl principal``, ``pdl token`` and ``pdl access-log``: who may use the API, and who
read whose data.

A token is printed once, when issued, and stored only as a hash. The principals store is
``access.db`` in the data directory (0600); these commands need file access to it, as the
CLI's other commands need the log.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from typing import Any

from rich.table import Table

from ledger.principals import Role, SQLitePrincipalStore, new_token
from pdl.context import Add, settings_from
from pdl.output import TIME_HELP, console, emit, err_console, json_option, parse_time


def _store(args: argparse.Namespace) -> SQLitePrincipalStore:
    return SQLitePrincipalStore.for_data_dir(settings_from(args).data_dir)


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else
                        ", ".join(row[c]) if isinstance(row[c], list) else str(row[c])
                        for c in columns))
    console.print(table)


# --- principals -------------------------------------------------------------------------


def cmd_principal_add(args: argparse.Namespace) -> int:
    with _store(args) as store:
        info = store.add(args.name, args.role, args.source or ())
    emit(args, info.as_dict(), lambda: console.print(
        f"added {info.principal.name} ({info.principal.role.value}); "
        f"issue a token with: pdl token issue {info.principal.name}", markup=False))
    return 0


def cmd_principal_list(args: argparse.Namespace) -> int:
    with _store(args) as store:
        rows = [p.as_dict() for p in store.principals()]
    emit(args, rows, lambda: _table(f"{len(rows)} principal(s)", rows,
                                    ["name", "role", "sources", "created_at", "disabled_at"]))
    return 0


def cmd_principal_disable(args: argparse.Namespace) -> int:
    with _store(args) as store:
        info = store.disable(args.name)
    emit(args, info.as_dict(), lambda: console.print(
        f"disabled {info.principal.name}: its tokens no longer authenticate", markup=False))
    return 0


# --- tokens -----------------------------------------------------------------------------


def cmd_token_issue(args: argparse.Namespace) -> int:
    with _store(args) as store:
        issued = store.issue(args.principal, label=args.label,
                             ttl=timedelta(days=args.ttl_days) if args.ttl_days else None)
    out = {**issued.info.as_dict(), "token": issued.token}
    if args.json:
        emit(args, out, lambda: None)
    else:
        sys.stdout.write(issued.token + "\n")
        expires = issued.info.expires_at.isoformat() if issued.info.expires_at else "never"
        err_console.print(f"token {issued.info.id} for {args.principal}, expires {expires}. "
                          "It is shown only now: keep it in a secret store.", markup=False)
    return 0


def cmd_token_new(args: argparse.Namespace) -> int:
    token = new_token()[0]
    sys.stdout.write((json.dumps({"token": token}) if args.json else token) + "\n")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    with _store(args) as store:
        info = store.revoke(args.id)
    emit(args, info.as_dict(), lambda: console.print(f"revoked token {info.id}", markup=False))
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    with _store(args) as store:
        rows = [t.as_dict() for t in store.tokens(principal=args.principal)]
    emit(args, rows, lambda: _table(f"{len(rows)} token(s)", rows,
                                    ["id", "principal", "label", "state", "created_at",
                                     "expires_at", "revoked_at"]))
    return 0


# --- access log -------------------------------------------------------------------------


def cmd_access_log(args: argparse.Namespace) -> int:
    from consumers.access import access_log
    from pdl.cli_queries import _service, _views

    with _service(args) as service:
        person = args.person
        if args.subject:
            person = service.pseudonym(args.subject)
        service.audit("access-log", {
            "actor": args.actor, "from": args.since.isoformat() if args.since else None,
            "until": args.until.isoformat() if args.until else None,
            "clear": "true" if args.clear else None}, people=[person] if person else [],
            reason=args.reason)
        args.as_of = args.valid_at = None
        with _views(service, args, ["access"]) as found:
            rows = access_log(found.views, person=person, actor=args.actor, since=args.since,
                              until=args.until, clear=True if args.clear else None,
                              limit=args.limit)

    def render() -> None:
        shown = [{**r, "people": ", ".join(r["people"][:3])
                  + (f" (+{len(r['people']) - 3})" if len(r["people"]) > 3 else ""),
                  "clear": "yes" if r["clear"] else ""} for r in rows]
        _table(f"{len(rows)} read(s)", shown,
               ["time", "actor", "role", "query", "people", "clear", "reason"])

    emit(args, rows, render)
    return 0


def register(sub: argparse._SubParsersAction, add: Add) -> None:  # type: ignore[type-arg]
    """Add ``principal``, ``token`` and ``access-log`` to ``pdl``."""
    roles = [r.value for r in Role]

    p = add("principal", lambda a: 2, "who may use the HTTP API (principals and roles)", False)
    psub = p.add_subparsers(dest="principal_command", required=True)
    a = psub.add_parser("add", help="register a principal with one role")
    a.add_argument("name", help="a handle such as dpo@example.cn or svc-accounts")
    a.add_argument("--role", required=True, choices=roles, help="its one role")
    a.add_argument("--source", action="append", metavar="SOURCE",
                   help="publisher only: an event source it may publish (repeat)")
    json_option(a)
    a.set_defaults(handler=cmd_principal_add)
    a = psub.add_parser("list", help="every principal")
    json_option(a)
    a.set_defaults(handler=cmd_principal_list)
    a = psub.add_parser("disable", help="disable a principal (its tokens stop working)")
    a.add_argument("name", help="the principal's name")
    json_option(a)
    a.set_defaults(handler=cmd_principal_disable)

    p = add("token", lambda a: 2, "bearer tokens of the HTTP API", False)
    tsub = p.add_subparsers(dest="token_command", required=True)
    a = tsub.add_parser("issue", help="issue a token (printed once, stored hashed)")
    a.add_argument("principal", help="the principal the token is for")
    a.add_argument("--ttl-days", type=int, default=90,
                   help="days until it expires (default 90; 0: never)")
    a.add_argument("--label", help="what it is for")
    json_option(a)
    a.set_defaults(handler=cmd_token_issue)
    a = tsub.add_parser("revoke", help="revoke a token by id")
    a.add_argument("id", help="the token's id (from token list)")
    json_option(a)
    a.set_defaults(handler=cmd_token_revoke)
    a = tsub.add_parser("list", help="tokens, never their secrets")
    a.add_argument("--principal", help="only this principal's tokens")
    json_option(a)
    a.set_defaults(handler=cmd_token_list)
    a = tsub.add_parser("new", help="print a fresh token, stored nowhere: for "
                        "LEDGER_ADMIN_TOKEN_FILE (the API's first admin token)")
    json_option(a)
    a.set_defaults(handler=cmd_token_new)

    p = add("access-log", cmd_access_log, "who read whose data, when and why (audited)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--person", metavar="PSEUDONYM", help="reads of this person (pseudonym)")
    who.add_argument("--subject", metavar="ID", help="reads of this person (real identifier)")
    p.add_argument("--actor", help="reads by this principal or user")
    p.add_argument("--from", dest="since", type=parse_time, metavar="TIME",
                   help=f"reads at or after TIME ({TIME_HELP})")
    p.add_argument("--until", type=parse_time, metavar="TIME",
                   help="reads at or before TIME (same formats)")
    p.add_argument("--clear", action="store_true", help="only reads of clear values")
    p.add_argument("--reason", help="why you ask (recorded)")
    p.add_argument("--limit", type=int, default=1000, metavar="N",
                   help="at most N reads (default 1000)")
    p.add_argument("--no-catch-up", action="store_true",
                   help="answer from the views as they are")
