"""The runner's checks on records another producer wrote stay per record once they are
cheap (docs/projection-cpu.md, "The runner's own work"): a person met before skips the
pseudonym's regex, never the check that the record's key is its subject; a subject that
is not a pseudonym is refused however often it comes; where each batch starts and ends
per partition does not depend on the order its records come in.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

from eventkit import collected

from schemas import encode, parse_wire
from consumers.inventory import InventoryProjection
from consumers.projection import ProjectionRunner, _bounds
from consumers.views import SQLiteViewStore
from ledger.persistence import LogRecord

PERSON = "p_" + "a" * 32
OTHER = "p_" + "b" * 32
NOT_PSEUDONYM = "alice@example.com"
AT = datetime(2026, 1, 1, tzinfo=UTC)


class KafkaLike:
    """What the runner asks of a log other producers write to (Kafka)."""

    log_id = "checks"
    checks_subjects = True
    self_contained_partitions = True
    stores_ids_once = False
    trusted_types = False


def _record(offset: int, subject: str, key: str | None, partition: int = 0) -> LogRecord:
    """A stored record as another producer writes it (no clear values), keyed by ``key``."""
    wire = collected("placeholder", AT, ["user.contact.email"])
    event = parse_wire(wire).model_copy(update={"subject": subject})
    return LogRecord(partition, offset, wire["id"], wire["type"], key, AT, encode(event))


def test_known_people_are_still_checked_record_by_record(tmp_path: Path) -> None:
    store = SQLiteViewStore(tmp_path / "views.db")
    runner = ProjectionRunner(KafkaLike(), store, [InventoryProjection()], dedupe=True)
    first = runner.process([_record(0, PERSON, PERSON), _record(1, OTHER, OTHER)])
    assert (first.applied, first.bad) == (2, 0)
    # PERSON is known now: its next record still needs its key to be its subject
    second = runner.process([
        _record(2, PERSON, OTHER),
        _record(3, NOT_PSEUDONYM, NOT_PSEUDONYM),
        _record(4, NOT_PSEUDONYM, NOT_PSEUDONYM),  # the same subject again, same batch
        _record(5, PERSON, PERSON),
        _record(6, OTHER, None),
    ])
    assert (second.records, second.applied, second.bad) == (5, 1, 4)
    reasons = {row["offset"]: row["reason"] for row in store.quarantined("checks")}
    assert set(reasons) == {2, 3, 4, 6}
    assert reasons[2].startswith("the record's key is not its subject")
    assert reasons[3] == reasons[4]
    assert reasons[3].startswith("subject is not a pseudonym of this ledger")
    assert NOT_PSEUDONYM not in reasons[3]
    assert reasons[6].startswith("the record's key is not its subject")
    # a refused subject is never taken for a known person later
    third = runner.process([_record(7, NOT_PSEUDONYM, NOT_PSEUDONYM)])
    assert (third.applied, third.bad) == (0, 1)
    assert runner.positions()["inventory"] == {0: 7}
    store.close()


def test_batch_bounds_do_not_depend_on_record_order() -> None:
    rng = random.Random(7)
    for _ in range(200):
        batch = [LogRecord(rng.randrange(4), rng.randrange(1000), "", "", None, AT, b"")
                 for _ in range(rng.randrange(1, 40))]
        rng.shuffle(batch)
        first, last = _bounds(batch)
        for partition in {r.partition for r in batch}:
            offsets = [r.offset for r in batch if r.partition == partition]
            assert first[partition] == min(offsets)
            assert last[partition] == max(offsets)
        assert set(first) == set(last) == {r.partition for r in batch}
