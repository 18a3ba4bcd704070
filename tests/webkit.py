"""A live server for the dashboard's tests: the sample events plus a small simulated
workload, a case file, a token per role, and the server's log lines collected."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from apikit import Live, live_server, open_sample_case, publish_sample, sample_settings
from test_queries_cli import ALICE, EMAIL, collected, wire

from ledger.application import Ledger
from ledger.principals import Role
from ledger.settings import Settings
from workload import simulate

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Lines(logging.Handler):
    """Every log line the server writes, formatted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class WebLive:
    live: Live
    log: Lines

    @property
    def url(self) -> str:
        return self.live.url


@contextmanager
def web_server(data_dir: object) -> Iterator[WebLive]:
    from pathlib import Path

    settings = sample_settings(Path(str(data_dir)))
    publish_sample(settings)
    with Ledger(settings) as ledger:
        ledger.publish_lines(list(simulate(30, seed=11)))
    open_sample_case(settings, "inc-web")
    add_requests_and_drafts(settings, "inc-web")
    lines = Lines()
    loggers = [logging.getLogger(n) for n in ("pdl.api", "pdl.api.requests", "uvicorn")]
    for logger in loggers:
        logger.addHandler(lines)
        logger.setLevel(logging.INFO)
    try:
        with live_server(settings, quiet=False) as live:
            yield WebLive(live, lines)
    finally:
        for logger in loggers:
            logger.removeHandler(lines)


#: Alice's rights requests: one only in the log (answered), one with a case file (open).
LEDGER_REQUEST, CASE_REQUEST = "req-web-ledger", "req-web-case"


def add_requests_and_drafts(settings: Settings, incident_id: str) -> None:
    """Two rights requests of Alice's, the drafts of ``incident_id``'s case file, and three
    people with a country of residence (the simulated ones have none)."""
    from datetime import UTC, datetime

    from cases.desk import CaseDesk

    with Ledger(settings) as ledger:
        living = [("carol-web", "DE"), ("dan-web", "CN"), ("erin-web", "CN")]
        ledger.publish([
            *[wire("subject.registered", "2026-01-05T00:00:00Z", who,
                   {"subject_kind": "user", "residence": country}) for who, country in living],
            *[collected(who, "2026-01-06T00:00:00Z", [EMAIL], "accounts-db",
                        {EMAIL: f"{who}@example.com"}) for who, _ in living],
            wire("request.received", "2026-02-01T00:00:00Z", ALICE,
                 {"request_id": LEDGER_REQUEST, "kind": "correction"}),
            wire("request.fulfilled", "2026-02-03T00:00:00Z", ALICE,
                 {"request_id": LEDGER_REQUEST})])
        desk = CaseDesk(ledger)
        try:
            desk.open_request(CASE_REQUEST, "access", ALICE, at=datetime(2026, 3, 1, tzinfo=UTC))
            desk.draft(incident_id, {"company": "Example Cloud", "cause": "a test"})
        finally:
            desk.close()


def signed_in(web: WebLive, role: Role) -> tuple[httpx.Client, str]:
    """An HTTP client signed in as ``role`` (cookies kept) and its session's CSRF token."""
    client = httpx.Client(base_url=web.url, timeout=60)
    form = client.get("/ui/login")
    csrf = CSRF.search(form.text).group(1)  # type: ignore[union-attr]
    # the cookie is Secure: httpx would keep it from plain http, so pass it on by hand
    client.cookies.set("pdl_login_csrf", form.cookies["pdl_login_csrf"])
    answer = client.post("/ui/login", data={"csrf": csrf, "token": web.live.tokens[role]})
    assert answer.status_code == 303, answer.text
    client.cookies.clear()
    client.cookies.set("pdl_session", answer.cookies["pdl_session"])
    page = client.get("/ui/")
    assert page.status_code == 200, page.text
    return client, CSRF.search(page.text).group(1)  # type: ignore[union-attr]


def cli_scope(web: WebLive, *args: str) -> dict[str, object]:
    """``pdl scope ... --json`` run as a user would, over the server's data directory."""
    import base64
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    settings = web.live.settings
    assert settings.master_key is not None
    env = {**os.environ, "LEDGER_DATA_DIR": str(settings.data_dir),
           "LEDGER_MASTER_KEY": base64.urlsafe_b64encode(settings.master_key).decode()
           .rstrip("="), "LEDGER_ACTOR": "cli@tests"}
    pdl = Path(sys.executable).parent / "pdl"
    done = subprocess.run([str(pdl), "scope", *args, "--json"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def latest_residences(web: WebLive) -> dict[str, str]:
    """Each person's latest registration naming a country, read straight from the log."""
    from schemas import decode

    where: dict[str, str] = {}
    with Ledger(web.live.settings) as ledger:
        for record in ledger.log.read():
            if record.event_type == "subject.registered":
                residence = decode(record.payload).data.residence  # type: ignore[attr-defined]
                if residence and record.subject:
                    where[record.subject] = residence
    return where
