"""``POST /events`` against a real uvicorn server: every content mode, idempotent retries,
the limits (413), bad events (422 naming line and field), wrong source (403), no token
(401), and the JSON Schemas at ``/schemas``."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from apikit import Live, live_server, sample_settings
from cloudevents.core.bindings import http as http_binding
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from ledger.principals import Role
from schemas import ENVELOPES, uuid7
from schemas.examples import EXAMPLES

SOURCE = "tests/api"  # the one source apikit registers to the publisher
PUBLISHER = "publisher@tests"
STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}
LINES = {"content-type": "application/x-ndjson"}
_serial = iter(range(1, 1_000_000))


def event(type_: str = "data.collected", **changes: Any) -> dict[str, Any]:
    """An example event of ``type_`` from the publisher's source, with a fresh id."""
    e = copy.deepcopy(EXAMPLES[type_])
    n = next(_serial)
    e.update(id=uuid7(1_780_000_000_000 + n, n.to_bytes(10, "big")), source=SOURCE)
    if e.get("subject"):
        e["subject"] = f"acct:ingest-{n}"
    e.update(changes)
    return e


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    settings = sample_settings(tmp_path_factory.mktemp("ingest") / "data").with_(
        ingest_max_events=50, ingest_max_bytes=200_000)
    with live_server(settings) as server:
        yield server


def stored(live: Live, event_id: str) -> Any:
    with live.service.lock:
        found = [e for _, e in live.service.ledger.events() if e.id == event_id]
    assert len(found) == 1, event_id
    return found[0]


def test_structured_mode_appends_seals_and_records_the_publisher(live: Live) -> None:
    e = event()
    before = live.records()
    answer = live.client(Role.PUBLISHER).post("/events", content=json.dumps(e),
                                              headers=STRUCTURED)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["events"], body["appended"], body["duplicates"]) == (1, 1, 0)
    (result,) = body["results"]
    assert result["line"] == 1 and result["id"] == e["id"] and not result["duplicate"]
    assert isinstance(result["partition"], int) and isinstance(result["offset"], int)
    assert live.records() == before + 1
    kept = stored(live, e["id"])
    assert kept.publisher == PUBLISHER  # set by the ledger from the token's principal
    assert kept.subject != e["subject"] and kept.sealed and kept.data.personal is None
    assert live.service.ledger.unseal(kept) == e["data"]["personal"]


def test_a_batch_lands_in_order_and_a_retry_stores_nothing_twice(live: Live) -> None:
    batch = [event(), event("data.used"), event("policy.published", subject=None)]
    before = live.records()
    first = live.client(Role.PUBLISHER).post("/events", content=json.dumps(batch),
                                             headers=BATCH)
    assert first.status_code == 200, first.text
    assert [r["id"] for r in first.json()["results"]] == [e["id"] for e in batch]
    assert [r["line"] for r in first.json()["results"]] == [1, 2, 3]
    again = live.client(Role.PUBLISHER).post("/events", content=json.dumps(batch),
                                             headers=BATCH)
    assert again.status_code == 200
    assert (again.json()["appended"], again.json()["duplicates"]) == (0, 3)
    assert all(r["duplicate"] for r in again.json()["results"])
    assert live.records() == before + 3


def test_json_lines_number_lines_as_sent_and_old_form_events_still_work(live: Live) -> None:
    old = event()  # envelope 1: no id, no specversion, personal at the top level
    del old["id"], old["specversion"]
    old["personal"] = old["data"].pop("personal")
    body = "\n".join([json.dumps(event("data.used")), "", json.dumps(old)]) + "\n"
    first = live.client(Role.PUBLISHER).post("/events", content=body, headers=LINES)
    assert first.status_code == 200, first.text
    assert [r["line"] for r in first.json()["results"]] == [1, 3]
    derived = first.json()["results"][1]["id"]
    assert stored(live, derived).sealed  # the clear values were sealed
    # an id-less retry gets the same content id: a duplicate, not a second event
    again = live.client(Role.PUBLISHER).post("/events", content=body, headers=LINES)
    assert again.json()["results"][1] == {**first.json()["results"][1], "duplicate": True}


def test_binary_mode_from_the_cloudevents_sdk(live: Live) -> None:
    e = event()
    made = CloudEvent({"id": e["id"], "source": SOURCE, "type": e["type"],
                       "subject": e["subject"], "time": datetime.fromisoformat(e["time"]),
                       "datacontenttype": "application/json", "schemaversion": 1},
                      e["data"])
    message = http_binding.to_binary(made, JSONFormat())
    assert "ce-id" in {k.lower() for k in message.headers}
    answer = live.client(Role.PUBLISHER).post("/events", content=message.body,
                                              headers=message.headers)
    assert answer.status_code == 200, answer.text
    kept = stored(live, e["id"])
    assert kept.type == e["type"] and kept.publisher == PUBLISHER
    assert live.service.ledger.unseal(kept) == e["data"]["personal"]
    # and the same event in structured mode from the SDK is a duplicate of it
    message = http_binding.to_structured(made, JSONFormat())
    again = live.client(Role.PUBLISHER).post("/events", content=message.body,
                                             headers=message.headers)
    assert again.json()["duplicates"] == 1


def test_a_bad_event_is_422_naming_line_and_field_and_nothing_is_appended(live: Live) -> None:
    bad = event()
    bad["data"]["purpose"] = "alice@example.cn"  # a personal value in the wrong place
    batch = [event(), bad, event("data.used", publisher="someone-else")]
    before = live.records()
    answer = live.client(Role.PUBLISHER).post("/events", content=json.dumps(batch),
                                              headers=BATCH)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    errors = answer.json()["errors"]
    assert {(e["line"], e["field"]) for e in errors} == {(2, "data.purpose"), (3, "publisher")}
    assert "alice@example.cn" not in answer.text
    assert live.records() == before
    broken_second = "[" + json.dumps(event()) + ', {"id": ]'
    for body, headers, line in (("{not json", STRUCTURED, 1), ("{}", BATCH, 1),
                                (broken_second, BATCH, 2), ("[]", BATCH, 1),
                                ("[" + json.dumps(event()) + "] trailing", BATCH, 1)):
        refused = live.client(Role.PUBLISHER).post("/events", content=body, headers=headers)
        assert refused.status_code == 422, body
        assert refused.json()["errors"][0]["line"] == line, refused.json()
    assert live.records() == before


def test_a_source_not_registered_to_the_publisher_is_403(live: Live) -> None:
    before = live.records()
    batch = [event(), event(source="svc/someone-elses")]
    answer = live.client(Role.PUBLISHER).post("/events", content=json.dumps(batch),
                                              headers=BATCH)
    assert answer.status_code == 403
    assert "line 2" in answer.json()["detail"] and "svc/someone-elses" in answer.json()["detail"]
    assert live.records() == before


def test_no_token_is_401_and_other_roles_are_403(live: Live) -> None:
    before = live.records()
    body = json.dumps(event())
    assert live.client().post("/events", content=body, headers=STRUCTURED).status_code == 401
    for role in set(Role) - {Role.PUBLISHER}:
        answer = live.client(role).post("/events", content=body, headers=STRUCTURED)
        assert answer.status_code == 403, role
    assert live.records() == before


def test_limits_are_413_and_an_unknown_content_type_415(live: Live) -> None:
    before = live.records()
    many = [event("data.used") for _ in range(51)]  # LEDGER_INGEST_MAX_EVENTS=50 here
    answer = live.client(Role.PUBLISHER).post("/events", content=json.dumps(many),
                                              headers=BATCH)
    assert answer.status_code == 413 and "LEDGER_INGEST_MAX_EVENTS" in answer.json()["detail"]
    huge = b"[" + b" " * 200_001 + b"]"  # LEDGER_INGEST_MAX_BYTES=200000 here
    answer = live.client(Role.PUBLISHER).post("/events", content=huge, headers=BATCH)
    assert answer.status_code == 413 and "LEDGER_INGEST_MAX_BYTES" in answer.json()["detail"]
    answer = live.client(Role.PUBLISHER).post("/events", content=b"x",
                                              headers={"content-type": "text/plain"})
    assert answer.status_code == 415 and "application/cloudevents+json" in answer.text
    assert live.records() == before


def test_the_json_schemas_are_served_without_a_token(live: Live) -> None:
    index = live.client().get("/schemas")
    assert index.status_code == 200
    assert {s["type"] for s in index.json()} == set(ENVELOPES)
    entry = next(s for s in index.json() if s["type"] == "data.collected")
    one = live.client().get(entry["url"])
    assert one.status_code == 200 and one.headers["content-type"] == "application/schema+json"
    assert one.json()["$id"] == entry["id"]
    assert {"id", "specversion"} <= set(one.json()["required"])
    assert live.client().get("/schemas/no.such_type").status_code == 404
    assert live.client().get("/schemas", params={"typo": "1"}).status_code == 400


# --- the worked examples of docs/ingest.md ----------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def shop_token(live: Live) -> str:
    """A publisher for the examples' source, svc/example-shop."""
    if "svc-example-shop" not in {p.principal.name for p in live.principals.principals()}:
        live.principals.add("svc-example-shop", Role.PUBLISHER, ["svc/example-shop"])
    return live.principals.issue("svc-example-shop").token


def test_the_documented_curl_example_answers_as_documented(live: Live) -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl is missing (apt-get install curl)") if IN_CI else pytest.skip("no curl")
    doc = (REPO / "docs" / "ingest.md").read_text()
    block = doc.split("runs this block against a real server", 1)[1].split("```sh\n", 1)[1]
    script = block.split("```", 1)[0]
    documented = doc.split('{"events":2,', 1)[1].split("\n", 1)[0]
    env = {**os.environ, "PDL_URL": live.url, "PDL_TOKEN": shop_token(live)}
    first = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=False,
                           timeout=60)
    assert first.stdout.startswith("HTTP/1.1 200 OK"), first.stdout + first.stderr
    answer = json.loads(first.stdout.split("\n\n", 1)[1])
    want = json.loads('{"events":2,' + documented)
    for a, w in zip(answer["results"], want["results"], strict=True):
        assert {**a, "offset": 0} == {**w, "offset": 0}  # offsets depend on the log
    again = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=False,
                           timeout=60)
    assert json.loads(again.stdout.split("\n\n", 1)[1])["duplicates"] == 2


def test_the_go_example_builds_and_publishes(live: Live, tmp_path: Path) -> None:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists()
                                else None)
    if go is None:
        pytest.fail("go is missing (Go 1.26)") if IN_CI else pytest.skip("no go toolchain")
    binary = tmp_path / "go-publisher"
    built = subprocess.run([go, "build", "-o", str(binary), "."], cwd=REPO / "examples" /
                           "go-publisher", capture_output=True, text=True, timeout=600, check=False)
    assert built.returncode == 0, built.stderr
    before = live.records()
    env = {**os.environ, "PDL_URL": live.url, "PDL_TOKEN": shop_token(live),
           "PDL_SOURCE": "svc/example-shop", "PDL_PEOPLE": "2", "PDL_SHOW": "1"}
    ran = subprocess.run([str(binary)], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr
    answer = json.loads(ran.stdout)
    assert (answer["events"], answer["appended"]) == (6, 6)
    assert "Content-Type: application/cloudevents-batch+json" in ran.stderr
    assert live.records() == before + 6
    collected = stored(live, answer["results"][1]["id"])
    assert collected.type == "data.collected" and collected.publisher == "svc-example-shop"
    assert live.service.ledger.unseal(collected)["user.contact.email"].endswith(  # type: ignore[index]
        "@example.invalid")
    # a wrong source is refused, and the program says so and exits 1
    wrong = subprocess.run([str(binary)], env={**env, "PDL_SOURCE": "svc/other"},
                           capture_output=True, text=True, timeout=120, check=False)
    assert wrong.returncode == 1 and "refused (403)" in wrong.stderr
