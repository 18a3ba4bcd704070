"""A real PostgreSQL server for the test session, from Debian's package.

``postgres_server`` (session scope) runs ``initdb`` and ``pg_ctl`` in a temporary folder:
trust authentication for one test user, a unix socket in that folder and a loopback port.
As root the server runs as the ``postgres`` user (PostgreSQL refuses to run as root),
over a folder chowned to it. Each test asks for a schema of its own (``PostgresServer.new_schema``,
selected by the URL's ``search_path``; or a whole database, ``new_database``).

Under ``CI=true`` a missing server is a failure, never a skip. ``LEDGER_TEST_PG_PORT``
picks the port (default: a free one); ``LEDGER_TEST_PG_BIN`` the folder holding
``initdb``/``pg_ctl`` (default: the newest ``/usr/lib/postgresql/*/bin``).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
USER = "pdl_test"
#: The major version the ledger supports; a newer one is used if that is what is installed.
WANTED_MAJOR = 15


def postgres_unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"PostgreSQL tests must run in CI: {reason}. Run scripts/ci-deps first.")
    pytest.skip(f"PostgreSQL tests skipped: {reason}. Install Debian's postgresql package "
                "(apt-get install postgresql; it need not run: tests start their own server).")


def find_bin() -> Path | None:
    given = os.environ.get("LEDGER_TEST_PG_BIN")
    if given:
        return Path(given)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    preferred = [p for p in found if Path(p).parent.parent.name == str(WANTED_MAJOR)]
    chosen = preferred or found
    return Path(chosen[-1]).parent if chosen else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A throw-away PostgreSQL cluster: ``url(db)`` and ``new_database()`` for tests."""

    def __init__(self, bin_dir: Path, root: Path, port: int):
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.socket_dir = root / "sock"
        self.port = port
        self._names = itertools.count(1)
        self._as: list[str] = []
        self._shared: str | None = None  # the database new_schema() makes schemas in
        if os.geteuid() == 0:
            # PostgreSQL will not run as root: run it as the package's system user.
            pwd.getpwnam("postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._as, *args], capture_output=True, text=True, check=False,
                              cwd=self.root)

    def start(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self._as:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
        init = None
        if not (self.data / "PG_VERSION").exists():  # a cluster kept from a run (bench/)
            init = self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", USER,
                             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
        if init is not None and init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stdout}{init.stderr}")
        # Durability off: a test server's data is thrown away; the ledger's own guarantees
        # are transactional, which these settings do not weaken.
        options = (f"-k {self.socket_dir} -p {self.port} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200 -c shared_buffers=64MB")
        started = self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l",
                            str(self.root / "server.log"), "-w", "-t", "60", "-o", options,
                            "start")
        if started.returncode != 0:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stdout}{started.stderr}{log}")

    def stop(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")

    def url(self, database: str = "postgres", *, tcp: bool = True) -> str:
        """A ``postgresql://`` URL to ``database``: over the loopback port, or the socket."""
        if tcp:
            return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"
        return f"postgresql://{USER}@/{database}?host={self.socket_dir}&port={self.port}"

    def new_schema(self, *, tcp: bool = True) -> str:
        """A fresh, empty schema of the test's own in the shared test database: its URL
        sets the ``search_path``, so everything the ledger creates lands there. Much
        cheaper than a database (no 7 MB copy), and as separate for the ledger's tables."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        if self._shared is None:
            self._shared = self.new_database()
        with psycopg.connect(self._shared, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        base = self.url(self._shared.rsplit("/", 1)[1], tcp=tcp)
        return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{name}"

    def new_database(self, *, tcp: bool = True) -> str:
        """A fresh, empty database of the test's own; returns its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY FILE_COPY')
        return self.url(name, tcp=tcp)



def bench_server(data: Path | None = None, prefix: str = "pdl-bench-pg-") -> PostgresServer:
    """A started server for a benchmark (in ``data``, or a new temporary folder), or
    ``SystemExit`` saying what to install (the benchmarks take ``--pg-url`` instead)."""
    bin_dir = find_bin()
    if bin_dir is None:
        raise SystemExit("no PostgreSQL server binaries: apt-get install postgresql, or give "
                         "--pg-url")
    server = PostgresServer(bin_dir, data or Path(tempfile.mkdtemp(prefix=prefix)), free_port())
    server.start()
    return server

@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole session (see the module docstring)."""
    bin_dir = find_bin()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        postgres_unavailable("no /usr/lib/postgresql/*/bin/initdb")
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        postgres_unavailable("psycopg is not installed (pip install -e '.[test]')")
        return
    port = int(os.environ.get("LEDGER_TEST_PG_PORT") or free_port())
    root = Path(tempfile.mkdtemp(prefix="pdl-pg-"))
    server = PostgresServer(bin_dir, root, port)
    try:
        server.start()
    except (RuntimeError, KeyError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        postgres_unavailable(str(exc))
        return
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty schema (of a database) on the session's server."""
    return postgres_server.new_schema()
