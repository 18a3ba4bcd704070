"""The publish hot paths give what the plain paths give: events, errors, stored bytes, positions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ledger.application import Ledger, _Spool
from ledger.errors import InvalidInput
from ledger.persistence import NewRecord
from ledger.settings import Settings
from ledger.sqlite import SQLiteEventLog
from schemas import Event, EventInvalid, encode_sealed, parse_wire, parse_wire_lines, uuid7
from schemas.examples import EXAMPLES

NOT_STORED: Any = {"subject": True, "sealed": True, "data": {"personal"}}


def wire(type_: str, personal: dict[str, str] | None = None, **changes: Any) -> dict[str, Any]:
    event = json.loads(json.dumps(EXAMPLES[type_]))
    event.update(changes)
    if personal is not None:
        event["data"]["personal"] = personal
    return event


def mixed_lines() -> list[str | bytes]:
    """Good lines of every type, and lines that each take another way through parse_wire."""
    good = [json.dumps(wire(t, id=uuid7())) for t in EXAMPLES]
    v1 = wire("subject.registered", id=uuid7(), schemaversion=1)
    v1["data"].pop("subject_kind", None)
    no_subject = wire("data.used", id=uuid7())
    no_subject.pop("subject")
    about_no_one = wire("policy.published", id=uuid7(),
                        personal={"user.contact.email": "alice@example.cn"})
    misplaced = wire("data.used", id=uuid7())
    misplaced["data"]["purpose"] = "alice@example.cn"
    unknown_field = wire("data.used", id=uuid7(), colour="blue")
    return [
        *good,
        *(g.encode() for g in good[:3]),
        json.dumps(wire("data.used")),  # no id: derived from the content
        json.dumps(v1),  # an older schema version: upcast
        json.dumps(wire("data.used", id=uuid7(), sealed="v1.abc")),
        json.dumps(no_subject),
        json.dumps(about_no_one),
        json.dumps(misplaced),
        json.dumps(unknown_field),
        json.dumps(wire("data.used", id=uuid7(), type="no.such.type")),
        '{"type": "data.used", "id": ',  # not JSON
        "[1, 2]",
        json.dumps(wire("data.used", id=uuid7(), time="2026-11-01T09:30:00")),  # no offset
    ]


def outcome(item: Event | EventInvalid) -> Any:
    if isinstance(item, EventInvalid):
        return ("invalid", [(e.field, e.reason) for e in item.errors])
    return ("event", type(item), item.model_dump_json())


def test_parse_wire_lines_gives_what_parse_wire_gives_line_by_line() -> None:
    lines = mixed_lines()
    expected = []
    for line in lines:
        try:
            expected.append(outcome(parse_wire(line)))
        except EventInvalid as exc:
            expected.append(outcome(exc))
    assert [outcome(item) for item in parse_wire_lines(lines)] == expected
    assert sum(kind == "invalid" for kind, *_ in expected) == 9
    assert "alice@example.cn" not in repr(expected[-8:])


def test_stored_form_is_model_dump_json_with_subject_and_token_spliced_in() -> None:
    for type_ in EXAMPLES:
        event = parse_wire(wire(type_))
        body = event.model_dump_json(exclude_none=True, exclude=NOT_STORED)
        for subject, token in (("p_abc", "v1.tok"), ("p_abc", None), (None, None)):
            extra = "".join(f',"{k}":"{v}"' for k, v in (("subject", subject), ("sealed", token))
                            if v is not None)
            want = (body[:-1] + extra + "}") if extra else body
            assert encode_sealed(event, subject, token) == want.encode(), type_


def test_errors_name_each_bad_line_and_nothing_is_appended(settings: Settings) -> None:
    lines = [json.dumps(wire("data.used", id=uuid7())) for _ in range(30)]
    lines[4] = '{"nope"'
    lines[17] = json.dumps(wire("data.used", id=uuid7(), colour="blue"))
    with Ledger(settings) as ledger:
        with pytest.raises(InvalidInput) as caught:
            ledger.publish_lines(lines, batch_size=8)
        assert ledger.log.count() == 0
    assert [(n, f) for n, f, _ in caught.value.errors] == [(5, "(line)"), (18, "colour")]


def test_a_batch_repeating_an_event_and_one_already_stored_counts_each_once(
        settings: Settings) -> None:
    lines = [json.dumps(wire("data.used", id=uuid7())) for _ in range(6)]
    with Ledger(settings) as ledger:
        ledger.publish_lines(lines[:2])
        batch = [lines[0], *lines[2:], lines[3], lines[1]]
        summary = ledger.publish_lines(batch, keep_results=True)
        assert (summary.appended, summary.duplicates) == (4, 3)
        assert [r.duplicate for r in summary.results] == [True, False, False, False, False,
                                                          True, True]
        assert summary.results[5].offset == summary.results[2].offset
        counted = ledger.publish_lines(batch)
        assert (counted.appended, counted.duplicates) == (0, 7)
        assert ledger.log.count() == 6
        assert ledger.verify() == 6


def test_single_appends_interleaved_with_another_writer_keep_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    one, two = SQLiteEventLog(path), SQLiteEventLog(path)

    def record(i: int) -> NewRecord:
        return NewRecord(uuid7(), "data.used", f"p_{i % 3}", f'{{"n":{i}}}'.encode())

    positions = []
    for i in range(12):
        writer = one if i % 4 < 2 else two  # each writer's cached head goes stale in turn
        batch = [record(i)] if i % 5 else [record(i), record(100 + i)]
        positions += [r.offset for r in writer.append(batch)]
    again = one.append([NewRecord(uuid7(), "data.used", None, b'{"x":1}')])
    assert positions == list(range(1, len(positions) + 1))
    assert again[0].offset == len(positions) + 1
    first = next(one.read())
    dup = two.append([NewRecord(first.event_id, "data.used", None, b'{"other":1}')])
    assert dup[0].duplicate and dup[0].offset == first.offset
    assert one.verify() == two.count() == len(positions) + 1
    one.close()
    two.close()


def test_spilled_batches_come_back_as_they_went(settings: Settings) -> None:
    spool = _Spool()
    batches = [[NewRecord(uuid7(), "data.used", None if i % 2 else f"p_{i}", bytes([i]) * 9)
                for i in range(b, b + 3)] for b in range(0, 3 * (_Spool.IN_MEMORY_BATCHES + 4), 3)]
    for batch in batches:
        spool.add(batch)
    back = list(spool)
    spool.close()
    assert back == batches
    assert all(type(r) is NewRecord for batch in back for r in batch)


def test_new_keys_kept_in_memory_open_after_a_reopen(settings: Settings) -> None:
    event = wire("data.collected", id=uuid7(), subject="acct:7",
                 personal={"user.contact.email": "seven@example.cn"})
    with Ledger(settings) as ledger:
        ledger.publish([event])
    with Ledger(settings) as ledger:
        (_, stored), = list(ledger.events())
        assert ledger.unseal(stored) == {"user.contact.email": "seven@example.cn"}
