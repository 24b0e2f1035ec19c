"""MLflow's two registry searches as one SQL statement each, keyset-paged.

A `Search` (registry/ports.py) compiles to `WHERE` clauses on the model's and the version's
columns, an `ORDER BY` of the requested keys followed by the tie-breakers (name ascending, then
version descending, both unique together), and a keyset condition that starts after the previous
page's last row. The page reads `limit + 1` rows to know whether another follows, so a page
costs the same however many rows match: the planner walks `models(name)` and the versions'
`(model_id, version)` key (or migration 10's timestamp indexes) and stops after the page.

A version search ordered by name first, without an exact name, is the one PostgreSQL cannot
walk as a join: its nested loop keeps only the models' order, so it sorts each model's versions
whole (100,000 versions of one model: ~60 ms in-process). There it reads per model, in a
LATERAL subquery, at most a page of versions in the remaining order, from the versions' key; the
keyset's bound inside it applies to the one model the previous page ended in
(`CASE WHEN m.name = ...`), so it stays an index bound. SQLite's planner walks the join in that
order by itself.

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
#: below (above) every version number and timestamp: a LATERAL keyset's bound on other models
_LOWEST: Final = "-9223372036854775807"
_HIGHEST: Final = "9223372036854775807"
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
        return f"{bound} AND ({self._after(keys, after)})"

    def _after(self, keys: list[tuple[str, bool]], after: tuple[Any, ...]) -> str:
        ors: list[str] = []
        for i, (column, ascending) in enumerate(keys):
            ands = [f"{c} = ?" for c, _ in keys[:i]]
            ands.append(f"{column} {'>' if ascending else '<'} ?")
            self.args += list(after[: i + 1])
            ors.append(" AND ".join(ands))
        return " OR ".join(f"({o})" for o in ors)

    def lateral_keyset(
        self, rest: list[tuple[str, bool]], name: str, after: tuple[Any, ...]
    ) -> str:
        """Inside a model's LATERAL subquery: the rows after `after` (the keys past the name)
        in the model named `name`, every row in the others. The first key's bound is a constant
        per model, so the planner seeks to it in the versions' index."""
        first, ascending = rest[0]
        self.args += [name, after[0], name]
        op, beyond = (">=", _LOWEST) if ascending else ("<=", _HIGHEST)
        bound = f"{first} {op} CASE WHEN m.name = ? THEN ? ELSE {beyond} END"
        return f"{bound} AND (m.name <> ? OR {self._after(rest, after)})"


class SqlSearch(OnDriver):
    """The searches of registry/ports.py's ModelReader, on the catalog's tables."""

    def _compiler(self, tags_column: str) -> _Compiler:
        dialect = self.driver.dialect
        return _Compiler(dialect.name == "postgres", dialect.json_text(tags_column))

    @staticmethod
    def _order(query: Search, keys: dict[str, str]) -> list[tuple[str, bool]]:
        """The requested keys, then the tie-breakers, up to the first unique key."""
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
        if query.after is not None and len(query.after) != len(order):
            raise ValueError("the keyset does not fit this search")
        return order

    def _compile(
        self,
        query: Search,
        attributes: dict[str, str],
        order: list[tuple[str, bool]],
        tags_column: str,
    ) -> tuple[list[str], list[Any]]:
        compiler = self._compiler(tags_column)
        clauses = [compiler.clause(c, attributes) for c in query.where.clauses]
        exact = _exact_name(query)
        if exact is not None and any(c == "v.version" for c, _ in order):
            # the model's id as a scalar subquery too: planners then walk its (model_id, version)
            # key in order instead of joining and sorting all its versions
            clauses.append(f"v.model_id = {_MODEL_ID}")
            compiler.args.append(exact)
        if query.after is not None:
            clauses.append(compiler.keyset(order, query.after))
        return clauses, compiler.args

    @staticmethod
    def _sql(select: str, clauses: list[str], order: list[tuple[str, bool]]) -> str:
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        by = ", ".join(f"{c} {'ASC' if asc else 'DESC'}" for c, asc in order)
        return f"{select}{where} ORDER BY {by} LIMIT ?"

    async def search_models(self, query: Search) -> SearchPage[Model]:
        order = self._order(query, _MODEL_KEYS)
        clauses, args = self._compile(query, {"name": "m.name"}, order, "m.tags")
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

    def _versions_by_model(
        self, query: Search, order: list[tuple[str, bool]], source: str
    ) -> tuple[str, list[Any]]:
        """The search as models in name order, each with at most a page of its versions from
        a LATERAL subquery (PostgreSQL; see the module's docstring)."""
        inner, outer = self._compiler("v.tags"), self._compiler("v.tags")
        by_name = [c for c in query.where.clauses if c.entity == "attribute" and c.key == "name"]
        within = ["v.model_id = m.id"] + [
            inner.clause(c, _VERSION_ATTRIBUTES)
            for c in query.where.clauses
            if c.entity != "attribute" or c.key != "name"
        ]
        clauses = [outer.clause(c, _VERSION_ATTRIBUTES) for c in by_name]
        name_ascending = order[0][1]
        if query.after is not None:
            within.append(inner.lateral_keyset(order[1:], query.after[0], query.after[1:]))
            clauses.append(f"m.name {'>=' if name_ascending else '<='} ?")
            outer.args.append(query.after[0])
        rest = ", ".join(f"{c} {'ASC' if asc else 'DESC'}" for c, asc in order[1:])
        lateral = (
            f" CROSS JOIN LATERAL (SELECT * FROM model_versions v WHERE {' AND '.join(within)}"
            f" ORDER BY {rest} LIMIT ?) v"
        )
        args = [*inner.args, query.limit + 1, *outer.args]
        return self._sql(source + lateral, clauses, order), args

    async def search_versions(self, query: Search) -> SearchPage[ModelVersion]:
        order = self._order(query, _VERSION_KEYS)
        aliases = self.driver.dialect.string_agg("a.alias")
        keys = ", ".join(c for c, _ in order)
        select = (
            f"SELECT m.name, {rows.VERSION_COLUMNS}, (SELECT {aliases} FROM aliases a"
            " WHERE a.model_id = v.model_id AND a.version = v.version),"
            f" {keys} FROM models m"
        )
        postgres = self.driver.dialect.name == "postgres"
        if postgres and order[0][0] == "m.name" and _exact_name(query) is None:
            sql, args = self._versions_by_model(query, order, select)
        else:
            clauses, args = self._compile(query, _VERSION_ATTRIBUTES, order, "v.tags")
            select += " JOIN model_versions v ON v.model_id = m.id"
            sql = self._sql(select, clauses, order)
        found = await self._read(sql, [*args, query.limit + 1])
        width = len(order)
        items = [rows.version_from_row(r[0], r[1:-width]) for r in found[: query.limit]]
        more = len(found) > query.limit
        return SearchPage(items, tuple(found[query.limit - 1][-width:]) if more else None)


def _exact_name(query: Search) -> str | int | None:
    """The model name an `name = '...'` clause asks for, if any."""
    for c in query.where.clauses:
        if (
            c.entity == "attribute"
            and c.key == "name"
            and c.op == "="
            and not isinstance(c.value, tuple)
        ):
            return c.value
    return None
