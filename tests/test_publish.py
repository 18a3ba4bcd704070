"""Publishing: idempotence, atomic batches, bad input, crashes, and an immutable log."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.application import Ledger
from ledger.errors import TamperedLogError
from ledger.settings import Settings
from ledger.sqlite import SQLiteEventLog
from pdl.cli import main
from schemas import uuid7
from schemas.examples import EXAMPLES

ROOT = Path(__file__).resolve().parent.parent


def line(i: int, with_id: bool = True) -> str:
    event = json.loads(json.dumps(EXAMPLES["data.used"]))
    event["subject"] = f"acct:{i % 500}"
    event["time"] = f"2026-11-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z"
    event["data"]["system"] = f"mailer-{i}"
    if with_id:
        event["id"] = uuid7(1_700_000_000_000 + i, i.to_bytes(10, "big"))
    else:
        del event["id"]  # the old form: the ledger derives it from the content
    if i % 2 == 0:
        event["type"] = "data.collected"
        event["data"] = EXAMPLES["data.collected"]["data"] | {
            "store": f"db-{i % 7}",
            "personal": {"user.contact.email": f"person{i}@example.cn",
                         "user.contact.phone_number": f"139{i:08d}"}}
    return json.dumps(event, ensure_ascii=False)


def write_lines(path: Path, n: int, with_id: bool = True) -> Path:
    path.write_text("\n".join(line(i, with_id) for i in range(n)) + "\n")
    return path


def env_for(settings: Settings) -> dict[str, str]:
    from base64 import urlsafe_b64encode

    assert settings.master_key is not None
    return {**os.environ, "LEDGER_DATA_DIR": str(settings.data_dir),
            "LEDGER_MASTER_KEY": urlsafe_b64encode(settings.master_key).decode()}


def test_publishing_twice_stores_each_event_once(settings: Settings, tmp_path: Path) -> None:
    for with_id in (True, False):  # ids given, or derived from content
        data = settings.with_(data_dir=tmp_path / f"d{with_id}")
        source = write_lines(tmp_path / f"in{with_id}.jsonl", 2500, with_id)
        with Ledger(data) as ledger:
            first = ledger.publish_file(source)
            second = ledger.publish_file(source)
            assert (first.appended, first.duplicates) == (2500, 0)
            assert (second.appended, second.duplicates) == (0, 2500)
            assert ledger.log.count() == 2500
            assert ledger.verify() == 2500


def test_a_batch_with_a_repeated_id_stores_it_once(settings: Settings) -> None:
    with Ledger(settings) as ledger:
        event = json.loads(line(1))
        results = ledger.publish([event, event])
        assert [r.duplicate for r in results] == [False, True]
        assert results[0].offset == results[1].offset
        assert ledger.log.count() == 1


def test_bad_lines_refuse_the_whole_input(settings: Settings, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    good = [line(i) for i in range(2500)]
    bad = list(good)
    broken = json.loads(bad[1700])
    broken["data"]["purpose"] = "mind.reading"
    bad[1700] = json.dumps(broken)
    bad[2100] = "{oops"
    missing = json.loads(bad[42])
    del missing["time"]
    bad[42] = json.dumps(missing)
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(bad) + "\n")
    for key, value in env_for(settings).items():
        monkeypatch.setenv(key, value)
    assert main(["publish", str(path)]) == 65
    err = capsys.readouterr().err
    assert "line 43: time: Field required" in err
    assert "line 1701: data.purpose: unknown data use 'mind.reading'" in err
    assert "line 2101: (line): not valid JSON" in err
    assert "3 of 2500 line(s) refused; nothing was appended" in err
    for value in ("person1700@example.cn", "13900001700"):
        assert value not in err  # errors never echo personal values
    with Ledger(settings) as ledger:
        assert ledger.log.count() == 0
    # --json gives machines the same errors
    assert main(["publish", "--json", str(path)]) == 65
    report = json.loads(capsys.readouterr().out)
    assert {"line": 43, "field": "time", "reason": "Field required"} in report["errors"]


def test_publish_from_stdin_with_results(settings: Settings, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", 10)
    done = subprocess.run(
        [sys.executable, "-m", "pdl.cli", "publish", "--json", "--results", "-"],
        input=source.read_bytes(), capture_output=True, env=env_for(settings), cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["appended"] == 10
    assert [r["offset"] for r in report["results"]] == list(range(1, 11))
    assert all(r["acknowledged"] for r in report["results"])


def test_sigkill_during_a_large_append_leaves_whole_batches(settings: Settings,
                                                           tmp_path: Path) -> None:
    total = 40_000
    source = write_lines(tmp_path / "big.jsonl", total)
    log_path = settings.log_path
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdl.cli", "publish", "--batch-size", "1000", str(source)],
        env=env_for(settings), cwd=ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    seen = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if log_path.exists():
            try:
                with sqlite3.connect(f"file:{log_path}?mode=ro", uri=True) as db:
                    seen = db.execute("SELECT count(*) FROM events").fetchone()[0]
            except sqlite3.OperationalError:
                seen = 0
            if seen >= 3000:
                break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the publisher and its sealing workers
    proc.wait()
    assert 0 < seen < total, "the publisher was not caught mid-append"
    log = SQLiteEventLog(log_path)
    kept = log.count()
    assert kept % 1000 == 0 and kept < total  # whole batches only
    assert log.verify() == kept  # readable, hash chain intact
    ids = [r.event_id for r in log.read()]
    assert len(ids) == len(set(ids))
    log.close()
    # publishing the same file again completes it, without duplicates
    with Ledger(settings) as ledger:
        summary = ledger.publish_file(source)
        assert summary.appended == total - kept and summary.duplicates == kept
        assert ledger.log.count() == total


def test_the_log_refuses_updates_and_deletes(settings: Settings) -> None:
    with Ledger(settings) as ledger:
        ledger.publish([json.loads(line(i)) for i in range(3)])
    db = sqlite3.connect(settings.log_path)
    for statement in ("UPDATE events SET payload = x'00'", "DELETE FROM events"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(statement)
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 3


def test_verify_detects_tampering(settings: Settings, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with Ledger(settings) as ledger:
        for start in (0, 10, 20):
            ledger.publish([json.loads(line(i)) for i in range(start, start + 10)])
        assert ledger.verify() == 30
    for key, value in env_for(settings).items():
        monkeypatch.setenv(key, value)
    assert main(["verify"]) == 0
    db = sqlite3.connect(settings.log_path, isolation_level=None)
    db.execute("DROP TRIGGER events_no_update")  # what an attacker with file access could do
    db.execute("UPDATE events SET payload = CAST(replace(payload, 'mailer-13', 'mailer-99') AS BLOB) "
               "WHERE position = 14")
    db.close()
    with pytest.raises(TamperedLogError, match="positions 11-20"):
        SQLiteEventLog(settings.log_path).verify()
    assert main(["verify"]) == 74
    assert "does not match the hash chain" in capsys.readouterr().err
