"""The audit log in SQL: one hash chain per scope (a model, or the system), its head in
`audit_heads` and its events in `audit_events`.

A write locks its scope's head first (`lock_head`: with `FOR UPDATE` on PostgreSQL, inside the
single writer's transaction on SQLite), so writes to one model are serialized on every replica;
it appends its events (`append`, which also fills the webhook outbox in the same transaction)
and stores the new head (`save_head`) before it commits. `SqlAudit` reads the chains.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from adapters.sql import rows
from adapters.sql.driver import Dialect, OnDriver, SqlConn, fetch_one
from adapters.sql.webhooks import enqueue_webhooks
from registry.catalog import audit
from registry.catalog.changes import Audit
from registry.catalog.domain import AuditEvent
from registry.ports import AuditLog

Head = tuple[int, str]  # (seq, hash) of the chain's last event


async def lock_head(conn: SqlConn, dialect: Dialect, scope: str) -> Head:
    """The head of `scope`'s chain (made on first use), locked until the transaction ends."""
    sql = f"SELECT seq, hash FROM audit_heads WHERE scope = ?{dialect.for_update}"
    head = await fetch_one(conn, sql, (scope,))
    if head is None:
        await conn.execute(
            "INSERT INTO audit_heads (scope, seq, hash) VALUES (?, 0, ?)"
            " ON CONFLICT (scope) DO NOTHING",
            (scope, audit.GENESIS),
        )
        head = await fetch_one(conn, sql, (scope,))
        assert head is not None
    return int(head[0]), str(head[1])


async def append(conn: SqlConn, scope: str, head: Head, draft: Audit) -> Head:
    """Seal `draft` onto the chain after `head`; returns the new head."""
    event = audit.seal(scope, head[0], head[1], draft)
    await conn.execute(
        f"INSERT INTO audit_events ({rows.AUDIT_COLUMNS}) VALUES (?{', ?' * 13})",
        rows.audit_values(event),
    )
    await enqueue_webhooks(conn, event)  # the outbox: same transaction as the change
    return event.seq, event.hash


async def save_head(conn: SqlConn, scope: str, head: Head, clock: int | None = None) -> None:
    """Store the chain's new head; with `clock`, stamp it for the route feed (routes.py)."""
    if clock is None:
        await conn.execute(
            "UPDATE audit_heads SET seq = ?, hash = ? WHERE scope = ?", (*head, scope)
        )
        return
    await conn.execute(
        "UPDATE audit_heads SET seq = ?, hash = ?, clock = ? WHERE scope = ?",
        (*head, clock, scope),
    )


async def stamp(conn: SqlConn, scope: str, clock: int) -> None:
    """Stamp `scope`'s head (made if it has none yet) with `clock` without adding an event."""
    await conn.execute(
        "INSERT INTO audit_heads (scope, seq, hash, clock) VALUES (?, 0, ?, ?)"
        " ON CONFLICT (scope) DO UPDATE SET clock = excluded.clock",
        (scope, audit.GENESIS, clock),
    )


class SqlAudit(OnDriver, AuditLog):
    async def events(
        self, scope: str, *, version: int | None, after_seq: int, limit: int
    ) -> list[AuditEvent]:
        where = "scope = ? AND seq > ?"
        args: list[Any] = [scope, after_seq]
        if version is not None:
            where += " AND version = ?"
            args.append(version)
        found = await self._read(
            f"SELECT {rows.AUDIT_COLUMNS} FROM audit_events WHERE {where} ORDER BY seq LIMIT ?",
            [*args, limit],
        )
        return [rows.audit_from_row(r) for r in found]

    async def last_alias_event(self, scope: str, alias: str, at: datetime) -> AuditEvent | None:
        found = await self._read(
            f"SELECT {rows.AUDIT_COLUMNS} FROM audit_events WHERE scope = ? AND alias = ?"
            " AND at <= ? ORDER BY at DESC, seq DESC LIMIT 1",
            (scope, alias, rows.to_micros(at)),
        )
        return rows.audit_from_row(found[0]) if found else None

    async def change_count(self) -> int:
        found = await self._read("SELECT COALESCE(SUM(seq), 0) FROM audit_heads")
        return int(found[0][0])

    async def head(self, scope: str) -> Head:
        found = await self._read("SELECT seq, hash FROM audit_heads WHERE scope = ?", (scope,))
        return (int(found[0][0]), str(found[0][1])) if found else (0, audit.GENESIS)
