"""``pdl`` commands about the policy and its vocabulary: ``pdl fides export``.

``fides export`` writes the data map as Fides manifests (``consumers.fides``): a YAML
document with ``system``, ``dataset``, ``data_category`` and ``data_use`` lists, validated
by fideslang's own models before anything is written (``fides push`` / ``fides evaluate``
read it as it is). Like every query it is audited, and takes ``--as-of`` / ``--valid-at``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ledger.errors import InvalidInput
from pdl.cli_queries import _as_of, _query_options, _service, _views
from pdl.context import Add
from pdl.output import console, emit


def cmd_fides_export(args: argparse.Namespace) -> int:
    import yaml

    from consumers.fides import manifests, validate

    with _service(args) as service:
        service.audit("fides export", {**_as_of(args)})
        with _views(service, args, ["inventory", "datamap", "disclosures"]) as found:
            manifest = manifests(found.views)
    try:
        validate(manifest)
    except ValueError as exc:  # a bug of ours, not the user's: say what fideslang refused
        raise InvalidInput(f"the manifest does not validate with fideslang: {exc}") from None
    counts = {k: len(v) for k, v in manifest.items()}
    if args.output == "-":
        if args.json:
            sys.stdout.write(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
        else:
            sys.stdout.write(yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True))
        return 0
    path = Path(args.output)
    text = (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n" if path.suffix == ".json"
            else yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    emit(args, {"output": str(path), **counts}, lambda: console.print(
        f"wrote {counts['system']} system(s), {counts['dataset']} dataset(s), "
        f"{counts['data_category'] + counts['data_use']} taxonomy extension(s) to {path} "
        "(validated with fideslang)"))
    return 0


def register(sub: argparse._SubParsersAction, add: Add) -> None:  # type: ignore[type-arg]
    """Add ``pdl fides`` to ``pdl``."""
    p = add("fides", lambda a: 2, "the data map in the Fides privacy-engineering format",
            json_flag=False)
    fides_sub = p.add_subparsers(dest="fides_command", required=True, metavar="COMMAND")
    e = fides_sub.add_parser(
        "export", help="write fideslang System and Dataset manifests of the data map",
        description="One system per store and per using system with privacy declarations "
                    "from the uses and categories observed, third parties from the "
                    "disclosure register, a dataset per store, and the ledger's taxonomy "
                    "extensions; validated with fideslang before writing.")
    e.add_argument("--output", "-o", default="-", metavar="FILE",
                   help="where to write (YAML; JSON if FILE ends in .json; file mode 0600); "
                        "default - (stdout)")
    e.add_argument("--json", action="store_true",
                   help="JSON instead of YAML on stdout; with --output, a JSON summary")
    _query_options(e)
    e.set_defaults(handler=cmd_fides_export)
