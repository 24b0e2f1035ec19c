"""Console sessions, kept on the server: an opaque random id (the only thing in the browser's
cookie) maps to the SHA-256 of the token that logged in, a CSRF token and an expiry. The token
itself is never stored, and the principal is looked up again on every request, so a revoked
token ends its sessions within the authority's cache time.

Sessions live in this process's memory: a restart logs everyone out, and several registry
replicas behind one address need sticky sessions (or each asks for a login of its own)."""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

SESSION_TTL_S: Final = 8 * 3600.0  # a working day, then log in again
IDLE_TTL_S: Final = 3600.0  # an hour without a request ends the session
MAX_SESSIONS: Final = 10_000


@dataclass
class Session:
    id: str
    token_hash: str
    csrf: str
    expires_at: float  # absolute limit (monotonic seconds)
    idle_until: float
    flash: str | None = None  # a one-time message for the next page

    def csrf_ok(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered.encode(), self.csrf.encode())

    def take_flash(self) -> str | None:
        flash, self.flash = self.flash, None
        return flash


class Sessions:
    def __init__(
        self,
        ttl_s: float = SESSION_TTL_S,
        idle_s: float = IDLE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._idle_s = idle_s
        self._clock = clock
        self._by_id: dict[str, Session] = {}

    def create(self, token_hash: str) -> Session:
        now = self._clock()
        if len(self._by_id) >= MAX_SESSIONS:
            self._sweep(now)
            while len(self._by_id) >= MAX_SESSIONS:  # still full: the oldest go first
                del self._by_id[next(iter(self._by_id))]
        session = Session(
            id=secrets.token_urlsafe(32),
            token_hash=token_hash,
            csrf=secrets.token_urlsafe(32),
            expires_at=now + self._ttl_s,
            idle_until=now + self._idle_s,
        )
        self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._by_id.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if now >= session.expires_at or now >= session.idle_until:
            del self._by_id[session_id]
            return None
        session.idle_until = now + self._idle_s
        return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._by_id.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._by_id)

    def _sweep(self, now: float) -> None:
        for sid in [s.id for s in self._by_id.values() if now >= min(s.expires_at, s.idle_until)]:
            del self._by_id[sid]
