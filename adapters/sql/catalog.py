"""The catalog's reads in SQL: models, versions and their aliases.

Each read is one statement, so it sees one snapshot without a transaction. A model's aliases
and a version's come packed in one string aggregate column (rows.py unpacks them), not from a
second query. MLflow's searches are in adapters/sql/search.py. The catalog is written through
`transact` (adapters/sql/changes.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from adapters.sql import rows
from adapters.sql.search import SqlSearch
from registry.catalog.changes import ModelFilter, VersionFilter
from registry.catalog.domain import Model, ModelVersion, Stage
from registry.errors import NotFound
from registry.ports import ModelReader

# A scalar subquery, not a join: planners then walk the (model_id, version) key in order.
_MODEL_ID: Final = "(SELECT id FROM models WHERE name = ?)"


class SqlCatalog(SqlSearch, ModelReader):
    def _model_select(self) -> str:
        aliases = self.driver.dialect.string_agg("a.alias || '=' || a.version")
        return (
            f"SELECT {rows.MODEL_COLUMNS},"
            f" (SELECT {aliases} FROM aliases a WHERE a.model_id = m.id) FROM models m"
        )

    def _version_select(self, source: str) -> str:
        """Version columns plus their packed aliases, `FROM` the given join."""
        aliases = self.driver.dialect.string_agg("a.alias")
        return (
            f"SELECT {rows.VERSION_COLUMNS}, (SELECT {aliases} FROM aliases a"
            " WHERE a.model_id = v.model_id AND a.version = v.version)"
            f" FROM {source}"
        )

    async def _require_model(self, name: str) -> None:
        if not await self._read("SELECT 1 FROM models WHERE name = ?", (name,)):
            raise NotFound(f"registered model {name!r} does not exist", field="name")

    async def get_model(self, name: str) -> Model:
        found = await self._read(f"{self._model_select()} WHERE m.name = ?", (name,))
        if not found:
            raise NotFound(f"registered model {name!r} does not exist", field="name")
        return rows.model_from_row(found[0])

    async def list_models(self, where: ModelFilter, after: str | None, limit: int) -> list[Model]:
        clauses: list[str] = ["1 = 1"]
        args: list[Any] = []
        if after is not None:
            clauses.append("m.name > ?")
            args.append(after)
        if where.prefix:
            clauses.append("m.name >= ? AND m.name < ?")
            args += [where.prefix, where.prefix + "\U0010ffff"]
        if where.tag is not None:
            clauses.append(f"{self.driver.dialect.json_text('m.tags')} = ?")
            args += list(where.tag)
        if where.stage is not None:
            clauses.append(
                "EXISTS (SELECT 1 FROM model_versions v WHERE v.model_id = m.id AND v.stage = ?)"
            )
            args.append(where.stage.value)
        if where.alias is not None:
            clauses.append(
                "EXISTS (SELECT 1 FROM aliases a WHERE a.model_id = m.id AND a.alias = ?)"
            )
            args.append(where.alias)
        found = await self._read(
            f"{self._model_select()} WHERE {' AND '.join(clauses)} ORDER BY m.name LIMIT ?",
            [*args, limit],
        )
        return [rows.model_from_row(r) for r in found]

    async def get_version(self, model: str, version: int) -> ModelVersion:
        found = await self._read(
            f"{self._version_select('model_versions v')} WHERE v.model_id = {_MODEL_ID}"
            " AND v.version = ?",
            (model, version),
        )
        if not found:
            await self._require_model(model)
            raise NotFound(f"version {version} of model {model!r} does not exist", field="version")
        return rows.version_from_row(model, found[0])

    async def list_versions(
        self, model: str, where: VersionFilter, before: int | None, limit: int
    ) -> list[ModelVersion]:
        clauses: list[str] = [f"v.model_id = {_MODEL_ID}"]
        args: list[Any] = [model]
        if before is not None:
            clauses.append("v.version < ?")
            args.append(before)
        if where.stage is not None:
            clauses.append("v.stage = ?")
            args.append(where.stage.value)
        if where.with_endpoint:
            clauses.append("v.endpoint IS NOT NULL")
        if where.tag is not None:
            clauses.append(f"{self.driver.dialect.json_text('v.tags')} = ?")
            args += list(where.tag)
        if where.alias is not None:
            clauses.append(
                "EXISTS (SELECT 1 FROM aliases a WHERE a.model_id = v.model_id"
                " AND a.version = v.version AND a.alias = ?)"
            )
            args.append(where.alias)
        found = await self._read(
            f"{self._version_select('model_versions v')} WHERE {' AND '.join(clauses)}"
            " ORDER BY v.version DESC LIMIT ?",
            [*args, limit],
        )
        if not found:
            await self._require_model(model)
        return [rows.version_from_row(model, r) for r in found]

    async def resolve_alias(self, model: str, alias: str) -> ModelVersion:
        found = await self._read(
            self._version_select(
                "aliases al JOIN models m ON m.id = al.model_id JOIN model_versions v"
                " ON v.model_id = al.model_id AND v.version = al.version"
            )
            + " WHERE m.name = ? AND al.alias = ?",
            (model, alias),
        )
        if not found:
            await self._require_model(model)
            raise NotFound(f"model {model!r} has no alias {alias!r}", field="alias")
        return rows.version_from_row(model, found[0])

    async def latest_versions(
        self, models: Sequence[str], stages: Sequence[Stage]
    ) -> dict[str, list[ModelVersion]]:
        """Models x stages, each pair's newest version by one probe of migration 11's
        `(model_id, stage, version)` index: a page of MLflow models costs one query for all."""
        if not models or not stages:
            return {}
        stage_list = " UNION ALL ".join(["SELECT CAST(? AS TEXT) AS stage"] * len(stages))
        names = ", ".join("?" * len(models))
        aliases = self.driver.dialect.string_agg("a.alias")
        found = await self._read(
            f"SELECT m.name, {rows.VERSION_COLUMNS}, (SELECT {aliases} FROM aliases a"
            " WHERE a.model_id = v.model_id AND a.version = v.version)"
            f" FROM models m CROSS JOIN ({stage_list}) s"
            " JOIN model_versions v ON v.model_id = m.id"
            " AND v.version = (SELECT MAX(x.version) FROM model_versions x"
            " WHERE x.model_id = m.id AND x.stage = s.stage)"
            f" WHERE m.name IN ({names}) ORDER BY m.name, v.version",
            [*(s.value for s in stages), *models],
        )
        latest: dict[str, list[ModelVersion]] = {}
        for r in found:
            latest.setdefault(r[0], []).append(rows.version_from_row(r[0], r[1:]))
        return latest

    async def artifact_uris(self) -> set[str]:
        found = await self._read(
            "SELECT DISTINCT artifact_uri FROM model_versions WHERE artifact_uri IS NOT NULL", ()
        )
        return {str(row[0]) for row in found}
