"""The bounded contract (issue 12, observations 1-3): every input an attacker or a careless
producer tried is refused as bad input, with its line and field, exit 65, nothing appended.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from consumers import queries
from consumers.views import SQLiteViewStore
from ledger.application import Ledger
from ledger.errors import InvalidInput
from ledger.settings import Settings, generate_key
from pdl.cli import main
from pdl.output import parse_time
from schemas.examples import EXAMPLES

Capture = pytest.CaptureFixture[str]
COLLECTED: dict[str, Any] = EXAMPLES["data.collected"]


def _with(**changes: Any) -> dict[str, Any]:
    event = json.loads(json.dumps(COLLECTED))
    for path, value in changes.items():
        node = event
        *parents, leaf = path.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return event


def _line(event: dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=True)


BIG_RETENTION = _line(_with(data__retention_days=0)).replace(
    '"retention_days": 0', '"retention_days": 1' + "0" * 400)

REFUSED: list[tuple[str, bytes, str]] = [
    ("retention 10**12", _line(_with(data__retention_days=10**12)).encode(),
     "data.retention_days"),
    ("retention 2**63", _line(_with(data__retention_days=2**63)).encode(), "data.retention_days"),
    ("retention 10**400", BIG_RETENTION.encode(), "data.retention_days"),
    ("schemaversion 10**30", _line(_with(schemaversion=10**30)).encode(), "schemaversion"),
    ("time year 1", _line(_with(time="0001-01-01T00:00:00+08:00")).encode(), "time"),
    ("time year 9999", _line(_with(time="9999-12-31T23:59:59-05:00")).encode(), "time"),
    ("time before 1970 in UTC", _line(_with(time="1970-01-01T07:59:59+08:00")).encode(), "time"),
    ("time as epoch number", _line(_with(time=1_700_000_000)).encode(), "time"),
    ("time as epoch string", _line(_with(time="1700000000")).encode(), "time"),
    ("NUL in subject", _line(_with(subject="acct:1\u00002")).encode(), "subject"),
    ("NUL in a personal value",
     _line(_with(data__personal={"user.contact.email": "a\u0000@example.cn"})).encode(),
     "data.personal.user.contact.email"),
    ("personal key not in categories",
     _line(_with(data__personal={"user.financial.bank_account": "6222"})).encode(),
     "data.personal.user.financial.bank_account"),
    ("JSON 10,000 levels deep", ("[" * 10_000 + "]" * 10_000).encode(), "(line)"),
    ("object 10,000 levels deep", ('{"a":' * 10_000 + "1" + "}" * 10_000).encode(), "(line)"),
    ("invalid UTF-8", _line(_with(source="svc/\u00e9")).encode().replace(b"\\u00e9", b"\xff\xfe"),
     "(line)"),
    ("line over the size bound", _line(_with(data__personal={
        "user.contact.email": "x" * 2_000_000})).encode(), "(line)"),
]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LEDGER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEDGER_MASTER_KEY", generate_key())
    monkeypatch.setenv("LEDGER_ACTOR", "tests")
    return tmp_path


@pytest.mark.parametrize(("label", "bad", "field"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_with_line_and_field_nothing_appended(data_dir: Path, capsys: Capture,
                                                      label: str, bad: bytes,
                                                      field: str) -> None:
    good = _line(_with(id="good-1")).encode()
    path = data_dir / "events.jsonl"
    path.write_bytes(good + b"\n" + bad + b"\n")
    assert main(["publish", "--json", str(path)]) == 65, label
    report = json.loads(capsys.readouterr().out)
    assert {"line": 2, "field": field} in [
        {"line": e["line"], "field": e["field"]} for e in report["errors"]], report
    with Ledger(Settings.from_env()) as ledger:
        assert ledger.log.count() == 0


def test_bounds_at_the_edge_are_accepted(data_dir: Path) -> None:
    """The bounds are inclusive: the largest retention and the edges of time publish."""
    lines = [_line(_with(id="edge-1", data__retention_days=36_500,
                         time="2200-12-31T23:59:59Z")),
             _line(_with(id="edge-2", time="1970-01-01T00:00:00Z")),
             _line(_with(id="edge-3", time="1970-01-01T08:00:00+08:00"))]
    with Ledger(Settings.from_env()) as ledger:
        summary = ledger.publish_lines(lines)
        assert summary.appended == 3


def test_publish_of_dicts_refuses_the_same(data_dir: Path) -> None:
    """The dict path (Ledger.publish, HTTP) keeps the same bounds."""
    with Ledger(Settings.from_env()) as ledger:
        for event in (_with(time=1_700_000_000), _with(subject="a\u0000"),
                      _with(data__retention_days=10**12)):
            with pytest.raises(InvalidInput) as err:
                ledger.publish([event])
            assert err.value.exit_code == 65
        assert ledger.log.count() == 0


@pytest.mark.parametrize("raw", ["0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-05:00"])
def test_cli_times_out_of_range_are_usage_errors(data_dir: Path, capsys: Capture,
                                                 raw: str) -> None:
    """``--from``/``--as-of`` at the ends of the calendar: a clear message, never a traceback."""
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="outside"):
        parse_time(raw)
    with pytest.raises(SystemExit) as exit_:
        main(["disclosures", "--from", raw])
    assert exit_.value.code == 2
    assert "outside 1970-01-01T00:00:00Z" in capsys.readouterr().err


@pytest.mark.parametrize("limit", [10**26, -1, 10_000_001])
def test_query_limits_are_bounded(limit: int) -> None:
    """A huge ``limit`` (HTTP ``limit=9999…``) is bad input, not an OverflowError."""
    from datetime import UTC, datetime

    from consumers.projection import ProjectionRunner
    from consumers.registry import all_projections
    from ledger.sqlite import SQLiteEventLog

    store = SQLiteViewStore()
    log = SQLiteEventLog(Path(__import__("tempfile").mkdtemp()) / "log.db")
    try:
        ProjectionRunner(log, store, all_projections())  # creates every view
        with pytest.raises(InvalidInput, match="limit"):
            queries.disclosures(store, limit=limit)
        with pytest.raises(InvalidInput, match="limit"):
            queries.scope(store, ["accounts-db"], datetime(2024, 1, 1, tzinfo=UTC),
                          datetime(2025, 1, 1, tzinfo=UTC), limit=limit)
    finally:
        store.close()
        log.close()
