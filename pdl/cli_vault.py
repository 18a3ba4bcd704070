"""``pdl vault``: the key vault's own commands (``rotate``: a new master key)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ledger.errors import ConfigurationError
from ledger.factory import open_vault
from ledger.settings import decode_key
from pdl.context import Add, settings_from
from pdl.output import emit, err_console, json_option


def cmd_vault_rotate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    source = args.new_key_file
    try:
        raw = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise ConfigurationError(f"--new-key-file: cannot read {source}: {exc.strerror}") from None
    new_master = decode_key(raw, "--new-key-file")
    old_master = settings.require_master_key()
    if new_master == old_master:
        raise ConfigurationError("--new-key-file holds the current LEDGER_MASTER_KEY: "
                                 "generate a new one with `pdl keygen`")
    vault = open_vault(settings, old_master)
    try:
        rewrapped = vault.rotate(new_master)
    finally:
        vault.close()
    emit(args, {"rewrapped": rewrapped, "vault": "postgresql" if settings.vault_url else "sqlite"},
         lambda: err_console.print(
             f"re-wrapped {rewrapped} data key(s) under the new master key. Set "
             "LEDGER_MASTER_KEY to it in every process now (the old one is refused), "
             "then retire the old key: backups taken before today open only with it.",
             highlight=False))
    return 0


def register(sub: argparse._SubParsersAction, add: Add) -> None:  # type: ignore[type-arg]
    p = add("vault", lambda a: 2, "the key vault of people's data keys", False)
    vault_sub = p.add_subparsers(dest="vault_command", required=True)
    r = vault_sub.add_parser(
        "rotate", help="re-wrap every live data key under a new master key (pseudonyms stay)")
    r.add_argument("--new-key-file", required=True, metavar="FILE",
                   help="file holding the new key (from `pdl keygen`), or - for stdin")
    json_option(r)
    r.set_defaults(handler=cmd_vault_rotate)
