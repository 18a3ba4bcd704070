"""Principals and tokens (store and CLI), `pdl serve`'s refusals, the first admin token,
file modes whatever the umask, the master key from a file, and accountable reads on the CLI.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from apikit import publish_sample, sample_settings
from samplekit import ALICE, ALICE_EMAIL, BOB, cli_env, run

from ledger.application import Ledger
from ledger.errors import ConfigurationError, InvalidInput, Unauthenticated
from ledger.principals import Role, SQLitePrincipalStore, new_token
from ledger.settings import Settings, generate_key
from pdl.api.server import free_port, spawned

ROOT = Path(__file__).resolve().parent.parent


# --- the store --------------------------------------------------------------------------


def test_tokens_are_stored_only_as_hashes(tmp_path: Path) -> None:
    with SQLitePrincipalStore(tmp_path / "access.db") as store:
        store.add("dpo@corp", Role.PRIVACY_OFFICER)
        issued = store.issue("dpo@corp", ttl=timedelta(days=1))
        assert store.resolve(issued.token).name == "dpo@corp"
        secret = issued.token.split("_", 2)[2]  # pdl_<id>_<secret>; the secret may hold "_"
        assert len(secret) == 43
        assert issued.token not in repr(issued)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("access.db*"))
    assert secret.encode() not in raw and issued.token.encode() not in raw
    assert stat.S_IMODE((tmp_path / "access.db").stat().st_mode) == 0o600


def test_expired_tokens_and_bad_principals(tmp_path: Path) -> None:
    with SQLitePrincipalStore(tmp_path / "access.db") as store:
        store.add("ir@corp", Role.RESPONDER)
        issued = store.issue("ir@corp", ttl=timedelta(microseconds=1))
        time.sleep(0.01)
        with pytest.raises(Unauthenticated, match="expired"):
            store.resolve(issued.token)
        assert store.tokens()[0].state() == "expired"
        with pytest.raises(InvalidInput, match="publisher needs"):
            store.add("svc", Role.PUBLISHER)
        with pytest.raises(InvalidInput, match="only a publisher"):
            store.add("x", Role.ADMIN, ["svc/a"])
        with pytest.raises(InvalidInput, match="role"):
            store.add("x", "root")
        with pytest.raises(InvalidInput, match="exists"):
            store.add("ir@corp", Role.RESPONDER)
        with pytest.raises(InvalidInput, match="name"):
            store.add("has space", Role.RESPONDER)


# --- the CLI ----------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return cli_env(tmp_path, monkeypatch, "operator@tests")


def test_principal_and_token_commands(env: Settings, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    assert run(capsys, "principal", "add", "svc-accounts", "--role", "publisher",
               "--source", "svc/accounts", "--json")[1]["sources"] == ["svc/accounts"]
    assert run(capsys, "principal", "add", "dpo@corp", "--role", "privacy_officer")[0] == 0
    assert run(capsys, "principal", "add", "bad", "--role", "publisher")[0] == 65
    code, token = run(capsys, "token", "issue", "dpo@corp", "--label", "laptop")
    token = token.strip()
    assert code == 0 and token.startswith("pdl_")
    listed = run(capsys, "token", "list", "--json")[1]
    assert [t["principal"] for t in listed] == ["dpo@corp"]
    assert token not in json.dumps(listed) and listed[0]["state"] == "active"
    assert {p["name"] for p in run(capsys, "principal", "list", "--json")[1]} == {
        "svc-accounts", "dpo@corp"}
    with SQLitePrincipalStore.for_data_dir(env.data_dir) as store:
        assert store.resolve(token).role is Role.PRIVACY_OFFICER
    assert run(capsys, "token", "revoke", listed[0]["id"], "--json")[1]["state"] == "revoked"
    assert run(capsys, "token", "revoke", "000000000000")[0] == 66
    assert run(capsys, "principal", "disable", "svc-accounts", "--json")[1]["active"] is False
    fresh = run(capsys, "token", "new")[1].strip()
    assert fresh.startswith("pdl_") and fresh != token


def test_log_unseal_and_export_record_whose_data_was_opened(
        env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    publish_sample(env)
    code, rows = run(capsys, "log", "--unseal", "--json", "--reason", "ticket 9")
    assert code == 0 and any(r.get("personal") for r in rows)
    with Ledger(env) as ledger:
        audit = [e.data for _, e in ledger.events() if e.type == "ledger.queried"][-1]
        assert set(audit.people) == {ledger.pseudonymise(ALICE), ledger.pseudonymise(BOB)}
        assert audit.clear and audit.reason == "ticket 9" and audit.actor == "operator@tests"
    assert run(capsys, "export", ALICE, "--json")[0] == 0
    code, reads = run(capsys, "access-log", "--subject", ALICE, "--json")
    assert code == 0
    assert [(r["query"], r["clear"], r["reason"]) for r in reads] == [
        ("log --unseal", True, "ticket 9"), ("export", True, None),
        ("access-log", False, None)]  # asking who read a person's data is a read too
    assert ALICE not in json.dumps(reads) and ALICE_EMAIL not in json.dumps(reads)
    code, clear = run(capsys, "access-log", "--clear", "--json")
    assert {r["query"] for r in clear} == {"log --unseal", "export"}
    # the export gave no reason: a finding (6.2.1b); the unseal gave one: none
    code, found = run(capsys, "findings", "--clause", "6.2.1b", "--json")
    assert code == 1 and len(found) == 1
    assert "export by a command-line user" in found[0]["explanation"]


# --- serve ------------------------------------------------------------------------------


def _pdl(env: dict[str, str], *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pdl.cli", *argv], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _environ(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env.update(LEDGER_DATA_DIR=str(settings.data_dir), LEDGER_MASTER_KEY=generate_key(),
               LEDGER_SCOPE_INDEX="0", **extra)
    return env


def test_serve_refuses_a_public_address_without_principals(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    result = _pdl(_environ(settings), "serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 78
    assert "no principal is configured" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """`pdl serve` on 0.0.0.0 with its first admin token from a file (a Docker secret)."""
    settings = Settings(data_dir=tmp_path / "data")
    token = new_token()[0]
    secret = tmp_path / "admin-token"
    secret.write_text(token + "\n")
    env = _environ(settings, LEDGER_ADMIN_TOKEN_FILE=str(secret))
    with spawned(env, host="0.0.0.0", cwd=ROOT, capture=True) as (url, _):
        yield url, token, settings.data_dir


def test_first_admin_token_from_a_secret_file(served: tuple[str, str, Path]) -> None:
    url, token, _ = served
    auth = {"Authorization": f"Bearer {token}"}
    me = httpx.get(f"{url}/whoami", headers=auth, timeout=10).json()
    assert me["role"] == "admin"
    made = httpx.post(f"{url}/principals", headers=auth, timeout=10,
                      json={"name": "ir@corp", "role": "responder"})
    assert made.status_code == 201
    issued = httpx.post(f"{url}/tokens", headers=auth, timeout=10,
                        json={"principal": "ir@corp", "ttl_days": 7}).json()
    them = {"Authorization": f"Bearer {issued['token']}"}
    assert httpx.get(f"{url}/whoami", headers=them, timeout=10).json()["name"] == "ir@corp"
    listed = httpx.get(f"{url}/tokens", headers=auth, timeout=10).json()["items"]
    assert issued["token"] not in json.dumps(listed)
    assert {t["principal"] for t in listed} == {"admin", "ir@corp"}


# --- files and secrets ------------------------------------------------------------------


def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    from pdl.service import QueryService

    previous = os.umask(0o022)
    try:
        settings = Settings(data_dir=tmp_path / "data", demo=True)
        publish_sample(settings)
        with QueryService.open(settings) as service:
            service.catch_up()
            SQLitePrincipalStore.for_data_dir(settings.data_dir).close()
            data = tmp_path / "data"
            written = {p.name for p in data.iterdir()}
            # -wal/-shm exist while a connection is open: check them now
            assert {"log.db", "vault.db", "views.db", "access.db", "demo-master.key",
                    "views.db-wal"} <= written
            for path in data.rglob("*"):  # files 0600, folders (checkpoints/...) 0700
                want = 0o700 if path.is_dir() else 0o600
                assert stat.S_IMODE(path.stat().st_mode) == want, path.name
            assert (data / "checkpoints" / "0" / "latest.checkpoint").exists()
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
    finally:
        os.umask(previous)


def test_an_existing_data_dir_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "log.db").touch()
    (data / "log.db").chmod(0o644)
    publish_sample(sample_settings(data))
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "log.db").stat().st_mode) == 0o600


def test_master_key_from_a_file(tmp_path: Path) -> None:
    key = generate_key()
    secret = tmp_path / "master-key"
    secret.write_text(key + "\n")
    settings = Settings.from_env({"LEDGER_MASTER_KEY_FILE": str(secret)})
    assert settings.master_key == Settings.from_env({"LEDGER_MASTER_KEY": key}).master_key
    with pytest.raises(ConfigurationError, match="not both"):
        Settings.from_env({"LEDGER_MASTER_KEY_FILE": str(secret), "LEDGER_MASTER_KEY": key})
    with pytest.raises(ConfigurationError, match="LEDGER_MASTER_KEY_FILE"):
        Settings.from_env({"LEDGER_MASTER_KEY_FILE": str(tmp_path / "missing")})
    secret.write_text("short")
    with pytest.raises(ConfigurationError, match="LEDGER_MASTER_KEY_FILE"):
        Settings.from_env({"LEDGER_MASTER_KEY_FILE": str(secret)})


def test_a_revoked_first_admin_token_stays_revoked(tmp_path: Path) -> None:
    from pdl.api.server import import_admin_token

    token = new_token()[0]
    secret = tmp_path / "admin-token"
    secret.write_text(token)
    with SQLitePrincipalStore(tmp_path / "access.db") as store:
        assert import_admin_token(store, secret) is True
        assert store.resolve(token).role is Role.ADMIN
        assert import_admin_token(store, secret) is False  # a restart imports nothing
        store.revoke(store.tokens(principal="admin")[0].id)
        assert import_admin_token(store, secret) is False
        with pytest.raises(Unauthenticated, match="revoked"):
            store.resolve(token)
        secret.write_text("not a token")
        with pytest.raises(ConfigurationError, match="LEDGER_ADMIN_TOKEN_FILE"):
            import_admin_token(store, secret)
