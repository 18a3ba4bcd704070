"""Dashboard page render times, against the JSON API answering the same question, in the
same run and the same server.

    python bench/web.py                    # 1,000 simulated people (~40k events)
    python bench/web.py --people 20000     # larger; the issue's target is a 1M-event log
    python bench/web.py --json

Rows (p50 and p90 over ``--repeat`` requests on a keep-alive connection, uvicorn in a
thread of this process, signed in as a compliance principal):

- ``overview``: ``GET /ui/`` (activity chart, projection status, quarantine, findings by
  clause, open requests); baseline ``GET /findings/summary`` (its heaviest part).
- ``register``: ``GET /ui/register`` first page of 50, ungrouped; baseline
  ``GET /disclosures?limit=50`` (the same rows as JSON).
- ``register-grouped``: ``GET /ui/register?group=recipient``; same baseline.

Every request, page or JSON, is audited (appends a ``ledger.queried`` event) and catches
the views up: that is part of what is measured. Target (issue 16): p50 <= 300 ms on 1M events.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py sits beside this file: its folder must not shadow the standard library's http.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]

import argparse  # noqa: E402
import json
import re  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import httpx  # noqa: E402
import uvicorn  # noqa: E402

ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from ledger.application import Ledger  # noqa: E402
from ledger.principals import Role, SQLitePrincipalStore  # noqa: E402
from ledger.settings import Settings, decode_key, generate_key  # noqa: E402
from pdl.api import create_app  # noqa: E402
from pdl.service import QueryService  # noqa: E402
from workload import simulate  # noqa: E402


def timed(client: httpx.Client, path: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"{path}: HTTP {answer.status_code}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pdl-bench-web-"))
    settings = Settings(data_dir=tmp / "data", master_key=decode_key(generate_key()),
                        actor="bench", sqlite_synchronous="OFF")
    started = time.perf_counter()
    lines = list(simulate(args.people, seed=7))
    with Ledger(settings) as ledger:
        ledger.publish_lines(lines)
    service = QueryService(Ledger(settings))
    service.catch_up()
    built = time.perf_counter() - started
    principals = SQLitePrincipalStore.for_data_dir(settings.data_dir)
    principals.add("bench", Role.COMPLIANCE)
    token = principals.issue("bench").token
    app = create_app(service, principals, quiet=True)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, access_log=False,
                                           log_config=None, lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    rows = []
    with httpx.Client(base_url=url, timeout=120) as ui, \
            httpx.Client(base_url=url, timeout=120,
                         headers={"Authorization": f"Bearer {token}"}) as api:
        form = ui.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
        ui.cookies.set("pdl_login_csrf", form.cookies["pdl_login_csrf"])
        signed = ui.post("/ui/login", data={"csrf": csrf, "token": token})
        ui.cookies.clear()
        ui.cookies.set("pdl_session", signed.cookies["pdl_session"])
        for name, page, baseline in (
                ("overview", "/ui/", "/findings/summary"),
                ("register", "/ui/register", "/disclosures?limit=50"),
                ("register-grouped", "/ui/register?group=recipient", "/disclosures?limit=50")):
            timed(ui, page, 2), timed(api, baseline, 2)  # warm up
            p, b = timed(ui, page, args.repeat), timed(api, baseline, args.repeat)
            rows.append({"row": name, "page_p50_ms": round(statistics.median(p), 1),
                         "page_p90_ms": round(sorted(p)[int(len(p) * 0.9) - 1], 1),
                         "baseline": baseline,
                         "baseline_p50_ms": round(statistics.median(b), 1),
                         "ratio": round(statistics.median(p) / statistics.median(b), 2)})
    server.should_exit = True
    events = service.ledger.log.count()
    result = {"events": events, "people": args.people, "build_s": round(built, 1),
              "rows": rows}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"log: {events:,} records ({args.people:,} people), built in {built:.1f} s")
        for r in rows:
            print(f"{r['row']:<18} page p50 {r['page_p50_ms']:>8.1f} ms  p90 "
                  f"{r['page_p90_ms']:>8.1f} ms   baseline {r['baseline']:<22} p50 "
                  f"{r['baseline_p50_ms']:>7.1f} ms   ratio {r['ratio']:.2f}x")
    service.close()
    principals.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
