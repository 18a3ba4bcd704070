"""``pdl quarantine list|show``: the log records the projections set aside.

A record that cannot be applied (it does not decode, breaks the contract, or a projection
fails on it) is quarantined in the view store with its reason, and every projection goes on
past it (``consumers.projection``). On Kafka it is also in the dead-letter topic. These
commands let an operator see what was set aside and why; ``show`` prints the stored record
(sealed: no clear personal value, unless a foreign producer wrote one) and is audited.
"""

from __future__ import annotations

import argparse
import base64
import json

from rich.table import Table

from consumers.registry import open_views
from ledger.errors import InvalidInput, NotFound
from pdl.context import Add, open_ledger
from pdl.output import console, emit, json_option



def _position(text: str) -> tuple[int, int]:
    """An argparse type: ``PARTITION:OFFSET`` (or ``OFFSET`` on partition 0)."""
    part, _, off = text.rpartition(":")
    try:
        position = (int(part or 0), int(off))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a position such as 0:42") from None
    if not (0 <= position[0] < 2**31 and 0 <= position[1] < 2**63):
        raise argparse.ArgumentTypeError(f"{text!r} is out of range")
    return position


def cmd_list(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 100_000:
        raise InvalidInput("--limit: must be from 1 to 100000")
    with open_ledger(args) as ledger:
        views = open_views(ledger.settings)
        try:
            rows = views.quarantined(ledger.log.log_id, limit=args.limit, after=args.after)
            total = views.quarantine_counts().get(ledger.log.log_id, 0)
        finally:
            views.close()

    def render() -> None:
        table = Table(title=f"{total} quarantined record(s) of {ledger.log.log_id}")
        for col in ("position", "event id", "type", "reason", "quarantined at"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(f"{r['partition']}:{r['offset']}", r["event_id"], r["event_type"],
                          r["reason"][:300], r["quarantined_at"][:19])
        console.print(table)

    emit(args, {"log": ledger.log.log_id, "total": total, "records": rows}, render)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    partition, offset = args.position
    with open_ledger(args) as ledger:
        views = open_views(ledger.settings)
        try:
            row = views.quarantined_record(partition, offset, ledger.log.log_id)
        finally:
            views.close()
        if row is None:
            raise NotFound(f"no quarantined record at {partition}:{offset} "
                           "(see pdl quarantine list)")
        ledger.audit("quarantine show", {"position": f"{partition}:{offset}"})
    payload: bytes = row.pop("payload") or b""
    try:
        row["payload"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        row["payload_base64"] = base64.b64encode(payload).decode()
    row["dead_lettered"] = bool(row["dead_lettered"])

    def render() -> None:
        for key, value in row.items():
            console.print(f"[bold]{key}[/]: ", end="")
            console.print(value if isinstance(value, str) else json.dumps(value),
                          markup=False, highlight=False)

    emit(args, row, render)
    return 0


def register(sub: argparse._SubParsersAction, add: Add) -> None:  # type: ignore[type-arg]
    p = add("quarantine", lambda a: 2, "log records the projections set aside, and why", False)
    q = p.add_subparsers(dest="quarantine_command", required=True)
    ls = q.add_parser("list", help="quarantined records, in log order")
    json_option(ls)
    ls.add_argument("--limit", type=int, default=100, metavar="N",
                    help="list at most N quarantined records (default 100)")
    ls.add_argument("--after", type=_position, metavar="PARTITION:OFFSET",
                    help="list those after this position")
    ls.set_defaults(handler=cmd_list)
    show = q.add_parser("show", help="one quarantined record with its reason and payload")
    show.add_argument("position", type=_position, metavar="PARTITION:OFFSET",
                      help="the quarantined record's position in the log")
    json_option(show)
    show.set_defaults(handler=cmd_show)
