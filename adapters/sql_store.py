"""The MetadataStore written once in portable SQL, over a tiny per-backend driver.

SQLite and PostgreSQL differ only in their driver (adapters/sqlite_store.py,
adapters/postgres_store.py): how a connection is had, how a write is serialized, the
`FOR UPDATE` suffix, one JSON lookup, and how integrity errors are named.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol, TypeVar

import msgspec

from adapters import sql_experiments, sql_rollouts
from adapters import sql_rows as rows
from adapters.sql_schema import CREATE_MIGRATIONS_TABLE, MIGRATIONS, statements
from adapters.sql_webhooks import enqueue_webhooks
from contract.windows import TrafficWindow
from registry.catalog import audit
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
    ModelFilter,
    ModelState,
    RememberRequest,
    RenameModel,
    SaveExperiment,
    SaveRollout,
    SetAlias,
    StoredRequest,
    UpdateModel,
    UpdateVersion,
    VersionFilter,
)
from registry.catalog.domain import (
    EXCLUSIVE_STAGES,
    SYSTEM_SCOPE,
    AuditEvent,
    Model,
    ModelVersion,
    Token,
    model_scope,
)
from registry.errors import NotFound
from registry.experiments.stats import Experiment, Tally
from registry.rollouts.state import Look, Rollout
from registry.rollouts.windows import VariantTraffic

T = TypeVar("T")
_latencies = msgspec.json.Decoder(list[float])
# A scalar subquery, not a join: planners then walk the (model_id, version) key in order.
_MODEL_ID = "(SELECT id FROM models WHERE name = ?)"
_VERSION_INSERT_COLUMNS = rows.VERSION_COLUMNS.replace("v.", "")


class SqlConn(Protocol):
    async def execute(self, sql: str, args: Sequence[Any] = ()) -> None: ...

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[rows.Row]: ...


class SqlDriver(Protocol):
    dialect: str
    for_update: str

    def json_text(self, column: str) -> str:
        """SQL for the text value of one key (a `?` parameter) of a JSON object column."""
        ...

    def string_agg(self, expression: str) -> str:
        """SQL aggregating text values with `,` (order unspecified)."""
        ...

    def reading(self) -> AbstractAsyncContextManager[SqlConn]:
        """A connection for reads; each statement sees one consistent snapshot."""
        ...

    def writing(self) -> AbstractAsyncContextManager[SqlConn]:
        """A transaction: committed on normal exit, rolled back on an exception."""
        ...

    async def close(self) -> None: ...


async def _one(conn: SqlConn, sql: str, args: Sequence[Any] = ()) -> rows.Row | None:
    found = await conn.fetch(sql, args)
    return found[0] if found else None


class SqlStore:
    def __init__(self, driver: SqlDriver) -> None:
        self.driver = driver

    # --- schema ---------------------------------------------------------------------------

    async def migrate(self, now: datetime) -> list[int]:
        """Apply the migrations not yet applied; returns their numbers."""
        applied: list[int] = []
        async with self.driver.writing() as conn:
            await conn.execute(CREATE_MIGRATIONS_TABLE)
            if self.driver.dialect == "postgres":
                await conn.execute("SELECT pg_advisory_xact_lock(7244611)")
            done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for number, sql in MIGRATIONS:
                if number in done:
                    continue
                for statement in statements(self.driver.dialect, sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (number, rows.to_micros(now)),
                )
                applied.append(number)
        return applied

    async def close(self) -> None:
        await self.driver.close()

    # --- writes ---------------------------------------------------------------------------

    async def _lock_scope(self, conn: SqlConn, scope: str) -> tuple[int, str]:
        sql = f"SELECT seq, hash FROM audit_heads WHERE scope = ?{self.driver.for_update}"
        head = await _one(conn, sql, (scope,))
        if head is None:
            await conn.execute(
                "INSERT INTO audit_heads (scope, seq, hash) VALUES (?, 0, ?)"
                " ON CONFLICT (scope) DO NOTHING",
                (scope, audit.GENESIS),
            )
            head = await _one(conn, sql, (scope,))
            assert head is not None
        return int(head[0]), str(head[1])

    async def _load(
        self, conn: SqlConn, name: str, spec: LoadSpec
    ) -> tuple[int | None, ModelState]:
        model_row = await _one(
            conn, f"SELECT {rows.MODEL_COLUMNS} FROM models m WHERE name = ?", (name,)
        )
        replay = None
        if spec.idempotency is not None:
            found = await _one(
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
        wanted = list(spec.versions)
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
        model = rows.model_from_row(model_row, aliases)
        rollout = experiment = None
        if spec.rollout:
            rollout = await sql_rollouts.active_for(conn, name)
            experiment = await sql_experiments.running_for(conn, name)
        state = ModelState(model, versions, aliases, replay, rollout, experiment)
        return model_id, state

    async def transact(
        self, model: str, load: LoadSpec, decide: Callable[[ModelState], Decision[T]]
    ) -> T:
        scope = model_scope(model)
        async with self.driver.writing() as conn:
            head = await self._lock_scope(conn, scope)
            model_id, state = await self._load(conn, model, load)
            decision = decide(state)
            if not decision.ops:
                return decision.result
            for op in decision.ops:
                match op:
                    case CreateModel(m):
                        found = await conn.fetch(
                            "INSERT INTO models (name, description, tags, owner, created_at,"
                            " updated_at, revision, latest_version, traffic)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                            " RETURNING id",
                            _model_values(m),
                        )
                        model_id = int(found[0][0])
                    case UpdateModel(m):
                        await conn.execute(
                            "UPDATE models SET description = ?, tags = ?, updated_at = ?,"
                            " revision = ?, latest_version = ?, traffic = ? WHERE id = ?",
                            (
                                *_model_values(m)[1:3],
                                rows.to_micros(m.updated_at),
                                m.revision,
                                m.latest_version,
                                _model_values(m)[8],
                                model_id,
                            ),
                        )
                    case DeleteModel():
                        await conn.execute(
                            "DELETE FROM model_versions WHERE model_id = ?", (model_id,)
                        )
                        await conn.execute("DELETE FROM models WHERE id = ?", (model_id,))
                    case RenameModel(new_name):
                        await conn.execute(
                            "UPDATE models SET name = ? WHERE id = ?", (new_name, model_id)
                        )
                    case CreateVersion(v):
                        await conn.execute(
                            f"INSERT INTO model_versions (model_id, {_VERSION_INSERT_COLUMNS})"
                            f" VALUES (?{', ?' * rows.VERSION_WIDTH})",
                            (model_id, *rows.version_values(v)),
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
                                model_id,
                                v.version,
                            ),
                        )
                    case DeleteVersion(number):
                        await conn.execute(
                            "DELETE FROM model_versions WHERE model_id = ? AND version = ?",
                            (model_id, number),
                        )
                    case SetAlias(alias, number, at):
                        await conn.execute(
                            "INSERT INTO aliases (model_id, alias, version, updated_at)"
                            " VALUES (?, ?, ?, ?) ON CONFLICT (model_id, alias) DO UPDATE"
                            " SET version = excluded.version, updated_at = excluded.updated_at",
                            (model_id, alias, number, rows.to_micros(at)),
                        )
                    case DeleteAlias(alias):
                        await conn.execute(
                            "DELETE FROM aliases WHERE model_id = ? AND alias = ?",
                            (model_id, alias),
                        )
                    case Audit():
                        head = await self._append(conn, scope, head, op)
                    case SaveRollout(rollout):
                        await sql_rollouts.save(conn, rollout)
                    case AppendLook(rollout_id, look):
                        await sql_rollouts.append_look(conn, rollout_id, look)
                    case SaveExperiment(experiment):
                        await sql_experiments.save(conn, experiment)
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
            await conn.execute(
                "UPDATE audit_heads SET seq = ?, hash = ? WHERE scope = ?", (*head, scope)
            )
        return decision.result

    async def _append(
        self, conn: SqlConn, scope: str, head: tuple[int, str], draft: Audit
    ) -> tuple[int, str]:
        event = audit.seal(scope, head[0], head[1], draft)
        await conn.execute(
            f"INSERT INTO audit_events ({rows.AUDIT_COLUMNS}) VALUES (?{', ?' * 13})",
            rows.audit_values(event),
        )
        await enqueue_webhooks(conn, event)  # the outbox: same transaction as the change
        return event.seq, event.hash

    # --- reads: each one statement, so it sees one snapshot without a transaction --------

    def _model_select(self) -> str:
        aliases = self.driver.string_agg("a.alias || '=' || a.version")
        return (
            f"SELECT {rows.MODEL_COLUMNS},"
            f" (SELECT {aliases} FROM aliases a WHERE a.model_id = m.id) FROM models m"
        )

    def _version_select(self, source: str) -> str:
        """Version columns plus their packed aliases, `FROM` the given join."""
        aliases = self.driver.string_agg("a.alias")
        return (
            f"SELECT {rows.VERSION_COLUMNS}, (SELECT {aliases} FROM aliases a"
            " WHERE a.model_id = v.model_id AND a.version = v.version)"
            f" FROM {source}"
        )

    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[rows.Row]:
        async with self.driver.reading() as conn:
            return await conn.fetch(sql, args)

    async def _require_model(self, name: str) -> None:
        if not await self._fetch("SELECT 1 FROM models WHERE name = ?", (name,)):
            raise NotFound(f"registered model {name!r} does not exist", field="name")

    async def get_model(self, name: str) -> Model:
        found = await self._fetch(f"{self._model_select()} WHERE m.name = ?", (name,))
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
            clauses.append(f"{self.driver.json_text('m.tags')} = ?")
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
        found = await self._fetch(
            f"{self._model_select()} WHERE {' AND '.join(clauses)} ORDER BY m.name LIMIT ?",
            [*args, limit],
        )
        return [rows.model_from_row(r) for r in found]

    async def get_version(self, model: str, version: int) -> ModelVersion:
        found = await self._fetch(
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
            clauses.append(f"{self.driver.json_text('v.tags')} = ?")
            args += list(where.tag)
        if where.alias is not None:
            clauses.append(
                "EXISTS (SELECT 1 FROM aliases a WHERE a.model_id = v.model_id"
                " AND a.version = v.version AND a.alias = ?)"
            )
            args.append(where.alias)
        found = await self._fetch(
            f"{self._version_select('model_versions v')} WHERE {' AND '.join(clauses)}"
            " ORDER BY v.version DESC LIMIT ?",
            [*args, limit],
        )
        if not found:
            await self._require_model(model)
        return [rows.version_from_row(model, r) for r in found]

    async def resolve_alias(self, model: str, alias: str) -> ModelVersion:
        found = await self._fetch(
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

    # --- audit ----------------------------------------------------------------------------

    async def events(
        self, scope: str, *, version: int | None, after_seq: int, limit: int
    ) -> list[AuditEvent]:
        where = "scope = ? AND seq > ?"
        args: list[Any] = [scope, after_seq]
        if version is not None:
            where += " AND version = ?"
            args.append(version)
        async with self.driver.reading() as conn:
            found = await conn.fetch(
                f"SELECT {rows.AUDIT_COLUMNS} FROM audit_events WHERE {where} ORDER BY seq LIMIT ?",
                [*args, limit],
            )
        return [rows.audit_from_row(r) for r in found]

    async def last_alias_event(self, scope: str, alias: str, at: datetime) -> AuditEvent | None:
        async with self.driver.reading() as conn:
            found = await _one(
                conn,
                f"SELECT {rows.AUDIT_COLUMNS} FROM audit_events WHERE scope = ? AND alias = ?"
                " AND at <= ? ORDER BY at DESC, seq DESC LIMIT 1",
                (scope, alias, rows.to_micros(at)),
            )
        return None if found is None else rows.audit_from_row(found)

    async def change_count(self) -> int:
        found = await self._fetch("SELECT COALESCE(SUM(seq), 0) FROM audit_heads", ())
        return int(found[0][0])

    async def head(self, scope: str) -> tuple[int, str]:
        async with self.driver.reading() as conn:
            found = await _one(conn, "SELECT seq, hash FROM audit_heads WHERE scope = ?", (scope,))
        return (0, audit.GENESIS) if found is None else (int(found[0]), str(found[1]))

    # --- traffic windows --------------------------------------------------------------------

    async def add_windows(self, source: str, windows: list[TrafficWindow], now: datetime) -> None:
        async with self.driver.writing() as conn:
            for w in windows:
                await conn.execute(
                    "INSERT INTO traffic_windows (model, version, variant, source, received_at,"
                    " requests, errors, latencies_ms, compared, agreed)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (w.model, w.version, w.variant, source, rows.to_micros(now), w.requests,
                     w.errors, rows.dumps(w.latencies_ms), w.compared, w.agreed),
                )  # fmt: skip

    async def prune_windows(self, before: datetime) -> int:
        async with self.driver.writing() as conn:
            gone = await conn.fetch(
                "DELETE FROM traffic_windows WHERE received_at < ? RETURNING id",
                (rows.to_micros(before),),
            )
        return len(gone)

    async def windows(self, model: str, since: datetime) -> list[VariantTraffic]:
        found = await self._fetch(
            "SELECT version, variant, requests, errors, latencies_ms, compared, agreed"
            " FROM traffic_windows WHERE model = ? AND received_at >= ? ORDER BY id",
            (model, rows.to_micros(since)),
        )
        summed: dict[tuple[int, str], tuple[int, int, list[float], int, int]] = {}
        for version, variant, requests, errors, latencies, compared, agreed in found:
            r, e, lat, c, a = summed.get((int(version), variant), (0, 0, [], 0, 0))
            lat.extend(_latencies.decode(latencies))
            summed[(int(version), variant)] = (
                r + int(requests), e + int(errors), lat, c + int(compared), a + int(agreed)
            )  # fmt: skip
        return [
            VariantTraffic(version, variant, r, e, lat, since, c, a)
            for (version, variant), (r, e, lat, c, a) in sorted(summed.items())
        ]

    # --- rollouts -------------------------------------------------------------------------

    async def get_rollout(self, rollout_id: str) -> Rollout:
        async with self.driver.reading() as conn:
            found = await sql_rollouts.get(conn, rollout_id)
        if found is None:
            raise NotFound(f"rollout {rollout_id!r} does not exist", field="id")
        return found

    async def list_rollouts(self, model: str, limit: int) -> list[Rollout]:
        async with self.driver.reading() as conn:
            return await sql_rollouts.of_model(conn, model, limit)

    async def active_rollouts(self) -> list[Rollout]:
        async with self.driver.reading() as conn:
            return await sql_rollouts.active(conn)

    async def rollout_looks(self, rollout_id: str, after: int, limit: int) -> list[Look]:
        async with self.driver.reading() as conn:
            return await sql_rollouts.looks(conn, rollout_id, after, limit)

    # --- experiments ----------------------------------------------------------------------

    async def get_experiment(self, experiment_id: str) -> Experiment:
        async with self.driver.reading() as conn:
            found = await sql_experiments.get(conn, experiment_id)
        if found is None:
            raise NotFound(f"experiment {experiment_id!r} does not exist", field="id")
        return found

    async def list_experiments(self, model: str, limit: int) -> list[Experiment]:
        async with self.driver.reading() as conn:
            return await sql_experiments.of_model(conn, model, limit)

    async def add_outcomes(self, experiment_id: str, tallies: list[Tally]) -> None:
        async with self.driver.writing() as conn:
            await sql_experiments.add(conn, experiment_id, tallies)

    async def outcomes(self, experiment_id: str) -> dict[int, Tally]:
        async with self.driver.reading() as conn:
            return await sql_experiments.tallies(conn, experiment_id)

    # --- tokens ---------------------------------------------------------------------------

    async def _system_event(
        self, conn: SqlConn, now: datetime, actor: str, action: str, token: Token
    ) -> None:
        head = await self._lock_scope(conn, SYSTEM_SCOPE)
        after = msgspec.Raw(rows.dumps(token).encode())
        draft = Audit(at=now, actor=actor, action=action, model=None, after=after)
        head = await self._append(conn, SYSTEM_SCOPE, head, draft)
        await conn.execute(
            "UPDATE audit_heads SET seq = ?, hash = ? WHERE scope = ?", (*head, SYSTEM_SCOPE)
        )

    async def create_token(
        self, name: str, role: str, token_hash: str, prefix: str, created_by: str, now: datetime
    ) -> Token:
        async with self.driver.writing() as conn:
            found = await conn.fetch(
                "INSERT INTO tokens (name, role, token_hash, prefix, created_by, created_at)"
                f" VALUES (?, ?, ?, ?, ?, ?) RETURNING {rows.TOKEN_COLUMNS}",
                (name, role, token_hash, prefix, created_by, rows.to_micros(now)),
            )
            token = rows.token_from_row(found[0])
            await self._system_event(conn, now, created_by, "token.create", token)
        return token

    async def find_token(self, token_hash: str) -> Token | None:
        async with self.driver.reading() as conn:
            found = await _one(
                conn, f"SELECT {rows.TOKEN_COLUMNS} FROM tokens WHERE token_hash = ?", (token_hash,)
            )
        return None if found is None else rows.token_from_row(found)

    async def list_tokens(self) -> list[Token]:
        async with self.driver.reading() as conn:
            found = await conn.fetch(f"SELECT {rows.TOKEN_COLUMNS} FROM tokens ORDER BY id")
        return [rows.token_from_row(r) for r in found]

    async def revoke_token(self, token_id: int, by: str, now: datetime) -> Token:
        async with self.driver.writing() as conn:
            found = await conn.fetch(
                "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?"
                f" RETURNING {rows.TOKEN_COLUMNS}",
                (rows.to_micros(now), token_id),
            )
            if not found:
                raise NotFound(f"token {token_id} does not exist", field="id")
            token = rows.token_from_row(found[0])
            await self._system_event(conn, now, by, "token.revoke", token)
        return token


def _held_by(aliases: dict[str, int]) -> dict[int, list[str]]:
    held: dict[int, list[str]] = {}
    for alias, number in sorted(aliases.items()):
        held.setdefault(number, []).append(alias)
    return held


def _model_values(m: Model) -> tuple[Any, ...]:
    return (
        m.name,
        m.description,
        rows.dumps(m.tags),
        m.owner,
        rows.to_micros(m.created_at),
        rows.to_micros(m.updated_at),
        m.revision,
        m.latest_version,
        None if m.traffic is None else rows.dumps(m.traffic),
    )
