"""Settings: one table row per ``LEDGER_*`` variable, defaults from the dataclasses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from consumers.projection import REBUILD_BATCH_SIZE
from consumers.registry import open_views
from consumers.views import SQLiteViewStore
from ledger.errors import ConfigurationError
from ledger.settings import ENV, KAFKA_ENV, KafkaSettings, Settings, Var, integer


def test_every_setting_has_one_variable_and_every_variable_one_setting() -> None:
    settable = {f.name for f in dataclasses.fields(Settings)} - {"kafka"}
    assert sorted(v.field for v in ENV) == sorted(settable)
    kafka_settable = {f.name for f in dataclasses.fields(KafkaSettings)} - {
        "transactional_id", "prepare_topics", "check_subjects"}  # set by code
    assert sorted(v.field for v in KAFKA_ENV) == sorted(kafka_settable)
    names = [v.name for v in ENV + KAFKA_ENV]
    assert len(names) == len(set(names))
    assert all(name.startswith("LEDGER_") for name in names)


def test_an_empty_environment_gives_the_dataclass_defaults() -> None:
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({}).kafka == KafkaSettings()
    assert Settings.from_env({"USER": "ana"}).actor == "ana"
    assert Settings.from_env({"USER": "ana", "LEDGER_ACTOR": "bo"}).actor == "bo"


def test_each_variable_reaches_its_field() -> None:
    env = {"LEDGER_BACKEND": "kafka", "LEDGER_KAFKA_BOOTSTRAP_SERVERS": "b:1",
           "LEDGER_KAFKA_PARTITIONS": "3", "LEDGER_KAFKA_REQUEST_TIMEOUT_MS": "5000",
           "LEDGER_KAFKA_SASL_PASSWORD": "secret", "LEDGER_SQLITE_SYNCHRONOUS": "normal",
           "LEDGER_SCOPE_INDEX": "0", "LEDGER_REQUEST_DEADLINE_DAYS": "30"}
    s = Settings.from_env(env)
    assert (s.backend, s.sqlite_synchronous, s.scope_index, s.request_deadline_days) == (
        "kafka", "NORMAL", False, 30)
    assert (s.kafka.bootstrap_servers, s.kafka.partitions, s.kafka.request_timeout_ms) == (
        "b:1", 3, 5000)
    assert s.kafka.security()["sasl_plain_password"] == "secret"
    assert "secret" not in repr(s)  # a password never reaches a log line through repr


@pytest.mark.parametrize("var", [v for v in ENV + KAFKA_ENV if v.parser.__qualname__.startswith(
    integer.__qualname__)], ids=lambda v: v.name)
def test_every_whole_number_error_names_its_variable(var: Var) -> None:
    name = var.name
    with pytest.raises(ConfigurationError, match=f"^{name}='x' is not a whole number"):
        Settings.from_env({name: "x"})
    with pytest.raises(ConfigurationError, match=f"^{name}=0 must be at least"):
        Settings.from_env({name: "0"})


def test_the_kafka_backend_needs_a_bootstrap_address() -> None:
    with pytest.raises(ConfigurationError, match="LEDGER_KAFKA_BOOTSTRAP_SERVERS"):
        Settings.from_env({"LEDGER_BACKEND": "kafka"})


# --- settings that reach the view stores and projections ----------------------------------


def test_view_cache_setting_defaults_and_reaches_the_store(tmp_path: Path) -> None:
    assert Settings.from_env({}).view_cache_mb == 32
    settings = Settings.from_env({"LEDGER_VIEW_CACHE_MB": "8",
                                  "LEDGER_VIEWS_PATH": str(tmp_path / "v.db")})
    assert settings.view_cache_mb == 8
    store = open_views(settings)
    try:
        assert store.query("PRAGMA cache_size") == [(-8 * 1024,)]
    finally:
        store.close()


@pytest.mark.parametrize(("raw", "message"), [
    ("lots", "LEDGER_VIEW_CACHE_MB='lots' is not a whole number"),
    ("0", "LEDGER_VIEW_CACHE_MB=0 must be at least 1"),
])
def test_view_cache_setting_errors_name_the_key(raw: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        Settings.from_env({"LEDGER_VIEW_CACHE_MB": raw})


def test_rebuild_batch_setting_defaults_and_errors_name_the_key() -> None:
    assert Settings.from_env({}).rebuild_batch == REBUILD_BATCH_SIZE
    assert Settings.from_env({"LEDGER_REBUILD_BATCH": "5000"}).rebuild_batch == 5000
    with pytest.raises(ConfigurationError, match="LEDGER_REBUILD_BATCH=0 must be at least 1"):
        Settings.from_env({"LEDGER_REBUILD_BATCH": "0"})


def test_view_cache_entries_setting_reaches_every_projection_cache(tmp_path: Path) -> None:
    from consumers.rows import DEFAULT_CACHE_ENTRIES
    from ledger.application import Ledger
    from pdl.service import QueryService

    assert Settings.from_env({}).view_cache_entries == DEFAULT_CACHE_ENTRIES
    with pytest.raises(ConfigurationError, match="LEDGER_VIEW_CACHE_ENTRIES=0 must be at least 1"):
        Settings.from_env({"LEDGER_VIEW_CACHE_ENTRIES": "0"})
    settings = Settings.from_env({"LEDGER_VIEW_CACHE_ENTRIES": "1000", "LEDGER_DEMO": "1",
                                  "LEDGER_DATA_DIR": str(tmp_path)})
    with QueryService(Ledger(settings)) as service:
        caps = {p.name: p.cache.capacity for p in service.projections if hasattr(p, "cache")}
    # findings keeps people's states, each ~4x a pair: a quarter as many
    assert caps == {"datamap": 1000, "holdings": 1000, "findings": 250}


def test_view_store_refuses_a_cache_below_one_mb() -> None:
    with pytest.raises(ConfigurationError, match="LEDGER_VIEW_CACHE_MB"):
        SQLiteViewStore(cache_mb=0)
