"""Every view table, row for row, as the projections built it before their CPU was cut.

The projections' code is changed for speed (bench/apply.py measures it); what they write
must not change. A log of ``workload`` events (seed 42, made reproducible: pseudonyms
derived from the simulated account ids, the simulator's own event ids and times) is
applied two ways, and each table's rows (sorted, as ``eventkit.dump_views`` gives them)
must hash to what ``tests/data/view_digests.json`` recorded:

- ``rebuild``: one partition (the SQLite log), applied in batches of 1,000 as a rebuild
  reads it;
- ``live``: the same records spread over three partitions as the Kafka log holds them (a
  person's events in one partition, each event about no one copied into every
  partition), applied by ``ProjectionRunner.process`` in batches of 5,000 in partition
  order with the marks on, as a `pdl consume` member applies what it polled.

Each record's ``recorded_at`` (the append's wall-clock time, which the clock view reads) is
replaced by a fixed time per position, so that the rows are the same on every run.

A change that means to change a view rewrites the file on purpose:
``PYTHONPATH=. .venv/bin/python tests/test_view_digests.py`` (and says why in its commit).
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from consumers.projection import ProjectionRunner
from consumers.registry import all_projections
from consumers.views import SQLiteViewStore
from eventkit import dump_views, log_events
from ledger.persistence import LogRecord
from ledger.sqlite import SQLiteEventLog

DIGESTS = Path(__file__).parent / "data" / "view_digests.json"
PEOPLE, EVENTS, PARTITIONS = 150, 6000, 3
START = datetime(2025, 1, 1, tzinfo=UTC)  # after every event of the simulation


def pseudonym(subject: str) -> str:
    """A stable pseudonym of this ledger's form for a simulated account id."""
    digest = hashlib.sha256(subject.encode()).digest()[:20]
    return "p_" + base64.b32encode(digest).decode().lower()


def workload_events() -> Iterator[dict[str, Any]]:
    from workload import simulate

    for line in islice(simulate(people=PEOPLE, seed=42), EVENTS):
        event = json.loads(line)
        event["data"].pop("personal", None)  # the ledger seals them; no view reads them
        if event.get("subject"):
            event["subject"] = pseudonym(event["subject"])
        yield event


class _PartitionedLog:
    """What ``ProjectionRunner.process`` asks of the Kafka log whose records it is given."""

    log_id = "digests-live"
    checks_subjects = True
    self_contained_partitions = True
    stores_ids_once = False
    trusted_types = False


def spread(records: list[LogRecord], partitions: int) -> list[LogRecord]:
    offsets = [0] * partitions
    out = []
    for r in records:
        homes = ([zlib.crc32(r.subject.encode()) % partitions] if r.subject
                 else range(partitions))
        for p in homes:
            out.append(r._replace(partition=p, offset=offsets[p]))
            offsets[p] += 1
    return out


def digests(store: SQLiteViewStore) -> dict[str, list[Any]]:
    """Per table: its row count and the SHA-256 of its sorted rows' ``repr``."""
    return {table: [len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()]
            for table, rows in sorted(dump_views(store, all_projections()).items())}


def build(directory: Path) -> dict[str, dict[str, list[Any]]]:
    log = SQLiteEventLog(directory / "log.db", synchronous="OFF")
    log_events(log, workload_events())
    read = [r._replace(recorded_at=START + timedelta(milliseconds=n))
            for n, r in enumerate(log.read())]
    out = {}
    rebuilt = SQLiteViewStore(directory / "rebuild.db")
    runner = ProjectionRunner(log, rebuilt, all_projections())
    for i in range(0, len(read), 1000):
        runner.process(read[i: i + 1000])
    out["rebuild"] = digests(rebuilt)
    live = SQLiteViewStore(directory / "live.db")
    runner = ProjectionRunner(_PartitionedLog(), live, all_projections(),  # type: ignore[arg-type]
                              dedupe=True)
    records = spread(read, PARTITIONS)
    for i in range(0, len(records), 5000):
        runner.process(sorted(records[i: i + 5000], key=lambda r: r.partition))
    out["live"] = digests(live)
    for store in (rebuilt, live):
        store.close()
    log.close()
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[Any]]]:
    return build(tmp_path_factory.mktemp("digests"))


@pytest.mark.parametrize("way", ["rebuild", "live"])
def test_views_are_as_recorded(built: dict[str, dict[str, list[Any]]], way: str) -> None:
    expected = json.loads(DIGESTS.read_text())[way]
    got = built[way]
    assert sorted(got) == sorted(expected)
    changed = {t: (expected[t], got[t]) for t in expected if got[t] != expected[t]}
    assert not changed, f"view tables changed ({way}): {changed}"


def test_the_workload_reaches_every_kind_of_row(built: dict[str, dict[str, list[Any]]]) -> None:
    """The digests are worth something only if the log writes the tables they cover."""
    for way in ("rebuild", "live"):
        empty = {t for t, (count, _) in built[way].items() if count == 0}
        assert {"findings", "dm_stores", "dm_uses", "dm_recipients", "findings_holdings",
                "findings_subjects", "disclosures"} & empty == set(), empty


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    with tempfile.TemporaryDirectory() as tmp:
        DIGESTS.write_text(json.dumps(build(Path(tmp)), indent=1, sort_keys=True) + "\n")
    print(f"wrote {DIGESTS}")
