"""What the verifiable log costs: publishing with checkpoints on against off, and
``pdl verify`` against a raw read of the same log, from one run.

    .venv/bin/python bench/verify.py [--events N] [--publish-events N] [--repeat R] [--json]
    .venv/bin/python bench/verify.py --events 1000000            # the issue's figures

Two parts, each with its baseline measured in the same run:

- **publish** (``--publish-events``, default 50,000 events of ``workload.simulate``; the same
  wire lines for every run, each run durable (``synchronous=FULL``, WAL) into a fresh
  temporary folder, ``Ledger.publish_lines`` in batches of 1000):
  - checkpointing off: the Merkle tree grown in each append's transaction, tiles stored,
    no signing key;
  - checkpointing on: the same with a checkpoint signed (Ed25519) and written to two files
    every 10,000 records (the default) and when the log is closed. Target: at most 10 %
    slower than off;
  - no tree (``SQLiteEventLog(merkle=False)``): what the whole verifiable log costs.
  In each of ``--repeat`` rounds (>= 5) the three modes publish side by side into fresh
  folders, taking turns batch by batch in a rotating order, each batch timed alone:
  medians of events/s and of CPU µs per event over the rounds, ratios of both.
  Then one event per durable commit (``Ledger.publish([event])``) for ``--single`` events,
  and the append's tree hashing alone (µs per record).
- **verify** (``--events``, default 200,000: a log written once, checkpoints on): a raw read
  of the log (``SELECT`` of every column of every row, ``json.loads`` of each payload, one
  process) against ``verify_sqlite`` (every record decoded by the codec and compared with
  its columns, every leaf recomputed, the tree regrown, every checkpoint's signature and
  root checked; worker processes as ``pdl verify`` chooses, or ``--workers``), taking turns
  ``--verify-repeat`` times. Target: verify >= 0.5x the raw read's records/s. CPU is
  counted for the whole work, the workers' included (``RUSAGE_CHILDREN``).

The load average is printed before and after: on a shared machine the wall-clock ratios
wander; the CPU ratios much less.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import platform
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.application import Ledger  # noqa: E402
from ledger.checkpoint import (  # noqa: E402
    Checkpoint,
    Signer,
    leaf_hashes,
    leaf_prefix,
    sign_checkpoint,
)
from ledger.merkle import CompactRange, TileWriter  # noqa: E402
from ledger.settings import Settings, decode_key, generate_key  # noqa: E402
from workload import simulate  # noqa: E402
from ledger.sqlite import SQLiteEventLog  # noqa: E402
from ledger.treelog import TreeOptions, write_atomic  # noqa: E402
from ledger.verification import verify_sqlite  # noqa: E402

SIGNER = Signer.generate("bench")
MASTER = decode_key(generate_key())
BATCH = 1000


def _stream(events: int) -> Iterator[str]:
    """``events`` wire lines of ``workload.simulate`` (seed 11), generated lazily."""
    n = 0
    # The simulator writes about 50 events a person: 40 leaves a margin.
    for line in simulate(people=max(10, events // 40), seed=11):
        yield line
        n += 1
        if n >= events:
            return
    raise SystemExit(f"the simulator gave only {n} events")


def _lines(events: int) -> list[str]:
    return list(_stream(events))


#: The three ways of running the log compared: no tree, a tree without signing, a tree
#: with checkpoints signed at the default interval.
MODES = ("none", "unsigned", "signed")


def _ledger(folder: Path, mode: str) -> Ledger:
    settings = Settings(data_dir=folder, master_key=MASTER, sqlite_synchronous="FULL",
                        actor="bench")
    options = TreeOptions(signer=SIGNER if mode == "signed" else None,
                          folder=folder / "checkpoints")
    log = SQLiteEventLog(folder / "log.db", synchronous="FULL", tree=options,
                         merkle=mode != "none")
    return Ledger(settings, log=log)


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (verify's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _publish(lines: Iterable[str], mode: str, keep: Path | None = None) -> tuple[float, float]:
    """Publish ``lines`` in batches into a fresh folder (or ``keep``): (events per second,
    CPU µs per event)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = keep or Path(tmp)
        ledger = _ledger(folder, mode)
        start, cpu, n = time.perf_counter(), _cpu(), 0
        for batch in _batches(lines):
            ledger.publish_lines(batch, batch_size=BATCH)
            n += len(batch)
        ledger.close()  # seals the last checkpoint: part of the cost
        wall, cpu = time.perf_counter() - start, _cpu() - cpu
        return n / wall, cpu / n * 1e6


def _publish_turns(lines: list[str], first: int) -> dict[str, tuple[float, float]]:
    """One round: the three modes publish ``lines`` into fresh folders side by side, batch
    by batch, taking turns in a rotating order; each batch (and each close) is timed alone
    and added to its mode. Drift on a shared machine then lands on every mode alike within
    about a batch (~40 ms), instead of on whichever mode ran in a slower second."""
    wall = dict.fromkeys(MODES, 0.0)
    cpu = dict.fromkeys(MODES, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        ledgers = {m: _ledger(Path(tmp) / m, m) for m in MODES}

        def timed(mode: str, work: Callable[[], object]) -> None:
            start, c = time.perf_counter(), time.process_time()
            work()
            wall[mode] += time.perf_counter() - start
            cpu[mode] += time.process_time() - c

        for k, batch in enumerate(_batches(lines)):
            turn = (first + k) % 3
            for mode in MODES[turn:] + MODES[:turn]:
                timed(mode, functools.partial(ledgers[mode].publish_lines, batch,
                                              batch_size=BATCH))
        for mode in MODES:
            timed(mode, ledgers[mode].close)  # seals the last checkpoint: part of the cost
    return {m: (len(lines) / wall[m], cpu[m] / len(lines) * 1e6) for m in MODES}


def _batches(lines: Iterable[str]) -> Iterator[list[str]]:
    it = iter(lines)
    while batch := list(itertools.islice(it, BATCH)):
        yield batch


def _single(lines: list[str], mode: str) -> float:
    events = [json.loads(line) for line in lines]
    with tempfile.TemporaryDirectory() as tmp:
        ledger = _ledger(Path(tmp), mode)
        start = time.perf_counter()
        for e in events:
            ledger.publish([e])
        ledger.close()
        return len(events) / (time.perf_counter() - start)


def _hashing(lines: list[str]) -> float:
    """CPU µs per record of the append path's tree work alone: leaf hashes, right edge,
    tiles, in batches of 1000."""
    records = [("0190c1f2-0000-7000-8000-000000000000", "data.collected",
                "p_abcdefghijklmnopqrstuvwxyz234567", line.encode()) for line in lines]
    prefix = leaf_prefix("pdl.local/log/bench", 0)
    writer = TileWriter(CompactRange(), {})
    start = time.process_time()
    for i in range(0, len(records), BATCH):
        chunk = records[i : i + BATCH]
        writer.extend(leaf_hashes(prefix, i, chunk, range(i + 1, i + 1 + len(chunk)),
                                  itertools.repeat(1_700_000_000_000_000)))
        writer.take_changes()
    return (time.process_time() - start) / len(records) * 1e6


def _checkpoint_ms(count: int = 200) -> float:
    """CPU ms of one checkpoint alone, as the append path makes it: the note signed
    (Ed25519) and written to its two files."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "0"
        start = time.process_time()
        for size in range(1, count + 1):
            note = str(sign_checkpoint(Checkpoint("pdl.local/log/bench", size * 10_000,
                                                  bytes(32)), SIGNER))
            write_atomic(folder / f"{size * 10_000:015d}.checkpoint", note)
            write_atomic(folder / "latest.checkpoint", note)
        return (time.process_time() - start) / count * 1e3


def _raw_read(path: Path) -> tuple[float, float]:
    """The baseline: every column of every row, in order, and ``json.loads`` of each
    payload, in this process: (records/s, CPU µs per record)."""
    db = sqlite3.connect(path)
    start, cpu = time.perf_counter(), _cpu()
    n = 0
    loads = json.loads
    for row in db.execute("SELECT position, event_id, event_type, subject, recorded_at, payload "
                          "FROM events ORDER BY position"):
        loads(row[5])
        n += 1
    elapsed, cpu = time.perf_counter() - start, _cpu() - cpu
    db.close()
    return n / elapsed, cpu / n * 1e6


def _verify(path: Path, folder: Path, workers: int | None) -> tuple[float, float, bool]:
    """``verify_sqlite`` as ``pdl verify`` runs it: (records/s, CPU µs per record with the
    workers', ok)."""
    log = SQLiteEventLog(path, tree=TreeOptions(folder=folder))
    start, cpu = time.perf_counter(), _cpu()
    report = verify_sqlite(log, SIGNER.verifier, None, folder=folder, workers=workers)
    elapsed, cpu = time.perf_counter() - start, _cpu() - cpu
    log.close()
    return report.records / elapsed, cpu / report.records * 1e6, report.ok


def _median(run: Callable[[], float], repeat: int) -> float:
    return statistics.median(run() for _ in range(repeat))


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000,
                        help="events in the log verified (default 200,000)")
    parser.add_argument("--publish-events", type=int, default=50_000,
                        help="events published per run of the on/off comparison")
    parser.add_argument("--repeat", type=int, default=5, help="publish rounds (>= 5)")
    parser.add_argument("--verify-repeat", type=int, default=3, help="raw read/verify turns")
    parser.add_argument("--single", type=int, default=1000,
                        help="events published one per commit, per mode and round")
    parser.add_argument("--workers", type=int, default=None,
                        help="verify's worker processes (default: as pdl verify chooses)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    lines = _lines(args.publish_events)
    out: dict[str, Any] = {"events": args.events, "publish_events": len(lines),
                           "repeat": args.repeat, "verify_repeat": args.verify_repeat,
                           "python": platform.python_version(),
                           "sqlite": sqlite3.sqlite_version, "cpus": os.cpu_count(),
                           "load_before": _load()}
    # Take turns batch by batch, in a rotating order, so drift on a shared machine hits
    # every mode alike.
    runs: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
    for r in range(args.repeat):
        for mode, figures in _publish_turns(lines, r).items():
            runs[mode].append(figures)
    singles: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(args.repeat):
        for mode in MODES[r % 3:] + MODES[: r % 3]:
            singles[mode].append(_single(lines[: args.single], mode))
    for mode in MODES:
        out[f"publish_{mode}"] = statistics.median(r for r, _ in runs[mode])
        out[f"publish_cpu_us_{mode}"] = statistics.median(c for _, c in runs[mode])
        out[f"single_{mode}"] = statistics.median(singles[mode])
    # Per-round ratios too: on and off ran next to each other under the same load.
    out["checkpointing_ratio"] = out["publish_signed"] / out["publish_unsigned"]
    out["checkpointing_round_ratio"] = statistics.median(
        s[0] / u[0] for s, u in zip(runs["signed"], runs["unsigned"]))
    out["checkpointing_cpu_ratio"] = out["publish_cpu_us_unsigned"] / out["publish_cpu_us_signed"]
    out["checkpointing_round_cpu_ratio"] = statistics.median(
        u[1] / s[1] for s, u in zip(runs["signed"], runs["unsigned"]))
    out["publish_runs"] = {m: [[round(r), round(c, 1)] for r, c in runs[m]] for m in MODES}
    out["checkpoint_ms"] = _median(_checkpoint_ms, 3)
    # One checkpoint per 10,000 records (the default interval) and one at close.
    out["checkpoint_us_per_event"] = out["checkpoint_ms"] * 1e3 * (
        len(lines) // 10_000 + 1) / len(lines)
    out["tree_ratio"] = out["publish_signed"] / out["publish_none"]
    out["tree_cpu_ratio"] = out["publish_cpu_us_none"] / out["publish_cpu_us_signed"]
    out["single_ratio"] = out["single_signed"] / out["single_none"]
    out["hashing_us_per_record"] = _median(lambda: _hashing(lines), args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _publish(_stream(args.events), "signed", keep=folder)
        raw, ver, oks = [], [], []
        for _ in range(args.verify_repeat):
            raw.append(_raw_read(folder / "log.db"))
            rate, cpu_us, ok = _verify(folder / "log.db", folder / "checkpoints", args.workers)
            ver.append((rate, cpu_us))
            oks.append(ok)
        out["raw_read"] = statistics.median(r for r, _ in raw)
        out["raw_read_cpu_us"] = statistics.median(c for _, c in raw)
        out["verify"] = statistics.median(r for r, _ in ver)
        out["verify_cpu_us"] = statistics.median(c for _, c in ver)
        out["verify_ratio"] = out["verify"] / out["raw_read"]
        out["verify_round_ratio"] = statistics.median(v[0] / r[0] for v, r in zip(ver, raw))
        out["verify_cpu_ratio"] = out["raw_read_cpu_us"] / out["verify_cpu_us"]
        out["verify_ok"] = all(oks)
    out["load_after"] = _load()
    out["checkpointing_met"] = out["checkpointing_ratio"] >= 0.9
    out["verify_met"] = out["verify_ratio"] >= 0.5
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"Python {out['python']}, SQLite {out['sqlite']}, {out['cpus']} CPUs; load average "
          f"{out['load_before']} before, {out['load_after']} after")
    print(f"publish, {len(lines):,} events in batches of {BATCH}, median of {args.repeat} "
          f"rounds taking turns (events/s; CPU µs/event):")
    print(f"  checkpointing off {out['publish_unsigned']:,.0f} "
          f"({out['publish_cpu_us_unsigned']:.1f}), on {out['publish_signed']:,.0f} "
          f"({out['publish_cpu_us_signed']:.1f}): {out['checkpointing_ratio']:.3f}x "
          f"(per round {out['checkpointing_round_ratio']:.3f}x; by CPU "
          f"{out['checkpointing_cpu_ratio']:.3f}x, per round "
          f"{out['checkpointing_round_cpu_ratio']:.3f}x); target >= 0.90x: "
          f"{'met' if out['checkpointing_met'] else 'MISSED'}")
    print(f"  checkpointing's own work, measured alone: {out['checkpoint_ms']:.2f} CPU ms a "
          f"checkpoint (Ed25519 note + two files) = {out['checkpoint_us_per_event']:.3f} µs an "
          f"event at one per 10,000 and one at close "
          f"({out['checkpoint_us_per_event'] / out['publish_cpu_us_unsigned']:.2%} of a "
          f"publish's CPU)")
    print(f"  no tree at all {out['publish_none']:,.0f} ({out['publish_cpu_us_none']:.1f}): "
          f"the whole verifiable log {out['tree_ratio']:.3f}x (by CPU "
          f"{out['tree_cpu_ratio']:.3f}x)")
    print(f"publish, one event per commit ({args.single}): no tree {out['single_none']:,.0f}/s, "
          f"off {out['single_unsigned']:,.0f}/s, on {out['single_signed']:,.0f}/s: "
          f"{out['single_ratio']:.3f}x of no tree")
    print(f"append hashing alone (leaves + right edge + tiles): "
          f"{out['hashing_us_per_record']:.2f} µs/record")
    print(f"verify, a log of {args.events:,} events, median of {args.verify_repeat} turns: raw "
          f"read + json.loads {out['raw_read']:,.0f}/s ({out['raw_read_cpu_us']:.1f} CPU "
          f"µs/record), pdl verify {out['verify']:,.0f}/s ({out['verify_cpu_us']:.1f} CPU "
          f"µs/record, workers included): {out['verify_ratio']:.2f}x (per turn "
          f"{out['verify_round_ratio']:.2f}x; by CPU {out['verify_cpu_ratio']:.2f}x); target "
          f">= 0.5x: {'met' if out['verify_met'] else 'MISSED'}; ok={out['verify_ok']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
