"""A CLI that never misleads: not found is not empty, JSON everywhere (errors too), help on
every option, tables that cut tokens visibly instead of splitting them, read-only commands
that do not create Kafka topics, and every setting documented."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from samplekit import wire

from ledger.application import Ledger
from ledger.settings import Settings, generate_key
from pdl import cli
from pdl.cli import build_parser, cut, main

Capture = pytest.CaptureFixture[str]
ROOT = Path(__file__).resolve().parent.parent
ALICE = "acct-alice-polish"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    data = tmp_path_factory.mktemp("polish")
    env = {"LEDGER_DATA_DIR": str(data), "LEDGER_MASTER_KEY": generate_key(),
           "LEDGER_SQLITE_SYNCHRONOUS": "NORMAL", "LEDGER_ACTOR": "dpo@tests"}
    with Ledger(Settings.from_env(env)) as ledger:
        ledger.publish([
            wire("recipient.registered", "2026-01-01T00:00:00Z", None, {
                "recipient": "huitong-pay", "name": "Huitong Pay", "kind": "service_provider",
                "location": "CN", "roles": ["payment_processor"]}),
            wire("subject.registered", "2026-01-02T00:00:00Z", ALICE, {"subject_kind": "user"}),
            wire("data.collected", "2026-01-02T00:00:00Z", ALICE, {
                "categories": ["user.financial.bank_account", "user.contact.email"],
                "source": {"kind": "subject"},
                "purpose": "essential.service.payment_processing", "store": "payments-db",
                "store_location": "CN", "backups": ["payments-db-backup-long-name"]}),
            wire("data.shared", "2026-01-03T00:00:00Z", ALICE, {
                "recipient": "huitong-pay", "recipient_kind": "service_provider",
                "categories": ["user.financial.bank_account"],
                "purpose": "essential.service.payment_processing", "clause": "5.1.1"}),
            wire("data.used", "2026-01-04T00:00:00Z", ALICE, {
                "categories": ["user.contact.email"], "purpose": "sales",
                "system": "a-system-with-a-very-long-name-" + "x" * 150}),
        ])
    return env


@pytest.fixture
def cli_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def run(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(("argv", "name", "nearest"), [
    (["disclosures", "--recipient", "huitong-pya"], "huitong-pya", "huitong-pay"),
    (["disclosures", "--summary", "--recipient", "huitong"], "huitong", "huitong-pay"),
    (["disclosures", "--clause", "5.1.9"], "5.1.9", "5.1.4"),
    (["scope", "--stores", "payments-bd", "--from", "2026-01-01", "--until", "2026-02-01"],
     "payments-bd", "payments-db"),
    (["findings", "--clause", "3.33"], "3.33", "3.3"),
])
def test_unknown_names_are_not_found_with_the_nearest(cli_env: dict[str, str], capsys: Capture,
                                                      argv: list[str], name: str,
                                                      nearest: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 66
    assert repr(name) in err and nearest in err
    code, out, _ = run(capsys, *argv, "--json")
    error = json.loads(out)
    assert code == 66 and error["exit_code"] == 66 and nearest in error["error"]


def test_known_names_still_answer(cli_env: dict[str, str], capsys: Capture) -> None:
    code, out, _ = run(capsys, "disclosures", "--json", "--recipient", "huitong-pay",
                       "--clause", "5.1")
    assert code == 0 and len(json.loads(out)) == 1
    code, out, _ = run(capsys, "scope", "--json", "--stores", "payments-db", "--from",
                       "2025-01-01", "--until", "2025-02-01")  # known store, nobody then
    assert code == 0 and json.loads(out)["counts"]["people"] == 0


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("pdl",)
            ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from _leaves(child, (*path, name))


def _all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _all_parsers(child)


def test_every_command_takes_json_and_every_option_has_help() -> None:
    parser = build_parser()
    leaves = dict(_leaves(parser))
    assert len(leaves) >= 19
    for path, leaf in leaves.items():
        assert any("--json" in a.option_strings for a in leaf._actions), " ".join(path)
    for p in _all_parsers(parser):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue  # each command's own help is on its parser
            assert action.help, f"{p.prog}: {action.option_strings or action.dest} has no help"
            if action.type is cli.parse_time:
                assert "2024-07-01" in action.help or "same formats" in action.help, p.prog


def test_version_and_usage_errors_in_json(capsys: Capture) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and re.match(r"pdl \d+\.\d+", capsys.readouterr().out)
    with pytest.raises(SystemExit) as done:
        main(["subject", "--json", "--as-of", "yesterday"])
    error = json.loads(capsys.readouterr().out)
    assert done.value.code == 2 and "yesterday" in error["error"]


def test_errors_in_json(cli_env: dict[str, str], capsys: Capture) -> None:
    code, out, err = run(capsys, "subject", "acct-nobody", "--json")
    assert code == 66 and json.loads(out)["type"] == "NotFound" and "acct-nobody" not in out
    code, out, _ = run(capsys, "keygen", "--json")
    assert code == 0 and len(json.loads(out)["key"]) >= 43


def _cells(text: str) -> list[str]:
    return [c.strip() for line in text.splitlines() for c in line.split("│")[1:-1] if c.strip()]


def test_tables_at_80_columns_cut_tokens_visibly(cli_env: dict[str, str], capsys: Capture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.console, "width", 80)
    code, out, _ = run(capsys, "disclosures", "--json")
    tokens = {d["pseudonym"] for d in json.loads(out)} | {"huitong-pay",
                                                          "essential.service.payment_processing"}
    for argv in (["disclosures"], ["disclosures", "--summary"], ["findings"], ["status"],
                 ["subject", ALICE], ["scope", "--stores", "payments-db",
                                      "--from", "2026-01-01", "--until", "2026-02-01"]):
        code, text, _ = run(capsys, *argv)
        assert code in (0, 1), argv
        assert max(len(line) for line in text.splitlines()) <= 80, argv
        for cell in _cells(text):
            for token in tokens:
                stem = cell.rstrip("…")
                if len(stem) >= 4 and token.startswith(stem) and cell != token:
                    assert cell.endswith("…"), f"{argv}: {token!r} split as {cell!r}"


def test_log_marks_cut_values(cli_env: dict[str, str], capsys: Capture) -> None:
    assert cut("x" * 10, 5) == "xxxx…" and cut("short", 5) == "short"
    code, text, _ = run(capsys, "log", "--subject", ALICE)
    assert code == 0 and "…" in text
    code, out, _ = run(capsys, "log", "--json", "--subject", ALICE)
    assert all("…" not in json.dumps(r["data"]) for r in json.loads(out))  # JSON is whole


def test_settings_doc_lists_every_variable() -> None:
    from ledger.settings import ENV, KAFKA_ENV

    doc = (ROOT / "docs" / "settings.md").read_text()
    names = {var.name for var in (*ENV, *KAFKA_ENV)}
    assert {"LEDGER_VAULT_PATH", "LEDGER_VIEWS_PATH", "LEDGER_SQLITE_PATH",
            "LEDGER_KAFKA_REQUEST_TIMEOUT_MS"} <= names
    missing = sorted(n for n in names if f"`{n}`" not in doc)
    assert not missing, f"docs/settings.md lacks {missing}"


def test_read_only_commands_do_not_prepare_topics_when_kafka_is_unreachable(
        tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "LEDGER_BACKEND": "kafka",
           "LEDGER_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "LEDGER_MASTER_KEY": generate_key(),
           "LEDGER_KAFKA_REQUEST_TIMEOUT_MS": "1000", "LEDGER_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "pdl.cli", "status"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 75, done.stderr
    assert "opening the log" in done.stderr and "preparing the topics" not in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.kafka
def test_a_query_does_not_create_a_missing_topic(kafka_bootstrap: str, tmp_path: Path,
                                                 capsys: Capture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from kafka import KafkaAdminClient

    topic = f"pdl.polish-{tmp_path.name[-12:]}".replace("_", "-")
    for k, v in {"LEDGER_BACKEND": "kafka", "LEDGER_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                 "LEDGER_KAFKA_TOPIC": topic, "LEDGER_MASTER_KEY": generate_key(),
                 "LEDGER_DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(k, v)
    code, _, err = run(capsys, "findings", "--summary")
    assert code == 66 and "nothing has been published yet" in err
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert topic not in admin.list_topics()
    finally:
        admin.close()


def test_event_catalogue_explains_every_field_and_defines_every_type() -> None:
    from schemas.docs import render_catalogue

    text = render_catalogue()
    assert text == (ROOT / "docs" / "events.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    field_rows = [r for r in rows if r.count("|") == 5]  # field | type | required | meaning
    assert len(field_rows) > 100
    for row in field_rows:
        assert row.split("|")[4].strip(), f"no meaning: {row}"
    headings = set(re.findall(r"^### (\w+)$", text, flags=re.M))
    for name in set(re.findall(r"\[(\w+)\]\(#\w+\)", text)):
        assert name in headings, f"{name} is referred to but not defined"
    assert {"Source", "CrossBorder", "SubjectKind", "Mechanism"} <= headings
