"""``pdl status --check-lag``: is a consumer keeping up? (a container healthcheck)

A consumer is healthy while its views have no lag, or while its positions move. Each check
keeps what it saw (positions, lag, time) in a small state file of its own; a check that
finds lag and the same positions as a check at least ``stalled_after`` seconds earlier
says the consumer is stuck (exit status 1), whatever the reason: a dead process, a
consumer group that lost its member, a view store that refuses writes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ledger.files import private_file

#: Exit status of a stalled consumer (0: healthy).
STALLED = 1


def check_lag(rows: list[dict[str, Any]], state_file: Path, stalled_after: float,
              now: float | None = None) -> tuple[int, str]:
    """(exit status, message) for the status rows of every projection."""
    now = time.time() if now is None else now
    lag = sum(int(r["lag"]) for r in rows)
    positions = {r["projection"]: {str(p): o for p, o in r["position"].items()} for r in rows}
    try:
        before = json.loads(state_file.read_text())
    except (OSError, ValueError):
        before = None
    moved = before is None or before.get("positions") != positions
    if moved or lag == 0:
        private_file(state_file)
        state_file.write_text(json.dumps({"positions": positions, "lag": lag, "since": now}))
        return 0, (f"lag {lag}: up to date" if lag == 0 else f"lag {lag}, moving")
    stuck_for = now - float(before.get("since", now))
    if stuck_for >= stalled_after:
        return STALLED, (f"lag {lag} and no position moved for {stuck_for:.0f} s: the "
                         "consumer is stuck (is `pdl consume` running? see its log)")
    return 0, f"lag {lag}, not moved for {stuck_for:.0f} s (stuck after {stalled_after:.0f} s)"
