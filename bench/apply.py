"""The projections' CPU per record on the live path, without a broker.

    .venv/bin/python bench/apply.py [--events N] [--repeat R] [--partitions P]
                                    [--against DIR] [--json]

What a `pdl consume` member's applying stage spends per record, projection by projection.
One run builds one log: ``--events`` events of ``workload`` (seed 42) published by the
ledger (sealed, as `pdl publish` writes them) into a SQLite log in a temporary folder.
Its records are spread over ``--partitions`` partitions as the Kafka log holds them (a
person's events in one partition by pseudonym, each event about no one copied into every
partition) and cut into batches of ``CONSUME_BATCH`` records (each batch in partition
order, as a poll returns them).

Each repeat runs a fresh child process that makes ``--passes`` passes of each of these
(a fresh SQLite view store per pass, WAL, ``synchronous=NORMAL``, as the bench's member)
and keeps each row's least:

- decode: ``schemas.decode`` of every record's payload, nothing else: the baseline;
- apply: ``ProjectionRunner.process`` of every batch with every projection, as a member
  applies them (marks, tracking, one transaction per batch). Each projection's ``apply``
  is timed (``time.process_time``) and so is every statement it runs: a projection's
  "Python" is its ``apply`` less its SQL.

Figures are CPU µs per record of the stream (every record, not only those a projection
reads), medians over the repeats, and each row's ratio to the decode baseline of the
same child (median over the repeats). ``--against DIR`` (another checkout, e.g. a ``git worktree`` of ``main``)
runs the same children on that code too, taking turns with this one, and prints the
after/before ratio of each row: the comparison to quote, as both sides meet the same
load. The load average is printed; compare ratios on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# bench/kafka.py would shadow kafka-python; the code measured comes from PYTHONPATH (the
# child of ``--against``) or this checkout.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

EVENTS = 20_000
REPEAT = 3
PASSES = 3
PARTITIONS = 3
EVENTS_PER_PERSON = 45


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- the records (parent) ----------------------------------------------------------------

def build_records(directory: Path, events: int, partitions: int) -> list[tuple[Any, ...]]:
    """The log's records as plain tuples (``LogRecord`` fields), spread over partitions."""
    from itertools import islice

    from ledger.application import Ledger
    from ledger.settings import Settings
    from ledger.sqlite import SQLiteEventLog
    from workload import simulate

    settings = Settings(data_dir=directory, demo=True, sqlite_synchronous="OFF", actor="bench")
    with Ledger(settings) as ledger:
        lines = islice(simulate(people=events // EVENTS_PER_PERSON + 1, seed=42), events)
        ledger.publish_lines(lines, batch_size=5000, workers=1)
    log = SQLiteEventLog(directory / "log.db", synchronous="OFF")
    try:
        read = list(log.read())
    finally:
        log.close()
    offsets = [0] * partitions
    out: list[tuple[Any, ...]] = []
    for r in read:
        # murmur2 is the producer's; any stable hash spreads people the same way here
        homes = ([zlib.crc32(r.subject.encode()) % partitions] if r.subject
                 else range(partitions))
        for p in homes:
            out.append((p, offsets[p], r.event_id, r.event_type, r.subject, r.recorded_at,
                        r.payload))
            offsets[p] += 1
    return out


# --- one measurement (child) -------------------------------------------------------------

class _TimedTx:
    """A view transaction whose statements' CPU time is added to ``sql[0]``."""

    def __init__(self, tx: Any, sql: list[float]) -> None:
        self._tx, self._sql = tx, sql

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    def _timed(self, method: str, *args: Any) -> Any:
        started = time.process_time()
        try:
            return getattr(self._tx, method)(*args)
        finally:
            self._sql[0] += time.process_time() - started

    def execute(self, *args: Any) -> Any:
        return self._timed("execute", *args)

    def executemany(self, *args: Any) -> Any:
        return self._timed("executemany", *args)

    def query(self, *args: Any) -> Any:
        return self._timed("query", *args)


def _instrument(projection: Any, totals: dict[str, list[float]]) -> None:
    applied, sql = [0.0], [0.0]
    totals[projection.name] = [0.0, 0.0]
    inner = projection.apply

    def apply(tx: Any, items: Any) -> None:
        sql[0] = 0.0
        started = time.process_time()
        inner(_TimedTx(tx, sql), items)
        applied[0] = time.process_time() - started
        totals[projection.name][0] += applied[0]
        totals[projection.name][1] += sql[0]

    projection.apply = apply


def measure(records_file: Path, batch: int, passes: int) -> dict[str, Any]:
    """One child's figures, the least of ``passes`` (each row's least: what other work on
    the machine added least to): CPU seconds of decoding, of the whole apply, per
    projection (its apply and its SQL)."""
    runs = [_measure(records_file, batch) for _ in range(passes)]
    best = runs[0]
    for run in runs[1:]:
        best["decode"] = min(best["decode"], run["decode"])
        best["process"] = min(best["process"], run["process"])
        for name, (total, sql) in run["projections"].items():
            mine = best["projections"][name]
            mine[0], mine[1] = min(mine[0], total), min(mine[1], sql)
    return best


def _measure(records_file: Path, batch: int) -> dict[str, Any]:
    import gc

    from consumers.projection import ProjectionRunner
    from consumers.registry import all_projections
    from consumers.views import SQLiteViewStore
    from ledger.persistence import LogRecord
    from schemas import decode

    records = [LogRecord(*r) for r in pickle.loads(records_file.read_bytes())]
    gc.disable()  # the runner pauses the GC while it applies: the baseline too
    started = time.process_time()
    for r in records:
        decode(r.payload)
    decode_s = time.process_time() - started
    gc.enable()

    class Log:  # what the runner asks of the Kafka log it is given records of
        log_id = "bench-apply"
        checks_subjects = True
        self_contained_partitions = True
        stores_ids_once = False
        trusted_types = False

    log: Any = Log()
    with tempfile.TemporaryDirectory(prefix="pdl-apply-") as tmp:
        store = SQLiteViewStore(Path(tmp) / "views.db")
        projections = all_projections()
        totals: dict[str, list[float]] = {}
        for p in projections:
            _instrument(p, totals)
        runner = ProjectionRunner(log, store, projections, batch_size=batch, dedupe=True)
        started = time.process_time()
        for i in range(0, len(records), batch):
            chunk = sorted(records[i: i + batch], key=lambda r: r.partition)
            runner.process(chunk)
        process_s = time.process_time() - started
        store.close()
    return {"records": len(records), "decode": decode_s, "process": process_s,
            "projections": totals}


# --- the run (parent) --------------------------------------------------------------------

def child(root: Path, records_file: Path, batch: int, passes: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child",
                           str(records_file), "--batch", str(batch), "--passes", str(passes)],
                          env=env, cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the child on {root} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def rows_of(result: dict[str, Any]) -> dict[str, float]:
    """CPU µs per record: decode, process (all), per projection (apply, Python, SQL), and
    the runner's own (process less every apply)."""
    n = result["records"]
    us = 1e6 / n
    out = {"decode": result["decode"] * us, "process (all)": result["process"] * us}
    applied = 0.0
    for name, (total, sql) in result["projections"].items():
        out[f"{name}"] = total * us
        out[f"{name}: python"] = (total - sql) * us
        out[f"{name}: sql"] = sql * us
        applied += total
    out["projections, python"] = sum(v for k, v in out.items() if k.endswith(": python"))
    out["projections, sql"] = sum(v for k, v in out.items() if k.endswith(": sql"))
    out["runner (process - applies)"] = (result["process"] - applied) * us
    return out


def main() -> int:
    if "--child" not in sys.argv and str(ROOT) not in sys.path:
        # a child imports the code measured from its PYTHONPATH (this checkout or --against)
        sys.path.insert(0, str(ROOT))
    from consumers.consume import CONSUME_BATCH

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=EVENTS, help="events of the workload "
                    "(default %(default)s)")
    ap.add_argument("--repeat", type=int, default=REPEAT, help="children per checkout, "
                    "figures their median (default %(default)s)")
    ap.add_argument("--partitions", type=int, default=PARTITIONS, help="partitions the "
                    "records are spread over (default %(default)s)")
    ap.add_argument("--batch", type=int, default=CONSUME_BATCH, help="records per batch "
                    "(default `pdl consume`'s, %(default)s)")
    ap.add_argument("--passes", type=int, default=PASSES, help="passes per child, each "
                    "row the least of them (default %(default)s)")
    ap.add_argument("--against", type=Path, help="another checkout to compare with (before)")
    ap.add_argument("--json", action="store_true", help="the figures as JSON")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.batch, args.passes)))
        return 0
    roots = {"this": ROOT}
    if args.against:
        roots = {"before": args.against.resolve(), "after": ROOT}
    with tempfile.TemporaryDirectory(prefix="pdl-apply-log-") as tmp:
        say(f"publishing {args.events:,} events of workload seed 42 ...")
        records = build_records(Path(tmp), args.events, args.partitions)
        records_file = Path(tmp) / "records.pickle"
        records_file.write_bytes(pickle.dumps(records))
        say(f"{len(records):,} records over {args.partitions} partition(s); "
            f"{args.repeat} repeat(s) of {', '.join(roots)}")
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in roots}
        loads = [os.getloadavg()[0]]
        for r in range(args.repeat):
            # take turns in both orders: the second of two children ran slower here
            for name, root in (list(roots.items()) if r % 2 == 0
                               else list(reversed(roots.items()))):
                runs[name].append(rows_of(child(root, records_file, args.batch,
                                                args.passes)))
                say(f"  repeat {r + 1} {name}: process {runs[name][-1]['process (all)']:.1f} "
                    f"µs/record, load {os.getloadavg()[0]:.1f}")
            loads.append(os.getloadavg()[0])
    medians = {name: {k: statistics.median(run[k] for run in rs) for k in rs[0]}
               for name, rs in runs.items()}
    # each row over the same child's decode, then the median: steadier than either alone
    # when the machine is shared (a loaded machine slows a whole child down)
    ratios = {name: {k: statistics.median(run[k] / run["decode"] for run in rs) for k in rs[0]}
              for name, rs in runs.items()}
    report = {"events": args.events, "records": len(records), "partitions": args.partitions,
              "repeat": args.repeat, "load": [round(x, 2) for x in loads],
              "medians_us_per_record": medians, "medians_over_decode": ratios}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"CPU µs per record ({len(records):,} records, {args.partitions} partitions, "
          f"median of {args.repeat}; load {min(loads):.1f}-{max(loads):.1f}); /decode: the "
          "row over the same child's decode, median")
    names = list(roots)
    head = "".join(f"{n:>10}{'/decode':>9}" for n in names)
    print(f"{'row':<34}{head}" + (f"{'after/before':>14}{'by /decode':>12}"
                                  if len(names) == 2 else ""))
    for key in medians[names[0]]:
        if not any(medians[n][key] for n in names):
            continue  # a projection this log gives nothing to
        cells = "".join(f"{medians[n][key]:>10.2f}{ratios[n][key]:>9.2f}" for n in names)
        if len(names) == 2:
            before, base = medians["before"][key], ratios["before"][key]
            cells += f"{medians['after'][key] / before:>14.2f}" if before else f"{'-':>14}"
            cells += f"{ratios['after'][key] / base:>12.2f}" if base else f"{'-':>12}"
        print(f"{key:<34}{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
