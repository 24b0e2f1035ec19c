"""Webhook subscriptions and the durable outbox, in portable SQL.

`enqueue_webhooks` runs inside a registry write's transaction (called where an audit event is
appended, adapters/sql/audit.py): one outbox row per active webhook subscribed to the event, so
a change and its notifications commit together or not at all. `SqlWebhooks` serves the admin API
and the delivery worker: claim due rows under a lease (several replicas never post the same row
at once), then record each outcome.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from adapters.sql.driver import OnDriver, Row, SqlConn
from adapters.sql.rows import from_micros, to_micros
from registry.catalog.domain import AuditEvent
from registry.errors import NotFound
from registry.ports import WebhookOutbox, WebhookStore
from registry.webhooks.events import Due, OutboxEvent, Secret, Webhook, outbox_event

_events = msgspec.json.Decoder(list[str])
_enc = msgspec.json.Encoder()
_WEBHOOK_COLUMNS = "id, name, url, events, status, description, created_at, updated_at, secret"


async def enqueue_webhooks(conn: SqlConn, event: AuditEvent) -> None:
    found = outbox_event(event)
    if found is None:
        return
    for webhook_id, events in await conn.fetch(
        "SELECT id, events FROM webhooks WHERE status = 'ACTIVE'"
    ):
        if found.event in _events.decode(events):
            await _insert(conn, webhook_id, found, event)


async def _insert(conn: SqlConn, webhook_id: str, found: OutboxEvent, event: AuditEvent) -> None:
    at = to_micros(event.at)
    await conn.execute(
        "INSERT INTO webhook_outbox (webhook_id, delivery_id, event, payload, scope, seq,"
        " created_at, attempts, next_attempt_at, lease_until)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, 0)",
        (
            webhook_id,
            str(uuid.uuid4()),
            found.event,
            found.payload.decode(),
            event.scope,
            event.seq,
            at,
            at,
        ),
    )


def _webhook(row: Row) -> Webhook:
    return Webhook(
        id=row[0],
        name=row[1],
        url=row[2],
        events=_events.decode(row[3]),
        status=row[4],
        description=row[5],
        created_at=from_micros(int(row[6])),
        updated_at=from_micros(int(row[7])),
        has_secret=bool(row[8]),
    )


class SqlWebhooks(OnDriver, WebhookStore, WebhookOutbox):
    async def create_webhook(self, webhook: Webhook, secret: Secret) -> Webhook:
        async with self.driver.writing() as conn:
            await conn.execute(
                f"INSERT INTO webhooks ({_WEBHOOK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    webhook.id,
                    webhook.name,
                    webhook.url,
                    _enc.encode(webhook.events).decode(),
                    webhook.status,
                    webhook.description,
                    to_micros(webhook.created_at),
                    to_micros(webhook.updated_at),
                    secret.reveal(),
                ),
            )
        return msgspec.structs.replace(webhook, has_secret=bool(secret))

    async def list_webhooks(self, offset: int, limit: int) -> list[Webhook]:
        found = await self._read(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, id LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [_webhook(r) for r in found]

    async def get_webhook(self, webhook_id: str) -> Webhook:
        found = await self._read(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?", (webhook_id,)
        )
        if not found:
            raise NotFound(f"webhook {webhook_id!r} does not exist", field="webhook_id")
        return _webhook(found[0])

    async def delete_webhook(self, webhook_id: str) -> None:
        """Delete the subscription; its undelivered rows go with it."""
        async with self.driver.writing() as conn:
            gone = await conn.fetch("DELETE FROM webhooks WHERE id = ? RETURNING id", (webhook_id,))
            if not gone:
                raise NotFound(f"webhook {webhook_id!r} does not exist", field="webhook_id")
            await conn.execute(
                "DELETE FROM webhook_outbox WHERE webhook_id = ? AND delivered_at IS NULL",
                (webhook_id,),
            )

    async def claim(self, now: datetime, lease_until: datetime, limit: int) -> list[Due]:
        """Lease up to `limit` rows that are due, oldest first."""
        skip = self.driver.dialect.skip_locked
        async with self.driver.writing() as conn:
            ids = await conn.fetch(
                "UPDATE webhook_outbox SET lease_until = ? WHERE id IN (SELECT id FROM"
                " webhook_outbox WHERE delivered_at IS NULL AND failed_at IS NULL"
                f" AND next_attempt_at <= ? AND lease_until <= ? ORDER BY id LIMIT ?{skip})"
                " RETURNING id",
                (to_micros(lease_until), to_micros(now), to_micros(now), limit),
            )
            if not ids:
                return []
            marks = ", ".join("?" * len(ids))
            found = await conn.fetch(
                "SELECT o.id, o.delivery_id, w.url, w.secret, o.payload, o.attempts"
                " FROM webhook_outbox o JOIN webhooks w ON w.id = o.webhook_id"
                f" WHERE o.id IN ({marks}) ORDER BY o.id",
                [r[0] for r in ids],
            )
        return [Due(int(r[0]), r[1], r[2], Secret(r[3]), r[4].encode(), int(r[5])) for r in found]

    async def delivered(self, row_id: int, status: int, now: datetime) -> None:
        async with self.driver.writing() as conn:
            await conn.execute(
                "UPDATE webhook_outbox SET delivered_at = ?, attempts = attempts + 1,"
                " last_status = ?, last_error = NULL, lease_until = 0 WHERE id = ?",
                (to_micros(now), status, row_id),
            )

    async def attempt_failed(
        self, row_id: int, status: int | None, error: str, retry_at: datetime | None
    ) -> None:
        """Record a failed try; `retry_at` None gives up on the row."""
        async with self.driver.writing() as conn:
            if retry_at is None:
                await conn.execute(
                    "UPDATE webhook_outbox SET failed_at = next_attempt_at,"
                    " attempts = attempts + 1, last_status = ?, last_error = ?, lease_until = 0"
                    " WHERE id = ?",
                    (status, error[:1000], row_id),
                )
                return
            await conn.execute(
                "UPDATE webhook_outbox SET next_attempt_at = ?, attempts = attempts + 1,"
                " last_status = ?, last_error = ?, lease_until = 0 WHERE id = ?",
                (to_micros(retry_at), status, error[:1000], row_id),
            )

    async def pending(self) -> int:
        found = await self._read(
            "SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL AND failed_at IS NULL"
        )
        return int(found[0][0])
