"""Who drives the rollouts when several registry replicas run: the holder of a lock.

PostgreSQL: a session advisory lock held on a connection of its own (released by the server
when that connection dies, so a killed leader hands over). SQLite: an exclusive `flock` on a
file beside the database (released by the kernel when the process dies)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Final

import asyncpg

from adapters.sql.database_url import parse_database_url

#: The advisory lock's key: any constant the deployment does not use for something else.
ROLLOUT_LOCK_KEY: Final = 0x6D79_726F  # "myro"


class FileLead:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    async def lead(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


class PostgresLead:
    def __init__(self, dsn: str, key: int = ROLLOUT_LOCK_KEY) -> None:
        self._dsn = dsn
        self._key = key
        self._conn: asyncpg.Connection | None = None

    async def lead(self) -> bool:
        conn = self._conn
        if conn is not None and not conn.is_closed():
            try:  # the lock lives as long as this session: is it still there?
                await conn.execute("SELECT 1", timeout=5)
                return True
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                conn.terminate()
        self._conn = None
        try:
            conn = await asyncpg.connect(self._dsn, timeout=5)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        try:
            locked = await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key)
        except BaseException:  # cancelled (the registry is stopping) or failed: never leak it
            conn.terminate()
            raise
        if locked:
            self._conn = conn
            return True
        conn.terminate()  # not ours: drop the session at once (a close could be cancelled)
        return False

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await self._conn.close()
            self._conn = None


def open_leadership(url: str) -> FileLead | PostgresLead:
    """The lock that elects the replica driving rollouts, for the store at `url`."""
    parsed = parse_database_url(url)
    if parsed.lead_path is not None:
        return FileLead(parsed.lead_path)
    return PostgresLead(parsed.url)
