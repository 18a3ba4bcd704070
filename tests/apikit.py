"""A real API server for tests: uvicorn on 127.0.0.1 (ephemeral port) in a thread, over a
data directory with the CLI tests' events, and a principal with a token for every role."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from test_queries_cli import ALICE, BANK, BOB, EMAIL, collected, shared, wire

from ledger.application import Ledger
from ledger.principals import Role, SQLitePrincipalStore
from ledger.settings import Settings, generate_key
from pdl.api import create_app
from pdl.service import QueryService

ALICE_EMAIL, ALICE_BANK = "alice.wang@example.com", "6222 0000 1111 2222"
JAN = {"from": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"}


def sample_settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, master_key=Settings.from_env(
        {"LEDGER_MASTER_KEY": generate_key()}).master_key, actor="operator@tests",
        sqlite_synchronous="NORMAL")


def publish_sample(settings: Settings) -> None:
    with Ledger(settings) as ledger:
        ledger.publish([
            wire("recipient.registered", "2026-01-01T00:00:00Z", None, {
                "recipient": "payco", "name": "Pay Co", "kind": "service_provider",
                "location": "CN", "roles": ["payment_processor"]}),
            wire("subject.registered", "2026-01-02T00:00:00Z", ALICE, {"subject_kind": "user"}),
            collected(ALICE, "2026-01-02T00:00:00Z", [EMAIL], "accounts-db",
                      {EMAIL: ALICE_EMAIL}, backups=["accounts-backup"]),
            collected(ALICE, "2026-01-03T00:00:00Z", [BANK], "payments-db",
                      {BANK: ALICE_BANK}, purpose="essential.service.payment_processing",
                      retention_days=365),
            shared(ALICE, "2026-01-04T00:00:00Z", "payco", [BANK], "5.1.1"),
            collected(BOB, "2026-01-02T00:00:00Z", [EMAIL], "accounts-db",
                      {EMAIL: "bob@example.com"}),
        ])


@dataclass
class Live:
    """A running server: its base URL, one token per role, the settings behind it."""

    url: str
    tokens: dict[Role, str]
    settings: Settings
    principals: SQLitePrincipalStore
    service: QueryService

    def client(self, role: Role | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)

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
    try:
        yield Live(f"http://127.0.0.1:{port}", tokens, settings, principals, service)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        principals.close()
        service.close()
