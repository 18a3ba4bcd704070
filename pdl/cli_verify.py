"""``pdl verify``, ``pdl checkpoint``, ``pdl proof`` and ``pdl witness``: the verifiable log.

Exit codes: 0 every check passed; 1 a check failed (tampering, a fork, a bad signature);
65 bad input (a malformed proof request); 66 not found (no such person's events, no
checkpoint of the sizes asked for); 74 the log or its trees cannot be
read; 78 configuration (no verifier key, a pinned key that differs). See
docs/verification.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table

from ledger.checkpoint import (
    ALG_COSIGNATURE_V1,
    NoteError,
    Signer,
    Verifier,
    cosign,
    open_checkpoint,
)
from ledger.errors import ConfigurationError, InvalidInput, NotFound, PersistenceError
from ledger.factory import create_log
from ledger.merkle import ProofError, verify_consistency
from ledger.treelog import SQLiteTreeStore, verifier_from, write_atomic
from ledger.verification import (
    Report,
    TrustState,
    consistency_bundle,
    newest_checkpoint,
    open_tree_file,
    verify_log,
)
from pdl.cli_queries import _positive
from pdl.context import open_ledger, settings_from
from pdl.output import console, emit, err_console, progress_bar

Add = Callable[..., argparse.ArgumentParser]


# --- pdl verify -----------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.trust_file:
        settings = settings.with_(trust_path=Path(args.trust_file))
    with create_log(settings) as log:  # the log alone: no master key needed to verify
        if args.rebuild_tree:
            if not log.can_verify:
                raise ConfigurationError("--rebuild-tree is for the SQLite log; on Kafka, "
                                         "remove LEDGER_TREE_PATH's file and run `pdl checkpoint`")
            log.rebuild_tree()
        trust = TrustState.load(settings.trust_file)
        total = log.count()
        with progress_bar() as bar:
            task = bar.add_task("verifying", total=total, rate="")
            report = verify_log(log, settings, trust,
                                progress=lambda n: bar.update(task, completed=n),
                                workers=args.workers)
            bar.update(task, completed=report.records)
        if report.ok and not args.no_update:
            trust.save()
    emit(args, report.as_dict(), lambda: _render(report))
    return 0 if report.ok else 1


def _render(report: Report) -> None:
    table = Table(title=f"{report.backend} log, key {report.verifier.split('+')[0]}")
    for col in ("tree", "size", "root", "signed", "trusted", "result"):
        table.add_column(col, overflow="fold")
    for t in report.trees:
        table.add_row(str(t.tree), str(t.size), t.root[:16], str(t.signed_size),
                      "" if t.trusted_size is None else str(t.trusted_size),
                      "[green]ok[/]" if t.ok else "[red]FAILED[/]")
    console.print(table)
    for t in report.trees:
        for note in t.notes:
            console.print(f"tree {t.tree}: {note}", markup=False, highlight=False)
        for problem in t.problems:
            err_console.print(f"tree {t.tree}: FAILED: {problem}", markup=False,
                              highlight=False, style="red")
    if report.ok:
        console.print(f"[green]ok[/]: {report.records} record(s) decoded, every tree matches "
                      "its signed checkpoints")


# --- pdl checkpoint -------------------------------------------------------------------


def cmd_checkpoint(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with create_log(settings) as log:
        if log.can_verify:
            if log.tree is None or log.tree.options.signer is None:
                raise ConfigurationError("no signing key: set LEDGER_SIGNING_KEY or "
                                         "LEDGER_SIGNING_KEY_FILE (`pdl keygen --signing NAME`)")
            signed = log.seal()
            with log.lock:
                _, size, root = log.tree.stored_head(0)
            out = {"trees": {"0": {"size": size, "root": root.hex()}}, "signed": signed}
            emit(args, out, lambda: console.print(
                f"checkpoint of {size} record(s) " + ("signed" if signed else "already signed")))
            return 0
        from ledger.sealer import KafkaTreeSealer

        sealer = KafkaTreeSealer.from_settings(log, settings)
        if sealer.store.options.signer is None:
            sealer.close()
            raise ConfigurationError("no signing key: set LEDGER_SIGNING_KEY or "
                                     "LEDGER_SIGNING_KEY_FILE (`pdl keygen --signing NAME`)")
        try:
            while True:
                sizes = sealer.run_once()
                if not args.follow:
                    break
                time.sleep(args.interval)
        except KeyboardInterrupt:
            pass
        finally:
            sealer.close()
        emit(args, {"trees": {str(p): {"size": s} for p, s in sizes.items()}},
             lambda: console.print("sealed " + ", ".join(f"partition {p}: {s}"
                                                         for p, s in sizes.items())))
    return 0


# --- pdl proof ------------------------------------------------------------------------


def _tree_reader(log: Any, settings: Any) -> tuple[Any, SQLiteTreeStore]:
    """(connection to close, read-only tree store) for either backend."""
    if not log.can_verify:
        db = open_tree_file(settings.tree_file)
    else:
        db = log.snapshot()
    return db, SQLiteTreeStore.reader(db)


def cmd_proof(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    verifier = verifier_from(settings)
    if verifier is None:
        raise ConfigurationError("no verifier key: set LEDGER_VERIFIER_KEY or the signing key")
    with open_ledger(args) as ledger:
        if args.subject is not None and ledger.log.can_verify:
            ledger.log.seal()  # cover the person's newest events, when this process can sign
        db, store = _tree_reader(ledger.log, settings)
        try:
            if args.consistency:
                old_size, new_size = args.consistency
                if old_size > new_size or old_size < 1:
                    raise InvalidInput(f"--consistency: OLD ({old_size}) must be at least 1 and "
                                       f"at most NEW ({new_size})")
                tree = args.partition or 0
                old = newest_checkpoint(store, tree, verifier, old_size)
                new = newest_checkpoint(store, tree, verifier, new_size)
                bundle = consistency_bundle(store, tree, old, new, verifier)
                bundle["tree"] = tree
            else:
                bundle = _subject_bundle(ledger, store, verifier, args.subject)
        finally:
            db.close()
    text = json.dumps(bundle, indent=2) + "\n"
    if args.output and args.output != "-":
        write_atomic(Path(args.output), text)
        err_console.print(f"wrote a {bundle['kind']} proof bundle to {args.output}")
    else:
        sys.stdout.write(text)
    if args.subject is not None:
        ledger_audit(args, len(bundle.get("entries", [])))
    return 0


def ledger_audit(args: argparse.Namespace, count: int) -> None:
    with open_ledger(args) as ledger:
        ledger.audit("proof --subject", {"count": str(count)})


def _subject_bundle(ledger: Any, store: SQLiteTreeStore, verifier: Verifier,
                    subject_id: str) -> dict[str, Any]:
    from ledger.checkpoint import recorded_us
    from ledger.verification import inclusion_bundle

    pseudonym = ledger.pseudonymise(subject_id)
    records = list(ledger.log.read_about(pseudonym))
    if not records:
        raise NotFound("no events of this person are in the log")
    tree = records[0].partition
    rows = []
    for r in records:
        row = (r.offset, r.event_id, r.event_type, r.subject, recorded_us(r.recorded_at),
               r.payload)
        if not ledger.log.can_verify:
            got = store.db.execute("SELECT idx FROM merkle_offsets WHERE tree = ? AND offset = ?",
                                   (tree, r.offset)).fetchone()
            if got is None:
                raise PersistenceError(f"offset {r.offset} of partition {tree} is not sealed "
                                       "yet: run `pdl checkpoint`")
            index = int(got[0])
        else:
            index = r.offset - 1
        rows.append((index, row))
    checkpoint = newest_checkpoint(store, tree, verifier)
    bundle = inclusion_bundle(store, tree, rows, checkpoint, verifier)
    bundle["tree"] = tree
    return bundle


# --- pdl witness ----------------------------------------------------------------------


def cmd_witness(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    try:
        witness = Signer.parse(Path(args.key_file).read_text())
    except OSError as exc:
        raise ConfigurationError(f"--key-file {args.key_file}: {exc.strerror}") from None
    except NoteError as exc:
        raise ConfigurationError(f"--key-file {args.key_file}: {exc}") from None
    if witness.alg != ALG_COSIGNATURE_V1:
        raise ConfigurationError("--key-file must hold a witness key (`pdl keygen --witness NAME`)")
    state_path = Path(args.state)
    state = TrustState.load(state_path)
    out_dir = Path(args.output)
    results: list[dict[str, Any]] = []
    failed = False
    with create_log(settings) as log:
        verifier = state.verifier(verifier_from(settings))
        while True:
            db, store = _tree_reader(log, settings)
            try:
                for tree in store.trees():
                    result = _witness_tree(store, tree, verifier, witness, state, out_dir)
                    results.append(result)
                    failed = failed or not result["ok"]
            finally:
                db.close()
            state.save()
            if not args.follow or failed:
                break
            time.sleep(args.interval)

    def render() -> None:
        for r in results:
            if r["ok"]:
                console.print(f"tree {r['tree']}: cosigned size {r['size']}", markup=False)
            else:
                err_console.print(f"tree {r['tree']}: REFUSED: {r['problem']}", markup=False,
                                  style="red")

    emit(args, {"ok": not failed, "trees": results}, render)
    return 1 if failed else 0


def _witness_tree(store: SQLiteTreeStore, tree: int, verifier: Verifier, witness: Signer,
                  state: TrustState, out_dir: Path) -> dict[str, Any]:
    """Check the tree's newest checkpoint against the last one this witness cosigned, and
    cosign it if it is consistent."""
    import base64

    key = f"tree/{tree}"
    try:
        newest = newest_checkpoint(store, tree, verifier)
    except PersistenceError as exc:
        return {"tree": tree, "ok": False, "problem": str(exc)}
    seen = state.trusted(key)
    try:
        if seen is not None:
            if seen["origin"] != newest.checkpoint.origin:
                raise ProofError(f"origin {newest.checkpoint.origin!r} is not the one seen "
                                 f"before ({seen['origin']!r})")
            old_size, old_root = int(seen["size"]), base64.b64decode(seen["root"])
            if newest.size < old_size:
                raise ProofError(f"the log shrank from {old_size} to {newest.size} records")
            proof = store.hashes(tree).consistency_proof(old_size, newest.size) \
                if newest.size != old_size else []
            verify_consistency(old_size, newest.size, old_root, newest.root, proof)
    except ProofError as exc:
        return {"tree": tree, "ok": False, "size": newest.size,
                "problem": f"not consistent with the checkpoint cosigned before "
                           f"(a fork or rewritten history): {exc}"}
    cosigned = cosign(newest.note, witness)
    write_atomic(out_dir / str(tree) / f"{newest.size:015d}.checkpoint", str(cosigned))
    write_atomic(out_dir / str(tree) / "latest.checkpoint", str(cosigned))
    state.trust(key, open_checkpoint(str(cosigned), verifier))
    return {"tree": tree, "ok": True, "size": newest.size, "checkpoint": str(cosigned)}


# --- keys -----------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction, add: Add) -> None:  # type: ignore[type-arg]
    """Add the verifiable-log commands to ``pdl``."""
    p = add("verify", cmd_verify, "check the log against its Merkle trees and signed "
            "checkpoints, and that every record decodes (exit 1 if a check fails)")
    p.add_argument("--rebuild-tree", action="store_true",
                   help="throw the stored tree away and grow it again from the log first "
                        "(the signed checkpoints stay and must still match)")
    p.add_argument("--no-update", action="store_true",
                   help="do not move the trusted checkpoint forward")
    p.add_argument("--trust-file", help="the verifier's trust state (LEDGER_TRUST_FILE)")
    p.add_argument("--workers", type=_positive, default=None, metavar="N",
                   help="processes decoding and hashing the SQLite log (default: every CPU, "
                        "up to 4, from 50,000 records on; 1: this process alone)")

    p = add("checkpoint", cmd_checkpoint, "sign a checkpoint now (SQLite) or run the sealing "
            "consumer that grows and signs each Kafka partition's tree")
    p.add_argument("--follow", action="store_true", help="keep sealing new records (Kafka)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between passes")

    p = add("proof", cmd_proof, "a proof bundle for third parties "
            "(check it with tools/pdl-verify-proof.py; always JSON, --json is accepted)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--subject", help="inclusion proofs of this person's events "
                      "(real identifier; audited)")
    what.add_argument("--consistency", nargs=2, type=int, metavar=("OLD", "NEW"),
                      help="a consistency proof between two checkpoints (tree sizes)")
    p.add_argument("--partition", type=int, help="Kafka: the partition's tree (--consistency)")
    p.add_argument("--output", "-o", help="write the bundle here (0600) instead of stdout")

    p = add("witness", cmd_witness, "check that the log's newest checkpoints extend those "
            "this witness saw, and cosign them (C2SP tlog-cosignature)")
    p.add_argument("--key-file", required=True, help="the witness's key (`pdl keygen --witness`)")
    p.add_argument("--state", required=True, help="the witness's own state file")
    p.add_argument("--output", required=True, help="folder for cosigned checkpoints")
    p.add_argument("--follow", action="store_true",
                   help="keep watching and cosigning new checkpoints")
    p.add_argument("--interval", type=float, default=10.0,
                   help="seconds between looks with --follow (default 10)")
