"""Pick the metadata store for a URL; an unknown scheme is a start-up error, never a fallback."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from adapters.leadership import FileLead, PostgresLead
from adapters.postgres_store import open_postgres
from adapters.sql_store import SqlStore
from adapters.sqlite_store import open_sqlite


class UnknownBackend(ValueError):
    pass


async def open_metadata_store(url: str, *, sqlite_synchronous: str = "FULL") -> SqlStore:
    """Open and migrate the store named by `url` (sqlite:///path or postgresql://...)."""
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        store = open_sqlite(Path(rest), sqlite_synchronous.upper())
    elif scheme in ("postgres", "postgresql"):
        store = await open_postgres(url)
    else:
        raise UnknownBackend(f"unknown metadata store scheme {scheme!r}")
    try:
        await store.migrate(datetime.now(UTC))
    except BaseException:
        await store.close()
        raise
    return store


def open_leadership(url: str) -> FileLead | PostgresLead:
    """The lock that elects the replica driving rollouts, for the store at `url`."""
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        return FileLead(Path(rest + ".lead"))
    if scheme in ("postgres", "postgresql"):
        return PostgresLead(url)
    raise UnknownBackend(f"unknown metadata store scheme {scheme!r}")
