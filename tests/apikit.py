"""A real API server for tests: uvicorn on 127.0.0.1 (ephemeral port) in a thread, over a
data directory with the CLI tests' events, and a principal with a token for every role."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx
import uvicorn
from samplekit import ALICE_BANK, ALICE_EMAIL, sample_events  # noqa: F401 - re-exported

from ledger.application import Ledger
from ledger.principals import Role, SQLitePrincipalStore
from ledger.settings import Settings, generate_key
from pdl.api import create_app
from pdl.service import QueryService

JAN = {"from": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"}


def sample_settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, master_key=Settings.from_env(
        {"LEDGER_MASTER_KEY": generate_key()}).master_key, actor="operator@tests",
        sqlite_synchronous="NORMAL")


def publish_sample(settings: Settings) -> None:
    with Ledger(settings) as ledger:
        ledger.publish(sample_events())


def open_sample_case(settings: Settings, incident_id: str) -> None:
    """A case file with a scope snapshot for ``incident_id`` over the sample's accounts-db."""
    from datetime import datetime

    from cases.desk import CaseDesk
    from pdl.service import QueryService

    with Ledger(settings) as ledger:
        desk = CaseDesk(ledger)
        service = QueryService(ledger)
        try:
            desk.open_incident(incident_id, "sample", ["accounts-db"],
                               datetime.fromisoformat(JAN["from"]),
                               datetime.fromisoformat(JAN["until"]))
            service.catch_up()
            desk.take_scope(incident_id, service.views)
        finally:
            service.views.close()
            desk.close()


class Caller:
    """Requests with fixed headers on a shared client (a context manager, like a client)."""

    def __init__(self, http: httpx.Client, headers: dict[str, str]):
        self.http = http
        self.headers = headers

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.http.request(method, url, headers=headers, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("OPTIONS", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


@dataclass
class Live:
    """A running server: its base URL, one token per role, the settings behind it."""

    url: str
    tokens: dict[Role, str]
    settings: Settings
    principals: SQLitePrincipalStore
    service: QueryService

    http: httpx.Client

    def client(self, role: Role | None = None, *, headers: dict[str, str] | None = None
               ) -> Caller:
        """A caller with ``role``'s token (none if None) on the one shared connection
        pool (making an httpx client costs ~0.1 s: its TLS context)."""
        auth = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return Caller(self.http, {**auth, **(headers or {})})

    def records(self) -> int:
        """Records in the log (a refused request must not add any)."""
        return self.service.ledger.log.count()

    def audits(self) -> list[dict[str, Any]]:
        with self.service.lock:
            return [e.data.model_dump() for _, e in self.service.ledger.events()
                    if e.type == "ledger.queried"]


def add_role_tokens(principals: SQLitePrincipalStore) -> dict[Role, str]:
    tokens: dict[Role, str] = {}
    for role in Role:
        name = f"{role.value}@tests"
        principals.add(name, role, ["tests/api"] if role is Role.PUBLISHER else ())
        tokens[role] = principals.issue(name).token
    return tokens


@contextmanager
def live_server(settings: Settings, *, quiet: bool = True) -> Iterator[Live]:
    service = QueryService(Ledger(settings))
    principals = SQLitePrincipalStore.for_data_dir(settings.data_dir)
    tokens = add_role_tokens(principals)
    app = create_app(service, principals, quiet=quiet)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, access_log=False,
                                           log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            yield Live(url, tokens, settings, principals, service, http)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        principals.close()
        service.close()


@contextmanager
def sample_server(folder: Path, *, case: str | None = None, quiet: bool = True
                  ) -> Iterator[Live]:
    """``live_server`` over the sample events, published in ``folder/data`` (with ``case``:
    and a case file for that incident, ``open_sample_case``)."""
    settings = sample_settings(folder / "data")
    publish_sample(settings)
    if case:
        open_sample_case(settings, case)
    with live_server(settings, quiet=quiet) as server:
        yield server
