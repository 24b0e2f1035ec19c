"""Writes to one model in SQL: `transact` locks the model's audit chain, loads the state its
decision needs, and applies the decision's operations (registry/catalog/changes.py `Op`) in one
transaction, so they are committed together or not at all.

Every operation has its case in `_apply`; a new kind of operation that is not given one fails
the type check (`assert_never`) instead of being skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, assert_never

from adapters.sql import audit, experiments, rollouts, rows
from adapters.sql.driver import OnDriver, SqlConn, fetch_one
from adapters.sql.routes import tick
from registry.catalog.changes import (
    AppendLook,
    Audit,
    CreateModel,
    CreateVersion,
    Decision,
    DeleteAlias,
    DeleteModel,
    DeleteVersion,
    LoadSpec,
    ModelState,
    Op,
    RememberRequest,
    RenameModel,
    SaveExperiment,
    SaveRollout,
    SetAlias,
    StoredRequest,
    UpdateModel,
    UpdateVersion,
)
from registry.catalog.domain import EXCLUSIVE_STAGES, ModelVersion, model_scope
from registry.ports import ModelWriter

T = TypeVar("T")
_VERSION_INSERT_COLUMNS = rows.VERSION_COLUMNS.replace("v.", "")


class SqlChanges(OnDriver, ModelWriter):
    async def transact(
        self, model: str, load: LoadSpec, decide: Callable[[ModelState], Decision[T]]
    ) -> T:
        scope = model_scope(model)
        async with self.driver.writing() as conn:
            head = await audit.lock_head(conn, self.driver.dialect, scope)
            model_id, state = await _load(conn, model, load)
            decision = decide(state)
            if not decision.ops:
                return decision.result
            writing = _Writing(conn, scope, model_id, head)
            for op in decision.ops:
                await _apply(writing, op)
            clock = await tick(
                conn, self.driver.dialect
            )  # last: the clock row stays locked only until the commit
            await audit.save_head(conn, scope, writing.head, clock)
            for other in writing.also_changed:
                await audit.stamp(conn, other, clock)
        return decision.result


async def _load(conn: SqlConn, name: str, spec: LoadSpec) -> tuple[int | None, ModelState]:
    """The model's row id (None if there is no such model) and what `spec` asks for."""
    model_row = await fetch_one(
        conn, f"SELECT {rows.MODEL_COLUMNS} FROM models m WHERE name = ?", (name,)
    )
    replay = None
    if spec.idempotency is not None:
        found = await fetch_one(
            conn,
            "SELECT fingerprint, body FROM idempotency_keys WHERE principal_id = ? AND key = ?",
            spec.idempotency,
        )
        if found is not None:
            replay = StoredRequest(found[0], found[1].encode())
    if model_row is None:
        return None, ModelState(model=None, versions={}, aliases={}, replay=replay)
    model_id = int(model_row[rows.MODEL_ID_COLUMN])
    aliases = {
        r[0]: int(r[1])
        for r in await conn.fetch(
            "SELECT alias, version FROM aliases WHERE model_id = ?", (model_id,)
        )
    }
    model = rows.model_from_row(model_row, aliases)
    wanted = list(spec.versions)
    if spec.latest and model.latest_version:
        wanted.append(model.latest_version)
    clauses: list[str] = []
    args: list[Any] = [model_id]
    if wanted:
        clauses.append(f"v.version IN ({', '.join('?' * len(wanted))})")
        args += wanted
    if spec.stage_holders:
        clauses.append("v.stage IN (?, ?)")
        args += [s.value for s in EXCLUSIVE_STAGES]
    versions: dict[int, ModelVersion] = {}
    if clauses:
        found_rows = await conn.fetch(
            f"SELECT {rows.VERSION_COLUMNS} FROM model_versions v"
            f" WHERE v.model_id = ? AND ({' OR '.join(clauses)})",
            args,
        )
        held = _held_by(aliases)
        for r in found_rows:
            versions[int(r[0])] = rows.version_from_row(name, r, held.get(int(r[0])))
    rollout = experiment = None
    if spec.rollout:
        rollout = await rollouts.active_for(conn, name)
        experiment = await experiments.running_for(conn, name)
    return model_id, ModelState(model, versions, aliases, replay, rollout, experiment)


def _held_by(aliases: dict[str, int]) -> dict[int, list[str]]:
    held: dict[int, list[str]] = {}
    for alias, number in sorted(aliases.items()):
        held.setdefault(number, []).append(alias)
    return held


@dataclass(slots=True)
class _Writing:
    """One transaction applying a decision: where it writes, and how far its chain got."""

    conn: SqlConn
    scope: str
    model_id: int | None  # None until CreateModel has made the row
    head: audit.Head
    also_changed: list[str] = field(default_factory=list)  # other scopes the feed must see


async def _apply(w: _Writing, op: Op) -> None:
    conn = w.conn
    match op:
        case CreateModel(m):
            found = await conn.fetch(
                "INSERT INTO models (name, description, tags, owner, created_at,"
                " updated_at, revision, latest_version, traffic)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " RETURNING id",
                rows.model_values(m),
            )
            w.model_id = int(found[0][0])
        case UpdateModel(m):
            await conn.execute(
                "UPDATE models SET description = ?, tags = ?, updated_at = ?,"
                " revision = ?, latest_version = ?, traffic = ? WHERE id = ?",
                (
                    m.description,
                    rows.dumps(m.tags),
                    rows.to_micros(m.updated_at),
                    m.revision,
                    m.latest_version,
                    rows.traffic_value(m),
                    w.model_id,
                ),
            )
        case DeleteModel():
            await conn.execute("DELETE FROM model_versions WHERE model_id = ?", (w.model_id,))
            await conn.execute("DELETE FROM models WHERE id = ?", (w.model_id,))
        case RenameModel(new_name):
            await conn.execute("UPDATE models SET name = ? WHERE id = ?", (new_name, w.model_id))
            w.also_changed.append(model_scope(new_name))
        case CreateVersion(v):
            await conn.execute(
                f"INSERT INTO model_versions (model_id, {_VERSION_INSERT_COLUMNS})"
                f" VALUES (?{', ?' * rows.VERSION_WIDTH})",
                (w.model_id, *rows.version_values(v)),
            )
        case UpdateVersion(v):
            await conn.execute(
                "UPDATE model_versions SET stage = ?, status = ?, description = ?,"
                " endpoint = ?, tags = ?, updated_at = ?, revision = ?"
                " WHERE model_id = ? AND version = ?",
                (
                    v.stage.value,
                    v.status.value,
                    v.description,
                    v.endpoint,
                    rows.dumps(v.tags),
                    rows.to_micros(v.updated_at),
                    v.revision,
                    w.model_id,
                    v.version,
                ),
            )
        case DeleteVersion(number):
            await conn.execute(
                "DELETE FROM model_versions WHERE model_id = ? AND version = ?",
                (w.model_id, number),
            )
        case SetAlias(alias, number, at):
            await conn.execute(
                "INSERT INTO aliases (model_id, alias, version, updated_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (model_id, alias) DO UPDATE"
                " SET version = excluded.version, updated_at = excluded.updated_at",
                (w.model_id, alias, number, rows.to_micros(at)),
            )
        case DeleteAlias(alias):
            await conn.execute(
                "DELETE FROM aliases WHERE model_id = ? AND alias = ?", (w.model_id, alias)
            )
        case Audit():
            w.head = await audit.append(conn, w.scope, w.head, op)
        case SaveRollout(rollout):
            await rollouts.save(conn, rollout)
        case AppendLook(rollout_id, look):
            await rollouts.append_look(conn, rollout_id, look)
        case SaveExperiment(experiment):
            await experiments.save(conn, experiment)
        case RememberRequest():
            await conn.execute(
                "INSERT INTO idempotency_keys (principal_id, key, fingerprint, status,"
                " body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    op.principal_id,
                    op.key,
                    op.fingerprint,
                    201,  # the column predates the core's status-free op; unread
                    op.body.decode(),
                    rows.to_micros(op.at),
                ),
            )
        case _:
            assert_never(op)
