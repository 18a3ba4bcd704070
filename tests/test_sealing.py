"""Sealed personal values and crypto-shredding: what the files on disk may and may not hold."""

from __future__ import annotations

import base64
import json
import sqlite3
import urllib.parse
from pathlib import Path

import pytest

from ledger.application import Ledger
from ledger.errors import ConfigurationError, InvalidInput, SealingError
from ledger.settings import Settings, decode_key, generate_key
from schemas import decode
from schemas.examples import EXAMPLES

ALICE = "acct:alice-1001"
ALICE_VALUES = {
    "user.contact.email": "alice.wang@example.cn",
    "user.contact.phone_number": "13912345678",
    "user.name": "王爱丽",
    "user.account.username": "alice_w_88",
}
BOB = "acct:bob-2002"


def wire(subject: str, personal: dict[str, str] | None = None, **data: object) -> dict:
    event = json.loads(json.dumps(EXAMPLES["data.collected"]))
    del event["id"]  # derived from the content: each distinct event gets its own
    event["subject"] = subject
    event["data"]["categories"] = sorted(personal) if personal else ["user.device.ip_address"]
    event["data"].update(data)
    if personal:
        event["data"]["personal"] = personal
    else:
        event["data"].pop("personal", None)
    return event


def encodings(value: str) -> set[bytes]:
    """Every way a value could plausibly sit in a file."""
    raw = value.encode()
    out = {
        raw,
        value.encode("utf-16-le"),
        json.dumps(value).encode(),  # \\u escapes for non-ASCII
        base64.b64encode(raw).rstrip(b"="),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        raw.hex().encode(),
        urllib.parse.quote(value).encode(),
    }
    return {e for e in out if len(e) >= 6}


def ledger_files(data_dir: Path) -> list[Path]:
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any(p.name.endswith("-wal") for p in files) or files, files
    return files


def test_values_are_sealed_and_subjects_pseudonymised(settings: Settings) -> None:
    with Ledger(settings) as ledger:
        ledger.publish([wire(ALICE, ALICE_VALUES)])
        (record,) = list(ledger.log.read())
        assert ALICE.encode() not in record.payload
        for value in ALICE_VALUES.values():
            for form in encodings(value):
                assert form not in record.payload
        event = decode(record.payload)
        assert event.data.personal is None and event.sealed and event.sealed.startswith("v1.")
        assert event.subject == ledger.pseudonymise(ALICE) != ALICE
        assert ledger.unseal(event) == ALICE_VALUES


def test_erasure_leaves_no_identifying_value_in_any_file(settings: Settings) -> None:
    """Crypto-shredding: after erasure no file the ledger wrote holds Alice's values."""
    with Ledger(settings) as ledger:
        ledger.publish([wire(ALICE, ALICE_VALUES), wire(BOB, {"user.contact.email": "bob@example.cn"})])
        ledger.publish([wire(ALICE, None, purpose="essential.service.security")])
        pseudonym = ledger.pseudonymise(ALICE)
        wrapped = ledger.vault._db.execute(  # noqa: SLF001 - the test looks at the raw key
            "SELECT wrapped FROM subject_keys WHERE pseudonym = ?", (pseudonym,)
        ).fetchone()[0]
        views = _project(settings, ledger)
        ledger.erase(ALICE, reason="closure")
        views_after = _project(settings, ledger)
        assert (views, views_after) == (3, 1)  # the erasure event was projected too
        export = ledger.export(ALICE)
        assert export["key"] == "destroyed"
        assert all(e.get("personal") in (None, "(erased: key destroyed)") for e in export["events"])
        # Bob is untouched
        assert ledger.export(BOB)["events"][0]["personal"] == {"user.contact.email": "bob@example.cn"}
    files = ledger_files(settings.data_dir)
    assert {p.suffix for p in files} >= {".db"}
    needles = {ALICE.encode()} | set().union(*(encodings(v) for v in ALICE_VALUES.values()))
    for path in files:
        blob = path.read_bytes()
        for needle in needles:
            assert needle not in blob, f"{path.name} still holds an identifying value"
        assert wrapped not in blob, f"{path.name} still holds Alice's wrapped data key"


def _project(settings: Settings, ledger: Ledger) -> int:
    """Run every projection into the views file (so the byte search covers views too)."""
    from consumers.projection import ProjectionRunner
    from consumers.registry import all_projections, open_views

    store = open_views(settings)
    try:
        return ProjectionRunner(ledger.log, store, all_projections()).run().records
    finally:
        store.close()


def test_an_erased_person_cannot_be_sealed_again(settings: Settings) -> None:
    with Ledger(settings) as ledger:
        ledger.publish([wire(ALICE, ALICE_VALUES)])
        ledger.erase(ALICE)
        before = ledger.log.count()
        with pytest.raises(InvalidInput) as info:
            ledger.publish([wire(ALICE, {"user.contact.email": "new@example.cn"})])
        assert info.value.errors[0][1] == "subject"
        assert ledger.log.count() == before
        # events without personal values about the erased person are still recorded
        ledger.publish([wire(ALICE, None)])
        assert ledger.log.count() == before + 1


def test_a_token_only_opens_on_its_own_event(settings: Settings) -> None:
    with Ledger(settings) as ledger:
        ledger.publish([wire(ALICE, ALICE_VALUES), wire(ALICE, {"user.name": "x"})])
        first, second = (decode(r.payload) for r in ledger.log.read())
        moved = second.model_copy(update={"sealed": first.sealed})
        with pytest.raises(SealingError, match="do not open"):
            ledger.sealer.open(moved.subject or "", moved.id or "", moved.sealed or "")


def test_wrong_master_key_is_refused(settings: Settings) -> None:
    Ledger(settings).close()
    other = settings.with_(master_key=decode_key(generate_key()))
    with pytest.raises(SealingError, match="does not match the key vault"):
        Ledger(other)


def test_missing_master_key_is_a_clear_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="LEDGER_MASTER_KEY is not set"):
        Ledger(Settings(data_dir=tmp_path))
    with pytest.raises(ConfigurationError, match="LEDGER_MASTER_KEY must be 32 random bytes"):
        Settings.from_env({"LEDGER_MASTER_KEY": "too-short"})
    demo = Settings(data_dir=tmp_path, demo=True)
    assert demo.require_master_key() == demo.require_master_key()  # generated once, kept


def test_vault_file_holds_no_clear_key_material(settings: Settings) -> None:
    with Ledger(settings) as ledger:
        ledger.publish([wire(ALICE, ALICE_VALUES)])
        ledger.vault._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # noqa: SLF001
    raw = sqlite3.connect(settings.vault_file).execute("SELECT wrapped FROM subject_keys").fetchall()
    assert all(len(w) == 12 + 32 + 16 for (w,) in raw)  # nonce + wrapped key + tag
