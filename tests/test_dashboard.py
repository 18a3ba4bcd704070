"""The dashboard over HTTP (no browser): sign-in, sessions, CSRF, headers, roles, pages.

The browser tests (``test_dashboard_browser.py``) drive the same pages in chromium; these
check what a browser cannot show: refused forms, cookie attributes, stale sessions.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from test_queries_cli import ALICE
from webkit import (
    CASE_REQUEST,
    CSRF,
    LEDGER_REQUEST,
    WebLive,
    cli_scope,
    latest_residences,
    signed_in,
    web_server,
)

from ledger.principals import Role


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebLive]:
    with web_server(tmp_path_factory.mktemp("web") / "data") as server:
        yield server


def test_a_page_without_a_session_sends_to_the_sign_in_form(web: WebLive) -> None:
    for path in ("/ui/", "/ui/register", "/ui/person"):
        answer = httpx.get(web.url + path)
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"


def test_sign_in_sets_a_strict_session_cookie_and_security_headers(web: WebLive) -> None:
    with httpx.Client(base_url=web.url) as client:
        form = client.get("/ui/login")
        assert form.status_code == 200
        csp = form.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert form.headers["x-content-type-options"] == "nosniff"
        assert form.headers["referrer-policy"] == "no-referrer"
        csrf = CSRF.search(form.text).group(1)  # type: ignore[union-attr]
        client.cookies.set("pdl_login_csrf", form.cookies["pdl_login_csrf"])
        answer = client.post("/ui/login", data={"csrf": csrf,
                                                "token": web.live.tokens[Role.COMPLIANCE]})
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"].lower()
    for flag in ("httponly", "secure", "samesite=strict", "path=/ui"):
        assert flag in cookie, cookie
    assert web.live.tokens[Role.COMPLIANCE] not in answer.headers["set-cookie"]


def test_sign_in_refuses_a_bad_token_a_missing_csrf_and_the_publisher(web: WebLive) -> None:
    with httpx.Client(base_url=web.url) as client:
        form = client.get("/ui/login")
        csrf = CSRF.search(form.text).group(1)  # type: ignore[union-attr]
        client.cookies.set("pdl_login_csrf", form.cookies["pdl_login_csrf"])
        bad = client.post("/ui/login", data={"csrf": csrf, "token": "pdl_nope_nope"})
        assert bad.status_code == 401 and "set-cookie" not in {
            k.lower() for k in bad.headers if "pdl_session" in bad.headers.get(k, "")}
        no_csrf = client.post("/ui/login", data={"token": web.live.tokens[Role.COMPLIANCE]})
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
        publisher = client.post("/ui/login", data={"csrf": csrf,
                                                   "token": web.live.tokens[Role.PUBLISHER]})
        assert publisher.status_code == 403


def test_roles_without_the_right_get_403(web: WebLive) -> None:
    responder, csrf = signed_in(web, Role.RESPONDER)
    assert responder.get("/ui/register").status_code == 403
    assert responder.get("/ui/register.csv").status_code == 403
    assert responder.get("/ui/person").status_code == 403
    compliance, ccsrf = signed_in(web, Role.COMPLIANCE)
    refused = compliance.post("/ui/person/export",
                              data={"csrf": ccsrf, "subject": ALICE, "reason": "DSR-9"})
    assert refused.status_code == 403 and "privacy_officer" in refused.text
    assert ALICE not in refused.text


def test_a_post_without_the_session_csrf_token_is_refused(web: WebLive) -> None:
    client, csrf = signed_in(web, Role.COMPLIANCE)
    assert client.post("/ui/person", data={"subject": ALICE}).status_code == 403
    assert client.post("/ui/person", data={"subject": ALICE, "csrf": "x" + csrf}
                       ).status_code == 403
    assert client.post("/ui/person", data={"subject": ALICE, "csrf": csrf}).status_code == 200


def test_logout_and_revocation_end_the_session(web: WebLive) -> None:
    client, csrf = signed_in(web, Role.COMPLIANCE)
    assert client.post("/ui/logout", data={"csrf": csrf}).status_code == 303
    assert client.get("/ui/").status_code == 303
    name = "revoked-web@tests"
    web.live.principals.add(name, Role.COMPLIANCE)
    issued = web.live.principals.issue(name)
    tokens = dict(web.live.tokens)
    web.live.tokens[Role.COMPLIANCE] = issued.token
    try:
        client, _ = signed_in(web, Role.COMPLIANCE)
    finally:
        web.live.tokens.update(tokens)
    web.live.principals.revoke(issued.info.id)
    assert client.get("/ui/").status_code == 303


def test_register_csv_is_what_the_page_shows_and_matches_the_api(web: WebLive) -> None:
    client, _ = signed_in(web, Role.COMPLIANCE)
    query = {"from": "2024-01-01", "until": "2027-01-01", "cross_border": "no"}
    page = client.get("/ui/register", params=query)
    assert page.status_code == 200
    rows = list(csv.DictReader(io.StringIO(client.get("/ui/register.csv", params=query).text)))
    assert rows and all(r["cross_border"] == "" for r in rows)
    for r in rows:
        assert r["event_id"] in page.text
    api = web.live.client(Role.COMPLIANCE).get("/disclosures", params={
        "from": "2024-01-01T00:00:00Z", "until": "2027-01-01T00:00:00Z", "limit": 1000})
    crossing = {d["event_id"] for d in api.json()["items"] if d["cross_border"]}
    expected = [d["event_id"] for d in api.json()["items"] if not d["cross_border"]]
    assert [r["event_id"] for r in rows] == expected[:50]
    assert not crossing & {r["event_id"] for r in rows}


def test_register_refuses_bad_filters_with_a_reason(web: WebLive) -> None:
    client, _ = signed_in(web, Role.COMPLIANCE)
    for params, field in (({"from": "yesterday"}, "from"), ({"category": "nope"}, "category"),
                          ({"group": "person"}, "group"), ({"subject": ALICE}, "unknown"),
                          ({"page": "0"}, "page")):
        answer = client.get("/ui/register", params=params)
        assert answer.status_code == 400 and field in answer.text
        assert ALICE not in answer.text


def test_grouping_by_clause_counts_every_matching_disclosure(web: WebLive) -> None:
    client, _ = signed_in(web, Role.COMPLIANCE)
    text = client.get("/ui/register.csv", params={"group": "clause"}).text
    head, _, detail = text.partition("\r\n\r\n")
    groups = list(csv.DictReader(io.StringIO(head)))
    api = web.live.client(Role.COMPLIANCE).get("/disclosures", params={"limit": 1000}).json()
    assert sum(int(g["disclosures"]) for g in groups) == len(api["items"])
    assert "5.1.1" in {g["clause"] for g in groups}
    assert detail.startswith("time,")


def test_no_personal_value_in_the_server_log(web: WebLive) -> None:
    client, csrf = signed_in(web, Role.PRIVACY_OFFICER)
    assert client.post("/ui/person", data={"subject": ALICE, "csrf": csrf}).status_code == 200
    assert web.log.lines, "the server logged nothing"
    assert not [line for line in web.log.lines if ALICE in line]


def test_findings_page_explains_each_clause_and_drills_down_to_the_events(
        web: WebLive) -> None:
    client, _ = signed_in(web, Role.COMPLIANCE)
    page = client.get("/ui/findings")
    assert page.status_code == 200 and "<svg" in page.text
    api = web.live.client(Role.COMPLIANCE).get("/findings/summary").json()
    assert api
    clause = api[0]["clause"]
    assert f">{clause}</a>" in page.text
    detail = client.get("/ui/findings", params={"clause": clause})
    events = web.live.client(Role.COMPLIANCE).get(
        "/findings", params={"clause": clause, "limit": 1000}).json()["items"]
    exact = [f for f in events if f["clause"] == clause]
    assert exact and all(f["event_id"] in detail.text for f in exact)
    assert client.get("/ui/findings", params={"clause": "9.9.9"}).status_code == 400
    responder, _ = signed_in(web, Role.RESPONDER)
    assert responder.get("/ui/findings").status_code == 403


def test_incident_scope_counts_match_the_cli(web: WebLive) -> None:
    client, _ = signed_in(web, Role.RESPONDER)
    params = {"stores": "accounts-db,payments-db", "from": "2024-01-01", "until": "2027-01-01"}
    page = client.get("/ui/incident", params=params)
    assert page.status_code == 200
    cli = cli_scope(web, "--stores", params["stores"], "--from", "2024-01-01T00:00:00Z",
                    "--until", "2027-01-01T00:00:00Z")
    counts = cli["counts"]
    assert isinstance(counts, dict) and counts["people"] > 0
    for key in ("people", "records", "reachable", "sensitive_records"):
        assert f'id="count-{key}">{counts[key]}<' in page.text
    case = client.get("/ui/incident", params={"incident": "inc-web"})
    assert case.status_code == 200 and 'id="clocks"' in case.text
    assert client.get("/ui/incident", params={"stores": "accounts-db"}).status_code == 400
    assert client.get("/ui/incident", params={"incident": "no-such"}).status_code == 404
    compliance, _ = signed_in(web, Role.COMPLIANCE)
    assert compliance.get("/ui/incident").status_code == 403


def test_flagged_filter_keeps_the_disclosures_a_finding_names(web: WebLive) -> None:
    client, _ = signed_in(web, Role.COMPLIANCE)
    rows = list(csv.DictReader(io.StringIO(
        client.get("/ui/register.csv", params={"flagged": "yes"}).text)))
    api = web.live.client(Role.COMPLIANCE)
    named = {f["event_id"] for f in api.get("/findings", params={"limit": 1000}).json()["items"]}
    disclosed = {d["event_id"] for d in api.get("/disclosures", params={"limit": 1000}
                                                 ).json()["items"]}
    assert rows and all(r["flagged"] == "yes" for r in rows)
    assert {r["event_id"] for r in rows} == named & disclosed


def test_pages_of_the_register_follow_each_other_without_gap_or_overlap(web: WebLive) -> None:
    client, _ = signed_in(web, Role.COMPLIANCE)
    api = web.live.client(Role.COMPLIANCE).get("/disclosures", params={"limit": 1000}).json()
    everyone = [d["event_id"] for d in api["items"]]
    assert len(everyone) > 50
    seen: list[str] = []
    for number in range(1, (len(everyone) + 49) // 50 + 2):
        text = client.get("/ui/register.csv", params={"page": str(number)}).text
        seen += [r["event_id"] for r in csv.DictReader(io.StringIO(text))]
    assert seen == everyone
    pages = (len(everyone) + 49) // 50
    assert f"page 1 of {pages}." in client.get("/ui/register").text


def test_groups_counted_in_sql_equal_groups_counted_row_by_row(web: WebLive) -> None:
    client, _ = signed_in(web, Role.COMPLIANCE)
    for group in ("clause", "recipient"):
        fast = client.get("/ui/register.csv", params={"group": group}).text.partition(
            "\r\n\r\n")[0]
        # cross_border=either is "" (SQL path); counting row by row needs a Python filter:
        # every disclosure crosses or does not, so yes + no together give the same groups
        slow: dict[str, list[int]] = {}
        for side in ("yes", "no"):
            text = client.get("/ui/register.csv", params={"group": group,
                                                          "cross_border": side}).text
            for g in csv.DictReader(io.StringIO(text.partition("\r\n\r\n")[0])):
                counts = slow.setdefault(g[group], [0, 0, 0])
                for i, name in enumerate(("disclosures", "cross_border", "flagged")):
                    counts[i] += int(g[name])
        fast_counts = {g[group]: [int(g["disclosures"]), int(g["cross_border"]),
                                  int(g["flagged"])]
                       for g in csv.DictReader(io.StringIO(fast))}
        assert fast_counts == slow and fast_counts


def test_person_page_lists_their_rights_requests_from_the_log_and_the_case_file(
        web: WebLive) -> None:
    client, csrf = signed_in(web, Role.PRIVACY_OFFICER)
    page = client.post("/ui/person", data={"subject": ALICE, "csrf": csrf})
    assert page.status_code == 200
    table = page.text.partition('id="person-requests"')[2].partition("</table>")[0]
    ledger_row = table.partition(f'id="request-{LEDGER_REQUEST}"')[2].partition("</tr>")[0]
    case_row = table.partition(f'id="request-{CASE_REQUEST}"')[2].partition("</tr>")[0]
    # only in the log: answered two days after it came in, in time
    assert "correction" in ledger_row and "answered" in ledger_row
    assert "2026-02-03" in ledger_row and "overdue" not in ledger_row
    # with a case file: open, identity not verified, long past its due date
    api = web.live.client(Role.PRIVACY_OFFICER).get("/requests").json()
    due = next(r["due"] for r in api if r["request_id"] == CASE_REQUEST)
    assert "access" in case_row and ">open<" in case_row and due in case_row
    assert ">no<" in case_row and "overdue" in case_row
    assert table.index(CASE_REQUEST) < table.index(LEDGER_REQUEST)  # newest first


def test_incident_page_counts_people_per_country_for_an_ad_hoc_scope(web: WebLive) -> None:
    client, _ = signed_in(web, Role.RESPONDER)
    params = {"stores": "accounts-db,payments-db", "from": "2024-01-01", "until": "2027-01-01"}
    page = client.get("/ui/incident", params=params)
    assert page.status_code == 200 and 'id="country-bars"' in page.text
    people = web.live.client(Role.RESPONDER).get("/scope", params={
        "stores": params["stores"], "from": "2024-01-01T00:00:00Z",
        "until": "2027-01-01T00:00:00Z", "limit": 1000}).json()["people"]
    assert people
    where = latest_residences(web)
    expected = Counter(where.get(p["pseudonym"], "unknown") for p in people)
    assert len(expected) > 1, expected  # the simulated people live in several countries
    shown = dict(re.findall(r'id="country-([^"]+)">(\d+)<', page.text))
    assert {k: int(v) for k, v in shown.items()} == dict(expected)


def test_case_drafts_are_linked_and_shown_to_the_responder_and_privacy_officer_only(
        web: WebLive) -> None:
    responder, _ = signed_in(web, Role.RESPONDER)
    case = responder.get("/ui/incident", params={"incident": "inc-web"})
    for draft in ("notice_zh", "notice_en", "report_cac"):
        assert f'id="draft-{draft}"' in case.text
    zh = responder.get("/ui/incident/draft", params={"incident": "inc-web", "draft": "notice_zh"})
    assert zh.status_code == 200 and "inc-web" in zh.text and 'id="draft-text"' in zh.text
    officer, _ = signed_in(web, Role.PRIVACY_OFFICER)
    overview = officer.get("/ui/")
    assert 'id="case-files"' in overview.text and "draft=report_cac" in overview.text
    en = officer.get("/ui/incident/draft", params={"incident": "inc-web", "draft": "notice_en"})
    assert en.status_code == 200 and "Cause: a test" in en.text
    compliance, _ = signed_in(web, Role.COMPLIANCE)
    assert "draft=" not in compliance.get("/ui/").text
    assert compliance.get("/ui/incident/draft", params={
        "incident": "inc-web", "draft": "notice_zh"}).status_code == 403
    for bad in ({"incident": "inc-web", "draft": "nope"}, {"draft": "notice_zh"},
                {"incident": "inc-web", "draft": "notice_zh", "x": "1"}):
        assert responder.get("/ui/incident/draft", params=bad).status_code == 400
    assert responder.get("/ui/incident/draft", params={
        "incident": "no-such", "draft": "notice_zh"}).status_code == 404


def test_a_draft_changed_in_the_case_folder_is_not_shown(web: WebLive) -> None:
    from cases.snapshot import folder

    path = folder(web.live.settings.data_dir, "inc-web") / "drafts" / "report_cac.md"
    kept = path.read_text("utf-8")
    try:
        path.write_text(kept + "tampered\n", "utf-8")
        responder, _ = signed_in(web, Role.RESPONDER)
        answer = responder.get("/ui/incident/draft",
                               params={"incident": "inc-web", "draft": "report_cac"})
        assert answer.status_code == 409 and "tampered" not in answer.text
    finally:
        path.write_text(kept, "utf-8")


def test_findings_show_which_are_still_open_and_which_were_remedied(web: WebLive) -> None:
    client, _ = signed_in(web, Role.COMPLIANCE)
    api = web.live.client(Role.COMPLIANCE).get("/findings", params={"limit": 1000}).json()
    by_clause: dict[str, list[dict[str, object]]] = {}
    for f in api["items"]:
        by_clause.setdefault(f["clause"], []).append(f)
    page = client.get("/ui/findings").text
    # every read by a principal not on the staff list is itself a 6.2.1b finding: skip it
    for clause, found in by_clause.items():
        if clause == "6.2.1b":
            continue
        still_open = sum(1 for f in found if f["status"] == "open")
        assert re.search(rf'id="open-{re.escape(clause)}">(<a [^>]*>)?{still_open}<', page)
    # the simulated workload erases some unlawfully collected data later (7.4)
    clause = next(c for c, found in by_clause.items()
                  if any(f["status"] == "remedied" for f in found))
    for status in ("open", "remedied"):
        detail = client.get("/ui/findings", params={"clause": clause, "status": status}).text
        shown = re.findall(r'<td class="status">(\w+)', detail)
        assert shown == [status] * sum(1 for f in by_clause[clause] if f["status"] == status)
    assert client.get("/ui/findings", params={"status": "closed"}).status_code == 400
