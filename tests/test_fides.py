"""fideslang all the way: the vocabulary checked against fideslang's default taxonomy, and
``pdl fides export`` validated by fideslang's own models."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import fideslang
import pytest
import yaml
from fideslang.models import Dataset, System, Taxonomy
from samplekit import wire

from ledger.application import Ledger
from ledger.settings import Settings, generate_key
from pdl.cli import main
from schemas import decode, encode, parse_wire
from schemas.taxonomy import (
    CATEGORIES,
    CUSTOMER_DATA,
    EXTENSION,
    FIDES_DATA_SUBJECTS,
    FIDESLANG,
    RENAMED_CATEGORIES,
    USES,
    SubjectKind,
    is_policy_sensitive,
    is_sensitive,
)

DEFAULT = fideslang.DEFAULT_TAXONOMY
FIDES_CATEGORIES = {c.fides_key: c for c in DEFAULT.data_category}
FIDES_USES = {u.fides_key: u for u in DEFAULT.data_use}
FIDES_SUBJECTS = {s.fides_key for s in DEFAULT.data_subject}


def _fides_ancestor(key: str, ours: dict[str, Any], theirs: dict[str, Any]) -> str | None:
    """The nearest ancestor of an extension key that fideslang defines, through our own
    extensions only."""
    parent = key.rpartition(".")[0]
    while parent:
        if parent in theirs:
            return parent
        if parent not in ours or ours[parent].origin != EXTENSION:
            return None
        parent = parent.rpartition(".")[0]
    return None


@pytest.mark.parametrize(("ours", "theirs"), [(CATEGORIES, FIDES_CATEGORIES), (USES, FIDES_USES)],
                         ids=["categories", "uses"])
def test_every_key_is_fideslang_or_an_extension_under_a_fideslang_parent(
        ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert fideslang.__version__.startswith("3.")
    for key, entry in ours.items():
        if entry.origin == FIDESLANG:
            assert key in theirs, f"{key} is not in fideslang {fideslang.__version__}"
        else:
            assert entry.origin == EXTENSION and key not in theirs, key
            assert _fides_ancestor(key, ours, theirs), f"extension {key} has no fideslang parent"
            assert key.split(".")[0] in theirs, f"{key}: top level is not fideslang's"


def test_subject_kinds_are_fideslang_data_subjects() -> None:
    assert set(FIDES_DATA_SUBJECTS) == set(SubjectKind)
    assert set(FIDES_DATA_SUBJECTS.values()) <= FIDES_SUBJECTS


def test_customer_content_is_rehomed_and_old_events_still_read() -> None:
    assert "customer.content" not in CATEGORIES
    assert CUSTOMER_DATA.startswith("user.content.private.")
    old = {"source": "svc/support", "type": "data.collected", "time": "2026-01-01T00:00:00Z",
           "subject": "p-1", "id": "old-1",
           "data": {"categories": ["customer.content"], "source": {"kind": "subject"},
                    "purpose": "essential.service.operations.support", "store": "tickets",
                    "store_location": "CN"}}
    assert parse_wire(old).data.categories == [CUSTOMER_DATA]  # a producer still sending it
    stored = encode(parse_wire(old)).replace(CUSTOMER_DATA.encode(), b"customer.content")
    assert decode(stored).data.categories == [CUSTOMER_DATA]  # a log written before
    assert set(RENAMED_CATEGORIES.values()) <= set(CATEGORIES)


def test_the_policy_calls_registration_data_sensitive() -> None:
    for key in ("user.account.username", "user.contact.email", "user.contact.phone_number",
                "user.authorization.verification_code", "user.authorization.password"):
        assert is_policy_sensitive(key), key  # 2.1.1(1): 个人敏感信息
    assert not is_sensitive("user.contact.email")  # breach counts stay PIPL art. 28
    assert not is_policy_sensitive("user.device.ip_address")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data = tmp_path_factory.mktemp("fides")
    env = {"LEDGER_DATA_DIR": str(data), "LEDGER_MASTER_KEY": generate_key(),
           "LEDGER_SQLITE_SYNCHRONOUS": "NORMAL"}
    with Ledger(Settings.from_env(env)) as ledger:
        ledger.publish([
            wire("recipient.registered", "2026-01-01T00:00:00Z", None, {
                "recipient": "payco", "name": "Pay Co", "kind": "service_provider",
                "location": "CN", "roles": ["payment_processor"], "agreement_ref": "dpa-7"}),
            wire("subject.registered", "2026-01-02T00:00:00Z", "a-1", {"subject_kind": "user"}),
            wire("subject.registered", "2026-01-02T00:00:00Z", "f-1",
                  {"subject_kind": "non_user"}),
            wire("data.collected", "2026-01-02T00:00:00Z", "a-1", {
                "categories": ["user.contact.email", "user.authorization.verification_code"],
                "source": {"kind": "subject"}, "purpose": "essential.service.authentication",
                "store": "accounts db", "store_location": "CN", "backups": ["accounts-bak"]}),
            wire("data.collected", "2026-01-03T00:00:00Z", "a-1", {
                "categories": ["user.financial.bank_account"], "source": {"kind": "subject"},
                "purpose": "essential.service.payment_processing", "store": "pay-db",
                "store_location": "CN"}),
            wire("data.used", "2026-01-04T00:00:00Z", "a-1", {
                "categories": ["user.contact.email"], "purpose": "marketing.communications.email",
                "system": "mailer"}),
            wire("data.shared", "2026-01-05T00:00:00Z", "a-1", {
                "recipient": "payco", "recipient_kind": "service_provider",
                "categories": ["user.financial.bank_account"],
                "purpose": "essential.service.payment_processing", "clause": "5.1.1"}),
        ])
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    try:
        out = data / "fides.yml"
        assert main(["fides", "export", "--output", str(out)]) == 0
        yield {"path": out, "manifest": yaml.safe_load(out.read_text()), "env": env}
    finally:
        mp.undo()


def test_fides_export_validates_with_fideslang(exported: dict[str, Any]) -> None:
    manifest = exported["manifest"]
    taxonomy = Taxonomy.model_validate(manifest)  # fideslang's own models
    systems = {s.name: s for s in taxonomy.system}
    # one system per store (backups too), per using system, per recipient
    assert set(systems) == {"accounts db", "accounts-bak", "pay-db", "mailer", "Pay Co"}
    assert systems["accounts db"].fides_key == "accounts_db"  # a valid fides key
    for system in taxonomy.system:
        System.model_validate(system.model_dump())
        for d in system.privacy_declarations:
            assert d.data_use in FIDES_USES or d.data_use in {u.fides_key for u in
                                                               taxonomy.data_use}
            assert set(d.data_subjects) == {"customer", "prospect"}
    pay = systems["pay-db"].privacy_declarations[0]
    assert pay.data_use == "essential.service.payment_processing"
    assert pay.data_shared_with_third_parties and pay.third_parties == "Pay Co"
    assert pay.shared_categories == ["user.financial.bank_account"]
    assert not systems["mailer"].privacy_declarations[0].data_shared_with_third_parties
    assert systems["Pay Co"].system_type == "Third Party"
    assert "dpa-7" in (systems["Pay Co"].description or "")
    datasets = {d.name: Dataset.model_validate(d.model_dump()) for d in taxonomy.dataset}
    assert set(datasets) == {"accounts db", "accounts-bak", "pay-db"}
    fields = {f.name for f in datasets["accounts db"].collections[0].fields}
    assert fields == {"user.contact.email", "user.authorization.verification_code"}
    # the extension used resolves, with its fideslang parent
    ext = {c.fides_key: c.parent_key for c in taxonomy.data_category}
    assert ext == {"user.authorization.verification_code": "user.authorization"}
    assert stat.S_IMODE(Path(exported["path"]).stat().st_mode) == 0o600


def test_fides_export_json_and_audit(exported: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in exported["env"].items():
        monkeypatch.setenv(k, v)
    assert main(["fides", "export", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == exported["manifest"]
    with Ledger(Settings.from_env()) as ledger:
        queries = [e.data.query for _, e in ledger.events() if e.type == "ledger.queried"]
    assert queries.count("fides export") == 2
