"""`pdl status --check-lag`: the consumers' healthcheck fails when lag stops moving."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from ledger.application import Ledger
from ledger.settings import Settings
from pdl.health import STALLED, check_lag
from schemas.examples import EXAMPLES

ROOT = Path(__file__).resolve().parent.parent


def rows(offset: int, end: int) -> list[dict]:
    return [{"projection": "datamap", "position": {0: offset}, "end": {0: end},
             "lag": end - offset}]


def test_lag_that_moves_or_is_zero_is_healthy_and_lag_that_stops_is_not(tmp_path: Path) -> None:
    state = tmp_path / "lag.json"
    assert check_lag(rows(5, 10), state, 60, now=0)[0] == 0  # first look
    assert check_lag(rows(5, 10), state, 60, now=30)[0] == 0  # not long enough yet
    code, message = check_lag(rows(5, 10), state, 60, now=61)
    assert code == STALLED and "stuck" in message
    assert check_lag(rows(7, 10), state, 60, now=62)[0] == 0  # it moved again
    assert check_lag(rows(10, 10), state, 60, now=500)[0] == 0  # caught up
    assert check_lag(rows(10, 10), state, 60, now=900)[0] == 0  # no lag: never stuck
    assert oct(state.stat().st_mode & 0o777) == "0o600"


def test_pdl_status_check_lag_exit_codes(settings: Settings, tmp_path: Path) -> None:
    with Ledger(settings) as ledger:
        ledger.publish([{**EXAMPLES["data.collected"], "id": f"h-{i}"} for i in range(3)])
    assert settings.master_key is not None
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LEDGER_DATA_DIR": str(settings.data_dir),
           "LEDGER_MASTER_KEY": base64.urlsafe_b64encode(settings.master_key).decode()}

    def pdl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pdl.cli", *args], cwd=ROOT, env=env,
                              text=True, capture_output=True, check=False)

    check = ("status", "--check-lag", "--stalled-after", "0", "--json")
    first = pdl(*check)
    assert first.returncode == 0, first.stderr  # nothing to compare with yet
    stuck = pdl(*check)  # lag, and nothing moved since
    assert stuck.returncode == STALLED and json.loads(stuck.stdout)["healthy"] is False
    assert pdl("project").returncode == 0
    caught_up = pdl(*check)
    assert caught_up.returncode == 0 and "up to date" in json.loads(caught_up.stdout)["message"]
