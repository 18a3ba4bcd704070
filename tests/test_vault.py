"""The key vault contract on both vaults (SQLite file, PostgreSQL): keys wrapped, erasure
for good, master-key rotation; and over PostgreSQL, an erasure seen by every process at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgkit import PostgresServer

from ledger.application import Ledger
from ledger.errors import SealingError
from ledger.settings import Settings, decode_key, generate_key
from schemas.examples import EXAMPLES

ROOT = Path(__file__).resolve().parent.parent
ALICE, BOB = "acct:alice-1001", "acct:bob-2002"
VALUES = {"user.contact.email": "alice.wang@example.cn", "user.name": "王爱丽"}


def wire(subject: str, personal: dict[str, str] | None) -> dict:
    event = json.loads(json.dumps(EXAMPLES["data.collected"]))
    event["subject"] = subject
    event["data"]["categories"] = sorted(personal) if personal else ["user.device.ip_address"]
    event.pop("id", None)  # derived from the content
    if personal:
        event["data"]["personal"] = personal
    else:
        event["data"].pop("personal", None)
    return event


@pytest.fixture(params=["sqlite", "postgres"])
def vault_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The same settings with the vault in a SQLite file, or in PostgreSQL."""
    if request.param == "postgres":
        return settings.with_(vault_url=request.getfixturevalue("postgres_url"))
    return settings


def env_of(settings: Settings, master: bytes | None = None) -> dict[str, str]:
    """The environment of a `pdl` process on these settings."""
    import base64

    env = {**os.environ, "PYTHONPATH": str(ROOT), "LEDGER_DATA_DIR": str(settings.data_dir),
           "LEDGER_SQLITE_SYNCHRONOUS": "NORMAL",
           "LEDGER_MASTER_KEY": base64.urlsafe_b64encode(
               master or settings.require_master_key()).decode()}
    if settings.vault_url:
        env["LEDGER_VAULT_URL"] = settings.vault_url
    return env


def pdl(settings: Settings, *args: str, master: bytes | None = None
        ) -> subprocess.CompletedProcess[str]:
    """`pdl ARGS` in a process of its own, on these settings."""
    return subprocess.run([sys.executable, "-m", "pdl.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, env=env_of(settings, master), check=False)


@pytest.fixture
def pdl_here(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """`pdl ARGS` in this process (quicker), with the environment of these settings."""
    from pdl.cli import main

    def run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
        for name, value in env_of(settings).items():
            if name.startswith("LEDGER_"):
                monkeypatch.setenv(name, value)
        if not settings.vault_url:
            monkeypatch.delenv("LEDGER_VAULT_URL", raising=False)
        code = main(list(args))
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run


def events_of(ledger: Ledger, subject: str) -> list:
    return [event for _, event in ledger.events(subject=subject)]


def test_rotation_rewraps_every_key_keeps_pseudonyms_and_retires_the_old_key(
        vault_settings: Settings, tmp_path: Path, pdl_here: Any) -> None:
    with Ledger(vault_settings) as ledger:
        ledger.publish([wire(ALICE, VALUES), wire(BOB, {"user.name": "Bob"})])
        ledger.erase(BOB)
        pseudonym = ledger.pseudonymise(ALICE)
    new_key = generate_key()
    (tmp_path / "new.key").write_text(new_key)
    done = pdl_here(vault_settings, "vault", "rotate", "--new-key-file",
                    str(tmp_path / "new.key"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rewrapped"] == 1  # Alice's; Bob's was destroyed
    # the old master key is refused from now on, with a message that says why
    with pytest.raises(SealingError, match="rotated"):
        Ledger(vault_settings)
    rotated = vault_settings.with_(master_key=decode_key(new_key))
    with Ledger(rotated) as ledger:
        assert ledger.pseudonymise(ALICE) == pseudonym  # the log's pseudonyms still link up
        (event,) = events_of(ledger, ALICE)
        assert ledger.unseal(event) == VALUES  # sealed before the rotation, opens after
        assert ledger.vault.state(ledger.pseudonymise(BOB)) == "destroyed"
        ledger.publish([wire(ALICE, {"user.name": "Alice"})])
        assert [ledger.unseal(e) for e in events_of(ledger, ALICE)][1] == {"user.name": "Alice"}
    # the same key again is refused
    (tmp_path / "same.key").write_text(new_key)
    again = pdl_here(rotated, "vault", "rotate", "--new-key-file", str(tmp_path / "same.key"))
    assert again.returncode == 78 and "current LEDGER_MASTER_KEY" in again.stderr


def test_a_bad_new_key_names_the_option(vault_settings: Settings, tmp_path: Path,
                                        pdl_here: Any) -> None:
    (tmp_path / "bad.key").write_text("too-short")
    done = pdl_here(vault_settings, "vault", "rotate", "--new-key-file", str(tmp_path / "bad.key"))
    assert done.returncode == 78 and "--new-key-file must be 32 random bytes" in done.stderr
    assert "Traceback" not in done.stderr


UNSEAL = """
import sys
from ledger.application import Ledger
from ledger.settings import Settings
with Ledger(Settings.from_env()) as ledger:
    events = [e for _, e in ledger.events(subject=sys.argv[1])]
    print(ledger.unseal(events[0]))
"""


def test_an_erasure_in_one_process_is_refused_by_every_other_at_once(
        settings: Settings, postgres_url: str) -> None:
    """Three processes share the PostgreSQL vault (each its own SQLite log copy is not
    needed: the log is one file here, the vault is the shared part)."""
    shared = settings.with_(vault_url=postgres_url)
    with Ledger(shared) as first, Ledger(shared) as second:
        first.publish([wire(ALICE, VALUES)])
        (event,) = events_of(first, ALICE)
        assert first.unseal(event) == VALUES and second.unseal(event) == VALUES  # warm
        before = subprocess.run([sys.executable, "-c", UNSEAL, ALICE], cwd=ROOT, text=True,
                                capture_output=True, env=env_of(shared), check=True)
        assert "alice.wang@example.cn" in before.stdout
        erased = pdl(shared, "erase", ALICE, "--json")
        assert erased.returncode == 0, erased.stderr
        # at once: no wait, no cache to expire, in this process's two ledgers ...
        assert first.unseal(event) is None and second.unseal(event) is None
        # ... and in a process started afterwards
        after = subprocess.run([sys.executable, "-c", UNSEAL, ALICE], cwd=ROOT, text=True,
                               capture_output=True, env=env_of(shared), check=True)
        assert after.stdout.strip() == "None"
        assert second.vault.state(second.pseudonymise(ALICE)) == "destroyed"


def test_a_destroyed_key_leaves_no_row_version_and_only_wrapped_keys_reach_the_server(
        settings: Settings, postgres_server: PostgresServer, postgres_url: str) -> None:
    shared = settings.with_(vault_url=postgres_url)
    with Ledger(shared) as ledger:
        ledger.publish([wire(ALICE, VALUES), wire(BOB, {"user.name": "Bob"})])
        pseudonym = ledger.pseudonymise(ALICE)
        clear = ledger.vault.keys_for([pseudonym], create=False)[pseudonym]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        ((wrapped,),) = conn.execute("SELECT wrapped FROM subject_keys WHERE pseudonym = %s",
                                     (pseudonym,)).fetchall()
        wrapped = bytes(wrapped)
        assert len(wrapped) == 12 + 32 + 16  # nonce, wrapped key, tag: never a clear key
        assert clear is not None
        with Ledger(shared) as ledger:
            ledger.erase(ALICE)
        rows = conn.execute("SELECT wrapped, destroyed_at IS NOT NULL FROM subject_keys "
                            "WHERE pseudonym = %s", (pseudonym,)).fetchall()
        assert rows == [(None, True)]  # a tombstone, no key
        conn.execute("CHECKPOINT")
        (path,), = conn.execute("SELECT pg_relation_filepath('subject_keys')").fetchall()
    blob = (postgres_server.data / path).read_bytes()
    assert len(blob) > 0
    assert wrapped not in blob, "the destroyed wrapped key is still in the table's file"
