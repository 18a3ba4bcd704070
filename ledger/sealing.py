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
from abc import ABC, abstractmethod
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


def wrapper(master_key: bytes) -> AESGCM:
    """The cipher that wraps data keys under ``master_key``."""
    return AESGCM(_derive(master_key, b"pdl key-wrap v1"))


class Pseudonymiser:
    """Turns a real identifier into the stable keyed pseudonym stored in the log.

    ``key`` is the pseudonym key the vault keeps once the master key was rotated
    (``KeyVault.pseudonym_key``); by default it is derived from ``master_key``.
    """

    def __init__(self, master_key: bytes, key: bytes | None = None):
        self._key = key or _derive(master_key, b"pdl pseudonym v1")
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


#: The name under which a vault keeps the pseudonym key once the master key was rotated
#: (wrapped like a data key, with this name as its associated data).
PSEUDONYM_KEY = "pseudonym-key"


class KeyVault(ABC):
    """Per-person data keys, each wrapped (AES-GCM) by a key derived from the master key.

    Backends: ``SQLiteKeyVault`` (a file of its own) and ``PostgresKeyVault``
    (``ledger.vault_postgres``, shared by every machine), picked by ``ledger.factory``.
    The wrapping is done here, so a backend stores and deletes only wrapped bytes.

    The master key can be rotated (``rotate``): every live key is re-wrapped under the
    new one, and the pseudonym key, until then derived from the master key, is kept in
    the vault wrapped under the new one, so pseudonyms do not change.
    """

    def __init__(self, master_key: bytes):
        self._use_master(master_key)

    def _use_master(self, master_key: bytes) -> None:
        self._master = master_key
        self._wrap = wrapper(master_key)
        self._check = _derive(master_key, b"pdl key-check v1")

    def fingerprint(self, master_key: bytes | None = None) -> bytes:
        """Eight bytes telling whether a vault was made with a master key (not the key)."""
        check = self._check if master_key is None else _derive(master_key, b"pdl key-check v1")
        return hashlib.sha256(check).digest()[:8]

    def wrap(self, name: str, key: bytes, wrapper: AESGCM | None = None) -> bytes:
        nonce = os.urandom(12)
        return nonce + (wrapper or self._wrap).encrypt(nonce, key, name.encode())

    def unwrap_bytes(self, name: str, wrapped: bytes) -> bytes:
        try:
            return self._wrap.decrypt(wrapped[:12], wrapped[12:], name.encode())
        except InvalidTag:
            raise SealingError(
                f"the data key of {name} does not unwrap: the vault was re-wrapped under "
                "another master key (rotated?); set LEDGER_MASTER_KEY to the current one"
            ) from None

    def _unwrap(self, pseudonym: str, wrapped: bytes) -> AESGCM:
        return AESGCM(self.unwrap_bytes(pseudonym, wrapped))

    def _rewrapped(self, new_master: bytes, rows: Iterable[tuple[str, bytes]]
                   ) -> list[tuple[bytes, str]]:
        """(wrapped under ``new_master``, name) of every (name, wrapped) row."""
        new = wrapper(new_master)
        return [(self.wrap(name, self.unwrap_bytes(name, wrapped), new), name)
                for name, wrapped in rows]

    def pseudonym_key(self) -> bytes | None:
        """The pseudonym key kept in the vault (after a rotation), else None."""
        wrapped = self._meta(PSEUDONYM_KEY)
        return None if wrapped is None else self.unwrap_bytes(PSEUDONYM_KEY, wrapped)

    def _current_pseudonym_key(self) -> bytes:
        return self.pseudonym_key() or _derive(self._master, b"pdl pseudonym v1")

    @abstractmethod
    def _meta(self, name: str) -> bytes | None:
        """A value of the vault's own table (``master`` fingerprint, pseudonym key)."""

    @abstractmethod
    def keys_for(self, pseudonyms: Iterable[str], create: bool = True) -> dict[str, AESGCM]:
        """Data keys of these people, creating missing ones (unless ``create`` is False).
        People whose key was destroyed are left out of the answer (see ``state``)."""

    @abstractmethod
    def state(self, pseudonym: str) -> str:
        """``active``, ``destroyed`` or ``unknown``."""

    @abstractmethod
    def destroy(self, pseudonym: str) -> bool:
        """Destroy a person's data key for good. Returns False if there was none to destroy."""

    @abstractmethod
    def rotate(self, new_master: bytes) -> int:
        """Re-wrap every live key under ``new_master`` in one transaction, keep the
        pseudonym key under it too, and from then on refuse the old master key. Returns
        the number of keys re-wrapped."""

    @abstractmethod
    def close(self) -> None: ...


class SQLiteKeyVault(KeyVault):
    """Per-person data keys, wrapped by the master key, in their own SQLite file.

    ``secure_delete`` overwrites freed pages and the WAL is truncated after a key is
    destroyed, so the wrapped key does not linger on disk.
    """

    def __init__(self, path: str | Path, master_key: bytes):
        super().__init__(master_key)
        self.path = Path(path)
        private_file(self.path)
        self._cache: dict[str, AESGCM] = {}
        #: The vault's erasure count when the cache was last known good.
        self._erasures_seen = -1
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

    def _meta(self, name: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM vault_meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    @_locked
    def rotate(self, new_master: bytes) -> int:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._check_master_key()  # another process may have rotated already
            pseudonym_key = self._current_pseudonym_key()
            rows = self._rewrapped(new_master, self._db.execute(
                "SELECT pseudonym, wrapped FROM subject_keys WHERE wrapped IS NOT NULL"))
            self._db.executemany("UPDATE subject_keys SET wrapped = ? WHERE pseudonym = ?", rows)
            new_wrap = wrapper(new_master)
            self._db.executemany(
                "INSERT INTO vault_meta (name, value) VALUES (?, ?) ON CONFLICT (name) "
                "DO UPDATE SET value = excluded.value",
                [("master", self.fingerprint(new_master)),
                 (PSEUDONYM_KEY, self.wrap(PSEUDONYM_KEY, pseudonym_key, new_wrap))])
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._use_master(new_master)
        self._cache.clear()
        # the old wrappings: overwritten in place (secure_delete), then out of the WAL
        self._db.execute("VACUUM")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(rows)

    def _check_master_key(self) -> None:
        fingerprint = self.fingerprint()
        row = self._db.execute("SELECT value FROM vault_meta WHERE name='master'").fetchone()
        if row is None:
            self._db.execute("INSERT OR IGNORE INTO vault_meta VALUES ('master', ?)", (fingerprint,))
        elif row[0] != fingerprint:
            raise SealingError(
                f"LEDGER_MASTER_KEY does not match the key vault at {self.path}: "
                "it was created with another master key, or the master key was rotated "
                "since (`pdl vault rotate`): use the current one"
            )

    def close(self) -> None:
        self._db.close()

    @_locked
    def keys_for(self, pseudonyms: Iterable[str], create: bool = True) -> dict[str, AESGCM]:
        """Data keys of these people, creating missing ones in one transaction.

        People whose key was destroyed are left out of the answer (see ``state``), even
        if another process destroyed it a moment ago: unwrapped keys are cached, but every
        call first reads the vault's erasure count (one primary-key read) and forgets every
        cached key if it moved, so an erasure anywhere is obeyed at once.
        """
        pseudonyms = list(pseudonyms)
        erasures = self._erasures()
        if erasures != self._erasures_seen:
            # someone (maybe another process) destroyed a key since: trust no cached key
            self._cache.clear()
            self._erasures_seen = erasures
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
                    fresh[p] = AESGCM.generate_key(256)
                    rows.append((p, self.wrap(p, fresh[p]), now))
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

    def _erasures(self) -> int:
        row = self._db.execute("SELECT value FROM vault_meta WHERE name = 'erasures'").fetchone()
        return int(row[0]) if row else 0

    @_locked
    def state(self, pseudonym: str) -> str:
        row = self._db.execute(
            "SELECT wrapped IS NULL FROM subject_keys WHERE pseudonym = ?", (pseudonym,)
        ).fetchone()
        return "unknown" if row is None else ("destroyed" if row[0] else "active")

    @_locked
    def destroy(self, pseudonym: str) -> bool:
        self._cache.pop(pseudonym, None)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            cur = self._db.execute(
                "UPDATE subject_keys SET wrapped = NULL, destroyed_at = ? "
                "WHERE pseudonym = ? AND wrapped IS NOT NULL",
                (time.time(), pseudonym),
            )
            if cur.rowcount == 0:
                self._db.execute(
                    "INSERT OR IGNORE INTO subject_keys (pseudonym, wrapped, created_at, "
                    "destroyed_at) VALUES (?, NULL, ?, ?)",
                    (pseudonym, time.time(), time.time()),
                )
            # every process's keys_for sees this count move and forgets its cached keys
            self._db.execute("INSERT INTO vault_meta (name, value) VALUES ('erasures', 1) "
                             "ON CONFLICT (name) DO UPDATE SET value = value + 1")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return cur.rowcount > 0


class Sealer:
    """Seals and opens the ``personal`` values of one event under its person's data key."""

    def __init__(self, vault: KeyVault):
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
