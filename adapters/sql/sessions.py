"""Console sessions in portable SQL (the `ui_sessions` table of migration 8), on the metadata
store's driver, so every registry replica sees every session."""

from __future__ import annotations

from adapters.sql.driver import OnDriver
from registry.ports import SessionStore, StoredSession

_MICROS = 1_000_000


def _micros(seconds: float) -> int:
    return int(seconds * _MICROS)


class SqlSessions(OnDriver, SessionStore):
    async def put_session(self, session: StoredSession) -> None:
        async with self.driver.writing() as conn:
            await conn.execute(
                "INSERT INTO ui_sessions (id_hash, token_hash, csrf, expires_at, idle_until,"
                " flash) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id_hash) DO UPDATE SET"
                " idle_until = excluded.idle_until, flash = excluded.flash",
                (
                    session.id_hash,
                    session.token_hash,
                    session.csrf,
                    _micros(session.expires_at),
                    _micros(session.idle_until),
                    session.flash,
                ),
            )

    async def get_session(self, id_hash: str) -> StoredSession | None:
        found = await self._read(
            "SELECT token_hash, csrf, expires_at, idle_until, flash FROM ui_sessions"
            " WHERE id_hash = ?",
            (id_hash,),
        )
        if not found:
            return None
        token_hash, csrf, expires_at, idle_until, flash = found[0]
        expires, idle = int(expires_at) / _MICROS, int(idle_until) / _MICROS
        return StoredSession(id_hash, str(token_hash), str(csrf), expires, idle, flash)

    async def drop_session(self, id_hash: str) -> None:
        async with self.driver.writing() as conn:
            await conn.execute("DELETE FROM ui_sessions WHERE id_hash = ?", (id_hash,))

    async def drop_expired_sessions(self, now: float) -> int:
        async with self.driver.writing() as conn:
            gone = await conn.fetch(
                "DELETE FROM ui_sessions WHERE expires_at <= ? OR idle_until <= ?"
                " RETURNING id_hash",
                (_micros(now), _micros(now)),
            )
        return len(gone)
