"""A fresh PostgreSQL database per run, for the tests and the benchmarks."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

PG_ADMIN_DSN: Final = os.environ.get(
    "MODELYARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def postgres_available(dsn: str = PG_ADMIN_DSN) -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(dsn, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:  # any failure means: not available here
        return f"PostgreSQL at {dsn} is not reachable: {exc!r}"
    return None


@contextmanager
def fresh_postgres_database(admin_dsn: str = PG_ADMIN_DSN) -> Iterator[str]:
    """Create a database of our own, yield its DSN, drop it afterwards."""
    import asyncpg

    name = f"modelyard_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_dsn.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
