"""Sealed personal values: keyed pseudonyms, per-person data keys, crypto-shredding.

- A person's identifier becomes ``HMAC-SHA256(pseudonym key, id)``: stable, so events of
  one person link up, and keyed, so nobody without the master key can test a guess.
- Identifying values are sealed with AES-256-GCM under that person's own data key. The
  associated data binds a token to its pseudonym and event id, so a token copied onto
  another event or person does not open.
- Data keys live in a key vault outside the log, wrapped (AES-GCM) by a key derived from
  the master key. Destroying a person's data key (erasure, 7.6 / 6.3) leaves their tokens
  in the immutable log unreadable forever.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ledger.errors import PersistenceError, SealingError, SubjectErased
from ledger.files import private_file

TOKEN_PREFIX = "v1."
# json.dumps(values, separators=(",", ":"), ensure_ascii=False), without building an
# encoder per call.
_compact_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master)


class Pseudonymiser:
    """Turns a real identifier into the stable keyed pseudonym stored in the log."""

    def __init__(self, master_key: bytes):
        self._key = _derive(master_key, b"pdl pseudonym v1")
        self._cache: dict[str, str] = {}

    def __call__(self, subject_id: str) -> str:
        p = self._cache.get(subject_id)
        if p is None:
            digest = hmac.new(self._key, subject_id.encode(), hashlib.sha256).digest()
            p = "p_" + base64.b32encode(digest[:20]).decode().lower()
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[subject_id] = p
        return p

    def many(self, subject_ids: Iterable[str | None]) -> list[str | None]:
        """The pseudonyms of many identifiers (None stays None): a batch's worth at once."""
        cached = self._cache.get
        return [(cached(s) or self(s)) if s else None for s in subject_ids]


_T = TypeVar("_T")
_P = ParamSpec("_P")


def _locked(method: Callable[Concatenate[Any, _P], _T]) -> Callable[Concatenate[Any, _P], _T]:
    """Run the method holding its object's ``_lock`` (one connection, many threads)."""

    def locked(self: Any, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        with self._lock:
            return method(self, *args, **kwargs)

    functools.update_wrapper(locked, method)
    return locked


class SQLiteKeyVault:
    """Per-person data keys, wrapped by the master key, in their own SQLite file.

    ``secure_delete`` overwrites freed pages and the WAL is truncated after a key is
    destroyed, so the wrapped key does not linger on disk.
    """

    def __init__(self, path: str | Path, master_key: bytes):
        self.path = Path(path)
        private_file(self.path)
        self._wrap = AESGCM(_derive(master_key, b"pdl key-wrap v1"))
        self._check = _derive(master_key, b"pdl key-check v1")
        self._cache: dict[str, AESGCM] = {}
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(
                """
                CREATE TABLE IF NOT EXISTS subject_keys (
                    pseudonym    TEXT PRIMARY KEY,
                    wrapped      BLOB,
                    created_at   REAL NOT NULL,
                    destroyed_at REAL
                );
                CREATE TABLE IF NOT EXISTS vault_meta (name TEXT PRIMARY KEY, value BLOB);
                """
            )
        except sqlite3.Error as exc:
            raise PersistenceError(f"cannot open the key vault at {self.path}: {exc}") from exc
        self._check_master_key()

    def _check_master_key(self) -> None:
        fingerprint = hashlib.sha256(self._check).digest()[:8]
        row = self._db.execute("SELECT value FROM vault_meta WHERE name='master'").fetchone()
        if row is None:
            self._db.execute("INSERT OR IGNORE INTO vault_meta VALUES ('master', ?)", (fingerprint,))
        elif row[0] != fingerprint:
            raise SealingError(
                f"LEDGER_MASTER_KEY does not match the key vault at {self.path}: "
                "it was created with another master key"
            )

    def close(self) -> None:
        self._db.close()

    def _unwrap(self, pseudonym: str, wrapped: bytes) -> AESGCM:
        try:
            key = self._wrap.decrypt(wrapped[:12], wrapped[12:], pseudonym.encode())
        except InvalidTag:
            raise SealingError(f"the data key of {pseudonym} does not unwrap") from None
        return AESGCM(key)

    @_locked
    def keys_for(self, pseudonyms: Iterable[str], create: bool = True) -> dict[str, AESGCM]:
        """Data keys of these people, creating missing ones in one transaction.

        People whose key was destroyed are left out of the answer (see ``state``).
        """
        wanted = [p for p in dict.fromkeys(pseudonyms) if p not in self._cache]
        if wanted:
            found: dict[str, bytes | None] = {}
            for i in range(0, len(wanted), 900):
                chunk = wanted[i : i + 900]
                marks = ",".join("?" * len(chunk))
                found.update(
                    self._db.execute(
                        f"SELECT pseudonym, wrapped FROM subject_keys WHERE pseudonym IN ({marks})",
                        chunk,
                    ).fetchall()
                )
            missing = [p for p in wanted if p not in found]
            if missing and create:
                now = time.time()
                rows = []
                fresh: dict[str, bytes] = {}
                for p in missing:
                    nonce = os.urandom(12)
                    fresh[p] = AESGCM.generate_key(256)
                    rows.append((p, nonce + self._wrap.encrypt(nonce, fresh[p], p.encode()), now))
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    stored = self._db.executemany(
                        "INSERT OR IGNORE INTO subject_keys (pseudonym, wrapped, created_at)"
                        " VALUES (?, ?, ?)",
                        rows,
                    ).rowcount
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                if stored != len(rows):
                    # Another process won the race for some: read back what is stored.
                    return self.keys_for(pseudonyms, create=False)
                for p, key in fresh.items():
                    self._cache[p] = AESGCM(key)
            for p, wrapped in found.items():
                if wrapped is not None:
                    self._cache[p] = self._unwrap(p, wrapped)
        return {p: self._cache[p] for p in pseudonyms if p in self._cache}

    @_locked
    def state(self, pseudonym: str) -> str:
        """``active``, ``destroyed`` or ``unknown``."""
        row = self._db.execute(
            "SELECT wrapped IS NULL FROM subject_keys WHERE pseudonym = ?", (pseudonym,)
        ).fetchone()
        return "unknown" if row is None else ("destroyed" if row[0] else "active")

    @_locked
    def destroy(self, pseudonym: str) -> bool:
        """Destroy a person's data key for good. Returns False if there was none to destroy."""
        self._cache.pop(pseudonym, None)
        cur = self._db.execute(
            "UPDATE subject_keys SET wrapped = NULL, destroyed_at = ? "
            "WHERE pseudonym = ? AND wrapped IS NOT NULL",
            (time.time(), pseudonym),
        )
        if cur.rowcount == 0:
            self._db.execute(
                "INSERT OR IGNORE INTO subject_keys (pseudonym, wrapped, created_at, destroyed_at)"
                " VALUES (?, NULL, ?, ?)",
                (pseudonym, time.time(), time.time()),
            )
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return cur.rowcount > 0


class Sealer:
    """Seals and opens the ``personal`` values of one event under its person's data key."""

    def __init__(self, vault: SQLiteKeyVault):
        self.vault = vault

    @staticmethod
    def _aad(pseudonym: str, event_id: str) -> bytes:
        return f"{pseudonym}|{event_id}".encode()

    def seal(self, key: AESGCM, pseudonym: str, event_id: str, values: Mapping[str, str],
             nonce: bytes | None = None) -> str:
        """The token of ``values``; ``nonce`` (12 fresh random bytes) if the caller drew it."""
        if nonce is None:
            nonce = os.urandom(12)
        plain = _compact_json(values).encode()
        blob = nonce + key.encrypt(nonce, plain, f"{pseudonym}|{event_id}".encode())
        return TOKEN_PREFIX + base64.urlsafe_b64encode(blob).decode()

    def open(self, pseudonym: str, event_id: str, token: str) -> dict[str, str]:
        """The clear values of a token. Raises ``SubjectErased`` once the key is destroyed."""
        keys = self.vault.keys_for([pseudonym], create=False)
        key = keys.get(pseudonym)
        if key is None:
            raise SubjectErased(f"no data key for {pseudonym}: the person was erased")
        if not token.startswith(TOKEN_PREFIX):
            raise SealingError(f"event {event_id}: unknown sealed-token format")
        blob = base64.urlsafe_b64decode(token[len(TOKEN_PREFIX) :])
        try:
            plain = key.decrypt(blob[:12], blob[12:], self._aad(pseudonym, event_id))
        except InvalidTag:
            raise SealingError(
                f"event {event_id}: sealed values do not open (altered, or moved from another event)"
            ) from None
        values: dict[str, str] = json.loads(plain)
        return values
