"""The SQL store's two dialects: what SQLite and PostgreSQL spell their own way, filled into
the portable SQL the store writes once."""

from __future__ import annotations

import pytest

from adapters.sql import schema
from adapters.sql.driver import Dialect
from adapters.sql.postgres import POSTGRES, _numbered
from adapters.sql.sqlite import SQLITE


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=lambda d: d.name)
def test_every_migration_gets_the_dialects_primary_key(dialect: Dialect) -> None:
    for number, sql in schema.MIGRATIONS:
        found = schema.statements(dialect, sql)
        assert found, number
        assert all(s and "{pk}" not in s and not s.endswith(";") for s in found), number
    models = schema.statements(dialect, schema.MIGRATIONS[0][1])[0]
    assert f"id {dialect.auto_id}," in models


def test_spellings() -> None:
    assert SQLITE.json_text("m.tags") == "json_extract(m.tags, '$.' || json_quote(?))"
    assert POSTGRES.json_text("m.tags") == "(m.tags::jsonb ->> ?::text)"
    assert SQLITE.string_agg("a.alias") == "group_concat(a.alias, ',')"
    assert POSTGRES.string_agg("a.alias") == "string_agg(a.alias, ',')"
    # SQLite's single writer (BEGIN IMMEDIATE) already holds what PostgreSQL has to lock
    assert (SQLITE.for_update, SQLITE.skip_locked, SQLITE.schema_lock) == ("", "", None)
    assert POSTGRES.for_update == " FOR UPDATE"
    assert POSTGRES.skip_locked == " FOR UPDATE SKIP LOCKED"


def test_portable_placeholders_are_numbered_for_postgres() -> None:
    assert _numbered("SELECT ? FROM t WHERE a = ? AND b IN (?, ?)") == (
        "SELECT $1 FROM t WHERE a = $2 AND b IN ($3, $4)"
    )
