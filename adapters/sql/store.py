"""The metadata store: every area of adapters/sql/ on one driver, behind registry/ports.py's
`MetadataStore`; and the opener that picks the driver for a URL (an unknown scheme is a
start-up error, never a fallback).

The URL is read by `parse_database_url` (adapters/sql/database_url.py), as the leadership's
opener reads it, so the database file and its lead file are always side by side. A relative
SQLite path is relative to the working directory at the time of the call: modelyard's settings
hand in absolute ones."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.sql import schema
from adapters.sql.audit import SqlAudit
from adapters.sql.catalog import SqlCatalog
from adapters.sql.changes import SqlChanges
from adapters.sql.database_url import parse_database_url
from adapters.sql.driver import SqlDriver
from adapters.sql.experiments import SqlExperiments
from adapters.sql.postgres import open_postgres
from adapters.sql.rollouts import SqlRollouts
from adapters.sql.routes import SqlRoutes
from adapters.sql.sqlite import SqliteDriver
from adapters.sql.tokens import SqlTokens
from adapters.sql.windows import SqlWindows
from registry.ports import MetadataStore


class SqlStore(
    SqlChanges,
    SqlCatalog,
    SqlAudit,
    SqlRoutes,
    SqlTokens,
    SqlWindows,
    SqlRollouts,
    SqlExperiments,
    MetadataStore,
):
    """Everything the registry keeps, in SQLite or PostgreSQL: one area per base class, each
    implementing one of the registry's ports, all on the same driver. Webhooks and console
    sessions (adapters/sql/webhooks.py, sessions.py) are separate objects on `store.driver`."""

    async def migrate(self, now: datetime) -> list[int]:
        """Apply the migrations not yet applied; returns their numbers."""
        return await schema.migrate(self.driver, now)

    async def close(self) -> None:
        await self.driver.close()


async def open_metadata_store(url: str, *, sqlite_synchronous: str = "FULL") -> SqlStore:
    """Open and migrate the store named by `url` (sqlite:///path or postgresql://...)."""
    parsed = parse_database_url(url)
    driver: SqlDriver
    if parsed.sqlite_path is not None:
        driver = SqliteDriver(parsed.sqlite_path, sqlite_synchronous.upper())
    else:
        driver = await open_postgres(parsed.url)
    store = SqlStore(driver)
    try:
        await store.migrate(datetime.now(UTC))
    except BaseException:
        await store.close()
        raise
    return store
