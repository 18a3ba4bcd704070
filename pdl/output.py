"""What every ``pdl`` front end shares: the consoles, the progress bar, ``--json`` or a
table, and time parsing. Imported by the CLI modules and the HTTP module; imports no
``pdl`` module itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ledger.errors import InvalidInput
from schemas.events import MAX_TIME, MIN_TIME


def _width(stream: object) -> int | None:
    """Rich's width, except that piped tables get 160 columns instead of wrapping at 80."""
    isatty = getattr(stream, "isatty", None)
    if (isatty is not None and isatty()) or os.environ.get("COLUMNS"):
        return None
    return 160


console = Console(stderr=False, width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))


def progress_bar(transient: bool = False) -> Progress:
    """The progress bar used by every long-running command (written to stderr)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=transient,
        disable=not err_console.is_terminal,
    )


#: How every TIME option is described in help.
TIME_HELP = "ISO 8601 with a zone, or a plain date 2024-07-01 = midnight UTC"


def parse_time(text: str) -> datetime:
    """An ISO 8601 time with a zone, or a plain date (``2024-07-01``) meaning midnight UTC;
    a time of day without a zone is refused rather than guessed, and so is one outside the
    contract's range (``schemas.events.MIN_TIME``..``MAX_TIME``)."""
    if len(text) == 10 and text[4] == "-" and text[7] == "-":
        try:
            text = datetime.fromisoformat(text).replace(tzinfo=timezone.utc).isoformat()
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2024-07-01T08:00:00Z) or date "
            "(2024-07-01, midnight UTC)") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (add Z or +08:00)")
    # Compared before converting: a time near year 1 or 9999 may not convert to UTC at all.
    if not MIN_TIME <= value <= MAX_TIME:
        raise argparse.ArgumentTypeError(
            f"{text!r} is outside {MIN_TIME:%Y-%m-%dT%H:%M:%SZ}..{MAX_TIME:%Y-%m-%dT%H:%M:%SZ}"
            " (the times the contract accepts)")
    return value.astimezone(timezone.utc)


def cut(text: str, width: int) -> str:
    """``text`` at most ``width`` characters, a cut marked with "…"."""
    return text if len(text) <= width else text[:width - 1] + "…"


def json_option(p: argparse.ArgumentParser) -> None:
    """The ``--json`` flag of a command (``pdl.cli`` reports errors as JSON with it too)."""
    p.add_argument("--json", action="store_true",
                   help="machine-readable output (errors too, as {\"error\": ...} on stdout)")


def emit(args: argparse.Namespace, payload: Any, render: Callable[[], None]) -> None:
    """JSON for machines with ``--json``, else a human rendering."""
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, default=str, indent=2) + "\n")
    else:
        render()


def report_invalid(args: argparse.Namespace, exc: InvalidInput) -> None:
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps({
            "error": str(exc),
            "errors": [{"line": n, "field": f, "reason": r} for n, f, r in exc.errors],
        }) + "\n")
        return
    for n, field, reason in exc.errors[:100]:
        err_console.print(f"line {n}: {field}: {reason}", markup=False, highlight=False)
    if len(exc.errors) > 100:
        err_console.print(f"... and {len(exc.errors) - 100} more", markup=False)
    err_console.print(f"error: {exc}", style="bold red", markup=False)
