"""Who may use the HTTP API: principals, their roles, and their bearer tokens.

A principal is a person or a service with one role. A token is ``pdl_<id>_<secret>``: the
id is a public handle (listed, revoked), the secret 32 random bytes. The token is shown
once, when issued; the store keeps only the SHA-256 hash of the secret, with an expiry and
a revocation time. The store is a SQLite file in the data directory (``access.db``, 0600).

``PrincipalStore.resolve`` turns a token string into a ``Principal`` or raises
``Unauthenticated``: the one check both the bearer header and a browser session use. It
remembers the tokens it accepted, and trusts what it remembers only while the store is
unchanged since: any write to the file, by this connection or another (another process's
`pdl token revoke`, seen through SQLite's ``data_version``), forgets them all, so a revoked
token or a disabled principal is refused at once; expiry is checked on every call.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from ledger.errors import (
    ConfigurationError,
    InvalidInput,
    NotFound,
    PersistenceError,
    Unauthenticated,
)
from ledger.files import private_file


class Role(StrEnum):
    """What a principal may do (least privilege: one role each)."""

    #: ``POST /events``, only for the ``source`` values registered to it.
    PUBLISHER = "publisher"
    #: Registers, findings, data maps (pseudonymised).
    COMPLIANCE = "compliance"
    #: Breach scope, incidents, replay as of a time, verify.
    RESPONDER = "responder"
    #: Unseal, export, erase: each with a reason or ticket.
    PRIVACY_OFFICER = "privacy_officer"
    #: Principals and tokens.
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its name, its role and, for a publisher, its sources."""

    name: str
    role: Role
    #: The event ``source`` values a publisher may publish (empty for other roles).
    sources: tuple[str, ...] = ()

    def may_publish(self, source: str) -> bool:
        return self.role is Role.PUBLISHER and source in self.sources


@dataclass(frozen=True)
class PrincipalInfo:
    """A principal as listed: with when it was added and whether it is disabled."""

    principal: Principal
    created_at: datetime
    disabled_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.principal.name, "role": self.principal.role.value,
                "sources": list(self.principal.sources),
                "created_at": self.created_at.isoformat(),
                "disabled_at": self.disabled_at.isoformat() if self.disabled_at else None,
                "active": self.disabled_at is None}


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed (never its secret)."""

    id: str
    principal: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None = None
    label: str | None = None

    def state(self, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "principal": self.principal, "label": self.label,
                "created_at": self.created_at.isoformat(),
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
                "state": self.state()}


@dataclass(frozen=True)
class IssuedToken:
    """A new token: ``token`` is shown to its owner once and never stored."""

    token: str
    info: TokenInfo = field(repr=False)

    def __repr__(self) -> str:
        return f"IssuedToken(id={self.info.id!r})"


#: Principal names: a mail-like or service-like handle, never a data subject's id.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,99}$")
_SOURCE = re.compile(r"^\S{1,200}$")
_TOKEN = re.compile(r"^pdl_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
#: A token lives 90 days unless told otherwise.
DEFAULT_TTL = timedelta(days=90)

SCHEMA = """
CREATE TABLE IF NOT EXISTS principals (
    name        TEXT PRIMARY KEY,
    role        TEXT NOT NULL,
    sources     TEXT NOT NULL DEFAULT '[]',
    created_at  TEXT NOT NULL,
    disabled_at TEXT
);
CREATE TABLE IF NOT EXISTS tokens (
    id          TEXT PRIMARY KEY,
    principal   TEXT NOT NULL REFERENCES principals(name),
    secret_hash BLOB NOT NULL,
    label       TEXT,
    created_at  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT
);
CREATE INDEX IF NOT EXISTS tokens_by_principal ON tokens(principal);
"""


def _now() -> datetime:
    return datetime.now(UTC)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def new_token() -> tuple[str, str, str]:
    """A fresh ``(token, id, secret)``: 6 random bytes of id, 32 of secret."""
    token_id = secrets.token_hex(6)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return f"pdl_{token_id}_{secret}", token_id, secret


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise InvalidInput(
            "name: 1 to 100 letters, digits or ._@:+- (starting with a letter or digit)",
            [(0, "name", "1 to 100 letters, digits or ._@:+-")])
    return name


def check_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InvalidInput(f"role: must be one of {', '.join(r.value for r in Role)}",
                           [(0, "role", "unknown role")]) from None


class SQLitePrincipalStore:
    """Principals and token hashes in a SQLite file (0600). Safe to share between threads."""

    #: Accepted tokens remembered at most (beyond: all forgotten, each read again once).
    RESOLVED_KEPT = 10_000

    def __init__(self, path: str | Path):
        self.path = Path(path)
        private_file(self.path)
        self._lock = threading.RLock()
        #: token id -> (secret hash, principal, expiry, store generation when read)
        self._resolved: dict[str, tuple[bytes, Principal, datetime | None,
                                        tuple[int, int]]] = {}
        self._writes = 0  # writes through this connection (data_version counts others')
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise PersistenceError(f"cannot open the principals store at {self.path}: {exc}"
                                   ) from exc

    @classmethod
    def for_data_dir(cls, data_dir: str | Path) -> SQLitePrincipalStore:
        return cls(Path(data_dir) / "access.db")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if not sql.startswith("SELECT"):
                self._writes += 1  # before: a failed write may still have changed something
            try:
                return self._db.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise PersistenceError(f"the principals store failed: {exc}") from exc

    def _page(self, select: str, equal: dict[str, Any], key: str, after: str | None,
              limit: int | None) -> list[tuple[Any, ...]]:
        """Rows of ``select`` whose columns equal ``equal``'s values (None: any value), in
        ``key`` order, after the key ``after`` (the next page), at most ``limit``."""
        where = [f"{column} = ?" for column, value in equal.items() if value is not None]
        params = [value for value in equal.values() if value is not None]
        if after is not None:
            where.append(f"{key} > ?")
            params.append(after)
        sql = select + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY {key}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._query(sql, params)

    def _generation(self) -> tuple[int, int]:
        """Changes whenever the store may have changed: a write through this connection,
        or a commit by any other connection to the file (``PRAGMA data_version``)."""
        with self._lock:
            try:
                version = self._db.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error as exc:
                raise PersistenceError(f"the principals store failed: {exc}") from exc
            return self._writes, int(version)

    # --- principals ---------------------------------------------------------------------

    def add(self, name: str, role: Role | str, sources: Iterable[str] = ()) -> PrincipalInfo:
        """Register a principal. A publisher needs at least one source; others none."""
        check_name(name)
        role = check_role(role)
        sources = tuple(dict.fromkeys(sources))
        bad = [s for s in sources if not _SOURCE.match(s)]
        if bad:
            raise InvalidInput("sources: each 1 to 200 characters without spaces",
                               [(0, "sources", "1 to 200 characters without spaces")])
        if role is Role.PUBLISHER and not sources:
            raise InvalidInput("sources: a publisher needs the event sources it may publish",
                               [(0, "sources", "required for a publisher")])
        if role is not Role.PUBLISHER and sources:
            raise InvalidInput("sources: only a publisher has sources",
                               [(0, "sources", "only for role publisher")])
        created = _now()
        with self._lock:
            if self._query("SELECT 1 FROM principals WHERE name = ?", (name,)):
                raise InvalidInput(f"name: a principal named {name!r} exists",
                                   [(0, "name", "already exists")])
            self._query("INSERT INTO principals (name, role, sources, created_at) "
                        "VALUES (?, ?, ?, ?)",
                        (name, role.value, json.dumps(list(sources)), created.isoformat()))
        return PrincipalInfo(Principal(name, role, sources), created)

    def get(self, name: str) -> PrincipalInfo:
        rows = self._query("SELECT name, role, sources, created_at, disabled_at "
                           "FROM principals WHERE name = ?", (name,))
        if not rows:
            raise NotFound("no principal by that name (see `pdl principal list`)")
        return self._info(rows[0])

    @staticmethod
    def _info(row: tuple[Any, ...]) -> PrincipalInfo:
        name, role, sources, created, disabled = row
        created_at = _time(created)
        assert created_at is not None
        return PrincipalInfo(Principal(name, Role(role), tuple(json.loads(sources))),
                             created_at, _time(disabled))

    def principals(self, *, after: str | None = None, limit: int | None = None
             ) -> list[PrincipalInfo]:
        """Principals by name (``after`` a name: the next page)."""
        rows = self._page("SELECT name, role, sources, created_at, disabled_at FROM principals",
                          {}, "name", after, limit)
        return [self._info(r) for r in rows]

    def disable(self, name: str) -> PrincipalInfo:
        """Disable a principal: none of its tokens authenticates any more."""
        info = self.get(name)
        if info.disabled_at is None:
            self._query("UPDATE principals SET disabled_at = ? WHERE name = ?",
                        (_now().isoformat(), name))
        return self.get(name)

    def active_count(self) -> int:
        return int(self._query("SELECT count(*) FROM principals WHERE disabled_at IS NULL")[0][0])

    # --- tokens -------------------------------------------------------------------------

    def issue(self, principal: str, *, ttl: timedelta | None = DEFAULT_TTL,
              label: str | None = None, token: str | None = None) -> IssuedToken:
        """A new token for an active principal, expiring after ``ttl`` (None: never).

        ``token`` imports a token made elsewhere (``new_token``), for a first admin
        token handed over as a secret; only its hash is kept.
        """
        info = self.get(principal)
        if info.disabled_at is not None:
            raise InvalidInput("principal: disabled principals get no tokens",
                               [(0, "principal", "disabled")])
        if label is not None and not (1 <= len(label) <= 200):
            raise InvalidInput("label: 1 to 200 characters", [(0, "label", "1 to 200 characters")])
        if ttl is not None and ttl <= timedelta(0):
            raise InvalidInput("ttl: must be positive", [(0, "ttl", "must be positive")])
        if token is None:
            token, token_id, secret = new_token()
        else:
            parsed = _TOKEN.match(token.strip())
            if parsed is None:
                raise ConfigurationError("the token to import is not a pdl token "
                                         "(make one with `pdl token new`)")
            token = token.strip()
            token_id, secret = parsed.groups()
        created = _now()
        expires = created + ttl if ttl is not None else None
        with self._lock:
            if self._query("SELECT 1 FROM tokens WHERE id = ?", (token_id,)):
                raise InvalidInput("token: this token id exists", [(0, "token", "exists")])
            self._query(
                "INSERT INTO tokens (id, principal, secret_hash, label, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (token_id, principal, _hash(secret), label, created.isoformat(),
                 expires.isoformat() if expires else None))
        return IssuedToken(token, TokenInfo(token_id, principal, created, expires, None, label))

    def revoke(self, token_id: str) -> TokenInfo:
        rows = self._query("SELECT revoked_at FROM tokens WHERE id = ?", (token_id,))
        if not rows:
            raise NotFound("no token with that id (see `pdl token list`)")
        if rows[0][0] is None:
            self._query("UPDATE tokens SET revoked_at = ? WHERE id = ?",
                        (_now().isoformat(), token_id))
        return self.tokens(token_id=token_id)[0]

    def tokens(self, *, principal: str | None = None, token_id: str | None = None,
               after: str | None = None, limit: int | None = None) -> list[TokenInfo]:
        """Tokens by id (never their secrets)."""
        rows = self._page("SELECT id, principal, created_at, expires_at, revoked_at, label "
                          "FROM tokens", {"principal": principal, "id": token_id}, "id",
                          after, limit)
        out = []
        for tid, who, created, expires, revoked, label in rows:
            created_at = _time(created)
            assert created_at is not None
            out.append(TokenInfo(tid, who, created_at, _time(expires), _time(revoked), label))
        return out

    def resolve(self, token: str) -> Principal:
        """The principal a token authenticates, or ``Unauthenticated`` saying why (never
        quoting the token)."""
        parsed = _TOKEN.match(token)
        if parsed is None:
            raise Unauthenticated("malformed token")
        token_id, secret = parsed.groups()
        digest = _hash(secret)
        generation = self._generation()
        known = self._resolved.get(token_id)
        if known is not None and known[3] == generation and hmac.compare_digest(known[0],
                                                                                  digest):
            _, principal, expires_at, _ = known
            if expires_at is not None and expires_at <= _now():
                raise Unauthenticated("expired token")
            return principal
        rows = self._query(
            "SELECT t.secret_hash, t.expires_at, t.revoked_at, p.name, p.role, p.sources, "
            "p.disabled_at FROM tokens t JOIN principals p ON p.name = t.principal "
            "WHERE t.id = ?", (token_id,))
        if not rows or not hmac.compare_digest(rows[0][0], digest):
            raise Unauthenticated("unknown token")
        _, expires, revoked, name, role, sources, disabled = rows[0]
        if revoked is not None:
            raise Unauthenticated("revoked token")
        expires_at = _time(expires)
        if expires_at is not None and expires_at <= _now():
            raise Unauthenticated("expired token")
        if disabled is not None:
            raise Unauthenticated("disabled principal")
        principal = Principal(name, Role(role), tuple(json.loads(sources)))
        if len(self._resolved) >= self.RESOLVED_KEPT:
            self._resolved.clear()
        self._resolved[token_id] = (digest, principal, expires_at, generation)
        return principal
