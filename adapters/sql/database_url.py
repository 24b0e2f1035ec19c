"""What a metadata-store URL names, read in one place (pure: no file is touched here).

SQLite URLs follow SQLAlchemy's convention: `sqlite:///relative/path.db` is a file relative to
the working directory, `sqlite:////absolute/path.db` an absolute one (the path is everything
after the third slash). PostgreSQL URLs (`postgresql://` or `postgres://`) are passed on as
they are. What cannot work is refused with the reason, never guessed at."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, Literal

import msgspec

POSTGRES_SCHEMES: Final = ("postgres", "postgresql")
_SQLITE: Final = "sqlite:///PATH (relative to the working directory)"
HINT: Final = f"use {_SQLITE} or sqlite:////ABSOLUTE/PATH"
EXAMPLES: Final = f"use {_SQLITE}, sqlite:////ABSOLUTE/PATH or postgresql://USER@HOST/DB"


class BadDatabaseUrl(ValueError):
    """The URL names no store modelyard can open."""


class DatabaseUrl(msgspec.Struct, frozen=True):
    kind: Literal["sqlite", "postgresql"]
    url: str  # as given: PostgreSQL's is handed to its driver unchanged
    sqlite_path: Path | None = None  # SQLite's database file, relative or absolute

    @property
    def lead_path(self) -> Path | None:
        """SQLite: the file beside the database whose lock elects the rollout driver."""
        path = self.sqlite_path
        return None if path is None else path.with_name(path.name + ".lead")

    def resolved(self, cwd: Path) -> DatabaseUrl:
        """The same store with a relative SQLite path made absolute against `cwd`."""
        if self.sqlite_path is None or self.sqlite_path.is_absolute():
            return self
        return sqlite_url(absolute(self.sqlite_path, cwd))


def absolute(path: str | Path, cwd: Path) -> Path:
    """`path` against the (absolute) working directory `cwd`, with `.` and `..` folded."""
    if not cwd.is_absolute():
        raise ValueError(f"the working directory must be absolute, not {str(cwd)!r}")
    return Path(os.path.normpath(cwd / path))


def sqlite_url(path: Path) -> DatabaseUrl:
    """The URL of the SQLite file at `path` (an absolute path gives four slashes)."""
    return DatabaseUrl("sqlite", f"sqlite:///{path}", path)


def parse_database_url(url: str) -> DatabaseUrl:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise BadDatabaseUrl(f"{url!r} is not a URL: {EXAMPLES}")
    if scheme in POSTGRES_SCHEMES:
        return DatabaseUrl("postgresql", url)
    if scheme != "sqlite":
        raise BadDatabaseUrl(f"unknown metadata store {scheme!r}: {EXAMPLES}")
    host, _, path = rest.partition("/")
    if host:
        raise BadDatabaseUrl(f"{url!r} names a host ({host!r}); a SQLite URL has none: {HINT}")
    if not path or path == ":memory:":
        raise BadDatabaseUrl(
            f"{url!r} names no database file (an in-memory database would be empty for each"
            f" of the store's connections): {HINT}"
        )
    if path.startswith("file:"):
        raise BadDatabaseUrl(f"{url!r}: SQLite URI filenames (file:...) are not supported: {HINT}")
    if "?" in path:
        raise BadDatabaseUrl(f"{url!r}: SQLite URL options (?...) are not supported: {HINT}")
    if path.endswith("/") or Path(path).name in ("", ".", ".."):
        raise BadDatabaseUrl(f"{url!r} names a folder, not a database file: {HINT}")
    return DatabaseUrl("sqlite", url, Path(path))
