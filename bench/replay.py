"""Replay, rebuild and breach-scope figures, measured against a raw read in the same run.

    python bench/replay.py                      # 1M-event log; scope on the same log
    python bench/replay.py --scope-events 10000000   # scope on a 10M-event log (long)
    python bench/replay.py --scope-only --scope-events 10000000 --views postgres
    python bench/replay.py --scope-only --events 10000000 --queries 30 --modes index \
        --scope-people 181000 [--views postgres --pg-fill copy]   # everyone listed

Prints, from one run on a log of ``--events`` simulated events (published through the
ledger: pseudonymised and sealed, as in production):

- R: raw read of the log's rows plus ``json.loads`` of each payload (events/s);
- replay: the same rows decoded into their event models, and its ratio to R (>= 0.5);
- rebuild: every view rebuilt from position zero into a fresh view store, and its ratio
  to R (>= 0.2);
- rebuild in ``--workers`` processes (``consumers.parallel.parallel_rebuild``) too;
- memory: peak resident memory of a one-process rebuild in a child process, on a smaller
  log (``--memory-events``) and on this one: the slope between the two is the memory per
  million people (<= 200 MB), the intercept the fixed base (page cache, batch, caches);
- scope: p50 and p99 latency of ``consumers.queries.scope`` for realistic incidents (one
  store, a three-day window at a random time) on a log of ``--scope-events`` events,
  per store, with the number of people each answer names (p50 <= 10 ms, p99 <= 50 ms
  from the index): once for the first page (exact counts + the first 100 people, what the
  API answers first) and listing every affected person three ways: as the answer's
  columns (``all``), plus one tuple per person (``rows``: how answers were made before,
  the baseline) and plus the HTTP API's JSON text (``json``); ``--scope-people N`` also
  times everyone listed at N people, step by step (columns, tuples, JSON, bytes, dicts +
  ``json.dumps``); answered from SQL (the CLI's one-shot path) and from the in-memory ``ScopeIndex`` the HTTP API keeps (with its
  load time and memory). Wall ms and, beside them, the CPU ms of the answering thread
  (steadier on a shared machine). ``--views postgres`` keeps the holdings view in
  PostgreSQL instead (``--pg-url``, or a server started from Debian's package under
  ``--out``, kept between runs); it is filled from the same log by the rebuild path
  (``--pg-fill project``) or by copying the SQLite view's rows (``--pg-fill copy``).

Logs are built once under ``--out`` (default ``bench/out``, git-ignored) and reused.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from consumers.parallel import parallel_rebuild
from consumers.projection import REBUILD_BATCH_SIZE, ProjectionRunner
from consumers.queries import People, incident_scope, incidents, scope
from consumers.registry import all_projections
from consumers.rows import to_us
from consumers.scope import HoldingsProjection, Hits, hits
from consumers.scope_index import ScopeIndex
from consumers.views import DEFAULT_CACHE_MB, SQLiteViewStore, ViewStore
from ledger.application import Ledger
from ledger.settings import Settings
from ledger.sqlite import SQLiteEventLog
from schemas import decode

EVENTS_PER_PERSON = 45  # a little under the simulator's average, so enough people are made
PAGE = 100  # people listed in the first page of a scope answer
SCOPE_P50_MS = 10
SCOPE_P99_MS = 50


def say(text: str) -> None:
    print(text, flush=True)


def settings_for(directory: Path) -> Settings:
    return Settings(data_dir=directory, demo=True, sqlite_synchronous="OFF", actor="bench")


def ensure_log(directory: Path, events: int, seed: int = 7) -> Path:
    """A log of exactly ``events`` simulated events in ``directory`` (built once; a second
    bench started meanwhile waits for it rather than building it too)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_log(directory, events, seed)


def _ensure_log(directory: Path, events: int, seed: int) -> Path:
    done = directory / "built.json"
    if done.exists() and json.loads(done.read_text()).get("events") == events:
        return directory / "log.db"
    from workload import simulate

    for name in ("log.db", "log.db-wal", "log.db-shm", "vault.db", "views.db"):
        (directory / name).unlink(missing_ok=True)
    people = events // EVENTS_PER_PERSON + 1
    say(f"building a log of {events:,} events ({people:,} simulated people) in {directory} ...")
    started = time.perf_counter()
    with Ledger(settings_for(directory)) as ledger:
        lines = islice(simulate(people=people, seed=seed), events)
        summary = ledger.publish_lines(lines, batch_size=5000, workers=os.cpu_count() or 1)
    say(f"  published {summary.appended:,} events in {time.perf_counter() - started:.0f} s")
    done.write_text(json.dumps({"events": events, "people": people}))
    return directory / "log.db"


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def raw_read(log: SQLiteEventLog) -> tuple[int, float, int]:
    subjects: set[str] = set()
    started = time.perf_counter()
    n = 0
    for record in log.read():
        json.loads(record.payload)
        n += 1
        if record.subject:
            subjects.add(record.subject)
    return n, time.perf_counter() - started, len(subjects)


def replay(log: SQLiteEventLog) -> tuple[int, float]:
    started = time.perf_counter()
    n = 0
    for record in log.read():
        decode(record.payload)
        n += 1
    return n, time.perf_counter() - started


def rebuild(log: SQLiteEventLog, views: Path, batch_size: int,
            names: list[str] | None = None, workers: int = 1) -> tuple[int, float]:
    """Rebuild the named projections (all if None) into a fresh view store at ``views``,
    in ``workers`` processes (``consumers.parallel.parallel_rebuild``)."""
    store = SQLiteViewStore(views)
    try:
        projections = [p for p in all_projections() if names is None or p.name in names]
        started = time.perf_counter()
        stats = parallel_rebuild(ProjectionRunner(log, store, projections, batch_size=batch_size),
                                 workers=workers)
        return stats.records, time.perf_counter() - started
    finally:
        store.close()
        remove_store(views)


def remove_store(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


MEMORY_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[5])
from datetime import datetime
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
from consumers.projection import ProjectionRunner
from consumers.registry import all_projections
from consumers.views import SQLiteViewStore
from ledger.sqlite import SQLiteEventLog
log = SQLiteEventLog(sys.argv[1])
store = SQLiteViewStore(sys.argv[2])
until = datetime.fromisoformat(sys.argv[4]) if sys.argv[4] != "-" else None
runner = ProjectionRunner(log, store, all_projections(), batch_size=int(sys.argv[3]))
baseline = rss("VmRSS:")
stats = runner.rebuild(until=until)
print(json.dumps({"baseline": baseline, "peak": rss("VmHWM:"), "records": stats.records}))
"""


def memory(log_path: Path, views: Path, batch_size: int,
           until: datetime | None = None) -> dict[str, int]:
    """Peak RSS of a rebuild of every view in a fresh process (of the log up to ``until``)."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, str(log_path), str(views), str(batch_size),
             until.isoformat() if until else "-", str(ROOT)],
            capture_output=True, text=True, check=True,
        )
    finally:
        remove_store(views)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def memory_slope(log_path: Path, views: Path, batch_size: int, people: int,
                 small_log: Path) -> None:
    """Peak RSS of a rebuild at two numbers of people (a smaller log of the same simulation,
    and the log of the run): the slope is the memory per million people, the intercept the
    fixed base (page cache, the decoded batch, caches of bounded size)."""
    log = SQLiteEventLog(small_log)
    try:
        few = len({r.subject for r in log.read() if r.subject})
    finally:
        log.close()
    small = memory(small_log, small_log.parent / views.name, batch_size)
    full = memory(log_path, views, batch_size)
    mb = 2**20
    slope = (full["peak"] - small["peak"]) / max(1, people - few)  # bytes per person
    base = full["peak"] - slope * people
    say(f"memory   rebuild peak RSS {small['peak'] / mb:,.0f} MB for {few:,} people "
        f"({small['records']:,} events), {full['peak'] / mb:,.0f} MB for {people:,} people "
        f"({full['records']:,} events; start-up {full['baseline'] / mb:,.0f} MB)")
    say(f"         = {base / mb:,.0f} MB fixed + {slope * 1e6 / mb:,.0f} MB per million people"
        f"   (<= 200 per million; view page cache {DEFAULT_CACHE_MB} MB, "
        f"LEDGER_VIEW_CACHE_MB)")


def scope_latency(log_path: Path, views: Path, queries: int, seed: int,
                  batch_size: int, modes: list[str], pg: PgViews | None = None,
                  people_at: int = 0) -> None:
    log = SQLiteEventLog(log_path)
    # the page cache a query process is given (LEDGER_VIEW_CACHE_MB; the bench's default)
    cache_mb = int(os.environ.get("LEDGER_VIEW_CACHE_MB") or DEFAULT_CACHE_MB)
    sqlite = SQLiteViewStore(views, cache_mb=cache_mb)
    store: ViewStore = sqlite
    try:
        _project(log, sqlite, batch_size)
        if pg is not None:
            store = pg.filled(log, sqlite, batch_size)
            say(f"scope queries from PostgreSQL ({pg.where})")
        else:
            say(f"scope queries with a view page cache of {cache_mb} MB (LEDGER_VIEW_CACHE_MB)")
        first, last = (datetime.fromtimestamp(t / 1e6, UTC) for t in store.query(
            "SELECT min(collected_at), max(collected_at) FROM holdings")[0])
        stores = [name for name, in store.query(
            "SELECT store FROM holdings GROUP BY store ORDER BY count(*) DESC, store")]
        span = (last - first) - timedelta(days=3)
        say(f"\nbreach scope: {queries} incidents per store, one store and a 3-day window at "
            f"a random time between {first.date()} and {last.date()}; 'page' = exact counts "
            f"+ the first {PAGE} people (the default answer of the API's first page), 'all' = "
            "counts + every affected person listed (as columns), 'rows' = the same + one "
            "tuple per person (as before: the baseline), 'json' = 'all' + written as the "
            "HTTP API's JSON; wall ms (cpu ms of the answering thread)"
            f"; load: {_load()}")
        for mode in modes:
            if mode == "sql":
                say("\n  answered from SQL (the CLI: one question per process)")
            else:
                rss = _rss_mb()
                t0 = time.perf_counter()
                index = ScopeIndex.attach(store)
                index.refresh()
                stats = index.stats()
                say(f"\n  answered from the in-memory index (the HTTP API, LEDGER_SCOPE_INDEX=1): "
                    f"loaded {stats['held']:,} held + {stats['ended']:,} ended segments of "
                    f"{stats['people']:,} people in {time.perf_counter() - t0:.1f} s, "
                    f"+{_rss_mb() - rss:,.0f} MB resident"
                    + (f" ({stats['array_bytes'] / 2**20:,.0f} MB of arrays)"
                       if "array_bytes" in stats else ""))
            _scope_table(store, stores, first, span, queries, random.Random(seed))
            if mode == "index" and people_at:
                _everyone_at_size(store, stores[0], first, span, people_at, random.Random(seed))
        ScopeIndex.detach(store)
        say(f"  load after: {_load()}")
        for incident in incidents(store):
            t0 = time.perf_counter()
            result = incident_scope(store, incident["incident_id"])
            say(f"  the log's own incident {incident['incident_id']} ({', '.join(incident['stores'])}, "
                f"{incident['window_start'][:10]}..{incident['window_end'][:10]}, categories "
                f"{len(incident['categories'])}): {(time.perf_counter() - t0) * 1000:.1f} ms, "
                f"{result.counts['people']:,} people")
    finally:
        if store is not sqlite:
            store.close()
        sqlite.close()
        log.close()


def _project(log: SQLiteEventLog, store: ViewStore, batch_size: int) -> None:
    runner = ProjectionRunner(log, store, [HoldingsProjection()], batch_size=batch_size)
    lag = runner.status()[0]["lag"]
    if lag:
        where = getattr(store, "where", None) or getattr(store, "path", "")
        say(f"projecting holdings into {where} ({lag:,} events) ...")
        started = time.perf_counter()
        cpu = time.process_time()
        runner.run()
        say(f"  done in {time.perf_counter() - started:.0f} s "
            f"({time.process_time() - cpu:.0f} CPU s in this process)")


def _load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


class PgViews:
    """The holdings view in PostgreSQL: a database per log, on ``--pg-url``'s server or
    on one kept under ``--out`` (started for the run, stopped after it)."""

    TABLES = ("holdings", "holdings_erased", "scope_people", "incidents",
              "incident_notices", "holdings_generation", "tracking")

    def __init__(self, out: Path, events: int, url: str | None, fill: str):
        self.server = None
        self.fill = fill
        if url is None:
            sys.path.insert(0, str(ROOT / "tests"))
            from pgkit import bench_server

            self.server = bench_server(out / "pg")
            url = self.server.url(tcp=False)
        self.base = url
        self.url = self._database(f"scope_{events}_{fill}")
        self.where = self.url.split("@", 1)[-1].split("?", 1)[0]

    def _database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.base, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                (name,)).fetchall():
                conn.execute(f'CREATE DATABASE "{name}"')
        head, _, tail = self.base.partition("?")
        head = head.rsplit("/", 1)[0] + "/" + name
        return f"{head}?{tail}" if tail else head

    def filled(self, log: SQLiteEventLog, sqlite: SQLiteViewStore,
               batch_size: int) -> ViewStore:
        from consumers.postgres import PostgresViewStore

        store = PostgresViewStore(self.url)
        if self.fill == "project":
            _project(log, store, batch_size)
        else:
            self._copy(sqlite, store)
        return store

    def _copy(self, sqlite: SQLiteViewStore, store: ViewStore) -> None:
        """The SQLite view's rows, copied as they are (the same log, projected once)."""
        with store.transaction() as tx:
            HoldingsProjection().create(tx)
        if store.query("SELECT count(*) FROM holdings")[0][0]:
            return
        say("copying the holdings view from SQLite into PostgreSQL ...")
        started = time.perf_counter()
        conn = store._conn  # noqa: SLF001 - COPY needs the connection
        with conn.transaction():
            conn.execute("DELETE FROM holdings_generation")
            for table in self.TABLES:
                if table == "tracking":
                    continue
                columns = [row[1] for row in sqlite.query(f"PRAGMA table_info({table})")]
                names = ", ".join(f'"{c}"' for c in columns)
                with conn.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for row in sqlite.rows(f"SELECT {names} FROM {table} ORDER BY rowid"):
                        copy.write_row(row)
            conn.execute("ANALYZE")
        say(f"  done in {time.perf_counter() - started:.0f} s")

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _scope_table(store: ViewStore, stores: list[str], first: datetime,
                 span: timedelta, queries: int, rnd: random.Random) -> None:
    """Per store, p50 and p99 of: the first page; everyone listed (the answer's columns);
    everyone as rows (one tuple per person: how answers were made before, the baseline);
    everyone written as JSON (the columns straight to text, as the HTTP API sends it)."""
    say(f"  {'store':22s} {'page p50':>14s} {'page p99':>14s} {'all p50':>14s} "
        f"{'all p99':>14s} {'rows p99':>14s} {'json p50':>14s} {'json p99':>14s} "
        f"{'people p50':>11s} {'max':>8s}")
    overall: dict[str, list[float]] = {
        k: [] for k in ("page", "all", "rows", "json", "page cpu", "all cpu", "rows cpu",
                        "json cpu")}
    size: list[int] = []
    for name in stores:
        times: dict[str, list[float]] = {k: [] for k in overall}
        people: list[int] = []
        scope(store, [name], first, first + timedelta(days=3))  # warm the page cache
        for _ in range(queries):
            start = first + span * rnd.random()
            for kind, limit in (("page", PAGE), ("all", None), ("rows", None),
                                ("json", None)):
                c0 = time.thread_time()
                t0 = time.perf_counter()
                answer = scope(store, [name], start, start + timedelta(days=3), limit=limit)
                if kind == "rows":
                    answer.people.rows()  # type: ignore[attr-defined]
                elif kind == "json":
                    text = answer.to_json(separators=(",", ":"))
                    size.append(len(text))
                    del text
                times[kind].append((time.perf_counter() - t0) * 1000)
                times[f"{kind} cpu"].append((time.thread_time() - c0) * 1000)
                counted = answer.counts["people"]
                del answer  # up to 180k people listed: freed outside the next timing
            people.append(counted)
        for kind, values in times.items():
            overall[kind].extend(values)
        say(f"  {name:22s} {_cell(times, 'page', statistics.median)} "
            f"{_cell(times, 'page', _p99)} {_cell(times, 'all', statistics.median)} "
            f"{_cell(times, 'all', _p99)} {_cell(times, 'rows', _p99)} "
            f"{_cell(times, 'json', statistics.median)} {_cell(times, 'json', _p99)} "
            f"{int(statistics.median(people)):11,d} {max(people):8,d}")
    say(f"  {'all stores':22s} {_cell(overall, 'page', statistics.median)} "
        f"{_cell(overall, 'page', _p99)} {_cell(overall, 'all', statistics.median)} "
        f"{_cell(overall, 'all', _p99)} {_cell(overall, 'rows', _p99)} "
        f"{_cell(overall, 'json', statistics.median)} {_cell(overall, 'json', _p99)}")
    say(f"  target from the index: p50 <= {SCOPE_P50_MS} ms, p99 <= {SCOPE_P99_MS} ms; "
        f"everyone as rows / as columns at p99: "
        f"{_p99(overall['rows']) / max(_p99(overall['all']), 1e-9):.1f}x, as JSON / as rows: "
        f"{_p99(overall['json']) / max(_p99(overall['rows']), 1e-9):.2f}x; JSON of everyone "
        f"up to {max(size, default=0) / 2**20:.1f} MB; load: {_load()}")


def _everyone_at_size(store: ViewStore, name: str, first: datetime, span: timedelta,
                      people: int, rnd: random.Random) -> None:
    """Everyone listed at ``people`` people, whatever the log's size: the largest answer of
    a few windows on ``name`` (the index's), its rows repeated to that many people with
    pseudonyms of their own. Times (medians of 5, this thread's CPU in brackets) the
    columns (``People.of``), one tuple per person (the old way), and the JSON."""
    biggest: Hits | None = None
    for _ in range(10):
        start = first + span * rnd.random()
        hit = hits(store, [name], to_us(start), to_us(start + timedelta(days=3)))
        if biggest is None or len(hit.ids) > len(biggest.ids):
            biggest = hit
    assert biggest is not None
    if not len(biggest.ids):
        return
    # copied in pseudonym order, as the index copies its names when it numbers them
    names = [p.encode().decode()
             for p in sorted(f"p_{rnd.getrandbits(160):040x}"[:34] for _ in range(people))]
    ids = np.arange(people, dtype=np.int64)
    union = np.resize(biggest.union, people)
    hit = Hits(ids, union, np.resize(biggest.reach, people), {name: (ids, union)}, names,
               people, {}, np.fromiter(names, object, people), True)
    steps: dict[str, Any] = {
        "columns (People.of)": lambda: People.of(hit, ids, None),
        "+ a tuple per person (before)": lambda: People.of(hit, ids, None).rows(),
        "+ JSON text": lambda: People.of(hit, ids, None).to_json(separators=(",", ":")),
        "+ JSON bytes (HTTP body)": lambda: People.of(hit, ids, None).to_json(
            separators=(",", ":")).encode(),
    }
    size = len(People.of(hit, ids, None).to_json(separators=(",", ":")))
    say(f"\n  everyone listed at {people:,} people (the largest of 10 answers on {name}, "
        f"{len(biggest.ids):,} people, repeated; JSON {size / 2**20:.1f} MB), median of 5, "
        f"wall ms (cpu ms); load: {_load()}")
    cpu: dict[str, float] = {}
    for label, step in steps.items():
        walls, cpus = [], []
        for _ in range(5):
            c0, t0 = time.thread_time(), time.perf_counter()
            out = step()
            walls.append((time.perf_counter() - t0) * 1000)
            cpus.append((time.thread_time() - c0) * 1000)
            del out
        cpu[label] = statistics.median(cpus)
        say(f"    {label:32s} {statistics.median(walls):8.1f} ({cpu[label]:6.1f})  "
            f"{cpu[label] * 1000 / people:5.2f} cpu us a person")
    c0, t0 = time.thread_time(), time.perf_counter()  # once: seconds
    out = json.dumps(People.of(hit, ids, None).as_dicts(), ensure_ascii=False,
                     separators=(",", ":"))
    cpu["dicts"] = (time.thread_time() - c0) * 1000
    say(f"    {'+ a dict each, json.dumps (once)':32s} {(time.perf_counter() - t0) * 1000:8.1f} "
        f"({cpu['dicts']:6.1f})  {cpu['dicts'] * 1000 / people:5.2f} cpu us a person")
    del out
    labels = list(steps)
    say(f"    tuples / columns: {cpu[labels[1]] / max(cpu[labels[0]], 1e-9):.1f}x; "
        f"JSON / tuples: {cpu[labels[2]] / max(cpu[labels[1]], 1e-9):.2f}x; "
        f"JSON from columns / from dicts: {cpu[labels[2]] / max(cpu['dicts'], 1e-9):.2f}x")


def _cell(times: dict[str, list[float]], kind: str, stat: Any) -> str:
    return f"{stat(times[kind]):7.2f} ({stat(times[kind + ' cpu']):5.1f})"


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--scope-events", type=int, default=None,
                        help="log size for the scope latency (default: --events)")
    parser.add_argument("--queries", type=int, default=100, help="scope queries per store")
    parser.add_argument("--batch-size", type=int, default=REBUILD_BATCH_SIZE,
                        help="records per transaction (default: as `pdl rebuild`)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-scope", action="store_true")
    parser.add_argument("--workers", type=int, default=2,
                        help="also rebuild all views in this many processes (1: don't)")
    parser.add_argument("--memory-events", type=int, default=200_000,
                        help="the smaller log of memory's second point (built if missing)")
    parser.add_argument("--scope-only", action="store_true",
                        help="only the breach-scope latency (e.g. on a 10M log)")
    parser.add_argument("--views", choices=("sqlite", "postgres"), default="sqlite",
                        help="where the scope queries read the holdings view")
    parser.add_argument("--pg-url", default=None,
                        help="with --views postgres: this server (default: one kept under "
                             "--out, started for the run)")
    parser.add_argument("--pg-fill", choices=("project", "copy"), default="project",
                        help="fill the PostgreSQL view by projecting the log (the rebuild "
                             "path) or by copying the SQLite view's rows")
    parser.add_argument("--modes", default="sql,index",
                        help="answer scope from: sql, index, or both (comma-separated)")
    parser.add_argument("--scope-people", type=int, default=0,
                        help="with the index: also time everyone listed at this many people "
                             "(e.g. 181000, the largest answer at 10M events)")
    parser.add_argument("--memory-only", action="store_true",
                        help="only the memory slope, between --memory-events and --events "
                             "(e.g. 1M and 10M: does memory level off with more people?)")
    parser.add_argument("--each", action="store_true",
                        help="also rebuild each projection alone (where the time goes)")
    args = parser.parse_args()

    main_dir = args.out / f"log-{args.events}"
    if args.memory_only:
        log_path = ensure_log(main_dir, args.events, args.seed)
        log = SQLiteEventLog(log_path)
        people = len({r.subject for r in log.read() if r.subject})
        log.close()
        small = ensure_log(args.out / f"log-{args.memory_events}", args.memory_events, args.seed)
        memory_slope(log_path, main_dir / f"views-{os.getpid()}.db", args.batch_size, people,
                     small)
        return 0
    if not args.scope_only:
        replay_and_rebuild(args, main_dir)
    if args.skip_scope:
        return 0
    scope_events = args.scope_events or args.events
    scope_dir = main_dir if scope_events == args.events else args.out / f"log-{scope_events}"
    scope_log = ensure_log(scope_dir, scope_events, args.seed)
    modes = [m for m in args.modes.split(",") if m]
    if set(modes) - {"sql", "index"}:
        parser.error("--modes takes sql and/or index")
    pg = (PgViews(args.out, scope_events, args.pg_url, args.pg_fill)
          if args.views == "postgres" else None)
    try:
        scope_latency(scope_log, scope_dir / "holdings.db", args.queries, args.seed,
                      args.batch_size, modes, pg, args.scope_people)
    finally:
        if pg is not None:
            pg.close()
    return 0


def replay_and_rebuild(args: argparse.Namespace, main_dir: Path) -> None:
    """R, replay, rebuild (all, and each projection with ``--each``), and memory."""
    log_path = ensure_log(main_dir, args.events, args.seed)
    log = SQLiteEventLog(log_path)
    n, seconds, people = raw_read(log)
    r = rate(n, seconds)
    say(f"\nlog: {n:,} events, {people:,} people, {log_path.stat().st_size / 1e6:,.0f} MB")
    say(f"R        raw read + JSON decode   {r:>10,.0f} events/s")
    n2, seconds2 = replay(log)
    rp = rate(n2, seconds2)
    say(f"replay   decode into models      {rp:>10,.0f} events/s   {rp / r:.2f} x R"
        f"   (>= 0.5, aim 0.8)")
    private = main_dir / f"views-{os.getpid()}.db"  # concurrent benches must not share it
    n3, seconds3 = rebuild(log, private, args.batch_size)
    rb = rate(n3, seconds3)
    say(f"rebuild  all views ({', '.join(p.name for p in all_projections())}), one process"
        f"\n                                   {rb:>10,.0f} events/s   {rb / r:.2f} x R   (>= 0.2)")
    if args.workers > 1:
        n5, seconds5 = rebuild(log, private, args.batch_size, workers=args.workers)
        rw = rate(n5, seconds5)
        say(f"rebuild  all views, {args.workers} processes "
            f"{rw:>10,.0f} events/s   {rw / r:.2f} x R   (>= 0.2; {os.cpu_count()} cores)")
    if args.each:
        for projection in all_projections():
            n4, seconds4 = rebuild(log, private, args.batch_size, [projection.name])
            each = rate(n4, seconds4)
            say(f"  {projection.name:12s} alone              {each:>10,.0f} events/s   "
                f"{each / r:.2f} x R")
    log.close()
    if not args.skip_memory:
        small = ensure_log(args.out / f"log-{args.memory_events}", args.memory_events,
                           args.seed)
        memory_slope(log_path, private, args.batch_size, people, small)

if __name__ == "__main__":
    raise SystemExit(main())
