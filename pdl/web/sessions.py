"""Browser sessions: a token exchanged once for a random, signed session id.

The token stays on the server (in memory, with the session); the browser holds only the
session id in an HttpOnly, Secure, SameSite=Strict cookie. Every request resolves the
token again through the API's ``resolve_token``, so a revoked or expired token ends the
session at once, and checks the role with the API's ``check_role``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

COOKIE = "pdl_session"
LOGIN_COOKIE = "pdl_login_csrf"
#: A session ends after this long without a request, and after ``MAX_AGE`` in any case.
IDLE_SECONDS = 30 * 60
MAX_AGE = 8 * 3600


@dataclass
class Session:
    """One signed-in browser: the token it signed in with, its CSRF token, its clocks."""

    token: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    created: float = field(default_factory=time.monotonic)
    seen: float = field(default_factory=time.monotonic)

    def expired(self, now: float) -> bool:
        return now - self.seen > IDLE_SECONDS or now - self.created > MAX_AGE


class SessionStore:
    """Sessions in memory, by id; cookies carry ``id.signature`` (HMAC-SHA256)."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def _sign(self, sid: str) -> str:
        return hmac.new(self._key, sid.encode(), hashlib.sha256).hexdigest()

    def open(self, token: str) -> tuple[str, Session]:
        """A new session for ``token``: the cookie value and the session."""
        sid = secrets.token_urlsafe(32)
        session = Session(token)
        with self._lock:
            now = time.monotonic()
            for old in [k for k, s in self._sessions.items() if s.expired(now)]:
                del self._sessions[old]
            self._sessions[sid] = session
        return f"{sid}.{self._sign(sid)}", session

    def get(self, cookie: str | None) -> Session | None:
        """The live session a cookie names (None if unsigned, unknown or expired)."""
        if not cookie or "." not in cookie:
            return None
        sid, signature = cookie.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(sid)):
            return None
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            if session.expired(now):
                del self._sessions[sid]
                return None
            session.seen = now
            return session

    def close(self, cookie: str | None) -> None:
        if cookie and "." in cookie:
            with self._lock:
                self._sessions.pop(cookie.rsplit(".", 1)[0], None)


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two CSRF tokens (False if either is missing)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
