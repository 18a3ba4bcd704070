"""The ``pdl`` command's context: settings and the ledger, as the global options give them.

Shared by every CLI module (``pdl.cli``, ``pdl.cli_queries``, ``pdl.cli_consume``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.settings import Settings

if TYPE_CHECKING:
    from ledger.application import Ledger

#: A subcommand's function: the parsed arguments in, the exit code out.
Handler = Callable[[argparse.Namespace], int]
#: ``add(name, handler, help, json_flag=True)``: how a CLI module adds a subcommand.
Add = Callable[..., argparse.ArgumentParser]


def open_ledger(args: argparse.Namespace) -> Ledger:
    """The ledger of the settings and global options (loaded on use: ``pdl keygen`` stays
    quick)."""
    from ledger.application import Ledger

    return Ledger(settings_from(args))


def settings_from(args: argparse.Namespace) -> Settings:
    """``Settings.from_env`` with ``--data-dir`` and ``--demo`` applied. Only the commands
    that append events of their own (``prepares_log``: publish, erase, consume, serve)
    create missing Kafka topics; the others find them or say the log is empty."""
    settings = Settings.from_env()
    if getattr(args, "data_dir", None):
        settings = settings.with_(data_dir=Path(args.data_dir))
    if getattr(args, "demo", False):
        settings = settings.with_(demo=True)
    if not getattr(args, "prepares_log", False):
        settings = settings.with_(kafka=settings.kafka.with_(prepare_topics=False))
    return settings
