"""Webhook payloads from real rule decisions, MLflow 3's signature, and the delivery worker
driven with a fake outbox and sender (through their Protocols)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature

from registry.catalog import audit
from registry.catalog.aliases import set_alias
from registry.catalog.changes import Audit, ModelState, WriteContext
from registry.catalog.commands import AliasChange, ModelCreate, SourceVersionCreate, StageChange
from registry.catalog.domain import AuditEvent, Principal, Role
from registry.catalog.models import create_model
from registry.catalog.stages import transition_stage
from registry.catalog.versions import register_source_version, set_version_tag
from registry.webhooks.delivery import LEASE_S, WebhookWorker, lease_for
from registry.webhooks.events import (
    MAX_ATTEMPTS,
    Due,
    Secret,
    headers,
    outbox_event,
    retry_delay,
    should_retry,
    sign,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CTX = WriteContext(principal=Principal(1, "ana", Role.ADMIN), now=NOW)


def events(ops: list[object]) -> list[AuditEvent]:
    drafts = [op for op in ops if isinstance(op, Audit)]
    return [audit.seal("model:iris", i, audit.GENESIS, d) for i, d in enumerate(drafts)]


def payloads(ops: list[object]) -> list[dict[str, object]]:
    found = [outbox_event(e) for e in events(ops)]
    return [json.loads(f.payload) for f in found if f is not None]


def test_signature_is_mlflows() -> None:
    body = b'{"entity": "model_version", "action": "created"}'
    ours = sign("s3cr3t", "d-1", "1700000000", body)
    assert ours == _generate_hmac_signature("s3cr3t", "d-1", "1700000000", body.decode())
    due = Due(1, "d-1", "http://x", Secret("s3cr3t"), body, 0)
    sent = headers(due, 1700000000)
    assert sent["X-MLflow-Signature"] == ours and sent["X-MLflow-Delivery-Id"] == "d-1"
    assert sent["X-MLflow-Timestamp"] == "1700000000"
    unsigned = headers(Due(1, "d-1", "http://x", Secret(""), body, 0), 1)
    assert "X-MLflow-Signature" not in unsigned


def test_secret_never_prints() -> None:
    due = Due(1, "d", "http://x", Secret("hunter2-secret"), b"{}", 0)
    assert "hunter2" not in repr(due) and "hunter2" not in str(due.secret)


def test_payloads_from_rule_decisions() -> None:
    empty = ModelState(model=None, versions={}, aliases={})
    made = create_model(empty, CTX, ModelCreate(name="iris", tags={"a": "b"}))
    (created,) = payloads(list(made.ops))
    assert created["entity"] == "registered_model" and created["action"] == "created"
    assert created["data"] == {"name": "iris", "tags": {"a": "b"}, "description": None}
    assert created["timestamp"] == NOW.isoformat()

    state = ModelState(model=made.result, versions={}, aliases={})
    cmd = SourceVersionCreate(source="s3://b/m", run_id="r", tags={"t": "1"})
    v1 = register_source_version(state, CTX, "iris", cmd, NOW - timedelta(minutes=1))
    (vc,) = payloads(list(v1.ops))
    assert vc["data"] == {
        "name": "iris",
        "version": "1",
        "source": "s3://b/m",
        "run_id": "r",
        "tags": {"t": "1"},
        "description": None,
    }
    assert v1.result is not None
    model = v1.ops[0].model  # type: ignore[union-attr]
    state = ModelState(model=model, versions={1: v1.result}, aliases={})
    tag = set_version_tag(state, CTX, "iris", 1, "k", "v", None)
    assert payloads(list(tag.ops))[0]["data"] == {
        "name": "iris",
        "version": "1",
        "key": "k",
        "value": "v",
    }
    alias = set_alias(state, CTX, "iris", "champion", AliasChange(version=1), None)
    (ac,) = payloads(list(alias.ops))
    assert (ac["entity"], ac["action"]) == ("model_version_alias", "created")
    assert ac["data"] == {"name": "iris", "alias": "champion", "version": "1"}
    moved = transition_stage(
        state, CTX, "iris", 1, StageChange(stage="Production", archive_existing=True), None
    )
    (tr,) = payloads(list(moved.ops))
    assert tr["entity"] == "model_version_stage" and tr["action"] == "transitioned"
    assert tr["data"]["to_stage"] == "Production" and tr["data"]["from_stage"] == "None"  # type: ignore[index]


def test_a_repeated_source_registration_returns_the_first_version() -> None:
    empty = ModelState(model=None, versions={}, aliases={})
    model = create_model(empty, CTX, ModelCreate(name="iris")).result
    cmd = SourceVersionCreate(source="s3://b/m")
    first = register_source_version(
        ModelState(model=model, versions={}, aliases={}), CTX, "iris", cmd, NOW
    )
    assert first.result is not None
    bumped = first.ops[0].model  # type: ignore[union-attr]
    state = ModelState(model=bumped, versions={1: first.result}, aliases={})
    later = WriteContext(principal=CTX.principal, now=NOW + timedelta(seconds=5))
    again = register_source_version(state, later, "iris", cmd, NOW)
    assert again.ops == [] and again.result == first.result
    other = register_source_version(state, later, "iris", cmd, NOW + timedelta(seconds=1))
    assert other.result is not None and other.result.version == 2, "outside the window: new"
    changed = SourceVersionCreate(source="s3://b/m", description="x")
    assert register_source_version(state, later, "iris", changed, NOW).result.version == 2  # type: ignore[union-attr]


def test_retry_policy() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay(30) == 300.0
    assert should_retry(None) and should_retry(500) and should_retry(503) and should_retry(429)
    assert not should_retry(400) and not should_retry(404) and should_retry(408)


class FakeOutbox:
    def __init__(self, rows: list[Due]) -> None:
        self.rows = {r.id: r for r in rows}
        self.done: dict[int, int] = {}
        self.failed: list[tuple[int, int | None, datetime | None]] = []
        self.leases: list[timedelta] = []

    async def claim(self, now: datetime, lease_until: datetime, limit: int) -> list[Due]:
        self.leases.append(lease_until - now)
        due = list(self.rows.values())[:limit]
        self.rows.clear()
        return due

    async def delivered(self, row_id: int, status: int, now: datetime) -> None:
        self.done[row_id] = status

    async def attempt_failed(
        self, row_id: int, status: int | None, error: str, retry_at: datetime | None
    ) -> None:
        self.failed.append((row_id, status, retry_at))


class FakeSender:
    def __init__(self, answers: dict[str, int | None]) -> None:
        self.answers = answers
        self.sent: list[tuple[str, dict[str, str]]] = []

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        self.sent.append((url, headers))
        answer = self.answers[url]
        if answer is None:
            raise OSError("connection refused")
        return answer


async def test_worker_records_each_outcome() -> None:
    rows = [
        Due(1, "a", "http://ok", Secret("s"), b"{}", 0),
        Due(2, "b", "http://down", Secret("s"), b"{}", 0),
        Due(3, "c", "http://broken", Secret("s"), b"{}", 2),
        Due(4, "d", "http://rejects", Secret("s"), b"{}", 0),
        Due(5, "e", "http://broken", Secret("s"), b"{}", MAX_ATTEMPTS - 1),
    ]
    outbox = FakeOutbox(rows)
    answers = {"http://ok": 204, "http://down": None, "http://broken": 500, "http://rejects": 410}
    sender = FakeSender(answers)
    worker = WebhookWorker(outbox, sender, clock=lambda: NOW)
    assert await worker.run_once() == 5
    assert outbox.done == {1: 204}
    failed = {row: (status, at) for row, status, at in outbox.failed}
    assert failed[2] == (None, NOW + timedelta(seconds=1))
    assert failed[3] == (500, NOW + timedelta(seconds=4)), "third failure waits 4 s"
    assert failed[4] == (410, None), "a 4xx gives up"
    assert failed[5] == (500, None), "the last attempt gives up"
    assert all(h["X-MLflow-Signature"].startswith("v1,") for _, h in sender.sent)
    assert await worker.run_once() == 0


async def test_the_lease_outlasts_the_sender_timeout() -> None:
    outbox = FakeOutbox([Due(1, "a", "http://ok", Secret("s"), b"{}", 0)])
    worker = WebhookWorker(
        outbox, FakeSender({"http://ok": 200}), clock=lambda: NOW, lease_s=lease_for(2.0)
    )
    assert await worker.run_once() == 1
    assert outbox.leases == [timedelta(seconds=5)]
    assert lease_for(10.0) == LEASE_S  # the default sender timeout, the default lease


async def test_worker_loop_wakes_on_commit_and_stops() -> None:
    outbox = FakeOutbox([])
    sender = FakeSender({"http://ok": 200})
    worker = WebhookWorker(outbox, sender, clock=lambda: NOW, poll_s=60)
    worker.start()
    await asyncio.sleep(0.01)
    outbox.rows[7] = Due(7, "x", "http://ok", Secret(""), b"{}", 0)
    worker.wake("iris")
    for _ in range(100):
        if outbox.done:
            break
        await asyncio.sleep(0.01)
    await worker.close()
    assert outbox.done == {7: 200}


@pytest.mark.parametrize("action", ["model.update", "token.create", "model.traffic"])
def test_events_without_a_webhook_kind_are_skipped(action: str) -> None:
    draft = Audit(at=NOW, actor="a", action=action, model="iris")
    assert outbox_event(audit.seal("model:iris", 0, audit.GENESIS, draft)) is None
