"""The key vault in PostgreSQL (psycopg 3): one vault for every machine that seals or unseals.

Selected by ``LEDGER_VAULT_URL=postgresql://...`` (``ledger.factory.open_vault``); the
SQLite file stays the embedded default. Imports only the vault interface.

Invariants it keeps:

- only wrapped keys reach the server (``KeyVault.wrap``: AES-GCM under a key derived from
  the master key, the pseudonym as associated data), so the database, its WAL archive and
  its backups hold nothing that opens a token without the master key;
- no process keeps a key the vault no longer has: every ``keys_for`` reads the vault, so
  once ``destroy`` has committed in one process, every other process is refused at its
  next seal or unseal (no cache to go stale, one round trip per call);
- a destroyed key's row version is deleted and ``VACUUM`` removes it; what is left is a
  tombstone (pseudonym, time, no key) that stops the key from being created again;
- a key created by two processes at once is created once (``ON CONFLICT DO NOTHING``,
  then read back), and a key is never created for a pseudonym that has a tombstone:
  creation and destruction meet on the same primary-key row;
- every write checks, in its transaction, that the vault's master-key fingerprint is the
  process's (``FOR SHARE``); ``rotate`` takes it ``FOR UPDATE``, so no key is wrapped
  under a retired master key after a rotation commits.

What a destroyed key can still leave behind (see docs/scale-out.md): the wrapped bytes
in free space of a page until it is reused, in WAL segments not yet recycled, in WAL
archives and base backups taken before the destruction. Each holds the key only wrapped
under the master key of its time; ``pdl vault rotate`` retires that master key, and with
it every copy in old backups.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.errors import IntegrityError, OperationalError, PersistenceError, SealingError
from ledger.sealing import PSEUDONYM_KEY, KeyVault, wrapper

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS subject_keys (
        pseudonym    TEXT COLLATE "C" PRIMARY KEY,
        wrapped      BYTEA,
        created_at   DOUBLE PRECISION NOT NULL,
        destroyed_at DOUBLE PRECISION
    )""",
    """CREATE TABLE IF NOT EXISTS vault_meta (
        name  TEXT COLLATE "C" PRIMARY KEY,
        value BYTEA NOT NULL
    )""",
)


def _error(exc: psycopg.Error, what: str) -> PersistenceError:
    primary = (exc.diag.message_primary if exc.diag and exc.diag.message_primary
               else str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    if isinstance(exc, psycopg.OperationalError):
        return OperationalError(f"{what}: {primary}")
    if isinstance(exc, psycopg.errors.IntegrityError):
        return IntegrityError(f"{what}: {primary}")
    return PersistenceError(f"{what}: {primary}")


class PostgresKeyVault(KeyVault):
    """Per-person data keys, wrapped by the master key, in a PostgreSQL database."""

    def __init__(self, url: str, master_key: bytes):
        super().__init__(master_key)
        self._lock = threading.RLock()
        try:
            self._conn = psycopg.connect(url, autocommit=True, application_name="pdl-vault")
            with self._conn.transaction():
                # one creator at a time (two first processes would race on CREATE TABLE)
                self._conn.execute("SELECT pg_advisory_xact_lock(hashtext('pdl key vault'))")
                for statement in SCHEMA:
                    self._conn.execute(statement)
                self._conn.execute(
                    "INSERT INTO vault_meta (name, value) VALUES ('master', %s) "
                    "ON CONFLICT (name) DO NOTHING", (self.fingerprint(),))
        except psycopg.Error as exc:
            raise _error(exc, "cannot open the key vault named by LEDGER_VAULT_URL") from exc
        self._check_master_key(self._conn)

    @property
    def where(self) -> str:
        info = self._conn.info
        return f"postgresql {info.host}:{info.port}/{info.dbname}"

    def _check_master_key(self, conn: psycopg.Connection[Any], lock: str = "") -> None:
        row = conn.execute(f"SELECT value FROM vault_meta WHERE name = 'master' {lock}"
                           ).fetchone()
        if row is None or bytes(row[0]) != self.fingerprint():
            raise SealingError(
                f"LEDGER_MASTER_KEY does not match the key vault at {self.where}: it was "
                "created with another master key, or the master key was rotated since "
                "(`pdl vault rotate`): use the current one")

    def _meta(self, name: str) -> bytes | None:
        row = self._conn.execute("SELECT value FROM vault_meta WHERE name = %s", (name,)
                                 ).fetchone()
        return None if row is None else bytes(row[0])

    def keys_for(self, pseudonyms: Iterable[str], create: bool = True) -> dict[str, AESGCM]:
        wanted = list(dict.fromkeys(pseudonyms))
        if not wanted:
            return {}
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT pseudonym, wrapped FROM subject_keys WHERE pseudonym = ANY(%s)",
                    (wanted,)).fetchall()
                missing = [p for p in wanted if p not in {r[0] for r in rows}]
                if missing and create:
                    self._create(missing)
                    rows = self._conn.execute(
                        "SELECT pseudonym, wrapped FROM subject_keys WHERE pseudonym = ANY(%s)",
                        (wanted,)).fetchall()
            except psycopg.Error as exc:
                raise _error(exc, f"reading data keys from {self.where} failed") from exc
        return {p: self._unwrap(p, bytes(wrapped)) for p, wrapped in rows if wrapped is not None}

    def _create(self, missing: list[str]) -> None:
        now = time.time()
        rows = [(p, self.wrap(p, AESGCM.generate_key(256)), now) for p in missing]
        with self._conn.transaction():
            self._check_master_key(self._conn, "FOR SHARE")
            with self._conn.cursor() as cur:
                # a tombstone or a key made meanwhile by another process wins: read back after
                cur.executemany(
                    "INSERT INTO subject_keys (pseudonym, wrapped, created_at) "
                    "VALUES (%s, %s, %s) ON CONFLICT (pseudonym) DO NOTHING", rows)

    def state(self, pseudonym: str) -> str:
        with self._lock:
            try:
                row = self._conn.execute(
                    "SELECT wrapped IS NULL FROM subject_keys WHERE pseudonym = %s",
                    (pseudonym,)).fetchone()
            except psycopg.Error as exc:
                raise _error(exc, f"reading the key vault {self.where} failed") from exc
        return "unknown" if row is None else ("destroyed" if row[0] else "active")

    def destroy(self, pseudonym: str) -> bool:
        now = time.time()
        with self._lock:
            try:
                with self._conn.transaction():
                    # the row version holding the wrapped key is deleted; a tombstone
                    # (no key) takes its place and keeps the key from being made again
                    gone = self._conn.execute(
                        "DELETE FROM subject_keys WHERE pseudonym = %s AND wrapped IS NOT NULL",
                        (pseudonym,)).rowcount
                    self._conn.execute(
                        "INSERT INTO subject_keys (pseudonym, wrapped, created_at, destroyed_at)"
                        " VALUES (%s, NULL, %s, %s) ON CONFLICT (pseudonym) DO NOTHING",
                        (pseudonym, now, now))
                # VACUUM cannot run inside a transaction: the dead row version goes now
                self._conn.execute("VACUUM subject_keys")
            except psycopg.Error as exc:
                raise _error(exc, f"destroying a data key in {self.where} failed") from exc
        return gone > 0

    def rotate(self, new_master: bytes) -> int:
        with self._lock:
            try:
                with self._conn.transaction():
                    self._check_master_key(self._conn, "FOR UPDATE")
                    pseudonym_key = self._current_pseudonym_key()
                    live = [(p, bytes(w)) for p, w in self._conn.execute(
                        "SELECT pseudonym, wrapped FROM subject_keys WHERE wrapped IS NOT NULL")]
                    rows = self._rewrapped(new_master, live)
                    new_wrap = wrapper(new_master)
                    with self._conn.cursor() as cur:
                        cur.executemany(
                            "UPDATE subject_keys SET wrapped = %s WHERE pseudonym = %s", rows)
                        cur.executemany(
                            "INSERT INTO vault_meta (name, value) VALUES (%s, %s) ON CONFLICT "
                            "(name) DO UPDATE SET value = excluded.value",
                            [("master", self.fingerprint(new_master)),
                             (PSEUDONYM_KEY, self.wrap(PSEUDONYM_KEY, pseudonym_key, new_wrap))])
                # the old wrappings are dead row versions: a full rewrite drops them
                self._conn.execute("VACUUM FULL subject_keys")
                self._conn.execute("VACUUM FULL vault_meta")
            except psycopg.Error as exc:
                raise _error(exc, f"rotating the master key of {self.where} failed") from exc
            self._use_master(new_master)
        return len(rows)

    def close(self) -> None:
        self._conn.close()

