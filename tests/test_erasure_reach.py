"""Erasure is obeyed at once by every process, and ``erase`` tells the truth (issue 12,
observations 6 and 7); ``pdl simulate | head`` ends quietly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from ledger.application import Ledger
from ledger.principals import Role, SQLitePrincipalStore
from ledger.settings import Settings, generate_key
from pdl.api.server import spawned
from pdl.cli import main

Capture = pytest.CaptureFixture[str]
ALICE, EMAIL = "acct:alice-12", "alice.reach@example.cn"


def wire(subject: str, personal: dict[str, str] | None, n: int = 0) -> dict[str, Any]:
    event: dict[str, Any] = {
        "source": "tests/erasure", "type": "data.collected",
        "time": f"2026-03-01T08:{n // 60 % 60:02d}:{n % 60:02d}+08:00", "subject": subject,
        "data": {"categories": ["user.contact.email"], "source": {"kind": "subject"},
                 "purpose": "essential.service.authentication", "store": "accounts-db",
                 "store_location": "CN"}}
    if personal:
        event["personal"] = personal
    return event


@pytest.fixture
def env(tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    env = {**os.environ, "LEDGER_DATA_DIR": str(tmp_path / "data"),
           "LEDGER_MASTER_KEY": generate_key(), "LEDGER_ACTOR": "tests",
           "LEDGER_SQLITE_SYNCHRONOUS": "NORMAL"}
    return env


@pytest.fixture(params=["sqlite", "kafka"])
def backend_env(request: pytest.FixtureRequest, env: dict[str, str]) -> dict[str, str]:
    if request.param == "kafka":
        import uuid

        topic = f"pdl-test-{uuid.uuid4().hex[:12]}"
        env.update(LEDGER_BACKEND="kafka",
                   LEDGER_KAFKA_BOOTSTRAP_SERVERS=request.getfixturevalue("kafka_bootstrap"),
                   LEDGER_KAFKA_TOPIC=topic, LEDGER_KAFKA_DEAD_LETTER_TOPIC=topic + ".dlq",
                   LEDGER_KAFKA_PARTITIONS="2")
    return env


def _export(base: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base}/subjects/export", method="POST",
        data=json.dumps({"subject": ALICE, "reason": "ticket-12"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
        return json.loads(answer.read())  # type: ignore[no-any-return]


PUBLISHER = textwrap.dedent("""
    import json, sys
    from ledger.application import Ledger
    from ledger.errors import InvalidInput
    from ledger.settings import Settings
    sys.path.insert(0, sys.argv[1])
    from test_erasure_reach import wire, ALICE
    with Ledger(Settings.from_env()) as ledger:
        n = 100
        for line in sys.stdin:  # one publish per line of its parent
            n += 1
            try:
                ledger.publish([wire(ALICE, {"user.contact.email": "again@example.cn"}, n)])
                print("sealed", flush=True)
            except InvalidInput as exc:
                print("refused " + exc.errors[0][2], flush=True)
""")


def test_erase_reaches_a_running_server_and_a_running_publisher(
        backend_env: dict[str, str]) -> None:
    settings = Settings.from_env(backend_env)
    with Ledger(settings) as ledger:
        ledger.publish([wire(ALICE, {"user.contact.email": EMAIL})])
    with closing(SQLitePrincipalStore.for_data_dir(settings.data_dir)) as principals:
        principals.add("dpo", Role.PRIVACY_OFFICER)
        token = principals.issue("dpo").token
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(Path(__file__).parent)],
                                 env=backend_env, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
    assert publisher.stdin is not None and publisher.stdout is not None
    try:
        with spawned(backend_env) as (base, _server):
            before = _export(base, token)
            assert EMAIL in json.dumps(before)  # its vault has Alice's key cached now
            publisher.stdin.write("go\n")
            publisher.stdin.flush()
            assert publisher.stdout.readline().strip() == "sealed"  # the publisher's too
            with Ledger(settings) as ledger:  # a third process erases
                assert not ledger.erase(ALICE).already
            after = _export(base, token)
            assert EMAIL not in json.dumps(after) and "again@example.cn" not in json.dumps(after)
            assert after.get("key", "destroyed") == "destroyed"
            publisher.stdin.write("go\n")
            publisher.stdin.flush()
            assert publisher.stdout.readline().startswith("refused this person was erased")
    finally:
        publisher.stdin.close()
        publisher.wait(30)


def test_erase_of_an_unknown_id_and_twice(env: dict[str, str], capsys: Capture,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("LEDGER_DATA_DIR", "LEDGER_MASTER_KEY", "LEDGER_ACTOR"):
        monkeypatch.setenv(key, env[key])
    settings = Settings.from_env()
    with Ledger(settings) as ledger:
        ledger.publish([wire(ALICE, None)])  # seen, but never any personal value (no key)
        count = ledger.log.count()
    assert main(["erase", "acct:never-seen"]) == 66
    assert "never saw this person" in capsys.readouterr().err
    with Ledger(settings) as ledger:
        assert ledger.log.count() == count
    assert main(["erase", "acct:never-seen", "--record-anyway", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["already"] is False
    assert main(["erase", ALICE, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["already"] is False
    with Ledger(settings) as ledger:
        count = ledger.log.count()
    assert main(["erase", ALICE]) == 0
    assert "already erased" in capsys.readouterr().out
    assert main(["erase", ALICE, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["already"] is True and again["offset"] == first["offset"]
    with Ledger(settings) as ledger:
        assert ledger.log.count() == count  # nothing appended the second and third time


def test_simulate_into_head_ends_quietly(env: dict[str, str]) -> None:
    done = subprocess.run(
        f"{sys.executable} -m pdl.cli simulate --people 300 | head -n 3",
        shell=True, env=env, capture_output=True, text=True, timeout=120,
        executable="/bin/bash")
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 3
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    status = subprocess.run(
        f"{sys.executable} -m pdl.cli simulate --people 300 | head -n 1 >/dev/null; "
        "echo ${PIPESTATUS[0]}", shell=True, env=env, capture_output=True, text=True,
        timeout=120, executable="/bin/bash")
    assert status.stdout.strip() in ("0", "141")
    assert "Traceback" not in status.stderr
