"""API tokens in SQL (only their hashes are kept). Creating or revoking one appends an event to
the system's audit chain in the same transaction.

A revocation on PostgreSQL also sends `NOTIFY modelyard_token_revoked` (delivered when its
transaction commits): every replica listens (`revocations_heard`) and drops its cache of token
lookups at once. On SQLite the registry is one process, whose revoke clears its own cache."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Final

import msgspec

from adapters.sql import audit, rows
from adapters.sql.driver import OnDriver, SqlConn, SqlDriver, notifications
from registry.catalog.changes import Audit
from registry.catalog.domain import SYSTEM_SCOPE, Token
from registry.errors import NotFound
from registry.ports import TokenStore

REVOKED_CHANNEL: Final = "modelyard_token_revoked"


def revocations_heard(
    driver: SqlDriver, heard: Callable[[], None]
) -> AbstractAsyncContextManager[None]:
    """While inside, `heard()` is called whenever any replica revokes a token (PostgreSQL);
    on SQLite, nothing to listen to."""
    return notifications(driver, REVOKED_CHANNEL, heard)


class SqlTokens(OnDriver, TokenStore):
    async def create_token(
        self, name: str, role: str, token_hash: str, prefix: str, created_by: str, now: datetime
    ) -> Token:
        async with self.driver.writing() as conn:
            found = await conn.fetch(
                "INSERT INTO tokens (name, role, token_hash, prefix, created_by, created_at)"
                f" VALUES (?, ?, ?, ?, ?, ?) RETURNING {rows.TOKEN_COLUMNS}",
                (name, role, token_hash, prefix, created_by, rows.to_micros(now)),
            )
            token = rows.token_from_row(found[0])
            await self._system_event(conn, now, created_by, "token.create", token)
        return token

    async def find_token(self, token_hash: str) -> Token | None:
        found = await self._read(
            f"SELECT {rows.TOKEN_COLUMNS} FROM tokens WHERE token_hash = ?", (token_hash,)
        )
        return rows.token_from_row(found[0]) if found else None

    async def list_tokens(self) -> list[Token]:
        found = await self._read(f"SELECT {rows.TOKEN_COLUMNS} FROM tokens ORDER BY id")
        return [rows.token_from_row(r) for r in found]

    async def revoke_token(self, token_id: int, by: str, now: datetime) -> Token:
        async with self.driver.writing() as conn:
            found = await conn.fetch(
                "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?"
                f" RETURNING {rows.TOKEN_COLUMNS}",
                (rows.to_micros(now), token_id),
            )
            if not found:
                raise NotFound(f"token {token_id} does not exist", field="id")
            token = rows.token_from_row(found[0])
            await self._system_event(conn, now, by, "token.revoke", token)
            if self.driver.dialect.name == "postgres":
                await conn.execute("SELECT pg_notify(?, ?)", (REVOKED_CHANNEL, str(token_id)))
        return token

    async def _system_event(
        self, conn: SqlConn, now: datetime, actor: str, action: str, token: Token
    ) -> None:
        head = await audit.lock_head(conn, self.driver.dialect, SYSTEM_SCOPE)
        after = msgspec.Raw(rows.dumps(token).encode())
        draft = Audit(at=now, actor=actor, action=action, model=None, after=after)
        head = await audit.append(conn, SYSTEM_SCOPE, head, draft)
        await audit.save_head(conn, SYSTEM_SCOPE, head)
