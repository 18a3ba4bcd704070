"""PostgreSQL view writes: rows as typed arrays (``unnest``) against rows as JSON records.

    .venv/bin/python bench/pg_rows.py [--events N] [--repeat R] [--pg-url URL] [--json]

The PostgreSQL view store sends an ``executemany`` of ``INSERT ... VALUES`` as one
statement per table and batch (``consumers.postgres._set_insert``). Since session 9 the
rows go as one array literal per column, typed as the table's columns
(``INSERT ... SELECT ... FROM unnest(%s::text[], %s::bigint[], ...)``); before, as one JSON
array of records (``json_populate_recordset(NULL::table, %s::json)``). The JSON form is
kept here, and only here, as the baseline (``JsonRecords``).

One run, one log: ``--events`` simulated events (``workload``, seed 42) are published into
a SQLite log and projected once by every projection into a PostgreSQL schema, in batches
of 5,000 (``pdl consume``'s), while every write statement the projections send is
recorded with its rows and its transaction. Each repeat then replays the record into two
fresh schemas, by turns (each first every other repeat, after one replay that warms the
server): through the store as it is (arrays), and with the set form sending JSON
records; the two must write the same rows (checked). Both replay the same statements; the DDL goes before the clock
starts; reads (positions, marks) are not replayed. Printed, medians over the repeats:

- client CPU µs per record: this process (``time.process_time``) over the replay:
  building the parameters, psycopg, the pipeline;
- server CPU µs per record: the replaying connection's backend, from
  ``/proc/<pid>/schedstat`` (nanoseconds; needs the server on this machine: the one
  started for the run from Debian's package, as tests/pgkit.py starts it, with
  ``fsync=off``, or ``--pg-url`` to a local one);
- arrays / JSON for both, and the load average (the figures are CPU time: a loaded
  machine disturbs them less than the wall clock, not at all it does not).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from itertools import islice
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import psycopg  # noqa: E402

import consumers.postgres as pg  # noqa: E402
from consumers.projection import ProjectionRunner  # noqa: E402
from consumers.registry import all_projections  # noqa: E402
from ledger.application import Ledger  # noqa: E402
from ledger.settings import Settings  # noqa: E402
from ledger.sqlite import SQLiteEventLog  # noqa: E402

BATCH = 5000
#: one recorded write: ("execute" | "executemany", sql, params or rows)
Call = tuple[str, str, Any]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def backend_cpu(pid: int) -> float:
    """Seconds a server process has run on a CPU (schedstat: nanoseconds)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def publish(folder: Path, events: int) -> Path:
    from workload import simulate

    settings = Settings(data_dir=folder, demo=True, sqlite_synchronous="OFF", actor="bench")
    with Ledger(settings) as ledger:
        ledger.publish_lines(islice(simulate(people=events // 45 + 1, seed=42), events),
                             batch_size=5000)
    return folder / "log.db"


@contextmanager
def recording(calls: list[list[Call]]) -> Iterator[None]:
    """Every write statement of every transaction of the PostgreSQL store, into
    ``calls`` (one list per transaction)."""
    cls = pg._PostgresTransaction
    execute, executemany, init = cls.execute, cls.executemany, cls.__init__

    def _init(self: Any, *args: Any) -> None:
        init(self, *args)
        calls.append([])

    def _execute(self: Any, sql: str, params: Sequence[Any] = ()) -> int:
        calls[-1].append(("execute", sql, list(params)))
        return execute(self, sql, params)

    def _executemany(self: Any, sql: str, rows: Any) -> None:
        rows = [tuple(r) for r in rows]
        calls[-1].append(("executemany", sql, rows))
        executemany(self, sql, rows)

    cls.__init__, cls.execute, cls.executemany = _init, _execute, _executemany  # type: ignore[method-assign]
    try:
        yield
    finally:
        cls.__init__, cls.execute, cls.executemany = init, execute, executemany  # type: ignore[method-assign]


# --- the baseline: the set form as it was until session 9 -----------------------------

def _json_rows(names: tuple[str, ...], rows: list[Sequence[Any]]) -> str:
    """The rows as a JSON array of objects (booleans as 0/1, bytes as bytea hex); raises
    TypeError for any other value than str, int, None (the rows then go one by one)."""
    if {type(value) for row in rows for value in row} <= {str, int, type(None)}:
        return json.dumps([dict(zip(names, row)) for row in rows], separators=(",", ":"))
    out = []
    for row in rows:
        record: dict[str, Any] = {}
        for name, value in zip(names, row, strict=True):
            if type(value) is bool:
                value = int(value)
            elif type(value) is bytes:
                value = "\\x" + value.hex()
            elif type(value) not in (str, int, type(None)):
                raise TypeError(type(value).__name__)
            record[name] = value
        out.append(record)
    return json.dumps(out, allow_nan=False)


class JsonRecords:
    """``executemany`` sending one ``json_populate_recordset`` statement per round."""

    def __enter__(self) -> JsonRecords:
        cls = pg._PostgresTransaction
        self.original = cls.executemany

        def executemany(tx: Any, sql: str, rows: Any) -> None:
            rows = list(rows)
            plan = pg._set_insert(pg.to_postgres(sql)) if len(rows) > 1 else None
            if plan is None:
                return self.original(tx, sql, rows)
            head = plan.head[: -len("unnest(")]
            statement = (f"{head}json_populate_recordset(NULL::{plan.table}, %s::json)"
                         + (" " + plan.tail if plan.tail else ""))
            rounds = [rows] if plan.keys is None else pg._rounds(rows, plan.keys)
            try:
                payloads = [_json_rows(plan.names, part) for part in rounds]
            except (TypeError, ValueError):
                return self.original(tx, sql, rows)
            for payload in payloads:
                tx._cur.execute(statement, (payload,))
            return None

        cls.executemany = executemany  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        pg._PostgresTransaction.executemany = self.original  # type: ignore[method-assign]


# --- the run ---------------------------------------------------------------------------

def new_schema(base: str, name: str) -> str:
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{name}"')
    head, _, tail = base.partition("?")
    return f"{head}?{tail + '&' if tail else ''}options=-csearch_path%3D{name}"


def is_ddl(call: Call) -> bool:
    return call[0] == "execute" and pg._DDL.match(pg.to_postgres(call[1])) is not None


def contents(store: pg.PostgresViewStore) -> dict[str, str]:
    """Every table's rows, as a digest (the two forms must write the same)."""
    tables = [t for (t,) in store.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = "
        "current_schema() ORDER BY table_name")]
    return {t: store.query(f'SELECT md5(coalesce(string_agg(x::text, \',\' ORDER BY '
                           f'x::text), \'\')) FROM "{t}" AS x')[0][0] for t in tables}


def replay(base: str, name: str, calls: list[list[Call]], records: int,
           ) -> tuple[float, float, dict[str, str]]:
    """Client and server CPU µs per record replaying ``calls``, and what it wrote."""
    store = pg.PostgresViewStore(new_schema(base, name))
    try:
        with store.transaction() as tx:
            for call in (c for t in calls for c in t if is_ddl(c)):
                tx.execute(call[1], call[2])
        pid = store._conn.info.backend_pid
        served, cpu = backend_cpu(pid), time.process_time()
        for transaction in calls:
            with store.transaction() as tx:
                for kind, sql, params in transaction:
                    if kind == "executemany":
                        tx.executemany(sql, params)
                    elif not is_ddl((kind, sql, params)):
                        tx.execute(sql, params)
        cpu, served = time.process_time() - cpu, backend_cpu(pid) - served
        return cpu / records * 1e6, served / records * 1e6, contents(store)
    finally:
        store.close()


def measure(events: int, repeat: int, url: str | None) -> dict[str, Any]:
    server = None
    with tempfile.TemporaryDirectory(prefix="pdl-bench-pgrows-") as tmp:
        folder = Path(tmp)
        if url is None:
            from pgkit import bench_server

            # a folder of its own, which pgkit gives to the postgres user
            server = bench_server()
            url = server.url(tcp=False)
        try:
            say(f"publishing {events:,} events into a SQLite log ...")
            log = SQLiteEventLog(publish(folder / "log", events))
            say("projecting them into PostgreSQL once, recording the writes ...")
            calls: list[list[Call]] = []
            store = pg.PostgresViewStore(new_schema(url, "recorded"))
            with recording(calls):
                ProjectionRunner(log, store, all_projections(), batch_size=BATCH).run()
            store.close()
            records = log.count()
            log.close()
            rows = sum(len(c[2]) for t in calls for c in t if c[0] == "executemany")
            say(f"  {sum(map(len, calls)):,} statements in {len(calls)} transactions, "
                f"{rows:,} rows by executemany")
            figures: dict[str, list[tuple[float, float]]] = {"arrays": [], "json": []}
            say("a replay to warm the server (not measured) ...")
            replay(url, "warm", calls, records)
            for i in range(repeat):
                say(f"repeat {i + 1}/{repeat} ...")
                wrote = {}
                # by turns, and each form first every other repeat
                for form in ("arrays", "json") if i % 2 == 0 else ("json", "arrays"):
                    with JsonRecords() if form == "json" else nullcontext():
                        client, served, wrote[form] = replay(url, f"{form}_{i}", calls,
                                                             records)
                    figures[form].append((client, served))
                differ = [t for t in wrote["arrays"] if wrote["arrays"][t] != wrote["json"].get(t)]
                if differ:
                    raise SystemExit(f"the two forms wrote different rows in {differ}")
        finally:
            if server is not None:
                server.stop()
                shutil.rmtree(server.root, ignore_errors=True)
    client = {k: statistics.median(f[0] for f in v) for k, v in figures.items()}
    served = {k: statistics.median(f[1] for f in v) for k, v in figures.items()}
    return {"events": events, "records": records, "repeat": repeat, "rows": rows,
            "load": os.getloadavg(), "client_cpu_us_per_record": client,
            "server_cpu_us_per_record": served,
            "runs": figures,
            "ratios": {"client arrays / json": client["arrays"] / client["json"],
                       "server arrays / json": served["arrays"] / served["json"]}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pg-url", help="a PostgreSQL on this machine (schemas are made in it)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = measure(args.events, args.repeat, args.pg_url)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['records']:,} records, {report['rows']:,} rows sent by executemany, "
          f"median of {report['repeat']}, load average "
          + " ".join(f"{x:.1f}" for x in report["load"]))
    print(f"{'':8} {'client CPU µs/record':>22} {'server CPU µs/record':>22}")
    for kind in ("json", "arrays"):
        print(f"{kind:8} {report['client_cpu_us_per_record'][kind]:22.1f} "
              f"{report['server_cpu_us_per_record'][kind]:22.1f}")
    for name, ratio in report["ratios"].items():
        print(f"{name}: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
