"""The sample people and events the CLI and API tests share, and the CLI runner they use.

Alice has an email and a bank account (shared with Pay Co); Bob has an email. Tests of the
CLI configure the ledger through ``LEDGER_*`` like a user (``cli_env``); tests of the API
build ``Settings`` (``apikit.sample_settings``). Both publish ``sample_events``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ledger.settings import Settings, generate_key
from pdl.cli import main

ALICE, BOB = "acct-alice-7", "acct-bob-9"
ALICE_EMAIL, ALICE_BANK = "alice.wang@example.com", "6222 0000 1111 2222"
EMAIL, BANK = "user.contact.email", "user.financial.bank_account"


def wire(type_: str, t: str, subject: str | None, data: dict[str, Any],
         personal: dict[str, str] | None = None, *, source: str = "tests/cli"
         ) -> dict[str, Any]:
    """A wire event (``subject`` and ``personal`` only if given)."""
    event: dict[str, Any] = {"source": source, "type": type_, "time": t, "data": data}
    if subject:
        event["subject"] = subject
    if personal:
        event["personal"] = personal
    return event


def collected(subject: str, t: str, categories: list[str], store: str, personal: dict[str, str],
              **data: Any) -> dict[str, Any]:
    return wire("data.collected", t, subject, {
        "categories": categories, "source": {"kind": "subject"},
        "purpose": data.pop("purpose", "essential.service.authentication"), "store": store,
        "store_location": "CN", **data}, personal)


def shared(subject: str, t: str, recipient: str, categories: list[str], clause: str) -> dict[str, Any]:
    return wire("data.shared", t, subject, {
        "recipient": recipient, "recipient_kind": "service_provider", "categories": categories,
        "purpose": "essential.service.payment_processing", "clause": clause})


def sample_events(*, preferences: bool = False) -> list[dict[str, Any]]:
    """Pay Co, Alice (email, bank account shared with Pay Co) and Bob (email); with
    ``preferences`` also Alice's marketing consent and an SMS opt-out."""
    alice_prefs = [
        wire("consent.granted", "2026-01-05T00:00:00Z", ALICE, {
            "consent_id": "c-mkt", "purpose": "marketing.communications.email",
            "policy_version": "v1"}),
        wire("subscription.changed", "2026-01-06T00:00:00Z", ALICE, {
            "kind": "marketing.communications.sms", "subscribed": False}),
    ] if preferences else []
    return [
        wire("recipient.registered", "2026-01-01T00:00:00Z", None, {
            "recipient": "payco", "name": "Pay Co", "kind": "service_provider",
            "location": "CN", "roles": ["payment_processor"]}),
        wire("subject.registered", "2026-01-02T00:00:00Z", ALICE, {"subject_kind": "user"}),
        collected(ALICE, "2026-01-02T00:00:00Z", [EMAIL], "accounts-db",
                  {EMAIL: ALICE_EMAIL}, backups=["accounts-backup"]),
        collected(ALICE, "2026-01-03T00:00:00Z", [BANK], "payments-db",
                  {BANK: ALICE_BANK}, purpose="essential.service.payment_processing",
                  retention_days=365),
        shared(ALICE, "2026-01-04T00:00:00Z", "payco", [BANK], "5.1.1"),
        *alice_prefs,
        collected(BOB, "2026-01-02T00:00:00Z", [EMAIL], "accounts-db",
                  {EMAIL: "bob@example.com"}),
    ]


def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, actor: str) -> Settings:
    """A fresh data directory and master key, configured through ``LEDGER_*`` like a user."""
    monkeypatch.setenv("LEDGER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEDGER_MASTER_KEY", generate_key())
    monkeypatch.setenv("LEDGER_ACTOR", actor)
    monkeypatch.setenv("LEDGER_SQLITE_SYNCHRONOUS", "NORMAL")
    return Settings.from_env()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    """``pdl ARGV`` in this process: its exit code and its output (parsed if JSON)."""
    code = main(list(argv))
    out = capsys.readouterr().out
    try:
        return code, json.loads(out)
    except json.JSONDecodeError:
        return code, out


PROOF_TOOL = Path(__file__).resolve().parent.parent / "tools" / "pdl-verify-proof.py"


def simulated_subject(people: int, seed: int) -> str:
    """The first subject ``pdl simulate --people PEOPLE --seed SEED`` writes about."""
    from workload import simulate

    return next(json.loads(line)["subject"] for line in simulate(people=people, seed=seed)
                if json.loads(line).get("subject"))


def run_proof_tool(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``tools/pdl-verify-proof.py ARGS`` as a user without the ledger runs it: ``-I`` (no
    PYTHONPATH, no cwd on the path) and the ledger's packages made unimportable (this venv
    has them installed), so it runs on the standard library and cryptography alone."""
    tool = str(PROOF_TOOL)
    code = ("import runpy, sys\n"
            "for name in ('ledger', 'schemas', 'consumers', 'pdl', 'pydantic'):\n"
            "    sys.modules[name] = None\n"
            f"sys.argv = [{tool!r}, *sys.argv[1:]]\n"
            f"runpy.run_path({tool!r}, run_name='__main__')\n")
    clean = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": "", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-I", "-c", code, *args], capture_output=True,
                          text=True, env=clean, cwd=cwd)
