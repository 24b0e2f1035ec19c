"""MLflow's two registry searches as one SQL statement each, keyset-paged.

A `Search` (registry/ports.py) compiles to `WHERE` clauses on the model's and the version's
columns, an `ORDER BY` of the requested keys followed by the tie-breakers (name ascending, then
version descending, both unique together), and a keyset condition that starts after the previous
page's last row. The page reads `limit + 1` rows to know whether another follows, so a page
costs the same however many rows match: the planner walks `models(name)` and the versions'
`(model_id, version)` key (or migration 10's timestamp indexes) and stops after the page.

MLflow's rules kept: LIKE is case-sensitive (SQLite's LIKE is not, so it becomes GLOB there),
ILIKE is not, a missing value never matches (SQL's NULL), and the prompt marker tag reads as
`false` when absent.
"""

from __future__ import annotations

from typing import Any, Final

from adapters.sql import rows
from adapters.sql.driver import OnDriver
from registry.catalog.domain import Model, ModelVersion
from registry.ports import Comparison, Search, SearchPage

IS_PROMPT_TAG: Final = "mlflow.prompt.is_prompt"
_MODEL_ID: Final = "(SELECT id FROM models WHERE name = ?)"
#: order key -> its column
_MODEL_KEYS: Final = {
    "name": "m.name",
    "creation_timestamp": "m.created_at",
    "last_updated_timestamp": "m.updated_at",
}
_VERSION_KEYS: Final = {
    "name": "m.name",
    "version_number": "v.version",
    "creation_timestamp": "v.created_at",
    "last_updated_timestamp": "v.updated_at",
}
_VERSION_ATTRIBUTES: Final = {
    "name": "m.name",
    "version_number": "v.version",
    "run_id": "NULLIF(v.run_id, '')",
    "source_path": "COALESCE(NULLIF(v.source, ''), NULLIF(v.artifact_uri, ''),"
    " NULLIF(v.endpoint, ''))",
}


def _glob(pattern: str) -> str:
    """A LIKE pattern as SQLite's case-sensitive GLOB."""
    special = {"*": "[*]", "?": "[?]", "[": "[[]", "%": "*", "_": "?"}
    return "".join(special.get(c, c) for c in pattern)


class _Compiler:
    def __init__(self, postgres: bool, json_text: str) -> None:
        self.postgres, self.json_text = postgres, json_text
        self.args: list[Any] = []

    def like(self, column: str, op: str, pattern: str) -> str:
        if op == "ILIKE":
            self.args.append(pattern)
            return f"{column} ILIKE ? ESCAPE ''" if self.postgres else f"{column} LIKE ?"
        if self.postgres:
            self.args.append(pattern)
            return f"{column} LIKE ? ESCAPE ''"
        self.args.append(_glob(pattern))
        return f"{column} GLOB ?"

    def clause(self, c: Comparison, attributes: dict[str, str]) -> str:
        if c.entity == "tag":
            self.args.append(c.key)
            column = self.json_text
            if c.key == IS_PROMPT_TAG:
                column = f"COALESCE({column}, 'false')"
        else:
            column = attributes[c.key]
        if isinstance(c.value, tuple):
            marks = ", ".join("?" * len(c.value))
            self.args += list(c.value)
            return f"{column} {'IN' if c.op == 'IN' else 'NOT IN'} ({marks})"
        if c.op in ("LIKE", "ILIKE"):
            return self.like(column, c.op, str(c.value))
        self.args.append(c.value)
        return f"{column} {c.op} ?"

    def keyset(self, keys: list[tuple[str, bool]], after: tuple[Any, ...]) -> str:
        """Rows after `after` in the order `keys` (column, ascending): an OR of prefixes, and
        the first key's bound alone, which the planner can seek to in its index."""
        first, ascending = keys[0]
        self.args.append(after[0])
        bound = f"{first} {'>=' if ascending else '<='} ?"
        ors: list[str] = []
        for i, (column, ascending) in enumerate(keys):
            ands = [f"{c} = ?" for c, _ in keys[:i]]
            ands.append(f"{column} {'>' if ascending else '<'} ?")
            self.args += list(after[: i + 1])
            ors.append(" AND ".join(ands))
        return f"{bound} AND (" + " OR ".join(f"({o})" for o in ors) + ")"


class SqlSearch(OnDriver):
    """The searches of registry/ports.py's ModelReader, on the catalog's tables."""

    def _compile(
        self, query: Search, attributes: dict[str, str], keys: dict[str, str], tags_column: str
    ) -> tuple[list[str], list[tuple[str, bool]], list[Any]]:
        dialect = self.driver.dialect
        compiler = _Compiler(dialect.name == "postgres", dialect.json_text(tags_column))
        clauses = [compiler.clause(c, attributes) for c in query.where.clauses]
        exact = [c.value for c in query.where.clauses if c.key == "name" and c.op == "="]
        if exact and "v.version" in keys.values():
            # the model's id as a scalar subquery too: planners then walk its (model_id, version)
            # key in order instead of joining and sorting all its versions
            clauses.append(f"v.model_id = {_MODEL_ID}")
            compiler.args.append(exact[0])
        order = [(keys[o.key], o.ascending) for o in query.order]
        if not any(c == "m.name" for c, _ in order):
            order.append(("m.name", True))
        if "v.version" in keys.values() and not any(c == "v.version" for c, _ in order):
            order.append(("v.version", False))
        # past the first unique key, later keys never decide: drop them (shorter keysets)
        unique = "v.version" if "v.version" in keys.values() else "m.name"
        names_at = next(i for i, (c, _) in enumerate(order) if c == "m.name")
        at = next(i for i, (c, _) in enumerate(order) if c == unique)
        order = order[: max(at, names_at) + 1]
        if query.after is not None:
            if len(query.after) != len(order):
                raise ValueError("the keyset does not fit this search")
            clauses.append(compiler.keyset(order, query.after))
        return clauses, order, compiler.args

    @staticmethod
    def _sql(select: str, clauses: list[str], order: list[tuple[str, bool]]) -> str:
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        by = ", ".join(f"{c} {'ASC' if asc else 'DESC'}" for c, asc in order)
        return f"{select}{where} ORDER BY {by} LIMIT ?"

    async def search_models(self, query: Search) -> SearchPage[Model]:
        clauses, order, args = self._compile(query, {"name": "m.name"}, dict(_MODEL_KEYS), "m.tags")
        aliases = self.driver.dialect.string_agg("a.alias || '=' || a.version")
        keys = ", ".join(c for c, _ in order)
        select = (
            f"SELECT {rows.MODEL_COLUMNS},"
            f" (SELECT {aliases} FROM aliases a WHERE a.model_id = m.id), {keys} FROM models m"
        )
        found = await self._read(self._sql(select, clauses, order), [*args, query.limit + 1])
        width = len(order)
        items = [rows.model_from_row(r[:-width]) for r in found[: query.limit]]
        more = len(found) > query.limit
        return SearchPage(items, tuple(found[query.limit - 1][-width:]) if more else None)

    async def search_versions(self, query: Search) -> SearchPage[ModelVersion]:
        clauses, order, args = self._compile(
            query, dict(_VERSION_ATTRIBUTES), dict(_VERSION_KEYS), "v.tags"
        )
        aliases = self.driver.dialect.string_agg("a.alias")
        keys = ", ".join(c for c, _ in order)
        select = (
            f"SELECT m.name, {rows.VERSION_COLUMNS}, (SELECT {aliases} FROM aliases a"
            " WHERE a.model_id = v.model_id AND a.version = v.version),"
            f" {keys} FROM models m JOIN model_versions v ON v.model_id = m.id"
        )
        found = await self._read(self._sql(select, clauses, order), [*args, query.limit + 1])
        width = len(order)
        items = [rows.version_from_row(r[0], r[1:-width]) for r in found[: query.limit]]
        more = len(found) > query.limit
        return SearchPage(items, tuple(found[query.limit - 1][-width:]) if more else None)
