"""PostgreSQL metadata store on asyncpg.

Writes to one model are serialized on every replica by `SELECT ... FOR UPDATE` on the model's
audit-chain head. Reads are single statements (one snapshot each, one round trip).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any, Final

import asyncpg

from adapters.sql_rows import Row
from adapters.sql_store import SqlStore
from registry.errors import Conflict, StoreUnavailable

POOL_MIN: Final = 2
POOL_MAX: Final = 10
_PLACEHOLDER = re.compile(r"\?")


@lru_cache(maxsize=512)
def _numbered(sql: str) -> str:
    """Portable `?` placeholders to PostgreSQL's `$1, $2, ...`."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class _Conn:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        try:
            return list(await self.conn.fetch(_numbered(sql), *args))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise Conflict(f"the change clashes with existing data ({exc})") from exc
        except (OSError, asyncpg.PostgresConnectionError) as exc:
            raise StoreUnavailable(f"PostgreSQL: {exc}") from exc

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        try:
            await self.conn.execute(_numbered(sql), *args)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise Conflict(f"the change clashes with existing data ({exc})") from exc
        except (OSError, asyncpg.PostgresConnectionError) as exc:
            raise StoreUnavailable(f"PostgreSQL: {exc}") from exc


class PostgresDriver:
    dialect = "postgres"
    for_update = " FOR UPDATE"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    def json_text(self, column: str) -> str:
        return f"({column}::jsonb ->> ?::text)"

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[_Conn]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield _Conn(conn)

    def string_agg(self, expression: str) -> str:
        return f"string_agg({expression}, ',')"

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[_Conn]:
        async with self._pool.acquire() as conn:
            yield _Conn(conn)

    async def close(self) -> None:
        await self._pool.close()


async def _keep_session(conn: asyncpg.Connection) -> None:
    """No reset round trip when a connection goes back to the pool: this store leaves no
    session state behind (transaction-scoped locks only, no SET, LISTEN or cursors)."""


async def open_postgres(dsn: str) -> SqlStore:
    try:
        pool = await asyncpg.create_pool(
            dsn, min_size=POOL_MIN, max_size=POOL_MAX, reset=_keep_session
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise StoreUnavailable(f"cannot reach PostgreSQL: {exc}") from exc
    return SqlStore(PostgresDriver(pool))
