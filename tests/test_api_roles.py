"""The role matrix: every route, called by every role, without a token and with a bad one.

Allowed roles get an answer (never 401/403); the others 403; no or a bad token 401, and
a refused request appends nothing to the log. A new route must be added to ``MATRIX``:
a test fails if the OpenAPI document lists an operation the matrix does not cover.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from apikit import JAN, Caller, Live, sample_server
from test_queries_cli import ALICE

from ledger.principals import Role
from schemas.examples import EXAMPLES

P, C, R, O, A = (Role.PUBLISHER, Role.COMPLIANCE, Role.RESPONDER, Role.PRIVACY_OFFICER,
                 Role.ADMIN)
ANY = frozenset(Role)

#: (method, path, request keywords, roles allowed). In paths, ``{pseudonym}`` is Alice's,
#: ``{name}`` a principal, ``{token_id}`` a token made for the call and ``{incident_id}``
#: the sample's case file.
MATRIX: list[tuple[str, str, dict[str, Any], frozenset[Role]]] = [
    ("GET", "/status", {}, ANY),
    ("GET", "/whoami", {}, ANY),
    ("GET", "/metrics", {}, frozenset({A})),
    ("GET", "/subjects/{pseudonym}", {}, frozenset({C, R, O})),
    ("POST", "/subjects/lookup", {"json": {"subject": ALICE}}, frozenset({C, O})),
    ("POST", "/subjects/export", {"json": {"subject": ALICE, "reason": "DSR-1"}},
     frozenset({O})),
    ("POST", "/subjects/erase", {"json": {"subject": "acct-matrix-gone", "reason": "DSR-2",
                                          "record_anyway": True}},
     frozenset({O})),
    ("GET", "/disclosures", {}, frozenset({C})),
    ("GET", "/disclosures/summary", {}, frozenset({C})),
    ("GET", "/findings", {}, frozenset({C})),
    ("GET", "/findings/summary", {}, frozenset({C})),
    ("GET", "/scope", {"params": {"stores": "accounts-db", **JAN}}, frozenset({R})),
    ("GET", "/incidents", {}, frozenset({R})),
    ("GET", "/incidents/{incident_id}/case", {}, frozenset({R, O, C})),
    ("POST", "/incidents/{incident_id}/notify-list", {"json": {"reason": "DSR-4"}},
     frozenset({O})),
    ("GET", "/requests", {}, frozenset({C, O})),
    ("POST", "/log/verify", {}, frozenset({R})),
    ("POST", "/log/unseal", {"json": {"subject": ALICE, "reason": "DSR-3"}}, frozenset({O})),
    ("GET", "/access-log", {}, frozenset({C, O})),
    ("GET", "/principals", {}, frozenset({A})),
    ("POST", "/principals", {"json": {"name": "{name}-new", "role": "compliance"}},
     frozenset({A})),
    ("POST", "/principals/{name}/disable", {}, frozenset({A})),
    ("GET", "/tokens", {}, frozenset({A})),
    ("POST", "/tokens", {"json": {"principal": "compliance@tests"}}, frozenset({A})),
    ("POST", "/tokens/{token_id}/revoke", {}, frozenset({A})),
    ("POST", "/events", {"content": json.dumps({**EXAMPLES["data.used"], "source": "tests/api"}),
                         "headers": {"content-type": "application/cloudevents+json"}},
     frozenset({P})),
]
#: Routes anybody may call (no token).
PUBLIC = {("GET", "/health"), ("GET", "/schemas"), ("GET", "/schemas/{event_type}")}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with sample_server(tmp_path_factory.mktemp("roles"), case="inc-matrix") as server:
        yield server


_counter = iter(range(10_000))


def _fill(live: Live, text: str) -> str:
    if "{name}" in text:
        victim = f"victim-{next(_counter)}"
        live.principals.add(victim, Role.RESPONDER)
        text = text.replace("{name}", victim)
    if "{token_id}" in text:
        text = text.replace("{token_id}", live.principals.issue("responder@tests").info.id)
    text = text.replace("{incident_id}", "inc-matrix")
    return text.replace("{pseudonym}", live.service.pseudonym(ALICE))


def _call(live: Live, client: Caller, method: str, path: str,
          kwargs: dict[str, Any]) -> httpx.Response:
    kwargs = dict(kwargs)
    if "json" in kwargs:
        kwargs["json"] = {k: _fill(live, v) if isinstance(v, str) else v
                          for k, v in kwargs["json"].items()}
    return client.request(method, _fill(live, path), **kwargs)


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
@pytest.mark.parametrize(("method", "path", "kwargs", "allowed"), MATRIX,
                         ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
def test_every_route_for_every_role(live: Live, role: Role, method: str, path: str,
                                    kwargs: dict[str, Any], allowed: frozenset[Role]) -> None:
    before = live.records()
    with live.client(role) as client:
        response = _call(live, client, method, path, kwargs)
    if role in allowed:
        assert response.status_code < 400, (role, response.text)
    else:
        assert response.status_code == 403, (role, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert role.value in response.json()["detail"]
        assert live.records() == before  # refused: nothing recorded


@pytest.mark.parametrize(("method", "path", "kwargs", "allowed"), MATRIX,
                         ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
@pytest.mark.parametrize("token", [None, "pdl_000000000000_" + "A" * 43, "garbage"],
                         ids=["none", "unknown", "malformed"])
def test_every_route_refuses_a_missing_or_bad_token(
        live: Live, method: str, path: str, kwargs: dict[str, Any], allowed: frozenset[Role],
        token: str | None) -> None:
    before = live.records()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with live.client(headers=headers) as client:
        response = _call(live, client, method, path, kwargs)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert live.records() == before  # nobody can flood the log


def test_the_matrix_covers_every_operation(live: Live) -> None:
    spec = httpx.get(f"{live.url}/openapi.json").json()
    operations = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    covered = {(m, p) for m, p, _, _ in MATRIX} | PUBLIC
    assert operations - covered == set(), "add the new routes to MATRIX"
    assert covered - operations == set(), "MATRIX names routes that do not exist"


def test_revoked_expired_and_disabled_tokens_stop_at_once(live: Live) -> None:
    store = live.principals
    store.add("short-lived", Role.COMPLIANCE)
    issued = store.issue("short-lived")
    auth = {"Authorization": f"Bearer {issued.token}"}
    with live.client(headers=auth) as client:
        assert client.get("/whoami").json()["name"] == "short-lived"
        store.revoke(issued.info.id)
        assert client.get("/whoami").status_code == 401
    again = store.issue("short-lived")
    with live.client(headers={"Authorization": f"Bearer {again.token}"}) as client:
        assert client.get("/whoami").status_code == 200
        store.disable("short-lived")
        assert client.get("/whoami").status_code == 401
    # a token whose secret half is wrong is unknown, even with a real id
    other = store.issue("compliance@tests")
    forged = other.token[:-4] + ("AAAA" if not other.token.endswith("AAAA") else "BBBB")
    with live.client(headers={"Authorization": f"Bearer {forged}"}) as client:
        assert client.get("/whoami").status_code == 401


def test_a_publisher_reads_nothing(live: Live) -> None:
    with live.client(Role.PUBLISHER) as client:
        me = client.get("/whoami").json()
    assert me == {"name": "publisher@tests", "role": "publisher", "sources": ["tests/api"]}


def test_an_admin_cannot_disable_itself(live: Live) -> None:
    with live.client(Role.ADMIN) as admin:
        refused = admin.post("/principals/admin@tests/disable")
        assert refused.status_code == 409
        assert admin.get("/whoami").status_code == 200
