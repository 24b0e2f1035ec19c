"""Console sessions, kept on the server: an opaque random id (the only thing in the browser's
cookie) maps to the SHA-256 of the token that logged in, a CSRF token and an expiry. The token
itself is never stored, and the principal is looked up again on every request, so a revoked
token ends its sessions within the authority's cache time.

Sessions live in the metadata store (behind `SessionStore`), keyed by the SHA-256 of the id, so
that every registry replica knows every session (the Helm chart runs two behind one Service)
and a restart logs nobody out; a copy of the database holds no usable session id. Expiry is on
the wall clock, which the replicas share.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from registry.ports import SessionStore, StoredSession

SESSION_TTL_S: Final = 8 * 3600.0  # a working day, then log in again
IDLE_TTL_S: Final = 3600.0  # an hour without a request ends the session
TOUCH_EVERY_S: Final = 60.0  # the idle deadline is moved (a write) at most this often


@dataclass
class Session:
    id: str  # what the cookie holds; the store has only its hash
    token_hash: str
    csrf: str
    expires_at: float  # absolute limit (epoch seconds)
    idle_until: float
    flash: str | None = None  # a one-time message for the next page

    def csrf_ok(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered.encode(), self.csrf.encode())


def id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    def __init__(
        self,
        store: SessionStore,
        ttl_s: float = SESSION_TTL_S,
        idle_s: float = IDLE_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._idle_s = idle_s
        self._clock = clock

    async def create(self, token_hash: str) -> Session:
        now = self._clock()
        await self._store.drop_expired_sessions(now)  # logins are rare: sweep here
        session = Session(
            id=secrets.token_urlsafe(32),
            token_hash=token_hash,
            csrf=secrets.token_urlsafe(32),
            expires_at=now + self._ttl_s,
            idle_until=now + self._idle_s,
        )
        await self.save(session)
        return session

    async def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        stored = await self._store.get_session(id_hash(session_id))
        if stored is None:
            return None
        now = self._clock()
        if now >= stored.expires_at or now >= stored.idle_until:
            await self._store.drop_session(stored.id_hash)
            return None
        session = Session(
            session_id,
            stored.token_hash,
            stored.csrf,
            stored.expires_at,
            stored.idle_until,
            stored.flash,
        )
        if now + self._idle_s - stored.idle_until >= TOUCH_EVERY_S:  # a request keeps it alive
            session.idle_until = now + self._idle_s
            await self.save(session)
        return session

    async def save(self, session: Session) -> None:
        await self._store.put_session(
            StoredSession(
                id_hash(session.id),
                session.token_hash,
                session.csrf,
                session.expires_at,
                session.idle_until,
                session.flash,
            )
        )

    async def flash(self, session: Session, message: str) -> None:
        """Keep `message` for the session's next page (after a redirect, on any replica)."""
        session.flash = message
        await self.save(session)

    async def take_flash(self, session: Session) -> str | None:
        message, session.flash = session.flash, None
        if message is not None:
            await self.save(session)
        return message

    async def drop(self, session_id: str | None) -> None:
        if session_id:
            await self._store.drop_session(id_hash(session_id))
