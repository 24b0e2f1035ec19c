"""What an MLflow read costs, seen at the store's driver (the `SqlDriver` Protocol, wrapped
around the real SQLite or PostgreSQL driver): a page of registered models costs the same few
statements however many models it holds, never one or more per model; and a page of versions
with no name filter reads about a page of rows from a model of 20,000 versions, never sorts it
(the planner's own account: EXPLAIN ANALYZE on PostgreSQL, EXPLAIN QUERY PLAN on SQLite)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Final

import pytest

from adapters.sql.database_url import parse_database_url
from adapters.sql.driver import Row, SqlConn, SqlDriver
from adapters.sql.postgres import open_postgres
from adapters.sql.sqlite import SqliteDriver
from adapters.sql.store import SqlStore
from registry.catalog.changes import Caller, VersionFilter
from registry.catalog.commands import AliasChange, ModelCreate, StageChange, VersionCreate
from registry.catalog.domain import ModelVersion, Principal, Role, Stage
from registry.catalog.service import Registry
from registry.errors import NotFound
from registry.ports import Filter, Search
from registry.web.mlflow.queries import latest_versions, search_models

ALICE = Caller(principal=Principal(1, "alice", Role.DEPLOYER), request_id="req-1")
MODELS = 7


class _CountingConn:
    def __init__(self, conn: SqlConn, driver: CountingDriver) -> None:
        self.conn, self.driver = conn, driver

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        self.driver.statements += 1
        await self.conn.execute(sql, args)

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        self.driver.statements += 1
        self.driver.last = (sql, list(args))
        return await self.conn.fetch(sql, args)


class CountingDriver:
    """A SqlDriver that counts every statement sent through the one it wraps."""

    def __init__(self, inner: SqlDriver) -> None:
        self.inner, self.dialect, self.statements = inner, inner.dialect, 0
        self.last: tuple[str, list[Any]] = ("", [])  # the last read: its SQL and arguments

    def _counted(
        self, opened: AbstractAsyncContextManager[SqlConn]
    ) -> AbstractAsyncContextManager[SqlConn]:
        @asynccontextmanager
        async def counted() -> AsyncIterator[SqlConn]:
            async with opened as conn:
                yield _CountingConn(conn, self)

        return counted()

    def reading(self) -> AbstractAsyncContextManager[SqlConn]:
        return self._counted(self.inner.reading())

    def writing(self) -> AbstractAsyncContextManager[SqlConn]:
        return self._counted(self.inner.writing())

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture
async def counted(store_url: str) -> AsyncIterator[tuple[Registry, CountingDriver]]:
    parsed = parse_database_url(store_url)
    inner: SqlDriver
    if parsed.sqlite_path is not None:
        inner = SqliteDriver(parsed.sqlite_path)
    else:
        inner = await open_postgres(parsed.url)
    driver = CountingDriver(inner)
    store = SqlStore(driver)
    try:
        await store.migrate(datetime.now(UTC))
        registry = Registry(store)
        for i in range(MODELS):
            name = f"model-{i}"
            await registry.create_model(ALICE, ModelCreate(name=name, tags={"n": str(i)}))
            for v in range(1 + i % 4):
                cmd = VersionCreate(endpoint=f"http://svc-{i}-{v}:3000")
                await registry.create_version(ALICE, name, cmd)
            if i % 4 >= 1:  # versions in several stages, and an alias
                await registry.transition_stage(
                    ALICE, name, 1, StageChange(stage=Stage.PRODUCTION), None
                )
                await registry.set_alias(ALICE, name, "champion", AliasChange(version=1), None)
            if i % 4 >= 2:
                await registry.transition_stage(
                    ALICE, name, 2, StageChange(stage=Stage.STAGING), None
                )
        yield registry, driver
    finally:
        await store.close()


async def _one_per_stage(registry: Registry, name: str) -> list[ModelVersion]:
    """The reference: each stage's newest version, read one stage at a time."""
    found: list[ModelVersion] = []
    for stage in Stage:
        found += await registry.list_versions(name, VersionFilter(stage=stage), None, 1)
    return sorted(found, key=lambda v: v.version)


async def test_a_page_of_registered_models_costs_the_same_statements_at_any_size(
    counted: tuple[Registry, CountingDriver],
) -> None:
    registry, driver = counted
    statements: dict[int, int] = {}
    for size in (1, 3, MODELS):
        driver.statements = 0
        page, _ = await search_models(registry, Filter(), [], None, size)
        statements[size] = driver.statements
        assert len(page) == size
        for model in page:
            expected = await _one_per_stage(registry, model.name)
            got = [(v.version, v.current_stage) for v in model.latest_versions]
            assert got == [(str(v.version), v.stage.value) for v in expected], model.name
    assert statements[1] == statements[3] == statements[MODELS] <= 2, statements
    assert {a.alias for m in page for a in m.aliases} == {"champion"}
    assert [t.value for t in page[5].tags] == ["5"]


async def test_latest_versions_of_one_model_is_one_statement(
    counted: tuple[Registry, CountingDriver],
) -> None:
    registry, driver = counted
    driver.statements = 0
    found = await latest_versions(registry, "model-3")
    assert driver.statements == 1
    assert [(v.version, v.stage) for v in found] == [
        (1, Stage.PRODUCTION),
        (2, Stage.STAGING),
        (4, Stage.NONE),
    ]
    assert await latest_versions(registry, "model-3", [Stage.ARCHIVED]) == []
    with pytest.raises(NotFound):
        await latest_versions(registry, "no-such-model")


BIG: Final = 20_000
#: versions 1..BIG of one model, made by the database itself (a recursive count)
_MANY_VERSIONS: Final = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
    " INSERT INTO model_versions (model_id, version, stage, status, description, format, apis,"
    " metrics, params, tags, created_by, created_at, updated_at, revision)"
    " SELECT (SELECT id FROM models WHERE name = ?), i, 'None', 'READY', '', 'bento', '[]',"
    " '{}', '{}', '{}', 'seed', i, i, 1 FROM n"
)


def _rows_read(plan: dict[str, Any]) -> int:
    """Rows the plan's scans of model_versions produced, over all their loops."""
    own = 0
    if plan.get("Relation Name") == "model_versions":
        own = int(plan["Actual Rows"]) * int(plan["Actual Loops"])
    return own + sum(_rows_read(child) for child in plan.get("Plans", []))


@pytest.mark.parametrize("after", [None, ("b-big", BIG // 2)], ids=["first", "deep"])
async def test_a_version_page_without_a_name_reads_a_page_not_the_model(
    counted: tuple[Registry, CountingDriver], after: tuple[str, int] | None
) -> None:
    registry, driver = counted
    await registry.create_model(ALICE, ModelCreate(name="b-big"))
    async with driver.writing() as conn:
        await conn.execute(_MANY_VERSIONS, (BIG, "b-big"))
        if driver.dialect.name == "postgres":
            await conn.execute("ANALYZE model_versions")
    page = await registry.store.search_versions(Search(Filter(), (), 100, after))
    start = BIG if after is None else after[1] - 1
    assert [(v.model, v.version) for v in page.items] == [
        ("b-big", n) for n in range(start, start - 100, -1)
    ]
    sql, args = driver.last
    async with driver.reading() as conn:
        if driver.dialect.name == "postgres":
            found = await conn.fetch(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", args)
            plan = json.loads(found[0][0])[0]["Plan"]
            assert _rows_read(plan) <= 2 * (100 + 1) + MODELS * 4, plan
        else:
            found = await conn.fetch(f"EXPLAIN QUERY PLAN {sql}", args)
            steps = [str(r[-1]) for r in found]
            assert not any("TEMP B-TREE" in step for step in steps), steps
