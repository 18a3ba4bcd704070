"""Checking a log against its signed checkpoints, and proofs for third parties.

``verify`` recomputes every tree from the log itself (every record decoded and compared
with the columns it was stored with), checks every checkpoint's signature with the pinned
key, compares each signed root with the recomputed one, and checks a consistency proof
from the last trusted checkpoint to each newer one. The trust state (pinned verifier key,
origins, last trusted checkpoint per tree) lives in a file of the verifier's own (0600).

Failures are findings (``TreeReport.problems``), never exceptions: the caller exits 1 when
any tree failed; a log that cannot be read at all raises ``PersistenceError`` (exit 74).
"""

from __future__ import annotations

import base64
import ctypes
import json
import multiprocessing
import os
import signal
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.checkpoint import (
    NoteError,
    SignedCheckpoint,
    Verifier,
    encode_leaf,
    leaf_hashes,
    leaf_prefix,
    open_checkpoint,
    recorded_us,
)
from ledger.errors import ConfigurationError, NotFound, PersistenceError
from ledger.merkle import (
    HASH_SIZE,
    CompactRange,
    ProofError,
    TileWriter,
    verify_consistency,
)
from ledger.treelog import SQLiteTreeStore, write_atomic
from schemas.codec import decode

#: One record as verify reads it: (offset, event id, type, subject, recorded, payload); the
#: recorded time in µs, or as the log stores it with ``to_us`` to convert it.
Row = tuple[int, str, str, "str | None", Any, bytes]
MAX_PROBLEMS = 20


@dataclass
class TreeReport:
    """What verify found about one tree (SQLite: the log; Kafka: one partition)."""

    tree: int
    origin: str = ""
    size: int = 0
    root: str = ""
    checkpoints: int = 0
    signed_size: int = 0
    trusted_size: int | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    first_offset: int | None = None
    offset_gaps: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        elif len(self.problems) == MAX_PROBLEMS:
            self.problems.append("... more problems not listed")

    def as_dict(self) -> dict[str, Any]:
        return {"tree": self.tree, "origin": self.origin, "size": self.size, "root": self.root,
                "checkpoints_checked": self.checkpoints, "signed_size": self.signed_size,
                "trusted_size": self.trusted_size, "ok": self.ok, "problems": self.problems,
                "notes": self.notes, "first_offset": self.first_offset,
                "offset_gaps": self.offset_gaps}


@dataclass
class Report:
    """The whole log's verification: one ``TreeReport`` per tree."""

    backend: str
    trees: list[TreeReport]
    verifier: str
    records: int = 0

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.trees)

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "ok": self.ok, "records": self.records,
                "verifier_key": self.verifier, "trees": [t.as_dict() for t in self.trees]}


# --- trust state ----------------------------------------------------------------------


class TrustState:
    """The verifier's own memory: pinned key, and per tree the pinned origin and the last
    checkpoint it trusted. Kept in a JSON file, 0600; never in the log's folder's care."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data

    @classmethod
    def load(cls, path: Path) -> TrustState:
        try:
            data = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError) as exc:
            raise PersistenceError(f"cannot read the trust state {path}: {exc}") from None
        if not isinstance(data, dict):
            raise PersistenceError(f"the trust state {path} is not a JSON object")
        data.setdefault("version", 1)
        data.setdefault("trees", {})
        return cls(path, data)

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")

    def verifier(self, configured: Verifier | None) -> Verifier:
        """The pinned key; pinned now from ``configured`` on first use."""
        pinned = self.data.get("verifier_key")
        if pinned:
            key = Verifier.parse(pinned)
            if configured is not None and str(configured) != pinned:
                raise ConfigurationError(
                    f"LEDGER_VERIFIER_KEY (or the signing key's public half) is "
                    f"{configured.name}+{configured.key_id.hex()}, but the trust state "
                    f"{self.path} pinned {key.name}+{key.key_id.hex()}: remove the trust state "
                    "only if the log's key was rotated on purpose")
            return key
        if configured is None:
            raise ConfigurationError(
                "no verifier key: set LEDGER_VERIFIER_KEY to the log's public key "
                "(`pdl keygen --signing NAME` prints both halves), or LEDGER_SIGNING_KEY(_FILE)")
        self.data["verifier_key"] = str(configured)
        return configured

    def trusted(self, key: str) -> dict[str, Any] | None:
        got = self.data["trees"].get(key)
        return got if isinstance(got, dict) else None

    def trust(self, key: str, checkpoint: SignedCheckpoint) -> None:
        self.data["trees"][key] = {
            "origin": checkpoint.checkpoint.origin, "size": checkpoint.size,
            "root": base64.b64encode(checkpoint.root).decode(), "checkpoint": str(checkpoint)}


# --- verifying one tree ---------------------------------------------------------------


def _checkpoints(store: SQLiteTreeStore, tree: int, folder: Path | None,
                 verifier: Verifier | None, origin: str | None,
                 report: TreeReport) -> dict[int, SignedCheckpoint]:
    """Every checkpoint of the tree (store and files), signature-checked, by size."""
    if verifier is None:
        return {}
    found: list[tuple[str, str]] = [(f"stored checkpoint of size {size}", note)
                                    for size, note in store.checkpoints(tree)]
    if folder is not None and (folder / str(tree)).is_dir():
        for path in sorted((folder / str(tree)).glob("*.checkpoint")):
            try:
                found.append((f"checkpoint file {path}", path.read_text()))
            except OSError as exc:
                raise PersistenceError(f"cannot read {path}: {exc.strerror}") from None
    valid: dict[int, SignedCheckpoint] = {}
    for where, note in found:
        try:
            signed = open_checkpoint(note, verifier, origin)
        except NoteError as exc:
            report.problem(f"{where}: {exc}")
            continue
        other = valid.get(signed.size)
        if other is not None and other.root != signed.root:
            report.problem(f"two checkpoints of size {signed.size} signed with different roots "
                           "(a fork: two histories were signed)")
            continue
        valid[signed.size] = signed
    report.checkpoints = len(valid)
    return valid


def _fields_match(row: Row, report: TreeReport, place: Callable[[int, int], str],
                  index: int) -> bool:
    """Decode the record and compare it with the columns stored beside it (False: a
    problem was reported)."""
    offset, event_id, event_type, subject, _, payload = row
    try:
        event = decode(payload)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the finding
        reason = str(exc).splitlines()[0][:120]
        report.problem(f"the record at {place(index, offset)} does not decode: {reason}")
        return False
    if event.id == event_id and event.type == event_type and event.subject == subject:
        return True
    where = place(index, offset)
    if event.id != event_id:
        report.problem(f"the record at {where}: stored event id differs from the payload's")
    if event.type != event_type:
        report.problem(f"the record at {where}: stored event type {event_type!r} differs "
                       f"from the payload's {event.type!r}")
    if event.subject != subject:
        report.problem(f"the record at {where}: stored subject differs from the payload's")
    # Event time and schema version are read from the payload itself into the leaf, so
    # they cannot disagree with it; the payload's hash covers them.
    return False


def verify_tree(
    tree: int,
    rows: Iterable[Row],
    store: SQLiteTreeStore,
    verifier: Verifier | None,
    trust: TrustState | None,
    *,
    trust_key: str,
    folder: Path | None,
    where: Callable[[int, int], str],
    check_offsets: bool = False,
    decode_records: bool = True,
    to_us: Callable[[Any], int] | None = None,
    progress: Callable[[int], None] | None = None,
    hashed: Iterable[HashedRange] | None = None,
) -> TreeReport:
    """Verify one tree: its records (``rows``, in log order), checkpoints and trust.

    ``hashed`` (SQLite only; ``rows`` is then ignored): the records already decoded and
    leaf-hashed elsewhere (``_hash_range`` in worker processes), range after range in
    position order; the findings are the same as from ``rows``."""
    origin, stored_size, stored_root = store.stored_head(tree)
    trusted = trust.trusted(trust_key) if trust is not None else None
    pinned_origin = trusted["origin"] if trusted else None
    report = TreeReport(tree, origin=pinned_origin or origin)
    if pinned_origin and pinned_origin != origin:
        report.problem(f"the log's tree names origin {origin!r}, the pinned origin is "
                       f"{pinned_origin!r}")
    valid = _checkpoints(store, tree, folder, verifier, report.origin, report)
    trusted_size = int(trusted["size"]) if trusted else 0
    report.trusted_size = trusted_size if trusted else None
    wanted = set(valid) | ({trusted_size} if trusted_size else set())
    roots: dict[int, bytes] = {}
    prefix = leaf_prefix(report.origin, tree)
    cr = CompactRange()
    expected_offsets: Iterator[tuple[int, int]] = iter(store.offsets(tree)) if check_offsets \
        else iter(())
    next_expected = next(expected_offsets, None)
    tiles = store.hashes(tree)
    first_changed: int | None = None
    previous_offset: int | None = None
    moved = 0
    index = 0  # the leaf index of the first row of ``chunk``
    chunk: list[Row] = []
    acc = TileWriter(cr, {})

    def flush() -> None:
        """Hash the chunk's leaves and add them."""
        if not chunk:
            return
        add(leaf_hashes(prefix, index, [r[1:4] + r[5:] for r in chunk],
                        [r[0] for r in chunk],
                        [r[4] for r in chunk] if to_us is None
                        else list(map(to_us, [r[4] for r in chunk]))))
        chunk.clear()

    def add(hashes: list[bytes]) -> None:
        """Compare leaf hashes from ``index`` on with the stored tiles, grow the tree,
        noting its root at each size a checkpoint or the trust state names."""
        nonlocal index, first_changed
        if first_changed is None and index < stored_size:
            got = hashes[: stored_size - index]
            stored = tiles.stored(0, index, len(got))
            if stored != got:
                first_changed = index + next(
                    (k for k, (a, b) in enumerate(zip(got, stored)) if a != b), len(stored))
        start = 0
        for size in sorted(w for w in wanted if index < w <= index + len(hashes)):
            acc.extend(hashes[start : size - index])
            start = size - index
            roots[size] = cr.root()
        acc.extend(hashes[start:])
        acc.take_changes()  # the tiles themselves are not kept
        index += len(hashes)
        if progress is not None:
            progress(index)

    for part in hashed or ():
        for first, count, blob, problems in part:
            if report.first_offset is None:
                report.first_offset = first
            if first != index + 1:
                report.problem(f"position {index + 1} is missing from the log (next is "
                               f"{first})")
                index = first - 1
            for text in problems:
                report.problem(text)
            add([blob[i : i + HASH_SIZE] for i in range(0, count * HASH_SIZE, HASH_SIZE)])
    for row in () if hashed is not None else rows:
        offset = row[0]
        if previous_offset is None:
            report.first_offset = offset
        if check_offsets:
            if previous_offset is not None and offset != previous_offset + 1:
                report.offset_gaps += 1
            if next_expected is not None:
                if next_expected[1] != offset:
                    moved += 1
                    if moved == 1:
                        leaf = index + len(chunk)
                        report.problem(
                            f"leaf {leaf} was sealed at offset {next_expected[1]}, the log has "
                            f"it at offset {offset}: records were removed or inserted"
                            + (" (the log now starts later: log start offset > 0)"
                               if leaf == 0 and offset > next_expected[1] else ""))
                next_expected = next(expected_offsets, None)
        elif offset != index + len(chunk) + 1:
            flush()
            report.problem(f"position {index + 1} is missing from the log (next is {offset})")
            index = offset - 1  # keep going; every later root will differ anyway
        previous_offset = offset
        if decode_records:
            _fields_match(row, report, where, index + len(chunk))
        chunk.append(row)
        if len(chunk) >= 2000:
            flush()
    flush()
    report.size = index
    report.root = cr.root().hex()
    if moved > 1:
        report.problem(f"{moved} leaves in all are at other offsets than when they were sealed")
    if check_offsets and report.first_offset and not store.checkpoints(tree):
        report.notes.append(f"the partition starts at offset {report.first_offset} "
                            "(log start offset > 0)")
    if first_changed is not None:
        report.notes.append(f"the first record that differs from the stored tree is leaf "
                            f"{first_changed} ({where(first_changed, first_changed + 1)})")
    if stored_size != index or (index and stored_root != cr.root()):
        report.problem(f"the stored tree (size {stored_size}) does not match the log's "
                       f"{index} records" + (f"; first difference at leaf {first_changed}"
                                              if first_changed is not None else ""))
    for size, signed in sorted(valid.items()):
        if size > index:
            report.problem(f"a checkpoint signed for {size} records, but the log holds only "
                           f"{index}: records were removed from the end")
        elif roots.get(size) != signed.root:
            report.problem(f"the log's first {size} records do not match the checkpoint signed "
                           "for them: records were changed, removed or reordered")
    newest = max(valid) if valid else 0
    report.signed_size = newest
    if index and not valid and verifier is not None:
        if trusted:
            report.problem(f"no checkpoint signed by the pinned key {verifier.name} covers "
                           "this log")
        else:  # a young log whose writer has not signed yet; nothing was trusted before
            report.notes.append(f"no signed checkpoint yet: the {index} record(s) are not "
                                "covered by a signature (`pdl checkpoint` signs one)")
    if trusted:
        troot = base64.b64decode(trusted["root"])
        if newest < trusted_size:
            report.problem(f"the newest signed checkpoint (size {newest}) is older than the "
                           f"trusted one (size {trusted_size}): the log was truncated or "
                           "rolled back")
        if index < trusted_size:
            report.problem(f"the log holds {index} records, fewer than the {trusted_size} of "
                           "the trusted checkpoint: records were removed")
        elif roots.get(trusted_size) != troot:
            report.problem(f"the log's first {trusted_size} records no longer match the trusted "
                           "checkpoint: history was rewritten")
        source = store.hashes(tree)
        for size, signed in sorted(valid.items()):
            if size < trusted_size:
                continue
            try:
                proof = source.consistency_proof(trusted_size, size) if size <= stored_size \
                    else []
                if trusted_size == size:
                    verify_consistency(size, size, troot, signed.root, [])
                else:
                    verify_consistency(trusted_size, size, troot, signed.root, proof)
            except ProofError as exc:
                report.problem(f"checkpoint of size {size} is not consistent with the trusted "
                               f"checkpoint of size {trusted_size}: {exc}")
    if index > newest and valid:
        report.notes.append(f"{index - newest} record(s) after the newest signed checkpoint "
                            "are not covered by a signature yet")
    if report.ok and valid and trust is not None:
        trust.trust(trust_key, valid[newest])
        report.trusted_size = newest
    return report


# --- the SQLite log -------------------------------------------------------------------


#: The casts keep a column rewritten to another type from stopping verify: the leaf then
#: differs, which is the finding.
_SELECT_ROWS = ("SELECT position, CAST(event_id AS TEXT), CAST(event_type AS TEXT), "
                "CAST(subject AS TEXT), CAST(recorded_at AS REAL), CAST(payload AS BLOB) "
                "FROM events")
#: From this many records on, ``verify_sqlite`` decodes and hashes in worker processes.
PARALLEL_MIN_RECORDS = 50_000
#: Positions per task of a worker process.
PARALLEL_CHUNK = 25_000


def sqlite_rows(db: sqlite3.Connection) -> Iterator[Row]:
    """The log's rows in order, as verify reads them (recorded time still the stored float:
    ``verify_tree`` converts a chunk at a time)."""
    try:
        yield from db.execute(_SELECT_ROWS + " ORDER BY position")
    except sqlite3.Error as exc:
        raise PersistenceError(f"cannot read the log: {exc}") from exc


def _sqlite_place(index: int, offset: int) -> str:
    return f"position {offset}"


#: What a worker gives back for one range of positions: per run of consecutive positions
#: (first position, count, the leaf hashes joined, the decoding problems in it).
HashedRange = list[tuple[int, int, bytes, list[str]]]


def _hash_range(path: str, prefix: bytes, lo: int, hi: int, decode_records: bool
                ) -> HashedRange:
    """Decode (``decode_records``) and leaf-hash the records at positions ``lo``..``hi``
    of the log at ``path``: the work of ``verify_tree``'s loop, for one worker process.
    Leaf ``i`` is position ``i + 1``, as in ``verify_tree`` (after a gap too)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            rows = db.execute(_SELECT_ROWS + " WHERE position BETWEEN ? AND ? "
                              "ORDER BY position", (lo, hi)).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise PersistenceError(f"cannot read the log: {exc}") from None
    out: HashedRange = []
    positions = [r[0] for r in rows]
    starts = [0] if rows and positions == list(range(positions[0], positions[0] + len(rows))) \
        else [k for k in range(len(rows)) if k == 0 or positions[k] != positions[k - 1] + 1]
    report = TreeReport(0)
    for n, start in enumerate(starts):
        run = rows[start : starts[n + 1] if n + 1 < len(starts) else len(rows)]
        problems: list[str] = []
        if decode_records:
            for row in run:
                if not _fields_match(row, report, _sqlite_place, 0):
                    problems.extend(report.problems)
                    report.problems.clear()
        hashes = leaf_hashes(prefix, run[0][0] - 1, [r[1:4] + r[5:] for r in run],
                             positions[start : start + len(run)],
                             [recorded_us(r[4]) for r in run])
        out.append((run[0][0], len(run), b"".join(hashes), problems[: MAX_PROBLEMS + 1]))
    return out


def _worker_start(parent: int) -> None:
    """A verify worker dies with the process that started it (Linux: PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)


def _hashed_in_workers(path: str, prefix: bytes, lo: int, hi: int, workers: int,
                       decode_records: bool, chunk: int) -> Iterator[HashedRange]:
    """``_hash_range`` over ``lo``..``hi`` in ``workers`` processes, results in order."""
    # fork (Linux), as Ledger.publish_lines' workers: they start in milliseconds with the
    # codec loaded (a spawned one spends ~0.7 s CPU importing it), open the log on a
    # connection of their own, never touch the parent's, and leave by os._exit.
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux")
                                          else "spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_start,
                             initargs=(os.getpid(),)) as pool:
        starts = range(lo, hi + 1, chunk)
        futures = [pool.submit(_hash_range, path, prefix, a, min(hi, a + chunk - 1),
                               decode_records) for a in starts]
        try:
            for future in futures:
                yield future.result()
        except BrokenProcessPool as exc:
            raise PersistenceError(f"a verify worker process died: {exc}") from None
        finally:
            for future in futures:
                future.cancel()


def verify_sqlite(log: Any, verifier: Verifier | None, trust: TrustState | None, *,
                  folder: Path | None, decode_records: bool = True,
                  progress: Callable[[int], None] | None = None,
                  workers: int | None = None, chunk: int = PARALLEL_CHUNK) -> Report:
    """Verify the SQLite log (``SQLiteEventLog``) in one snapshot of its file.

    With ``workers`` > 1 (by default: every CPU, up to 4, for a log of at least
    ``PARALLEL_MIN_RECORDS``) the records are decoded and leaf-hashed in that many
    processes, each reading its own ranges of positions (the log is append-only: the
    rows up to the snapshot's last position are the same in every reader's snapshot);
    this process grows the tree from their leaf hashes and checks it."""
    snapshot = log.snapshot()
    try:
        store = SQLiteTreeStore.reader(snapshot)
        hashed = None
        lo, hi, count = snapshot.execute(
            "SELECT min(position), max(position), count(*) FROM events").fetchone()
        if workers is None:
            workers = min(os.cpu_count() or 1, 4) if count >= PARALLEL_MIN_RECORDS else 1
        if workers > 1 and count and str(log.path) != ":memory:":
            origin = store.stored_head(0)[0]
            trusted = trust.trusted("sqlite/0") if trust is not None else None
            prefix = leaf_prefix(trusted["origin"] if trusted else origin, 0)
            hashed = _hashed_in_workers(str(log.path), prefix, lo, hi, workers,
                                        decode_records, chunk)
        report = verify_tree(0, sqlite_rows(snapshot), store, verifier, trust,
                             trust_key="sqlite/0", folder=folder,
                             where=_sqlite_place, to_us=recorded_us,
                             decode_records=decode_records, progress=progress,
                             hashed=hashed)
    except sqlite3.Error as exc:
        raise PersistenceError(f"cannot read the log's tree: {exc}") from exc
    finally:
        snapshot.close()
    return Report("sqlite", [report], str(verifier) if verifier else "", report.size)


def kafka_rows(log: Any, partition: int) -> Iterator[Row]:
    for r in log.read(partitions=[partition]):
        if r.partition == partition:
            yield (r.offset, r.event_id, r.event_type, r.subject, recorded_us(r.recorded_at),
                   r.payload)


def verify_kafka(log: Any, store: SQLiteTreeStore, verifier: Verifier | None,
                 trust: TrustState | None, *, folder: Path | None,
                 progress: Callable[[int], None] | None = None) -> Report:
    """Verify each partition of a Kafka topic against the trees its sealing consumer kept."""
    # The trees name the topic they sealed: a copy of it presented in its place (edited
    # segment files) is checked against the original's trust state and files.
    row = store.db.execute("SELECT value FROM merkle_meta WHERE key = 'topic'").fetchone()
    topic = str(row[0]) if row else log.topic
    reports = []
    done = 0
    partitions = sorted(set(log.partitions()) | set(store.trees()))
    for p in partitions:
        def step(n: int, base: int = done) -> None:
            if progress is not None:
                progress(base + n)

        report = verify_tree(p, kafka_rows(log, p), store, verifier, trust,
                             trust_key=f"kafka/{topic}/{p}", folder=folder,
                             where=lambda i, o, p=p: f"partition {p} offset {o}",
                             check_offsets=True, progress=step)
        done += report.size
        reports.append(report)
    return Report("kafka", reports, str(verifier) if verifier else "", done)


def hash_bytes(items: Iterable[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in items]


def unhash(items: Iterable[str]) -> list[bytes]:
    out = [base64.b64decode(h) for h in items]
    if any(len(h) != HASH_SIZE for h in out):
        raise ProofError("a proof hash is not 32 bytes")
    return out


def consistency_bundle(store: SQLiteTreeStore, tree: int, old: SignedCheckpoint,
                       new: SignedCheckpoint, verifier: Verifier) -> dict[str, Any]:
    """A consistency proof between two signed checkpoints, as a self-contained bundle."""
    proof = store.hashes(tree).consistency_proof(old.size, new.size)
    return {"format": "pdl-proof/v1", "kind": "consistency", "verifier_key": str(verifier),
            "old_checkpoint": str(old), "new_checkpoint": str(new),
            "proof": hash_bytes(proof)}


def open_tree_file(path: Path) -> sqlite3.Connection:
    """The sealing consumer's tree file (Kafka), opened for reading in one snapshot."""
    if not path.exists():
        raise PersistenceError(f"no Merkle trees at {path}: run `pdl checkpoint` (the sealing "
                               "consumer) against the topic first")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30)
        db.execute("BEGIN")
    except sqlite3.Error as exc:
        raise PersistenceError(f"cannot open the Merkle trees at {path}: {exc}") from exc
    return db


def verify_log(log: Any, settings: Any, trust: TrustState | None,
               progress: Callable[[int], None] | None = None,
               workers: int | None = None) -> Report:
    """Verify either backend's log with the settings' keys and folders (``workers``: see
    ``verify_sqlite``; a Kafka topic is read by this process)."""
    from ledger.treelog import verifier_from

    configured = verifier_from(settings)
    verifier = trust.verifier(configured) if trust is not None else configured
    if not log.can_verify:  # a log without its own tree: the sealing consumer keeps them
        db = open_tree_file(settings.tree_file)
        try:
            store = SQLiteTreeStore.reader(db)
            row = db.execute("SELECT value FROM merkle_meta WHERE key = 'topic'").fetchone()
            sealed_topic = str(row[0]) if row else log.topic
            return verify_kafka(log, store, verifier, trust,
                                folder=kafka_folder(settings, sealed_topic), progress=progress)
        except sqlite3.Error as exc:
            raise PersistenceError(f"cannot read the Merkle trees: {exc}") from exc
        finally:
            db.close()
    if getattr(log, "tree", None) is None:
        raise PersistenceError("this log keeps no Merkle tree (opened with merkle=False)")
    return verify_sqlite(log, verifier, trust, folder=settings.checkpoint_folder,
                         progress=progress, workers=workers)


def kafka_folder(settings: Any, topic: str) -> Path:
    """Where a topic's checkpoint files go: a folder per topic under the checkpoint folder."""
    return Path(settings.checkpoint_folder) / f"kafka-{topic}"


def inclusion_bundle(store: SQLiteTreeStore, tree: int, rows: Iterable[tuple[int, Row]],
                     checkpoint: SignedCheckpoint, verifier: Verifier) -> dict[str, Any]:
    """Inclusion proofs of ``rows`` ((leaf index, row) pairs) under one signed checkpoint,
    with each record's leaf and sealed payload: what ``tools/pdl-verify-proof.py`` checks."""
    origin = checkpoint.checkpoint.origin
    prefix = leaf_prefix(origin, tree)
    source = store.hashes(tree)
    entries = []
    for index, row in rows:
        if index >= checkpoint.size:
            raise PersistenceError(f"leaf {index} is not covered by the checkpoint of size "
                                   f"{checkpoint.size}: sign a newer one (`pdl checkpoint`)")
        leaf = encode_leaf(prefix, index, *row)
        entries.append({
            "leaf_index": index,
            "leaf": base64.b64encode(leaf).decode(),
            "proof": hash_bytes(source.inclusion_proof(index, checkpoint.size)),
            "payload": base64.b64encode(row[5]).decode(),
        })
    return {"format": "pdl-proof/v1", "kind": "inclusion", "verifier_key": str(verifier),
            "checkpoint": str(checkpoint), "entries": entries}


def newest_checkpoint(store: SQLiteTreeStore, tree: int, verifier: Verifier,
                      size: int | None = None) -> SignedCheckpoint:
    """The newest stored checkpoint of the tree (of exactly ``size`` if given), checked."""
    found = [(s, n) for s, n in store.checkpoints(tree) if size is None or s == size]
    if not found:
        raise NotFound(f"no checkpoint of tree {tree}"
                               + (f" of size {size}" if size is not None else "")
                               + " is stored: sign one with `pdl checkpoint`")
    try:
        return open_checkpoint(found[-1][1], verifier)
    except NoteError as exc:
        raise PersistenceError(f"the stored checkpoint does not verify: {exc}") from None
