"""The verifiable log on SQLite: every tampering case of issue 14 detected by `pdl verify`.

One log is written once (a simulated workload in several batches, a checkpoint every 1,000
records, signed with a key kept outside the log) and verified once to pin the verifier's
trust; each test copies it, tampers with the copy the way an administrator with file access
could, and runs `pdl verify` (exit 1 and a message naming what was found).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from samplekit import run_proof_tool, simulated_subject

from ledger.application import Ledger
from ledger.checkpoint import ALG_COSIGNATURE_V1, Signer, decode_leaf
from ledger.errors import TamperedLogError
from ledger.settings import Settings, generate_key
from workload import simulate
from ledger.sqlite import SQLiteEventLog
from ledger.treelog import TreeOptions
from pdl.cli import main

SIGNER = Signer.generate("pdl-test-log")
MASTER = generate_key()
BATCH = 400


def _env(data: Path, signer: Signer | None = SIGNER) -> dict[str, str]:
    env = {"LEDGER_DATA_DIR": str(data), "LEDGER_MASTER_KEY": MASTER,
           "LEDGER_CHECKPOINT_RECORDS": "1000", "LEDGER_VERIFIER_KEY": str(SIGNER.verifier)}
    if signer is not None:
        env["LEDGER_SIGNING_KEY"] = str(signer)
    return env


def _settings(data: Path) -> Settings:
    return Settings.from_env(_env(data))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with a signed log of ~1,700 events (5 batches) and a pinned trust state."""
    data = tmp_path_factory.mktemp("pristine") / "data"
    lines = list(simulate(people=30, seed=7))
    with Ledger(_settings(data)) as ledger:
        for i in range(0, len(lines), BATCH):
            ledger.publish_lines(lines[i : i + BATCH])
    env = _env(data)
    with pytest.MonkeyPatch.context() as mp:  # the CLI reads the environment
        for k, v in env.items():
            mp.setenv(k, v)
        assert main(["verify"]) == 0
    return data


@pytest.fixture
def data(pristine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    copy = tmp_path / "data"
    shutil.copytree(pristine, copy)
    for k, v in _env(copy).items():
        monkeypatch.setenv(k, v)
    yield copy


def _db(data: Path) -> sqlite3.Connection:
    db = sqlite3.connect(data / "log.db", isolation_level=None)
    db.execute("DROP TRIGGER IF EXISTS events_no_update")  # what file access allows
    db.execute("DROP TRIGGER IF EXISTS events_no_delete")
    return db


def _verify(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["verify"])
    out = capsys.readouterr()
    return code, out.out + out.err


def _rehash(data: Path, signer: Signer | None = None, *, drop_checkpoints: bool = False) -> None:
    """Recompute the tree with the documented algorithm, as an attacker without the key can
    (``signer``: an attacker's own key); optionally remove every checkpoint too."""
    if drop_checkpoints:
        db = _db(data)
        db.execute("DELETE FROM merkle_checkpoints")
        db.close()
        shutil.rmtree(data / "checkpoints", ignore_errors=True)
    log = SQLiteEventLog(data / "log.db",
                         tree=TreeOptions(signer=signer, folder=data / "checkpoints"))
    log.rebuild_tree()
    log.close()


def test_an_untouched_log_verifies_and_json_reports_each_tree(
        data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["verify", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (tree,) = report["trees"]
    assert report["ok"] and tree["ok"] and tree["size"] == tree["signed_size"] > 1000
    assert tree["trusted_size"] == tree["size"]
    assert (data / "verify-trust.json").stat().st_mode & 0o777 == 0o600
    files = sorted(p.name for p in (data / "checkpoints" / "0").iterdir())
    assert "latest.checkpoint" in files and len(files) >= 3
    assert (data / "checkpoints").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("column,value,message", [
    ("event_type", "'data.deleted'", "stored event type 'data.deleted' differs"),
    ("subject", "'p_someoneelse'", "stored subject differs"),
    ("recorded_at", "recorded_at + 365 * 86400", "do not match the checkpoint signed"),
])
def test_rewriting_a_column_outside_the_payload_is_detected(
        data: Path, capsys: pytest.CaptureFixture[str], column: str, value: str,
        message: str) -> None:
    db = _db(data)
    db.execute(f"UPDATE events SET {column} = {value} WHERE position = 40")
    db.close()
    code, out = _verify(capsys)
    assert code == 1
    assert message in out
    assert "FAILED" in out and "position 40" in out


@pytest.mark.parametrize("keep", ["last batch", "half"])
def test_removing_records_from_the_end_is_detected(
        data: Path, capsys: pytest.CaptureFixture[str], keep: str) -> None:
    db = _db(data)
    total = db.execute("SELECT max(position) FROM events").fetchone()[0]
    cut = total - (total % BATCH or BATCH) if keep == "last batch" else total // 2
    db.execute("DELETE FROM events WHERE position > ?", (cut,))
    db.close()
    code, out = _verify(capsys)
    assert code == 1
    assert f"the log holds only {cut}" in out
    assert "removed" in out


def test_removing_records_and_every_checkpoint_is_caught_by_the_trust_state(
        data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = _db(data)
    db.execute("DELETE FROM events WHERE position > 800")
    db.close()
    _rehash(data, drop_checkpoints=True)  # a consistent tree, no signature
    code, out = _verify(capsys)
    assert code == 1
    assert "no checkpoint signed by the pinned key" in out
    assert "fewer than the" in out and "trusted checkpoint" in out


def test_a_consistent_rehash_without_the_signing_key_is_detected(
        data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = _db(data)
    db.execute("UPDATE events SET payload = CAST(replace(CAST(payload AS TEXT), '\"source\":\"',"
               " '\"source\":\"x') AS BLOB) WHERE position = 25")
    assert b'"source":"x' in db.execute("SELECT payload FROM events WHERE position = 25"
                                        ).fetchone()[0]
    db.close()
    _rehash(data)  # tiles and tree state now agree with the edited log
    code, out = _verify(capsys)
    assert code == 1
    assert "do not match the checkpoint signed for them" in out
    assert "history was rewritten" in out


def test_deleting_a_persons_events_and_renumbering_is_detected(
        data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = _db(data)
    subject = db.execute("SELECT subject FROM events WHERE subject IS NOT NULL "
                         "GROUP BY subject ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
    rows = db.execute("SELECT event_id, event_type, subject, recorded_at, payload FROM events "
                      "WHERE subject IS NOT ? ORDER BY position", (subject,)).fetchall()
    db.execute("BEGIN")
    db.execute("DELETE FROM events")
    db.executemany("INSERT INTO events (event_id, event_type, subject, recorded_at, payload) "
                   "VALUES (?, ?, ?, ?, ?)", rows)
    db.execute("COMMIT")
    db.close()
    _rehash(data, drop_checkpoints=True)
    code, out = _verify(capsys)
    assert code == 1
    assert "no checkpoint signed by the pinned key" in out


def test_a_garbage_payload_is_detected(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = _db(data)
    db.execute("UPDATE events SET payload = CAST('not json at all' AS BLOB) WHERE position = 9")
    db.close()
    _rehash(data)
    code, out = _verify(capsys)
    assert code == 1
    assert "the record at position 9 does not decode" in out


def test_a_resign_with_another_key_is_detected(data: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    db = _db(data)
    db.execute("UPDATE events SET event_type = 'data.deleted' WHERE position = 3")
    db.close()
    _rehash(data, Signer.generate("pdl-test-log"), drop_checkpoints=True)
    code, out = _verify(capsys)
    assert code == 1
    assert "is not signed by the pinned key pdl-test-log" in out


def test_a_fork_shown_to_a_reader_and_to_a_witness_is_detected(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The operator (who holds the key) writes two histories from one checkpoint."""
    fork = tmp_path / "fork"
    shutil.copytree(data, fork)
    witness = Signer.generate("witness.test", ALG_COSIGNATURE_V1)
    (tmp_path / "w.key").write_text(str(witness))
    wargs = ["witness", "--key-file", str(tmp_path / "w.key"), "--state",
             str(tmp_path / "w.json"), "--output", str(tmp_path / "cosigned")]
    lines = list(simulate(people=2, seed=99))
    with Ledger(_settings(data)) as ledger:
        ledger.publish_lines(lines[:10])
    with Ledger(_settings(fork)) as ledger:
        ledger.publish_lines(lines[10:20])
    assert main(["verify"]) == 0
    assert main(wargs) == 0
    cosigned = (tmp_path / "cosigned" / "0" / "latest.checkpoint").read_text()
    assert cosigned.count("\u2014 ") == 2  # the log's signature and the witness's
    # The same reader (trust state) and the same witness are then shown the fork.
    shutil.copy(data / "verify-trust.json", fork / "verify-trust.json")
    os.environ["LEDGER_DATA_DIR"] = str(fork)
    code, out = _verify(capsys)
    assert code == 1
    assert "no longer match the trusted checkpoint" in out
    capsys.readouterr()
    assert main(wargs) == 1
    assert "a fork or rewritten history" in capsys.readouterr().err


def test_crypto_shredding_leaves_every_leaf_alone(data: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    settings = _settings(data)
    with Ledger(settings) as ledger:
        person = simulated_subject(people=30, seed=7)
        ledger.erase(person)
    db = _db(data)
    assert db.execute("SELECT count(*) FROM events WHERE event_type = 'data.erased'"
                      ).fetchone()[0] >= 1
    db.close()
    code, out = _verify(capsys)
    assert code == 0, out


def test_an_old_log_gets_its_tree_on_first_open_after_its_chain_is_checked(
        data: Path, tmp_path: Path) -> None:
    import hashlib

    old = tmp_path / "old.db"
    db = sqlite3.connect(old, isolation_level=None)
    db.executescript("CREATE TABLE events (position INTEGER PRIMARY KEY, event_id TEXT NOT NULL "
                     "UNIQUE, event_type TEXT NOT NULL, subject TEXT, recorded_at REAL NOT NULL, "
                     "payload BLOB NOT NULL, chain BLOB)")
    src = sqlite3.connect(data / "log.db")
    rows = src.execute("SELECT event_id, event_type, subject, recorded_at, payload FROM events "
                       "ORDER BY position LIMIT 50").fetchall()
    chain = hashlib.sha256(b"\0" * 32)
    for i, (eid, etype, subj, rec, payload) in enumerate(rows):
        chain.update(eid.encode() + len(payload).to_bytes(4, "big") + payload)
        value = chain.digest() if i == len(rows) - 1 else None
        db.execute("INSERT INTO events (event_id, event_type, subject, recorded_at, payload, "
                   "chain) VALUES (?, ?, ?, ?, ?, ?)", (eid, etype, subj, rec, payload, value))
    db.execute("UPDATE events SET payload = CAST('x' AS BLOB) WHERE position = 2")
    db.close()
    with pytest.raises(TamperedLogError, match="does not match the hash chain"):
        SQLiteEventLog(old)
    db = sqlite3.connect(old, isolation_level=None)
    db.execute("DROP TRIGGER events_no_update")
    db.execute("UPDATE events SET payload = ? WHERE position = 2", (rows[1][4],))
    db.close()
    log = SQLiteEventLog(old, tree=TreeOptions(signer=SIGNER))
    assert log.tree is not None and log.tree.size(0) == 50
    assert len(log.tree.checkpoints(0)) == 1
    log.close()


def test_the_standalone_verifier_checks_a_subject_bundle_without_the_ledger(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    person = simulated_subject(people=30, seed=7)
    bundle = tmp_path / "proof.json"
    assert main(["proof", "--subject", person, "--output", str(bundle)]) == 0
    parsed = json.loads(bundle.read_text())
    assert parsed["kind"] == "inclusion" and len(parsed["entries"]) >= 3
    assert person not in bundle.read_text()  # pseudonyms only
    leaf = decode_leaf(__import__("base64").b64decode(parsed["entries"][0]["leaf"]))
    assert leaf.subject and leaf.subject.startswith("p_")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_proof_tool(tmp_path, *args)

    got = run(str(bundle), "--key", str(SIGNER.verifier))
    assert got.returncode == 0, got.stdout + got.stderr
    assert f"{len(parsed['entries'])} inclusion proof(s) verified" in got.stdout
    # A changed payload, a changed leaf or another key: refused.
    entry = parsed["entries"][0]
    for field, change in (("payload", "e30="), ("leaf", parsed["entries"][1]["leaf"])):
        bad = json.loads(bundle.read_text())
        bad["entries"][0][field] = change
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        got = run(str(tmp_path / "bad.json"), "--key", str(SIGNER.verifier))
        assert got.returncode == 1, (field, got.stdout)
        assert "FAILED" in got.stdout
    other = Signer.generate("pdl-test-log").verifier
    got = run(str(bundle), "--key", str(other))
    assert got.returncode == 1 and "not signed by" in got.stdout
    assert entry["leaf_index"] >= 0
    # A consistency bundle between the first checkpoint and the newest.
    sizes = [s for s, _ in SQLiteEventLog(data / "log.db").tree.checkpoints(0)]  # type: ignore[union-attr]
    out = tmp_path / "consistency.json"
    assert main(["proof", "--consistency", str(sizes[0]), str(sizes[-1]), "-o", str(out)]) == 0
    got = run(str(out), "--key", str(SIGNER.verifier))
    assert got.returncode == 0 and "consistency proof verified" in got.stdout, got.stdout


def test_verify_without_any_key_is_a_configuration_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEDGER_DATA_DIR", str(tmp_path / "nokey"))
    monkeypatch.setenv("LEDGER_MASTER_KEY", MASTER)
    for k in ("LEDGER_VERIFIER_KEY", "LEDGER_SIGNING_KEY", "LEDGER_SIGNING_KEY_FILE"):
        monkeypatch.delenv(k, raising=False)
    assert main(["verify"]) == 78
    assert "no verifier key" in capsys.readouterr().err


def test_a_storage_failure_exits_74(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (data / "verify-trust.json").write_text("{not json")
    code, out = _verify(capsys)
    assert code == 74
    assert "cannot read the trust state" in out



def test_verifying_in_worker_processes_finds_exactly_what_one_process_finds(
        data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The parallel path (records decoded and leaf-hashed in worker processes, ranges of
    300 positions) against the one-process path, on an untouched log and on one tampered
    several ways: runs broken at and across range boundaries, undecodable and
    mismatching records."""
    from ledger.verification import verify_sqlite

    def both() -> list[dict[str, object]]:
        log = SQLiteEventLog(data / "log.db", tree=TreeOptions(folder=data / "checkpoints"))
        try:
            return [verify_sqlite(log, SIGNER.verifier, None, folder=data / "checkpoints",
                                  workers=w, chunk=300).as_dict() for w in (1, 2)]
        finally:
            log.close()

    one, two = both()
    assert one == two and one["ok"] and one["records"] > 1000
    db = _db(data)
    db.execute("UPDATE events SET payload = CAST('not json at all' AS BLOB) WHERE position = 9")
    db.execute("UPDATE events SET event_type = 'data.deleted' WHERE position = 40")
    db.execute("DELETE FROM events WHERE position IN (1, 300, 301, 302, 600, 905)")
    db.close()
    one, two = both()
    assert one == two and not one["ok"]
    (tree,) = one["trees"]  # type: ignore[misc]
    problems = "\n".join(tree["problems"])
    for expected in ("position 1 is missing from the log (next is 2)",
                     "the record at position 9 does not decode",
                     "the record at position 40: stored event type 'data.deleted' differs",
                     "position 300 is missing from the log (next is 303)",
                     "position 600 is missing from the log (next is 601)",
                     "position 905 is missing from the log (next is 906)"):
        assert expected in problems
    code, out = _verify(capsys)  # the CLI with the default (one process at this size)
    capsys.readouterr()
    assert code == 1 and main(["verify", "--workers", "2"]) == 1
    assert "position 905 is missing" in capsys.readouterr().err
