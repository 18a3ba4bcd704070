"""HTTP API figures, each against an in-process baseline measured in the same run.

    python bench/http.py                        # 200k-event log, every row
    python bench/http.py --events 1000000       # the issue's size (building it takes minutes)
    python bench/http.py --only datamap --json

Rows (``ROWS``; a row is a function of the shared ``Bench`` returning a ``Row``):

- ``datamap``: p50/p99 of an authenticated ``GET /subjects/{pseudonym}`` against a real
  ``pdl serve`` (uvicorn, in its own process, keep-alive connection), for random people of
  the log; baseline: ``consumers.queries.subject_map`` for the same people in this process
  (no HTTP, no token check, no audit). Every HTTP read is accountable: it appends a
  ``ledger.queried`` event (durable) before answering, from views caught up through the
  log's end as the question found it (nothing to read when only the server's own audit
  records came since: ``QueryService.catch_up_through``), and that is part of what is
  measured. Target: p50 <= 20 ms.

- ``ingest``: throughput of ``POST /events`` (publisher token, batches of ``--batch``
  events, one request after another on a keep-alive connection, against a real ``pdl
  serve``) in two content modes: JSON Lines (``application/x-ndjson``, the lines as they
  are) and a CloudEvents batch (``application/cloudevents-batch+json``, a JSON array);
  baseline: ``Ledger.publish_lines`` of the same events in this process, the same batches,
  into a fresh log with the same settings (durable: ``synchronous=FULL``). Each repeat uses
  fresh data folders; medians over ``--repeat``. Target: >= 0.5x (aim 0.8x).

More rows add a function to ``ROWS`` (``NEEDS_LOG``: rows that read the shared log). The
log is built once under ``--out`` (git-ignored) by ``bench/replay.py``'s builder and
reused; the ingest row does not need it.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is called http.py: its folder must not shadow the standard library's http.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]

import argparse
import contextlib
import importlib.util
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

import httpx


def _load_replay() -> Any:
    spec = importlib.util.spec_from_file_location("bench_replay", BENCH / "replay.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_replay = _load_replay()
ensure_log, settings_for = _replay.ensure_log, _replay.settings_for

from consumers.queries import subject_map
from consumers.views import SQLiteViewStore
from ledger.application import Ledger
from ledger.principals import Role, SQLitePrincipalStore
from ledger.settings import Settings
from pdl.api.server import spawned
from pdl.service import QueryService

DATAMAP_P50_MS = 20
INGEST_RATIO = 0.5  # the target; the aim is 0.8


@dataclass
class Row:
    """One line of the report: the API's figure, its baseline, and their ratio."""

    name: str
    what: str
    baseline: str
    value: str
    ratio: float | None
    target: str
    met: bool | None
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Bench:
    """What the rows share: the log's folder, its settings, and a running server."""

    directory: Path
    events: int
    requests: int
    seed: int
    ingest_events: int = 20_000
    batch: int = 1000
    repeat: int = 3
    url: str = ""
    tokens: dict[Role, str] = field(default_factory=dict)

    @property
    def settings(self) -> Any:
        return settings_for(self.directory)

    def token(self, role: Role, sources: tuple[str, ...] = ()) -> str:
        """A fresh token of a bench principal with ``role`` (made on first use)."""
        if role not in self.tokens:
            name = f"bench-{role.value}"
            with SQLitePrincipalStore.for_data_dir(self.directory) as store:
                if name not in {p.principal.name for p in store.principals()}:
                    store.add(name, role, sources)
                self.tokens[role] = store.issue(name, label="bench/http.py").token
        return self.tokens[role]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def served(bench: Bench) -> Iterator[str]:
    """``pdl serve`` on the bench's data directory, in its own process."""
    env = {**os.environ, "LEDGER_DATA_DIR": str(bench.directory), "LEDGER_DEMO": "1",
           "LEDGER_ACTOR": "bench", "LEDGER_SCOPE_INDEX": "0"}
    with spawned(env, cwd=ROOT, timeout=300) as (url, _):
        yield url


def prepare(bench: Bench) -> None:
    """The log (built once) and views caught up with it."""
    ensure_log(bench.directory, bench.events, bench.seed)
    with QueryService.open(bench.settings) as service:
        lag = service.lag()
        if lag:
            say(f"projecting {lag:,} records ...")
            started = time.perf_counter()
            service.catch_up()
            say(f"  projected in {time.perf_counter() - started:.0f} s")


def people(bench: Bench, n: int) -> list[str]:
    store = SQLiteViewStore(bench.settings.views_file)
    try:
        every = [r[0] for r in store.query("SELECT pseudonym FROM dm_subjects")]
    finally:
        store.close()
    return random.Random(bench.seed).sample(every, min(n, len(every)))


# --- rows -------------------------------------------------------------------------------


def datamap(bench: Bench) -> Row:
    """Authenticated GET of a data map over HTTP against subject_map in process."""
    chosen = people(bench, bench.requests)
    store = SQLiteViewStore(bench.settings.views_file)
    try:
        for p in chosen[:20]:
            subject_map(store, p)
        local = []
        for p in chosen:
            started = time.perf_counter()
            subject_map(store, p)
            local.append((time.perf_counter() - started) * 1000)
    finally:
        store.close()
    # What an accountable read costs before any HTTP: the audit append, as durable as
    # pdl serve makes it (LEDGER_SQLITE_SYNCHRONOUS=FULL, the default).
    audits = []
    with QueryService.open(bench.settings.with_(sqlite_synchronous="FULL")) as service:
        for p in chosen[:100]:
            started = time.perf_counter()
            service.audit("subject", {}, actor="bench", role="compliance", people=[p])
            audits.append((time.perf_counter() - started) * 1000)
    headers = {"Authorization": f"Bearer {bench.token(Role.COMPLIANCE)}"}
    remote = []
    with httpx.Client(base_url=bench.url, headers=headers, timeout=60) as client:
        for p in chosen[:20]:
            client.get(f"/subjects/{p}").raise_for_status()
        for p in chosen:
            started = time.perf_counter()
            client.get(f"/subjects/{p}").raise_for_status()
            remote.append((time.perf_counter() - started) * 1000)
    p50, p99 = statistics.median(remote), percentile(remote, 0.99)
    b50, b99 = statistics.median(local), percentile(local, 0.99)
    a50 = statistics.median(audits)
    return Row(
        "datamap", f"GET /subjects/{{pseudonym}} (compliance token), {len(chosen)} people",
        f"subject_map in process: p50 {b50:.2f} ms, p99 {b99:.2f} ms (the audit append "
        f"alone, in process: p50 {a50:.2f} ms)",
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms", p50 / b50 if b50 else None,
        f"p50 <= {DATAMAP_P50_MS} ms", p50 <= DATAMAP_P50_MS,
        {"p50_ms": p50, "p99_ms": p99, "baseline_p50_ms": b50, "baseline_p99_ms": b99,
         "audit_append_p50_ms": a50, "requests": len(chosen),
         "load_average": os.getloadavg()[0]})


def ingest_lines(n: int, seed: int) -> list[bytes]:
    """``n`` simulated wire events (another seed than the shared log's)."""
    from itertools import islice

    from workload import simulate

    return [line.encode() for line in islice(simulate(people=n // 20 + 1, seed=seed), n)]


def ingest(bench: Bench) -> Row:
    """POST /events over HTTP against Ledger.publish_lines in process, same events."""
    lines = ingest_lines(bench.ingest_events + bench.batch, bench.seed + 1000)
    warm, lines = lines[:bench.batch], lines[bench.batch:]
    sources = tuple(sorted({json.loads(line)["source"] for line in warm + lines}))
    batches = [lines[i:i + bench.batch] for i in range(0, len(lines), bench.batch)]
    modes: dict[str, Callable[[list[bytes]], bytes]] = {
        "application/x-ndjson": lambda b: b"\n".join(b) + b"\n",
        "application/cloudevents-batch+json": lambda b: b"[" + b",".join(b) + b"]",
    }
    rates: dict[str, list[float]] = {"in process": [], **{m: [] for m in modes}}
    parent = bench.directory.parent
    parent.mkdir(parents=True, exist_ok=True)
    for repeat in range(bench.repeat):
        with tempfile.TemporaryDirectory(dir=parent, prefix="ingest-") as tmp, \
                contextlib.ExitStack() as stack:
            say(f"ingest: repeat {repeat + 1}/{bench.repeat}, {len(lines):,} events")
            settings = Settings(data_dir=Path(tmp) / "local", demo=True, actor="bench")
            ledger = stack.enter_context(Ledger(settings))
            ledger.publish_lines(warm, batch_size=bench.batch)
            clients: dict[str, httpx.Client] = {}
            for mode, body in modes.items():
                server = Bench(Path(tmp) / mode.split("/")[1], 0, 0, bench.seed)
                headers = {"Authorization": f"Bearer {server.token(Role.PUBLISHER, sources)}",
                           "Content-Type": mode}
                url = stack.enter_context(served(server))
                clients[mode] = stack.enter_context(
                    httpx.Client(base_url=url, headers=headers, timeout=300))
                clients[mode].post("/events", content=body(warm)).raise_for_status()
            spent = dict.fromkeys(rates, 0.0)
            # Batch by batch, each contender in turn: the machine's load (shared, noisy)
            # weighs on all of them alike.
            for b in batches:
                started = time.perf_counter()
                ledger.publish_lines(b, batch_size=bench.batch)
                spent["in process"] += time.perf_counter() - started
                for mode, body in modes.items():
                    content = body(b)
                    started = time.perf_counter()
                    answer = clients[mode].post("/events", content=content)
                    answer.raise_for_status()
                    spent[mode] += time.perf_counter() - started
                    assert answer.json()["appended"] == len(b)
            for name, seconds in spent.items():
                rates[name].append(len(lines) / seconds)
    local = statistics.median(rates["in process"])
    medians = {m: statistics.median(r) for m, r in rates.items()}
    lines_rate, batch_rate = medians["application/x-ndjson"], \
        medians["application/cloudevents-batch+json"]
    ratio = lines_rate / local
    return Row(
        "ingest", f"POST /events, {len(batches)} batches of {bench.batch} (publisher token)",
        f"Ledger.publish_lines in process: {local:,.0f} events/s",
        f"JSON Lines {lines_rate:,.0f} events/s ({ratio:.2f}x); CloudEvents batch "
        f"{batch_rate:,.0f} events/s ({batch_rate / local:.2f}x)", ratio,
        f">= {INGEST_RATIO}x (aim 0.8x)", ratio >= INGEST_RATIO and batch_rate / local >= INGEST_RATIO,
        {"events": len(lines), "batch": bench.batch, "repeats": bench.repeat,
         "events_per_s": medians, "runs": rates})


#: Every row, in report order: name -> function of the shared bench.
ROWS: dict[str, Callable[[Bench], Row]] = {"datamap": datamap, "ingest": ingest}
#: Rows that read the shared log (built once) through one server on it.
NEEDS_LOG = {"datamap"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=500, help="requests per latency row")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out"))
    parser.add_argument("--only", help=f"comma-separated rows of: {', '.join(ROWS)}")
    parser.add_argument("--ingest-events", type=int, default=20_000,
                        help="events the ingest row publishes each repeat")
    parser.add_argument("--batch", type=int, default=1000, help="events per ingest request")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of the ingest row")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(ROWS)
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        parser.error(f"unknown row {unknown[0]!r}; rows: {', '.join(ROWS)}")
    bench = Bench(Path(args.out) / f"http-{args.events}", args.events, args.requests,
                  args.seed, args.ingest_events, args.batch, args.repeat)
    rows: list[Row] = []
    if NEEDS_LOG & set(names):
        prepare(bench)
        with served(bench) as url:
            bench.url = url
            rows += [ROWS[name](bench) for name in names if name in NEEDS_LOG]
    rows += [ROWS[name](bench) for name in names if name not in NEEDS_LOG]
    rows.sort(key=lambda r: names.index(r.name))
    if args.json:
        print(json.dumps({"events": args.events, "rows": [asdict(r) for r in rows]}, indent=2))
        return 0
    if NEEDS_LOG & set(names):
        print(f"log: {args.events:,} events ({bench.directory})")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        status = "met" if r.met else ("MISSED" if r.met is not None else "-")
        print(f"{r.name}: {r.what}\n  baseline: {r.baseline}\n  api:      {r.value}"
              f"\n  ratio {ratio}; target {r.target}: {status}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
