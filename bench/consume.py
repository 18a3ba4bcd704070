"""`pdl consume` (the live path) against the raw Kafka consumer, into SQLite and PostgreSQL.

    .venv/bin/python bench/consume.py [--events N] [--repeat R] [--bootstrap HOST:PORT]
                                      [--pg-url URL] [--json]
    .venv/bin/python bench/consume.py --profile [--events N] [--top K]

One run, one topic: the events of ``workload`` (seed 42) are published once by the ledger
(``bench/kafka.py``'s ``Bench``: its broker, or the given one). Then, each repeat:

- raw consume: a ``KafkaConsumer`` reads the topic and ``json.loads`` each value
  (``Bench.raw_consume``): the floor any consumer pays;
- consume into SQLite, 1 member: one consumer-group member (``KafkaGroupConsumer``, as
  `pdl consume` runs it: reading in a process of its own, applying in its main process,
  ``consumers.pipeline``), into an empty SQLite view store;
- the same with the member in one process (``LEDGER_CONSUME_PIPELINE=0``), for reference;
- consume into PostgreSQL, 1 member (and 1 member in one process): the same into an
  empty PostgreSQL schema;
- consume into PostgreSQL, 2 members: two members of one group into one schema.

A member's rate is measured where it is steady: from the first committed batch (the
group join and the process start are left out) to the last record applied, read from the
view store's tracking table, polled every 20 ms on one read-only connection the bench
holds for the measurement (``Progress``). The PostgreSQL server is the one given by
``--pg-url`` or one started for the run from Debian's package (tests/pgkit.py, with
``fsync=off`` and ``synchronous_commit=off``); the SQLite store keeps its default
(``synchronous=NORMAL`` in WAL mode: no fsync per commit). Both survive a process crash,
neither a power cut. Figures are medians over the repeats. Next to each rate, CPU µs per
record: the raw loop's (this process, ``Stopwatch``) and each member's own over the same
window as its rate (it prints them after each batch), with the ratios by CPU, which a
loaded machine disturbs less than the wall clock; the load average is printed too.

Targets (issue 18): SQLite 1 member >= 0.5x raw; PostgreSQL 1 member >= 0.35x raw;
2 members >= 1.5x one on a machine of 4 or more cores (on fewer, printed only). A
member's CPU counts its reader process's too.

``--profile`` runs one member in this process under cProfile and prints the top
functions; with ``--views postgres`` into a server started with ``pg_stat_statements``,
then the server's statements by total time and its CPU per record. The benchmark's
table has the server's CPU per record too (its processes' CPU from /proc over each
member's window: on 2 cores the server competes with the members for the CPU).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
for extra in (ROOT, ROOT / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from consumers.consume import CONSUME_BATCH as BATCH  # noqa: E402 - `pdl consume`'s default

_spec = importlib.util.spec_from_file_location("pdl_bench_kafka", HERE / "kafka.py")
assert _spec and _spec.loader
kb = importlib.util.module_from_spec(_spec)
sys.modules["pdl_bench_kafka"] = kb  # its dataclasses look their module up
_spec.loader.exec_module(kb)

console = Console(stderr=True)
#: 100,000 by default: a member's rate is measured from the end of its first batch of 5,000,
#: so 20,000 events left 3 batches to measure, and quiet-machine runs wandered 0.36-0.62x
#: (docs/benchmarks.md, session 8); 100,000 leave 19 and gave 0.36x twice.
EVENTS = 100_000
TARGETS = {"SQLite, 1 member / raw": 0.5, "PostgreSQL, 1 member / raw": 0.35}
#: name -> (store, members, each reading in a process of its own as `pdl consume` does)
CONTENDERS: dict[str, tuple[str, int, bool]] = {
    "SQLite, 1 member": ("sqlite", 1, True),
    "SQLite, 1 member, 1 process": ("sqlite", 1, False),
    "PostgreSQL, 1 member": ("postgres", 1, True),
    "PostgreSQL, 1 member, 1 process": ("postgres", 1, False),
    "PostgreSQL, 2 members": ("postgres", 2, True),
}
NAMES = ("raw consume", *CONTENDERS)
TWO_PROCESS_TARGET = 1.5
#: How often the bench reads the members' progress (its error on a rate: one poll).
POLL_SECONDS = 0.02

#: One group member in a process of its own: argv = bootstrap, topic, group, views, batch.
#: After each batch it prints the records and the CPU seconds (its own, I/O threads
#: included) since the end of its first batch, the same window as the bench's clock.
MEMBER = """
import sys, threading, time
from consumers.consume import KafkaGroupConsumer
from consumers.registry import all_projections
from ledger.kafka import KafkaEventLog
bootstrap, topic, group, views, batch, pipeline = sys.argv[1:7]
log = KafkaEventLog(bootstrap, topic, group_id=group)
if views.startswith("postgresql://"):
    from consumers.postgres import PostgresViewStore
    store = PostgresViewStore(views)
else:
    from consumers.views import SQLiteViewStore
    store = SQLiteViewStore(views)
member = KafkaGroupConsumer(log, store, all_projections(), group_id=group,
                            batch_size=int(batch), pipeline=pipeline == "1")
since = None
def on_batch(stats):
    global since
    if since is None:
        since = [member.cpu_seconds(), 0, member.reader_cpu_seconds()]
        return
    since[1] += stats.records
    print(since[1], member.cpu_seconds() - since[0],
          member.reader_cpu_seconds() - since[2], flush=True)
member.run(threading.Event(), idle_exit=4.0, on_batch=on_batch)
"""


def _open(views: str) -> Any:
    if views.startswith("postgresql://"):
        from consumers.postgres import PostgresViewStore

        return PostgresViewStore(views)
    from consumers.views import SQLiteViewStore

    return SQLiteViewStore(views)


def server_cpu(server: Any) -> float | None:
    """CPU seconds used so far by a PostgreSQL server we started: the postmaster and every
    process it runs (backends, WAL writer, checkpointer...), read from /proc, plus what its
    exited children used (the postmaster's ``cutime``/``cstime``). None for a server given
    by URL (not ours to read) or where /proc is missing."""
    if server is None:
        return None
    try:
        postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            pid, ppid = int(entry.name), int(fields[1])
            if pid == postmaster:
                total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
            elif ppid == postmaster:
                total += int(fields[11]) + int(fields[12])
        return total / ticks
    except (OSError, ValueError, IndexError):
        return None


class Progress:
    """Reads how far the members are from the view store's tracking table, on one
    connection of its own held for the whole measurement: a plain read every poll, no
    store opened (opening one runs its schema statements and, on PostgreSQL, connects and
    takes the writers' lock, which would compete with the members it measures)."""

    def __init__(self, views: str, projections: int):
        self.views = views
        self.projections = projections
        self._conn: Any = None

    def _connect(self) -> Any:
        if self.views.startswith("postgresql://"):
            import psycopg

            return psycopg.connect(self.views, autocommit=True)
        import sqlite3

        return sqlite3.connect(f"file:{self.views}?mode=ro", uri=True, isolation_level=None)

    def applied(self) -> int:
        """Records passed by the slowest projection (0 until every one has a position)."""
        try:
            if self._conn is None:
                self._conn = self._connect()
            rows = self._conn.execute('SELECT projection, sum("offset" + 1) FROM tracking '
                                      "GROUP BY projection").fetchall()
        except Exception:  # noqa: BLE001 - no tracking table yet
            return 0
        return min((int(n) for _, n in rows), default=0) if len(rows) >= self.projections else 0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def members(bench: Any, topic: str, views: str, count: int,
            server: Any = None, pipeline: bool = True
            ) -> tuple[float, float, float, float | None]:
    """Records/s of ``count`` members of one fresh group into ``views``, steady state,
    their CPU seconds per record (each member's own, its reader process's included, from
    the end of its first batch), and the PostgreSQL server's CPU seconds per record over
    the same window (``server_cpu``; None for SQLite or a server given by URL). With
    ``pipeline`` each member reads in a process of its own (as `pdl consume` runs it)."""
    from consumers.registry import all_projections

    group = f"pdl-bench-{uuid.uuid4()}"
    bench.groups.append(group)
    projections = len(all_projections())
    _open(views).close()  # tables made before the clock (as a long-lived store has them)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", MEMBER, bench.broker.bootstrap, topic,
                               group, views, str(BATCH), "1" if pipeline else "0"],
                              cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(count)]
    end = bench.stored
    first_at = first_n = None
    server_from = server_to = None
    progress = Progress(views, projections)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            n = progress.applied()
            now = time.monotonic()
            if first_at is None and n > 0:
                first_at, first_n = now, n
                server_from = server_cpu(server)
            if n >= end:
                break
            if all(p.poll() is not None for p in procs):
                raise SystemExit(f"members exited at {n} of {end}: "
                                 + procs[0].stderr.read().decode()[-2000:])  # type: ignore[union-attr]
            time.sleep(POLL_SECONDS)
        else:
            raise SystemExit(f"members did not finish ({n} of {end})")
        done_at = time.monotonic()
        server_to = server_cpu(server)
    finally:
        progress.close()
        for p in procs:
            p.terminate()
        outputs = [p.communicate(timeout=30)[0].decode().split() for p in procs]
    assert first_at is not None and first_n is not None
    if first_n >= end:
        raise SystemExit("the first batch held every record: use more --events")
    # each member's last line: records and CPU seconds after its first batch
    counted = [(int(out[-3]), float(out[-2]), float(out[-1])) for out in outputs
               if len(out) >= 3]
    records = sum(n for n, _, _ in counted)
    cpu = sum(c for _, c, _ in counted) / records if records else float("nan")
    reading = sum(r for _, _, r in counted) / records if records else float("nan")
    served = (None if server_from is None or server_to is None
              else (server_to - server_from) / (end - first_n))
    return (end - first_n) / (done_at - first_at), cpu, reading, served


def benchmark(bootstrap: str | None, n: int, repeat: int, pg_url: str | None) -> dict[str, Any]:
    server = None
    if pg_url is None:
        from pgkit import bench_server

        server = bench_server()
    rates: dict[str, list[float]] = {name: [] for name in NAMES}
    cpus: dict[str, list[float]] = {name: [] for name in NAMES}
    server_cpus: dict[str, list[float]] = {}
    reader_cpus: dict[str, list[float]] = {}
    try:
        with kb.bench_session(bootstrap, n) as bench:
            console.print(f"publishing {n:,} events with the ledger ...")
            _, topic = bench.ledger_publish()
            for r in range(1, repeat + 1):
                console.print(f"repeat {r}/{repeat}: raw consume ...")
                watch = bench.raw_consume(topic)
                rates["raw consume"].append(bench.stored / watch.wall)
                cpus["raw consume"].append(watch.cpu / bench.stored)
                for name, (views, count, pipeline) in CONTENDERS.items():
                    console.print(f"repeat {r}/{repeat}: consume into {name} ...")
                    if views == "sqlite":
                        url = str(Path(tempfile.mkdtemp(prefix="views-", dir=bench.workdir))
                                  / "views.db")
                    else:
                        url = server.new_schema(tcp=False) if server else pg_url
                        assert url is not None
                        if not server:
                            _clear(url)
                    rate, cpu, reading, served = members(bench, topic, url, count,
                                                server if views == "postgres" else None,
                                                pipeline=pipeline)
                    rates[name].append(rate)
                    cpus[name].append(cpu)
                    if pipeline:
                        reader_cpus.setdefault(name, []).append(reading)
                    if served is not None:
                        server_cpus.setdefault(name, []).append(served)
            stored = bench.stored
    finally:
        if server is not None:
            server.stop()
    medians = {name: statistics.median(values) for name, values in rates.items()}
    cpu_us = {name: statistics.median(values) * 1e6 for name, values in cpus.items()}
    raw = medians["raw consume"]
    ratios = {f"{name} / raw": medians[name] / raw for name in CONTENDERS
              if CONTENDERS[name][1] == 1}
    ratios["PostgreSQL, 2 members / 1"] = (medians["PostgreSQL, 2 members"]
                                           / medians["PostgreSQL, 1 member"])
    # by CPU per record (steadier on a shared machine): raw's CPU over the contender's
    cpu_ratios = {f"{name} / raw": cpu_us["raw consume"] / cpu_us[name] for name in CONTENDERS
                  if CONTENDERS[name][1] == 1}
    return {"events": n, "records": stored, "repeat": repeat, "cores": os.cpu_count(),
            "load": os.getloadavg(), "records_per_s": medians, "cpu_us_per_record": cpu_us,
            "server_cpu_us_per_record": {name: statistics.median(values) * 1e6
                                         for name, values in server_cpus.items()},
            "reader_cpu_us_per_record": {name: statistics.median(values) * 1e6
                                         for name, values in reader_cpus.items()},
            "runs": rates, "ratios": ratios, "cpu_ratios": cpu_ratios}


def _clear(url: str) -> None:
    """An external server's store: every table of the schema dropped (a fresh store)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for (table,) in conn.execute("SELECT tablename FROM pg_tables "
                                     "WHERE schemaname = current_schema()").fetchall():
            conn.execute(f'DROP TABLE "{table}" CASCADE')


def render(report: dict[str, Any]) -> None:
    table = Table(title=f"pdl consume against the raw consumer: {report['events']:,} events, "
                        f"{report['records']:,} records, median of {report['repeat']}")
    table.add_column("contender")
    table.add_column("records/s", justify="right")
    table.add_column("CPU µs/record", justify="right")
    table.add_column("of which reader", justify="right")
    table.add_column("server CPU µs/record", justify="right")
    served = report.get("server_cpu_us_per_record", {})
    reading = report.get("reader_cpu_us_per_record", {})
    for name, rate in report["records_per_s"].items():
        table.add_row(name, f"{rate:,.0f}", f"{report['cpu_us_per_record'][name]:.1f}",
                      f"{reading[name]:.1f}" if name in reading else "",
                      f"{served[name]:.1f}" if name in served else "")
    console.print(table)
    load = ", ".join(f"{x:.2f}" for x in report["load"])
    console.print(f"load average at the end: {load} on {report['cores']} core(s)",
                  highlight=False)
    for name, ratio in report["cpu_ratios"].items():
        console.print(f"{name}, by CPU per record: {ratio:.2f}x", highlight=False)
    cores = report["cores"] or 1
    for name, ratio in report["ratios"].items():
        if name in TARGETS:
            verdict = "ok" if ratio >= TARGETS[name] else f"BELOW the {TARGETS[name]}x target"
        elif "2 members" not in name:
            verdict = "for reference: the member reading and applying in one process"
        elif cores >= 4:
            verdict = ("ok" if ratio >= TWO_PROCESS_TARGET
                       else f"BELOW the {TWO_PROCESS_TARGET}x target")
        else:
            verdict = (f"this machine has {cores} core(s), shared with the broker and the "
                       "server: the 1.5x target applies from 4 cores")
        console.print(f"{name}: {ratio:.2f}x ({verdict})", highlight=False)


def profile(bootstrap: str | None, n: int, top: int, views: str = "sqlite") -> str:
    """One member in this process under cProfile, into SQLite or (``views="postgres"``) a
    PostgreSQL server started for it with ``pg_stat_statements``: then the member's profile
    is followed by the server's side, its statements by total execution time and its CPU
    per record (``server_cpu``) against the member's."""
    from consumers.consume import KafkaGroupConsumer
    from consumers.projection import RunStats
    from consumers.registry import all_projections
    from consumers.views import SQLiteViewStore

    server = None
    out = io.StringIO()
    with kb.bench_session(bootstrap, n) as bench:
        _, topic = bench.ledger_publish()
        log = bench.open_log(topic)
        if views == "postgres":
            import psycopg

            from consumers.postgres import PostgresViewStore
            from pgkit import bench_server

            server = bench_server()
            with psycopg.connect(server.url(), autocommit=True) as conn:
                conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            server.stop()
            server.start()
            url = server.new_schema(tcp=False)
            store: Any = PostgresViewStore(url)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements SCHEMA public")
                conn.execute("SELECT public.pg_stat_statements_reset()")
        else:
            store = SQLiteViewStore(bench.workdir / "profile-views.db")
        try:
            member = KafkaGroupConsumer(log, store, all_projections(),
                                        group_id=f"pdl-bench-{uuid.uuid4()}", batch_size=BATCH)
            stop, seen, stored = threading.Event(), RunStats(), bench.stored

            def on_batch(stats: RunStats) -> None:
                seen.add(stats)
                if seen.records >= stored:
                    stop.set()

            profiler = cProfile.Profile()
            served, cpu = server_cpu(server), time.process_time()
            profiler.enable()
            member.run(stop, idle_exit=10, on_batch=on_batch)
            profiler.disable()
            cpu = time.process_time() - cpu
            served_to = server_cpu(server)
            store.close()
            log.close()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(top)
            stats.sort_stats("cumulative").print_stats(top)
            out.write(f"member CPU (under cProfile): {cpu / stored * 1e6:.1f} µs/record\n")
            if server is not None:
                if served is not None and served_to is not None:
                    out.write(f"server CPU: {(served_to - served) / stored * 1e6:.1f} "
                              "µs/record\n")
                with psycopg.connect(url, autocommit=True) as conn:
                    rows = conn.execute(
                        "SELECT calls, rows, total_exec_time, left(regexp_replace(query, "
                        "'\\s+', ' ', 'g'), 150) FROM public.pg_stat_statements "
                        "ORDER BY total_exec_time DESC LIMIT %s", (top,)).fetchall()
                total = sum(r[2] for r in rows)
                out.write(f"server statements by total execution time (top {top}: "
                          f"{total / stored * 1e3:.1f} µs/record):\n")
                for calls, nrows, ms, query in rows:
                    out.write(f"{ms:9.1f} ms {ms / stored * 1e3:6.1f} µs/rec {calls:6} calls "
                              f"{nrows:8} rows  {query}\n")
        finally:
            if server is not None:
                server.stop()
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bootstrap", default=os.environ.get("LEDGER_KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--pg-url", help="an external PostgreSQL (its schema is emptied)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--views", choices=("sqlite", "postgres"), default="sqlite",
                        help="the store --profile writes into")
    args = parser.parse_args(argv)
    if args.profile:
        sys.stdout.write(profile(args.bootstrap, args.events, args.top, args.views))
        return 0
    report = benchmark(args.bootstrap, args.events, args.repeat, args.pg_url)
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    render(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
