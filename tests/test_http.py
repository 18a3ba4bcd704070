"""The HTTP API on a real uvicorn server: queries, paging, problems, accountable reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apikit import (
    ALICE_EMAIL,
    JAN,
    Live,
    live_server,
    publish_sample,
    sample_server,
    sample_settings,
)
from test_queries_cli import ALICE, BANK

from ledger.application import Ledger
from ledger.principals import Role
from pdl.api.routes.scope import SCOPE_PAGE

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with sample_server(tmp_path_factory.mktemp("http")) as server:
        yield server


def pseudonym(live: Live, subject: str) -> str:
    return live.service.pseudonym(subject)


def test_health_needs_no_token_and_status_needs_one(live: Live) -> None:
    with live.client() as anon:
        assert anon.get("/health").json() == {"status": "ok"}
        refused = anon.get("/status")
        assert refused.status_code == 401
        assert refused.headers["content-type"] == PROBLEM
        assert refused.headers["www-authenticate"] == "Bearer"
    with live.client(Role.RESPONDER) as client:
        status = client.get("/status")
        assert status.status_code == 200
        assert {s["projection"] for s in status.json()} >= {"datamap", "disclosures", "holdings"}


def test_lookup_by_real_id_in_a_body_audits_the_principal_not_a_header(live: Live) -> None:
    with live.client(Role.COMPLIANCE) as client:
        response = client.post("/subjects/lookup", json={"subject": ALICE, "reason": "DSR-1"},
                               headers={"X-Actor": "ceo@example.cn"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert {c["category"] for c in answer["categories"]} == {"user.contact.email", BANK}
    audit = live.audits()[-1]
    assert (audit["query"], audit["actor"], audit["role"]) == (
        "subject", "compliance@tests", "compliance")
    assert audit["people"] == [answer["pseudonym"]] and audit["reason"] == "DSR-1"
    assert "ceo@example.cn" not in json.dumps(live.audits())
    assert ALICE not in json.dumps(live.audits())


def test_data_map_by_pseudonym_is_an_opaque_handle(live: Live) -> None:
    handle = pseudonym(live, ALICE)
    with live.client(Role.RESPONDER) as client:
        answer = client.get(f"/subjects/{handle}")
        assert answer.status_code == 200 and answer.json()["pseudonym"] == handle
        assert client.get("/subjects/p_" + "a" * 32).status_code == 404
        assert client.get(f"/subjects/{ALICE}").status_code == 404  # not a pseudonym
        assert client.get("/subjects/export").status_code == 405  # POST only


def test_export_needs_a_reason_and_is_recorded_as_a_clear_read(live: Live) -> None:
    with live.client(Role.PRIVACY_OFFICER) as client:
        missing = client.post("/subjects/export", json={"subject": ALICE})
        assert missing.status_code == 422 and missing.headers["content-type"] == PROBLEM
        assert missing.json()["errors"][0]["field"] == "reason"
        before = len(live.audits())
        response = client.post("/subjects/export", json={"subject": ALICE,
                                                         "reason": "ticket DSR-7"})
    assert response.status_code == 200
    assert any(e.get("personal", {}).get("user.contact.email") == ALICE_EMAIL
               for e in response.json()["events"])
    audits = live.audits()
    assert len(audits) == before + 1  # the refused request appended nothing
    assert audits[-1]["clear"] is True and audits[-1]["reason"] == "ticket DSR-7"


def test_disclosures_are_paged_with_a_cursor(live: Live) -> None:
    with Ledger(live.settings) as ledger:
        from test_queries_cli import shared
        ledger.publish([shared(ALICE, "2026-02-01T00:00:00Z", "payco", [BANK], "5.1.2")])
    with live.client(Role.COMPLIANCE) as client:
        everything = client.get("/disclosures").json()
        assert len(everything["items"]) == 2 and everything["next"] is None
        first = client.get("/disclosures", params={"limit": 1}).json()
        assert len(first["items"]) == 1 and first["next"]
        rest = client.get("/disclosures", params={"limit": 1, "cursor": first["next"]}).json()
        assert first["items"] + rest["items"] == everything["items"] and rest["next"] is None
        assert client.get("/disclosures", params={"clause": "5.3"}).json()["items"] == []
        assert client.get("/disclosures/summary").json()[0]["recipient"] == "payco"
        old = client.get("/disclosures", params={"as_of": "2020-01-01T00:00:00Z"})
        assert old.json()["items"] == []


def test_scope_pages_people_and_counts_everyone(live: Live) -> None:
    stores = {"stores": "accounts-db,accounts-backup", **JAN}
    with live.client(Role.RESPONDER) as client:
        answer = client.get("/scope", params=stores).json()
        assert answer["counts"]["people"] == 2 and answer["page"]["limit"] == SCOPE_PAGE
        page = client.get("/scope", params={**stores, "limit": 1}).json()
        assert len(page["people"]) == 1 and page["counts"] == answer["counts"]
        last = client.get("/scope", params={**stores, "limit": 1,
                                            "after": page["page"]["next"]}).json()
        assert last["people"] == answer["people"][1:] and last["page"]["next"] is None
    assert live.service.ledger.settings.scope_index  # the index answered (attached in serve)


def test_findings_over_http(live: Live) -> None:
    with live.client(Role.COMPLIANCE) as client:
        page = client.get("/findings")
        assert page.status_code == 200 and isinstance(page.json()["items"], list)
        assert isinstance(client.get("/findings/summary", params={"clause": "5"}).json(), list)


def test_findings_over_http_are_open_or_remedied(live: Live) -> None:
    """7.4: a plain password later corrected is remedied by the correction (its event id
    named); a store abroad stays open; ``status`` filters."""
    dee = "acct-dee-4"
    with Ledger(live.settings) as ledger:
        from test_queries_cli import collected, wire
        results = ledger.publish([
            collected(dee, "2026-03-01T00:00:00Z", ["user.authorization.password"],
                      "accounts-db", {}, protection="plain"),
            wire("data.corrected", "2026-03-02T00:00:00Z", dee,
                 {"categories": ["user.authorization.password"], "store": "accounts-db"}),
            collected(dee, "2026-03-01T00:00:00Z", ["user.device.ip_address"], "logs-sg", {},
                      store_location="SG")])
    handle = pseudonym(live, dee)
    with live.client(Role.COMPLIANCE) as client:
        items = client.get("/findings", params={"limit": 1000}).json()["items"]
        mine = {f["clause"]: f for f in items if f["pseudonym"] == handle}
        assert (mine["2.1.1(1)a"]["status"], mine["2.1.1(1)a"]["remedied_by"]) == (
            "remedied", results[1].event_id)
        assert (mine["6.3c"]["status"], mine["6.3c"]["remedied_by"]) == ("open", None)
        remedied = client.get("/findings", params={"status": "remedied"}).json()["items"]
        assert {(f["pseudonym"], f["clause"]) for f in remedied} == {(handle, "2.1.1(1)a")}
        summary = client.get("/findings/summary", params={"clause": "2.1.1(1)a"}).json()
        assert summary == [{"clause": "2.1.1(1)a", "findings": 1, "open": 0, "people": 1}]
        assert client.get("/findings", params={"status": "gone"}).status_code in (400, 422)


def test_a_time_before_the_log_or_the_first_event_is_warned_about_over_http(
        live: Live) -> None:
    """An empty answer because of the time asked says so in JSON ``warnings``; an answer
    at a time the log covers has none."""
    with live.client(Role.COMPLIANCE) as client:
        early = client.get("/disclosures", params={"as_of": "2020-01-01T00:00:00Z"}).json()
        assert early["items"] == [] and len(early["warnings"]) == 1
        assert early["warnings"][0].startswith("as_of 2020-01-01T00:00:00+00:00 precedes the "
                                               "log's first record")
        before = client.get("/findings", params={"valid_at": "2020-01-01T00:00:00Z"}).json()
        assert before["items"] == [] and "precedes the first event" in before["warnings"][0]
        assert "--valid-at" not in before["warnings"][0] and "valid_at" in before["warnings"][0]
        later = client.get("/disclosures", params={"as_of": "2100-01-01T00:00:00Z"}).json()
        assert later["items"] and later["warnings"] == []
        assert client.get("/disclosures").json()["warnings"] == []
    with live.client(Role.RESPONDER) as client:
        scope = client.get("/scope", params={"stores": "accounts-db", "from": JAN["from"],
                                             "until": JAN["until"],
                                             "valid_at": "2020-01-01T00:00:00Z"})
        # no store was known yet: a 404, which says why
        assert scope.status_code == 404 and scope.headers["content-type"] == PROBLEM
        assert "precedes the first event" in scope.json()["warnings"][0]
        incidents = client.get("/incidents", params={"as_of": "2020-01-01T00:00:00Z"}).json()
        assert incidents["items"] == [] and incidents["warnings"]


@pytest.mark.parametrize(("role", "path", "status"), [
    (Role.COMPLIANCE, "/disclosures?recipent=x", 400),  # the misspelt parameter
    (Role.COMPLIANCE, "/disclosures?limit=0", 400),
    (Role.COMPLIANCE, "/disclosures?limit=1001", 400),
    (Role.COMPLIANCE, "/disclosures?limit=-1", 400),
    (Role.COMPLIANCE, "/disclosures?from=yesterday", 400),
    (Role.COMPLIANCE, "/disclosures?until=2026-01-01T00:00:00", 400),
    (Role.COMPLIANCE, "/disclosures?cursor=bm9wZQ", 400),
    (Role.RESPONDER, "/scope?stores=accounts-db&from=2026-01-01T00:00:00Z", 400),
    (Role.RESPONDER, "/scope?stores=a&from=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
     400),
    (Role.RESPONDER, ("/scope?stores=accounts-db&from=2026-01-01T00:00:00Z"
                      "&until=2026-02-01T00:00:00Z&categories=user.nonsense"), 400),
    (Role.COMPLIANCE, "/disclosures?category=user.nonsense", 400),
    (Role.COMPLIANCE, "/findings?as_of=0.5", 400),  # a time is ISO text, not seconds
    (Role.RESPONDER, "/scope?incident=nope", 404),
    (Role.RESPONDER, "/nowhere", 404),
    (Role.RESPONDER, "/subjects/x/y/z", 404),
])
def test_errors_are_problem_details(live: Live, role: Role, path: str, status: int) -> None:
    before = len(live.audits())
    with live.client(role) as client:
        response = client.get(path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"]
    if status == 400:
        assert len(live.audits()) == before  # refused before anything was recorded


def test_head_options_and_wrong_methods(live: Live) -> None:
    with live.client(Role.COMPLIANCE) as client:
        head = client.head("/health")
        assert head.status_code == 200 and head.content == b""
        options = client.options("/disclosures")
        assert options.status_code == 204
        assert set(options.headers["allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
        assert client.options("/nowhere").status_code == 404
        wrong = client.delete("/disclosures")
        assert wrong.status_code == 405 and wrong.headers["content-type"] == PROBLEM


def test_docs_and_openapi_are_served_offline(live: Live) -> None:
    with live.client() as anon:
        spec = anon.get("/openapi.json").json()
        assert "/subjects/lookup" in spec["paths"]
        page = anon.get("/docs").text
        assert "/docs/static/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
        assert anon.get("/docs/static/swagger-ui-bundle.js").status_code == 200


def test_no_real_identifier_in_any_route(live: Live) -> None:
    spec = httpx.get(f"{live.url}/openapi.json").json()
    for path in spec["paths"]:
        assert "{id}" not in path and "{subject}" not in path


def test_request_log_names_route_and_principal_not_values(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    settings = sample_settings(tmp_path / "data")
    publish_sample(settings)
    with caplog.at_level("INFO", logger="pdl.api"), live_server(settings, quiet=False) as live:
        with live.client(Role.COMPLIANCE) as client:
            assert client.post("/subjects/lookup", json={"subject": ALICE}).status_code == 200
        with live.client() as anon:
            bad = anon.get("/disclosures", headers={"Authorization": "Bearer pdl_nope"})
            assert bad.status_code == 401
        with live.client(Role.ADMIN) as admin:
            metrics = admin.get("/metrics").text
    text = caplog.text
    assert "POST /subjects/lookup 200 compliance@tests" in text
    assert "authentication failed: malformed token" in text
    assert ALICE not in text and "pdl_nope" not in text
    assert 'pdl_auth_failures_total{reason="malformed_token"} 1' in metrics


def test_access_log_answers_who_read_whose_data_when_and_why(live: Live) -> None:
    alice = pseudonym(live, ALICE)
    with live.client(Role.PRIVACY_OFFICER) as officer:
        opened = officer.post("/log/unseal", json={"subject": ALICE, "reason": "DSR-9",
                                                   "limit": 1})
        assert opened.status_code == 200
        page = opened.json()
        assert len(page["items"]) == 1 and page["next"]
        rest = officer.post("/log/unseal", json={"subject": ALICE, "reason": "DSR-9",
                                                 "cursor": page["next"]}).json()
        assert len(rest["items"]) >= 1 and rest["next"] is None
        values = [e.get("personal") for e in page["items"] + rest["items"]]
        assert {"user.contact.email": ALICE_EMAIL} in values  # in clear, for a reason
        reads = officer.get("/access-log", params={"person": alice, "clear": "true"}).json()
    mine = [r for r in reads["items"] if r["actor"] == "privacy_officer@tests"]
    assert mine and all(r["people"] == [alice] for r in mine)
    assert {(r["query"], r["reason"], r["role"]) for r in mine} >= {
        ("log --unseal", "DSR-9", "privacy_officer")}
    with live.client(Role.COMPLIANCE) as compliance:
        first = compliance.get("/access-log", params={"limit": 2}).json()
        assert len(first["items"]) == 2 and first["next"]
        after = compliance.get("/access-log", params={"limit": 2, "cursor": first["next"]})
        assert {r["event_id"] for r in after.json()["items"]}.isdisjoint(
            r["event_id"] for r in first["items"])
        by_actor = compliance.get("/access-log",
                                  params={"actor": "privacy_officer@tests"}).json()
        assert {r["actor"] for r in by_actor["items"]} == {"privacy_officer@tests"}


def test_no_personal_value_in_an_error_body(live: Live) -> None:
    with live.client(Role.PRIVACY_OFFICER) as officer:
        nobody = officer.post("/subjects/export", json={"subject": "acct-nobody-4711",
                                                        "reason": "DSR-10"})
        assert nobody.status_code == 404 and "acct-nobody-4711" not in nobody.text
        too_long = officer.post("/subjects/lookup", json={"subject": "x" * 300 + ALICE})
        assert too_long.status_code in (403, 422) and ALICE not in too_long.text
        wrong = officer.post("/subjects/export", json={"subject": ALICE, "reason": "r",
                                                       "extra": ALICE_EMAIL})
        assert wrong.status_code == 422 and ALICE_EMAIL not in wrong.text
        assert ALICE not in wrong.text


def test_incidents_are_paged(live: Live) -> None:
    with Ledger(live.settings) as ledger:
        from test_queries_cli import wire
        ledger.publish([wire("incident.opened", f"2026-03-0{n}T00:00:00Z", None, {
            "incident_id": f"inc-{n}", "description": "test", "stores": ["accounts-db"],
            "window_start": "2026-01-01T00:00:00Z", "window_end": "2026-02-01T00:00:00Z"})
            for n in (1, 2, 3)])
    with live.client(Role.RESPONDER) as client:
        first = client.get("/incidents", params={"limit": 2}).json()
        rest = client.get("/incidents", params={"limit": 2, "cursor": first["next"]}).json()
        assert [i["incident_id"] for i in first["items"] + rest["items"]] == [
            "inc-3", "inc-2", "inc-1"]
        assert rest["next"] is None
        scope = client.get("/scope", params={"incident": "inc-1"}).json()
        assert scope["counts"]["people"] == 2


def test_every_package_is_installed_by_pyproject() -> None:
    """pyproject lists packages one by one: a new subpackage (pdl.api.routes) must be there,
    or `pip install .` (the Docker image) leaves it out."""
    import tomllib

    root = Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for top in listed if "." not in top
             for p in (root / top).rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)


def test_valid_at_and_unknown_names_over_http(live: Live) -> None:
    """The service layer's two kinds of time, and not-found names, reach the HTTP API."""
    with live.client(Role.COMPLIANCE) as client:
        before = client.get("/disclosures", params={"valid_at": "2026-01-03T00:00:00Z"})
        assert before.status_code == 200 and before.json()["items"] == []
        after = client.get("/disclosures", params={"valid_at": "2026-01-05T00:00:00Z",
                                                   "as_of": "2100-01-01T00:00:00Z"})
        assert len(after.json()["items"]) == 1
        assert client.get("/disclosures", params={"valid_at": "soon"}).status_code in (400, 422)
        missing = client.get("/disclosures", params={"recipient": "payc0"})
        assert missing.status_code == 404 and "payco" in missing.text
        assert client.get("/findings/summary", params={"clause": "3.33"}).status_code == 404
    assert live.audits()[-3]["arguments"]["valid_at"].startswith("2026-01-05")
