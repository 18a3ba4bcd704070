"""The verifiable log on Kafka (a real broker): the sealing consumer's trees and checkpoints,
and the tampering cases of issue 14 detected by `pdl verify`.

A broker's segment files can be edited by an administrator with file access; the tests
present such an edited log as a copy of the topic (records, keys, headers, timestamps and
transaction markers copied one by one, one field changed) in place of the original, and
check it against the original's sealed trees, checkpoint files and trust state.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from conftest import kafka_settings
from samplekit import run_proof_tool, simulated_subject
from ledger.application import Ledger
from ledger.checkpoint import Signer
from ledger.kafka import HEADER_EVENT_ID, HEADER_EVENT_TYPE, NO_SUBJECT_KEY, topic_configs
from ledger.factory import create_log
from ledger.persistence import LogRecord
from ledger.sealer import KafkaTreeSealer
from ledger.settings import Settings
from workload import simulate
from ledger.treelog import TreeOptions
from pdl.cli import main

pytestmark = pytest.mark.kafka
SIGNER = Signer.generate("pdl-test-kafka")
YEAR_MS = 365 * 86_400_000


def _env(s: Settings) -> dict[str, str]:
    from base64 import urlsafe_b64encode

    assert s.master_key is not None
    k = s.kafka
    assert k.bootstrap_servers is not None and k.dead_letter_topic is not None
    return {"LEDGER_BACKEND": "kafka", "LEDGER_KAFKA_BOOTSTRAP_SERVERS": k.bootstrap_servers,
            "LEDGER_KAFKA_TOPIC": k.topic, "LEDGER_KAFKA_DEAD_LETTER_TOPIC": k.dead_letter_topic,
            "LEDGER_KAFKA_PARTITIONS": str(k.partitions),
            "LEDGER_DATA_DIR": str(s.data_dir), "LEDGER_SIGNING_KEY": str(SIGNER),
            "LEDGER_MASTER_KEY": urlsafe_b64encode(s.master_key).decode()}


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Settings]:
    """A topic of ~560 records in 3 partitions, sealed, verified once (trust pinned)."""
    from ledger.settings import decode_key, generate_key

    base = Settings(data_dir=tmp_path_factory.mktemp("kafka-verify") / "data",
                    master_key=decode_key(generate_key()), actor="tests",
                    signing_key=str(SIGNER))
    s = kafka_settings(base, kafka_bootstrap)
    lines = list(simulate(people=10, seed=3))
    with Ledger(s) as ledger:
        for i in range(0, len(lines), 100):
            ledger.publish_lines(lines[i : i + 100])
    with pytest.MonkeyPatch.context() as mp:  # the CLI reads the environment
        for k, v in _env(s).items():
            mp.setenv(k, v)
        assert main(["checkpoint"]) == 0
        assert main(["verify"]) == 0
    yield s


FORGED: list[str] = []


@pytest.fixture(scope="module")
def admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    yield client
    # Each copy is a topic: delete them, so the broker restarts (other tests) stay quick.
    if FORGED:
        try:
            client.delete_topics(FORGED)
        except Exception:  # noqa: BLE001 - clean-up only; the broker may be restarting
            pass
    client.close()


@pytest.fixture
def env(sealed: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The sealed settings with the data dir (trees, checkpoints, trust) copied."""
    data = tmp_path / "data"
    shutil.copytree(sealed.data_dir, data)
    s = sealed.with_(data_dir=data)
    for k, v in _env(s).items():
        monkeypatch.setenv(k, v)
    return s


def _records(s: Settings) -> list[LogRecord]:
    log = create_log(s)
    try:
        return list(log.read())
    finally:
        log.close()


def _copy(s: Settings, admin: KafkaAdminClient,
          change: Callable[[LogRecord, dict[str, Any]], dict[str, Any] | None]) -> str:
    """A copy of the topic, record by record (same partitions, offsets, keys, headers and
    timestamps; transaction markers where the original has them), with ``change`` applied
    to each record's fields (None drops the record); returns the copy's name."""
    topic = f"pdl-forged-{uuid.uuid4().hex[:10]}"
    FORGED.append(topic)
    configs = {**topic_configs(1), "message.timestamp.type": "CreateTime"}
    admin.create_topics([NewTopic(topic, s.kafka.partitions, 1, topic_configs=configs)])
    producer = KafkaProducer(bootstrap_servers=s.kafka.bootstrap_servers,
                             transactional_id=f"forge-{topic}", enable_idempotence=True)
    producer.init_transactions()
    by_partition: dict[int, list[LogRecord]] = {}
    for r in _records(s):
        by_partition.setdefault(r.partition, []).append(r)
    for p, records in by_partition.items():
        group: list[LogRecord] = []
        for r in records + [None]:  # type: ignore[list-item]
            if group and (r is None or r.offset != group[-1].offset + 1):
                producer.begin_transaction()  # one transaction, one marker, as the original
                for g in group:
                    fields = change(g, {"key": g.subject.encode() if g.subject else NO_SUBJECT_KEY,
                                        "value": g.payload, "type": g.event_type,
                                        "timestamp_ms": int(g.recorded_at.timestamp() * 1000)})
                    if fields is None:
                        continue
                    producer.send(topic, fields["value"], key=fields["key"], partition=p,
                                  timestamp_ms=fields["timestamp_ms"],
                                  headers=[(HEADER_EVENT_ID, g.event_id.encode()),
                                           (HEADER_EVENT_TYPE, fields["type"].encode())])
                producer.commit_transaction()
                group = []
            if r is not None:
                group.append(r)
    producer.close()
    # Back to the configs the ledger insists on (the copied timestamps stay).
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                        configs=topic_configs(1))])
    return topic


def _verify_copy(s: Settings, topic: str, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    monkeypatch.setenv("LEDGER_KAFKA_TOPIC", topic)  # the original's dead-letter topic stays
    capsys.readouterr()
    code = main(["verify"])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_sealed_partitions_verify_with_their_offset_gaps(
        env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["verify", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and len(report["trees"]) == 3
    for tree in report["trees"]:
        assert tree["size"] == tree["signed_size"] == tree["trusted_size"] > 0
        assert tree["offset_gaps"] > 0  # transaction markers: leaf index != offset
        assert tree["first_offset"] == 0
    folder = env.checkpoint_folder / f"kafka-{env.kafka.topic}"
    assert sorted(p.name for p in folder.iterdir()) == ["0", "1", "2"]


def test_an_exact_copy_verifies(env: Settings, admin: KafkaAdminClient,
                                monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """The control for the copies below: copying alone changes nothing verify sees."""
    topic = _copy(env, admin, lambda r, f: f)
    code, out = _verify_copy(env, topic, monkeypatch, capsys)
    assert code == 0, out


def _target(env: Settings) -> LogRecord:
    return next(r for r in _records(env) if r.subject and r.partition == 1 and r.offset > 20)


@pytest.mark.parametrize("what,edit,message", [
    ("event type", lambda f: {**f, "type": "data.deleted"}, "stored event type 'data.deleted'"),
    ("subject", lambda f: {**f, "key": b"p_someoneelse"}, "stored subject differs"),
    ("recorded time", lambda f: {**f, "timestamp_ms": f["timestamp_ms"] - YEAR_MS},
     "do not match the checkpoint signed"),
    ("payload", lambda f: {**f, "value": b"garbage, not JSON"}, "does not decode"),
])
def test_a_rewritten_record_is_detected(
        env: Settings, admin: KafkaAdminClient, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], what: str, edit: Callable[[dict[str, Any]], Any],
        message: str) -> None:
    target = _target(env)
    topic = _copy(env, admin, lambda r, f: edit(f) if r.offset == target.offset
                  and r.partition == target.partition else f)
    code, out = _verify_copy(env, topic, monkeypatch, capsys)
    assert code == 1, what
    assert message in out
    assert f"partition 1 offset {target.offset}" in out or "partition 1" in out


def test_dropping_the_last_records_is_detected(
        env: Settings, admin: KafkaAdminClient, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    last = max(r.offset for r in _records(env) if r.partition == 2)
    topic = _copy(env, admin, lambda r, f: None if r.partition == 2 and r.offset > last - 30
                  else f)
    code, out = _verify_copy(env, topic, monkeypatch, capsys)
    assert code == 1
    assert "but the log holds only" in out and "removed from the end" in out


def test_records_deleted_from_the_start_are_detected(
        env: Settings, admin: KafkaAdminClient, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    topic = _copy(env, admin, lambda r, f: f)
    admin.delete_records({TopicPartition(topic, 0): 10})  # the log start offset moves to 10
    code, out = _verify_copy(env, topic, monkeypatch, capsys)
    assert code == 1
    assert "log start offset > 0" in out


def test_a_resealed_copy_signed_with_another_key_is_detected(
        env: Settings, admin: KafkaAdminClient, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = _target(env)
    topic = _copy(env, admin, lambda r, f: {**f, "type": "data.deleted"}
                  if r.offset == target.offset and r.partition == 1 else f)
    forged = env.with_(kafka=env.kafka.with_(topic=topic))
    log = create_log(forged)
    other = Signer.generate("pdl-test-kafka")
    sealer = KafkaTreeSealer(log, tmp_path / "forged-trees.db",
                             TreeOptions(signer=other, folder=tmp_path / "forged-cp"),
                             f"pdl.local/kafka/{env.kafka.topic}")
    sealer.run_once()
    sealer.close()
    log.close()
    monkeypatch.setenv("LEDGER_TREE_PATH", str(tmp_path / "forged-trees.db"))
    code, out = _verify_copy(env, topic, monkeypatch, capsys)
    assert code == 1
    assert "is not signed by the pinned key pdl-test-kafka" in out


def test_a_subject_proof_from_kafka_checks_with_the_standalone_tool(
        env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    person = simulated_subject(people=10, seed=3)
    out = tmp_path / "proof.json"
    assert main(["proof", "--subject", person, "-o", str(out)]) == 0
    bundle = json.loads(out.read_text())
    assert bundle["kind"] == "inclusion" and bundle["entries"]
    got = run_proof_tool(tmp_path, str(out), "--key", str(SIGNER.verifier))
    assert got.returncode == 0, got.stdout + got.stderr
    assert "inclusion proof(s) verified" in got.stdout
