"""Pick the metadata store for a URL; an unknown scheme is a start-up error, never a fallback.

Both openers read the URL with `parse_database_url` (adapters/database_url.py), so the database
file and its lead file are always side by side. A relative SQLite path is relative to the
working directory at the time of the call: modelyard's settings hand in absolute ones."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.database_url import parse_database_url
from adapters.leadership import FileLead, PostgresLead
from adapters.postgres_store import open_postgres
from adapters.sql_store import SqlStore
from adapters.sqlite_store import open_sqlite


async def open_metadata_store(url: str, *, sqlite_synchronous: str = "FULL") -> SqlStore:
    """Open and migrate the store named by `url` (sqlite:///path or postgresql://...)."""
    parsed = parse_database_url(url)
    if parsed.sqlite_path is not None:
        store = open_sqlite(parsed.sqlite_path, sqlite_synchronous.upper())
    else:
        store = await open_postgres(parsed.url)
    try:
        await store.migrate(datetime.now(UTC))
    except BaseException:
        await store.close()
        raise
    return store


def open_leadership(url: str) -> FileLead | PostgresLead:
    """The lock that elects the replica driving rollouts, for the store at `url`."""
    parsed = parse_database_url(url)
    if parsed.lead_path is not None:
        return FileLead(parsed.lead_path)
    return PostgresLead(parsed.url)
