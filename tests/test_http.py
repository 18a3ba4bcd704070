"""The JSON HTTP API on a real server bound to 127.0.0.1 on an ephemeral port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
import test_queries_cli
from test_queries_cli import ALICE, ALICE_EMAIL, BANK, audits, shared

from ledger.application import Ledger
from ledger.settings import Settings
from pdl.http import SCOPE_PAGE, make_server
from pdl.service import QueryService

env = test_queries_cli.env  # the same published events as the CLI tests

JAN = "from=2026-01-01T00:00:00Z&until=2026-02-01T00:00:00Z"


@pytest.fixture
def api(env: Settings) -> Iterator[httpx.Client]:
    service = QueryService(Ledger(env))
    server = make_server(service, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.shutdown()
        server.server_close()
        service.close()


def test_health_and_status(api: httpx.Client) -> None:
    assert api.get("/health").json() == {"status": "ok"}
    status = api.get("/status")
    assert status.status_code == 200
    assert {s["projection"] for s in status.json()} >= {"datamap", "disclosures", "holdings"}


def test_subject_by_real_id_is_audited_with_the_callers_actor(
    api: httpx.Client, env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    response = api.get(f"/subjects/{quote(ALICE)}", headers={"X-Actor": "ir-team@corp"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert {c["category"] for c in answer["categories"]} == {"user.contact.email", BANK}
    audit = audits(env)[-1]
    assert (audit["query"], audit["actor"]) == ("subject", "ir-team@corp")
    assert audit["arguments"] == {"pseudonym": answer["pseudonym"]}
    # the request log names the route, never the identifier in the path
    err = capsys.readouterr().err
    assert "GET /subjects/{id} 200" in err and ALICE not in err


def test_export_over_http(api: httpx.Client, env: Settings) -> None:
    answer = api.get(f"/subjects/{ALICE}/export").json()
    assert any(e.get("personal", {}).get("user.contact.email") == ALICE_EMAIL
               for e in answer["events"])
    assert audits(env)[-1]["actor"] == "dpo@tests"  # no X-Actor: the configured actor


def test_disclosures_filters_summary_and_as_of(api: httpx.Client, env: Settings) -> None:
    rows = api.get("/disclosures", params={"recipient": "payco", "clause": "5.1"}).json()
    assert [r["clause"] for r in rows] == ["5.1.1"]
    assert api.get("/disclosures?clause=5.3").json() == []
    summary = api.get("/disclosures?summary=1").json()
    assert summary[0]["recipient"] == "payco"
    with Ledger(env) as ledger:
        ledger.publish([shared(ALICE, "2026-02-01T00:00:00Z", "payco", [BANK], "5.1.2")])
    assert len(api.get("/disclosures").json()) == 2  # caught up before answering
    assert api.get("/disclosures?as_of=2020-01-01T00:00:00Z").json() == []


def test_scope_over_http(api: httpx.Client) -> None:
    answer = api.get(f"/scope?stores=accounts-db,accounts-backup&{JAN}").json()
    assert answer["counts"]["people"] == 2
    only = api.get(f"/scope?stores=payments-db&{JAN}&categories=user.financial").json()
    assert only["counts"]["sensitive_records"] == 1
    page = api.get(f"/scope?stores=accounts-db,accounts-backup&{JAN}&limit=1").json()
    assert len(page["people"]) == 1 and page["counts"] == answer["counts"]
    last = api.get(f"/scope?stores=accounts-db,accounts-backup&{JAN}&limit=1"
                   f"&after={page['page']['next']}").json()
    assert last["people"] == answer["people"][1:] and last["page"]["next"] is None
    # paged by default (SCOPE_PAGE people); limit=all lists everyone
    assert answer["page"]["limit"] == SCOPE_PAGE
    every = api.get(f"/scope?stores=accounts-db,accounts-backup&{JAN}&limit=all").json()
    assert every["page"]["limit"] is None and every["people"] == answer["people"]


def test_findings_over_http(api: httpx.Client) -> None:
    response = api.get("/findings")
    assert response.status_code == 200 and isinstance(response.json(), list)
    assert isinstance(api.get("/findings?summary=1&clause=5").json(), list)


@pytest.mark.parametrize(("path", "status"), [
    ("/subjects/acct-nobody", 404),
    ("/nowhere", 404),
    ("/subjects/x/y/z", 404),
    ("/scope?stores=accounts-db&from=2026-01-01T00:00:00Z", 400),
    (f"/scope?stores=accounts-db&{JAN}&categories=user.nonsense", 400),
    ("/scope?stores=a&from=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", 400),
    ("/disclosures?from=yesterday", 400),
    ("/disclosures?until=2026-01-01T00:00:00", 400),
    ("/disclosures?limit=-1", 400),
    (f"/scope?stores=accounts-db&{JAN}&limit=many", 400),
    ("/subjects/x?as_of=soon", 400),
])
def test_errors_are_json_with_the_right_status(api: httpx.Client, path: str, status: int) -> None:
    response = api.get(path)
    assert response.status_code == status
    assert "error" in response.json()


def test_only_get_and_a_sane_actor(api: httpx.Client) -> None:
    assert api.post("/health").status_code == 405
    response = api.get("/disclosures", headers={"X-Actor": "<script>"})
    assert response.status_code == 400 and "X-Actor" in response.json()["error"]
