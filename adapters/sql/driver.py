"""What the SQL store needs from a database: a driver and the dialect it speaks.

Every statement of the store is written once, in portable SQL with `?` placeholders. A driver
(adapters/sql/sqlite.py, adapters/sql/postgres.py) hands out connections for reads and
transactions for writes, and translates its database's errors into the registry's (`Conflict`
for an integrity error, `StoreUnavailable` when the database cannot answer). Its `Dialect` names
the few spellings the two databases do not share.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

Row = Sequence[Any]


class SqlConn(Protocol):
    async def execute(self, sql: str, args: Sequence[Any] = ()) -> None: ...

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]: ...


@dataclass(frozen=True)
class Dialect:
    """The SQL one database spells its own way."""

    name: str  # "sqlite" or "postgres", for people
    auto_id: str  # an auto-increment primary key column (migrations' `{pk}`)
    for_update: str  # suffix: the rows a SELECT reads stay locked until the commit
    skip_locked: str  # suffix: as `for_update`, passing over rows another transaction locked
    schema_lock: str | None  # serializes migrations across processes (None: `writing` does)
    json_text_sql: str  # the text value of key `?` of JSON object `{column}`
    string_agg_sql: str  # text values of `{expression}` joined by `,` (order unspecified)

    def json_text(self, column: str) -> str:
        return self.json_text_sql.format(column=column)

    def string_agg(self, expression: str) -> str:
        return self.string_agg_sql.format(expression=expression)


class SqlDriver(Protocol):
    dialect: Dialect

    def reading(self) -> AbstractAsyncContextManager[SqlConn]:
        """A connection for reads; each statement sees one consistent snapshot."""
        ...

    def writing(self) -> AbstractAsyncContextManager[SqlConn]:
        """A transaction: committed on normal exit, rolled back on an exception."""
        ...

    async def close(self) -> None: ...


async def fetch_one(conn: SqlConn, sql: str, args: Sequence[Any] = ()) -> Row | None:
    found = await conn.fetch(sql, args)
    return found[0] if found else None


class OnDriver:
    """One area of the store (its tables and queries), on the driver it is given."""

    def __init__(self, driver: SqlDriver) -> None:
        self.driver = driver

    async def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        """One statement outside a transaction: it sees one snapshot."""
        async with self.driver.reading() as conn:
            return await conn.fetch(sql, args)


@asynccontextmanager
async def notifications(
    driver: SqlDriver, channel: str, heard: Callable[[], None]
) -> AsyncIterator[None]:
    """While inside, `heard()` on every `NOTIFY channel` from any replica, and when the
    listening connection is lost (PostgreSQL). SQLite has nothing to listen to: one process
    writes, and it knows its own writes."""
    listening = getattr(driver, "listening", None)
    if listening is None:
        yield
        return
    async with listening(channel, heard):
        yield
