"""The SQLite driver (the embedded default): WAL mode, one writer thread, a few readers.

sqlite3 blocks, so every statement runs on a thread of its own connection. Writes are
serialized in-process by one lock and across processes by `BEGIN IMMEDIATE`. Reads are single
statements in autocommit mode: each sees one snapshot (WAL), and costs one thread hop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

from adapters.sql.driver import Dialect, Row
from registry.errors import Conflict, StoreUnavailable

DEFAULT_READERS: Final = 2
BUSY_TIMEOUT_MS: Final = 5000
SQLITE: Final = Dialect(
    name="sqlite",
    auto_id="INTEGER PRIMARY KEY",
    for_update="",  # one writer at a time (BEGIN IMMEDIATE): what it reads stays as read
    skip_locked="",
    schema_lock=None,
    json_text_sql="json_extract({column}, '$.' || json_quote(?))",
    string_agg_sql="group_concat({expression}, ',')",
)


class _Conn:
    """One sqlite3 connection bound to one thread."""

    def __init__(self, path: str, synchronous: str, name: str) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.path, self.synchronous = path, synchronous
        self.db: sqlite3.Connection | None = None

    def _open(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {self.synchronous}")
        db.execute("PRAGMA foreign_keys = ON")
        self.db = db

    def _run(self, sql: str, args: Sequence[Any]) -> list[Row]:
        if self.db is None:
            self._open()
        assert self.db is not None
        try:
            return self.db.execute(sql, tuple(args)).fetchall()
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"the change clashes with existing data ({exc})") from exc
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite: {exc}") from exc

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._run, sql, args)

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        await self.fetch(sql, args)

    def _close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self._close)
        self.executor.shutdown(wait=True)


class SqliteDriver:
    dialect = SQLITE

    def __init__(
        self, path: Path, synchronous: str = "FULL", readers: int = DEFAULT_READERS
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = _Conn(str(path), synchronous, "sqlite-writer")
        self._write_lock = asyncio.Lock()
        self._readers: asyncio.Queue[_Conn] = asyncio.Queue()
        self._all = [self._writer]
        for i in range(readers):
            conn = _Conn(str(path), synchronous, f"sqlite-reader-{i}")
            self._readers.put_nowait(conn)
            self._all.append(conn)

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[_Conn]:
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            await self._writer.execute("COMMIT")

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[_Conn]:
        conn = await self._readers.get()
        try:
            yield conn
        finally:
            self._readers.put_nowait(conn)

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()
