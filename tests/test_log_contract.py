"""The log's contract, written once and run against every backend (see ``make_log``)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from conftest import MakeLog

from ledger.errors import PersistenceError
from ledger.persistence import NewRecord
from schemas import uuid7

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def records(n: int, subjects: int = 4, tag: str = "") -> list[NewRecord]:
    return [
        NewRecord(
            event_id=uuid7(),
            event_type="data.used",
            subject=f"p_subject{i % subjects}",
            payload=f'{{"n":{i},"tag":"{tag}"}}'.encode(),
        )
        for i in range(n)
    ]


def test_empty_log_has_no_position(make_log: MakeLog) -> None:
    log = make_log()
    assert all(offset == -1 for offset in log.end_position().values())
    assert list(log.read()) == []


def test_append_returns_one_increasing_position_per_record(make_log: MakeLog) -> None:
    log = make_log()
    batch = records(30)
    results = log.append(batch)
    assert [r.event_id for r in results] == [r.event_id for r in batch]
    assert not any(r.duplicate for r in results)
    by_partition: dict[int, list[int]] = {}
    for r in results:
        by_partition.setdefault(r.partition, []).append(r.offset)
    for offsets in by_partition.values():
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


def test_read_returns_what_was_appended_byte_for_byte(make_log: MakeLog) -> None:
    log = make_log()
    batch = records(50)
    log.append(batch)
    got = list(log.read())
    assert sorted(r.payload for r in got) == sorted(r.payload for r in batch)
    assert {r.event_id for r in got} == {r.event_id for r in batch}
    assert all(r.event_type == "data.used" for r in got)


def test_one_persons_events_stay_in_order(make_log: MakeLog) -> None:
    log = make_log()
    batch = records(40, subjects=3)
    log.append(batch[:20])
    log.append(batch[20:])
    for subject in {r.subject for r in batch}:
        sent = [r.event_id for r in batch if r.subject == subject]
        read = [r.event_id for r in log.read() if r.subject == subject]
        assert read == sent


def test_read_after_a_position_yields_only_later_records(make_log: MakeLog) -> None:
    log = make_log()
    first = records(10, tag="first")
    log.append(first)
    middle = log.end_position()
    second = records(10, tag="second")
    log.append(second)
    later = list(log.read(middle))
    assert {r.event_id for r in later} == {r.event_id for r in second}
    assert list(log.read(log.end_position())) == []


def test_positions_are_never_reused(make_log: MakeLog) -> None:
    log = make_log()
    seen: set[tuple[int, int]] = set()
    for _ in range(3):
        for r in log.append(records(7)):
            assert (r.partition, r.offset) not in seen
            seen.add((r.partition, r.offset))


def test_a_bad_batch_appends_nothing(make_log: MakeLog) -> None:
    log = make_log()
    log.append(records(5))
    before = list(log.read())
    bad = records(5)
    bad[3] = NewRecord(bad[3].event_id, "data.used", "p_x", None)  # type: ignore[arg-type]
    with pytest.raises(PersistenceError):
        log.append(bad)
    assert [r.event_id for r in log.read()] == [r.event_id for r in before]


def test_read_as_of_a_time_sees_the_log_as_it_stood(make_log: MakeLog) -> None:
    log = make_log()
    early = records(8, tag="early")
    log.append(early)
    time.sleep(1.2)
    cut = datetime.now(timezone.utc)
    time.sleep(1.2)
    late = records(8, tag="late")
    log.append(late)
    as_of = list(log.read(until=cut))
    assert {r.event_id for r in as_of} == {r.event_id for r in early}
    assert all(r.recorded_at <= cut for r in as_of)
    assert log.end_position(until=cut) != log.end_position()
    assert list(log.read(until=T0)) == []


def test_limit_caps_a_read(make_log: MakeLog) -> None:
    log = make_log()
    log.append(records(20))
    assert len(list(log.read(limit=7))) == 7


def test_log_id_names_the_log(make_log: MakeLog) -> None:
    log = make_log()
    assert log.log_id and log.log_id == log.log_id
    assert log.name in log.log_id


def test_read_about_one_person_is_read_filtered_by_subject(make_log: MakeLog) -> None:
    log = make_log()
    batch = records(60, subjects=5)
    log.append(batch[:25])
    cut = datetime.now(timezone.utc)
    time.sleep(0.05)
    log.append(batch[25:])
    for subject in {r.subject for r in batch}:
        assert subject is not None
        want = [(r.partition, r.offset, r.event_id, r.payload)
                for r in log.read() if r.subject == subject]
        got = [(r.partition, r.offset, r.event_id, r.payload) for r in log.read_about(subject)]
        assert got == want and len(got) == 12
        past = [r.event_id for r in log.read_about(subject, until=cut)]
        assert past == [r.event_id for r in log.read(until=cut) if r.subject == subject]
        assert 0 < len(past) < 12
    assert list(log.read_about("p_nobody")) == []
