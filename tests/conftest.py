"""Shared fixtures: settings in a temp dir, the logs of every backend (``backend_settings``,
``make_log``, ``event_log``: each test using one runs once per backend) and the view stores
(``make_view_store``, ``view_store``).

Kafka tests need a real broker. ``LEDGER_KAFKA_BOOTSTRAP_SERVERS`` points at one; else, if a
JDK and Maven are here, ``scripts/kafka-dev`` starts one for the session and stops it after.
Under ``CI=true`` a missing broker is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from consumers.views import SQLiteViewStore, ViewStore
from ledger.factory import create_log
from ledger.persistence import EventLog
from pgkit import postgres_server, postgres_url  # noqa: F401 - session PostgreSQL fixtures
from ledger.settings import Settings, generate_key

ROOT = Path(__file__).resolve().parent.parent
#: scripts/kafka-dev probes broker readiness with kafka-python when this Python has it.
DEV_ENV = {**os.environ, "PYTHON": sys.executable}
KAFKA_DEV = ROOT / "scripts" / "kafka-dev"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BACKENDS = ["sqlite", "kafka"]


def kafka_unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"Kafka tests must run in CI: {reason}. Run scripts/ci-deps first.")
    pytest.skip(f"Kafka tests skipped: {reason}. Set LEDGER_KAFKA_BOOTSTRAP_SERVERS or install "
                "a JDK and Maven (apt-get install default-jdk-headless maven).")


#: Prefixes of the topics tests make (``kafka_settings``, and the tests that name their own).
TEST_TOPICS = ("pdl-test-", "pdl-forged-", "pdl.polish-")
#: The bootstrap address of the broker ``scripts/kafka-dev`` runs for this session, once known.
DEV_BROKER: list[str] = []


def drop_test_topics(bootstrap: str) -> None:
    """Delete the tests' topics on ``bootstrap``: a broker restarts (the fault tests kill it)
    and stops in time that grows with its partitions. Clean-up only: errors are ignored."""
    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    except Exception:  # noqa: BLE001 - the broker is down: nothing to clean now
        return
    try:
        names = [t for t in admin.list_topics() if t.startswith(TEST_TOPICS)]
        if names:
            admin.delete_topics(names)
    except Exception:  # noqa: BLE001 - clean-up only
        pass
    finally:
        admin.close()


@pytest.fixture(scope="module", autouse=True)
def _drop_test_topics_after_the_module() -> Iterator[None]:
    """After each test module, its topics go (on the session's own kafka-dev broker only;
    module fixtures of the module are torn down before this autouse one)."""
    yield
    if DEV_BROKER:
        drop_test_topics(DEV_BROKER[0])


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real broker, started for the session if needed."""
    given = os.environ.get("LEDGER_KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    if not (shutil.which("java") and shutil.which("mvn")) or not KAFKA_DEV.exists():
        kafka_unavailable("no broker configured and no JDK/Maven to start one")
    was_running = subprocess.run([str(KAFKA_DEV), "status"], capture_output=True).returncode == 0
    if not was_running:
        started = subprocess.run([str(KAFKA_DEV), "start"], capture_output=True, text=True,
                                 env=DEV_ENV)
        if started.returncode != 0:
            kafka_unavailable(f"scripts/kafka-dev start failed: {started.stdout}{started.stderr}")
    bootstrap = subprocess.run(
        [str(KAFKA_DEV), "bootstrap"], capture_output=True, text=True, check=True
    ).stdout.strip()
    DEV_BROKER.append(bootstrap)
    yield bootstrap
    DEV_BROKER.clear()
    if not was_running:
        subprocess.run([str(KAFKA_DEV), "stop"], capture_output=True)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for the embedded backend in a fresh directory, with a random master key."""
    from ledger.settings import decode_key

    return Settings(data_dir=tmp_path / "data", master_key=decode_key(generate_key()),
                    sqlite_synchronous="NORMAL", actor="tests")


def kafka_settings(base: Settings, bootstrap: str, **overrides: Any) -> Settings:
    """Settings for the Kafka backend on a topic of the test's own."""
    topic = f"pdl-test-{uuid.uuid4().hex[:12]}"
    kafka = Settings.from_env({"LEDGER_BACKEND": "kafka",
                               "LEDGER_KAFKA_BOOTSTRAP_SERVERS": bootstrap}).kafka.with_(
        **{"topic": topic, "dead_letter_topic": topic + ".dead-letter",
           "group_id": topic + "-group", "partitions": 3, **overrides},
    )
    return base.with_(backend="kafka", kafka=kafka)


def kafka_cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `pdl` command on the Kafka settings of a test (its topic,
    group, data folder and master key), plus ``extra``."""
    from base64 import urlsafe_b64encode

    assert settings.master_key is not None
    k = settings.kafka
    assert k.bootstrap_servers and k.dead_letter_topic and k.group_id
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            "LEDGER_BACKEND": "kafka", "LEDGER_DATA_DIR": str(settings.data_dir),
            "LEDGER_MASTER_KEY": urlsafe_b64encode(settings.master_key).decode(),
            "LEDGER_KAFKA_BOOTSTRAP_SERVERS": k.bootstrap_servers,
            "LEDGER_KAFKA_TOPIC": k.topic, "LEDGER_KAFKA_DEAD_LETTER_TOPIC": k.dead_letter_topic,
            "LEDGER_KAFKA_GROUP_ID": k.group_id, **extra}


@pytest.fixture(params=BACKENDS)
def backend_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The same settings on each backend: tests using this run once per backend."""
    if request.param == "kafka":
        return kafka_settings(settings, request.getfixturevalue("kafka_bootstrap"))
    return settings


#: Opens the log under test (each call: a new connection to the same log).
MakeLog = Callable[[], EventLog]
#: Opens a new, empty view store of the backend under test.
MakeViewStore = Callable[[], ViewStore]


@pytest.fixture
def make_log(backend_settings: Settings) -> Iterator[MakeLog]:
    """A factory of logs of the backend under test; every log it opens is closed after."""
    opened: list[EventLog] = []

    def make() -> EventLog:
        log = create_log(backend_settings)
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close()


@pytest.fixture
def event_log(backend_settings: Settings) -> Iterator[EventLog]:
    """One empty log of each backend: projection tests run on SQLite and on Kafka.

    On Kafka, one partition: hand-built sequences mix people with registries of recipients
    and incidents, whose relative order only a single partition keeps."""
    settings = backend_settings
    if settings.backend == "kafka":
        # Their subjects are readable stand-ins for pseudonyms ("p_ann"): not checked.
        settings = settings.with_(kafka=settings.kafka.with_(partitions=1, check_subjects=False))
    log = create_log(settings)
    yield log
    log.close()


VIEW_BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=VIEW_BACKENDS)
def make_view_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeViewStore]:
    """A factory of empty view stores of the backend under test (the view contract runs on
    every store: a SQLite file, or a schema of its own on the session's PostgreSQL server,
    tests/pgkit.py); closed after the test."""
    opened: list[ViewStore] = []
    counter = count()

    def make() -> ViewStore:
        store: ViewStore
        if request.param == "postgres":
            from consumers.postgres import PostgresViewStore

            store = PostgresViewStore(request.getfixturevalue("postgres_server").new_schema())
        else:
            store = SQLiteViewStore(tmp_path / f"views-{next(counter)}.db", synchronous="OFF")
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def view_store(make_view_store: MakeViewStore) -> ViewStore:
    """One empty view store of the backend under test."""
    return make_view_store()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The log backend and the view store are independent: a view test runs on every log
    into SQLite views, and on the SQLite log into PostgreSQL views, not on every pair
    (Kafka into PostgreSQL adds time, not coverage). Deselected, never skipped."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if (params.get("backend_settings") == "kafka"
                and params.get("make_view_store") == "postgres"):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
