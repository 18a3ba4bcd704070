"""`pdl status --check-lag`: the consumers' healthcheck fails when lag stops moving."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ledger.application import Ledger
from ledger.settings import Settings
from pdl.cli import main
from pdl.health import STALLED, check_lag
from schemas.examples import EXAMPLES


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


def test_pdl_status_check_lag_exit_codes(settings: Settings, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with Ledger(settings) as ledger:
        ledger.publish([{**EXAMPLES["data.collected"], "id": f"h-{i}"} for i in range(3)])
    assert settings.master_key is not None
    monkeypatch.setenv("LEDGER_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LEDGER_MASTER_KEY",
                       base64.urlsafe_b64encode(settings.master_key).decode())

    def pdl(*args: str) -> tuple[int, dict]:
        code = main(list(args))
        out = capsys.readouterr().out
        return code, json.loads(out) if "--json" in args else {}

    check = ("status", "--check-lag", "--stalled-after", "0", "--json")
    assert pdl(*check)[0] == 0  # nothing to compare with yet
    code, answer = pdl(*check)  # lag, and nothing moved since
    assert code == STALLED and answer["healthy"] is False and "stuck" in answer["message"]
    assert pdl("project")[0] == 0
    code, answer = pdl(*check)
    assert code == 0 and "up to date" in answer["message"]
