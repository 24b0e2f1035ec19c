"""The route feed's reads in SQL (registry/ports.py `RouteState`).

The clock: every transaction that changes a model (adapters/sql/changes.py) takes the next
value of the one-row `route_clock` table and stamps its model's chain head
(`audit_heads.clock`) with it. The row stays locked until the commit, so clock values commit in
order: a reader that has seen every change up to clock c and asks for the heads stamped after c
(an index range, `audit_heads_clock`) never misses one that commits later. On SQLite the single
writer gives the same order. Writes to different models serialize only for the moment between
the tick and the commit.

The serving state is read in batches, a fixed number of statements per batch whatever the
number of models: the models, their aliases, the versions in Production or Staging
(`model_versions_stage`), those with an outside endpoint (`model_versions_endpoint`), then any
other version an alias or a traffic policy names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

from adapters.sql import rows
from adapters.sql.driver import Dialect, OnDriver, Row, SqlConn, SqlDriver, notifications
from contract.traffic import references
from registry.catalog.domain import EXCLUSIVE_STAGES, MODEL_SCOPE_PREFIX, Model
from registry.ports import RouteState, Serving

_SCOPE: Final = MODEL_SCOPE_PREFIX
_MODELS: Final = f"SELECT {rows.MODEL_COLUMNS} FROM models m"
_VERSIONS: Final = f"SELECT v.model_id, {rows.VERSION_COLUMNS} FROM model_versions v"


CHANGED_CHANNEL: Final = "modelyard_models_changed"


async def tick(conn: SqlConn, dialect: Dialect) -> int:
    """The next clock value, held (locked) by this transaction until it commits. On
    PostgreSQL the commit also notifies every replica's feed (`changes_heard`), so a change
    made through one replica reaches the gateways of another without waiting for a poll."""
    found = await conn.fetch("UPDATE route_clock SET n = n + 1 WHERE id = 1 RETURNING n")
    if dialect.name == "postgres":
        await conn.execute("SELECT pg_notify(?, '')", (CHANGED_CHANNEL,))
    return int(found[0][0])


def changes_heard(
    driver: SqlDriver, heard: Callable[[], None]
) -> AbstractAsyncContextManager[None]:
    """While inside, `heard()` after every change committed by any replica (PostgreSQL)."""
    return notifications(driver, CHANGED_CHANNEL, heard)


class SqlRoutes(OnDriver, RouteState):
    async def route_clock(self) -> int:
        found = await self._read("SELECT n FROM route_clock WHERE id = 1")
        return int(found[0][0]) if found else 0

    async def changed_models(self, after: int, limit: int) -> list[tuple[str, int]]:
        found = await self._read(
            "SELECT scope, clock FROM audit_heads WHERE clock > ? ORDER BY clock LIMIT ?",
            (after, limit),
        )
        return [
            (str(scope)[len(_SCOPE) :], int(clock))
            for scope, clock in found
            if str(scope).startswith(_SCOPE)
        ]

    async def serving(self, names: Sequence[str]) -> list[Serving]:
        if not names:
            return []
        async with self.driver.reading() as conn:
            found = await conn.fetch(f"{_MODELS} WHERE m.name IN ({_marks(names)})", names)
            return await _serving(conn, found)

    async def serving_page(self, after: str | None, limit: int) -> list[Serving]:
        where, args = ("WHERE m.name > ?", [after]) if after is not None else ("", [])
        async with self.driver.reading() as conn:
            found = await conn.fetch(f"{_MODELS} {where} ORDER BY m.name LIMIT ?", [*args, limit])
            return await _serving(conn, found)


async def _serving(conn: SqlConn, model_rows: list[Row]) -> list[Serving]:
    if not model_rows:
        return []
    ids = [int(r[rows.MODEL_ID_COLUMN]) for r in model_rows]
    marks = _marks(ids)
    aliases: dict[int, dict[str, int]] = {i: {} for i in ids}
    for model_id, alias, number in await conn.fetch(
        f"SELECT model_id, alias, version FROM aliases WHERE model_id IN ({marks})", ids
    ):
        aliases[int(model_id)][alias] = int(number)
    stages = [s.value for s in EXCLUSIVE_STAGES]
    versions: dict[int, dict[int, Row]] = {i: {} for i in ids}
    for sql, args in (
        (f"v.model_id IN ({marks}) AND v.stage IN (?, ?)", [*ids, *stages]),
        (f"v.model_id IN ({marks}) AND v.endpoint IS NOT NULL", ids),
    ):
        _collect(versions, await conn.fetch(f"{_VERSIONS} WHERE {sql}", args))
    models: dict[int, Model] = {}
    for r in model_rows:
        model_id = int(r[rows.MODEL_ID_COLUMN])
        models[model_id] = rows.model_from_row(r, aliases[model_id])
    missing = [
        (model_id, number)
        for model_id, model in models.items()
        for number in _named(model)
        if number not in versions[model_id]
    ]
    if missing:
        pairs = " OR ".join(["(v.model_id = ? AND v.version = ?)"] * len(missing))
        flat: list[Any] = [x for pair in missing for x in pair]
        _collect(versions, await conn.fetch(f"{_VERSIONS} WHERE {pairs}", flat))
    return [
        Serving(
            model,
            [rows.version_from_row(model.name, r[1:], []) for r in versions[model_id].values()],
        )
        for model_id, model in models.items()
    ]


def _named(model: Model) -> set[int]:
    """The version numbers the model's aliases and traffic policy name."""
    named = set(model.aliases.values())
    if model.traffic is not None:
        named |= {number for _, number in references(model.traffic)}
    return named


def _collect(into: dict[int, dict[int, Row]], found: Iterable[Row]) -> None:
    for r in found:
        into[int(r[0])][int(r[1])] = r


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))
