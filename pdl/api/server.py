"""``pdl serve``: the API under uvicorn.

It refuses to listen beyond loopback while no principal is configured (nobody could call
it, and a misconfigured deployment should fail loudly), takes a first admin token from
``LEDGER_ADMIN_TOKEN_FILE`` (a Docker secret), and loads the breach-scope index before it
accepts requests. uvicorn's own access log is off: the API logs one line per request with
the route template instead of the path, which never carries a person's identifier anyway.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from ledger.errors import ConfigurationError, LedgerError
from ledger.principals import Role, SQLitePrincipalStore
from pdl import web
from pdl.api.app import create_app
from pdl.service import QueryService

log = logging.getLogger("pdl.api")
BOOTSTRAP_ADMIN = "admin"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def import_admin_token(principals: SQLitePrincipalStore, path: Path) -> bool:
    """Accept the token in ``path`` as the ``admin`` principal's (created if missing);
    True if it was new. The file holds one token from ``pdl token new``."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"LEDGER_ADMIN_TOKEN_FILE={str(path)!r} cannot be read "
                                 f"({type(exc).__name__})") from None
    token_id = token.split("_")[1] if token.count("_") >= 2 else ""
    known = principals.tokens(token_id=token_id) if token_id else []
    if known:
        if known[0].state() != "active":
            log.warning("LEDGER_ADMIN_TOKEN_FILE holds a token that is %s: it stays so "
                        "(put a new one from `pdl token new` in the secret to replace it)",
                        known[0].state())
        return False  # imported before
    names = {p.principal.name for p in principals.principals()}
    if BOOTSTRAP_ADMIN not in names:
        principals.add(BOOTSTRAP_ADMIN, Role.ADMIN)
    elif principals.get(BOOTSTRAP_ADMIN).principal.role is not Role.ADMIN:
        raise ConfigurationError("LEDGER_ADMIN_TOKEN_FILE: the principal 'admin' exists "
                                 "with another role; rename it or unset the variable")
    try:
        principals.issue(BOOTSTRAP_ADMIN, ttl=None, token=token,
                         label="first admin token (LEDGER_ADMIN_TOKEN_FILE)")
    except ConfigurationError:
        raise ConfigurationError("LEDGER_ADMIN_TOKEN_FILE does not hold a pdl token "
                                 "(make one with `pdl token new`)") from None
    except LedgerError as exc:
        raise ConfigurationError(f"LEDGER_ADMIN_TOKEN_FILE: the token was refused ({exc})"
                                 ) from None
    return True


def serve(service: QueryService, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve until interrupted."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    settings = service.ledger.settings
    principals = SQLitePrincipalStore.for_data_dir(settings.data_dir)
    if settings.admin_token_file is not None and import_admin_token(
            principals, settings.admin_token_file):
        log.info("accepted the first admin token from LEDGER_ADMIN_TOKEN_FILE")
    if principals.active_count() == 0:
        if not is_loopback(host):
            raise ConfigurationError(
                f"refusing to listen on {host}: no principal is configured, so nobody could "
                "use the API. Add one (`pdl principal add NAME --role ROLE`, then "
                "`pdl token issue NAME`) or set LEDGER_ADMIN_TOKEN_FILE")
        log.warning("no principal is configured: every request will be refused "
                    "(`pdl principal add`, `pdl token issue`)")
    app = create_app(service, principals)
    web.warm(app)
    index = app.state.pdl.scope_index
    if index is not None:
        started = time.perf_counter()
        with service.lock:
            service.catch_up()
            index.refresh()
        stats = index.stats()
        log.info("breach-scope index: %s segments of %s people in memory (%.1f s; "
                 "LEDGER_SCOPE_INDEX=0 to answer from SQL)",
                 f"{stats['held'] + stats['ended']:,}", f"{stats['people']:,}",
                 time.perf_counter() - started)
    log.info("serving the ledger's API on http://%s:%s (docs at /docs)", host, port)
    try:
        uvicorn.run(app, host=host, port=port, access_log=False, server_header=False,
                    log_config=None, log_level="info")
    finally:
        principals.close()


# --- a server in a child process (benchmarks, tests, scripts) ----------------------------


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def spawned(env: Mapping[str, str], *, host: str = "127.0.0.1", port: int | None = None,
            cwd: str | Path | None = None, capture: bool = False, timeout: float = 60.0,
            ) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``pdl serve`` in a child process configured by ``env``: its base URL (on 127.0.0.1)
    and the process, once ``/health`` answers; terminated on leaving. ``capture`` keeps its
    output on ``stdout`` (else it is discarded). Raises ``RuntimeError`` (with the output,
    if captured) if it exits or does not answer within ``timeout`` seconds."""
    port = port or free_port()
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdl.cli", "serve", "--host", host, "--port", str(port)],
        env=dict(env), cwd=cwd, stdout=out,
        stderr=subprocess.STDOUT if capture else subprocess.DEVNULL, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    if proc.poll() is None:
                        proc.kill()
                    said = proc.stdout.read() if proc.stdout else ""
                    raise RuntimeError(f"pdl serve did not start: {said}") from None
                time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=60)
