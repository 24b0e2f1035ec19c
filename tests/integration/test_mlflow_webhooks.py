"""Webhooks end to end in-process: the admin API, the outbox filled by real writes on both
stores, and real deliveries (signed as MLflow 3 signs them) to a local receiver."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from modelyard.app import create_app
from modelyard.settings import load_settings
from tests.webhook_receiver import Receiver, webhook_receiver

ADMIN = "admin-token-for-tests-0123456789abcdef"
SECRET = "whsec-test-secret-value"
API = "/api/2.0/mlflow"
Client = AsyncTestClient[Any]
ALL_EVENTS = [
    {"entity": "MODEL_VERSION", "action": "CREATED"},
    {"entity": "REGISTERED_MODEL", "action": "CREATED"},
    {"entity": "MODEL_VERSION_TAG", "action": "SET"},
    {"entity": "MODEL_VERSION_TAG", "action": "DELETED"},
    {"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"},
    {"entity": "MODEL_VERSION_ALIAS", "action": "DELETED"},
    {"entity": "MODEL_VERSION_STAGE", "action": "TRANSITIONED"},
]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as r:
        yield r


@pytest.fixture
async def client(store_url: str, tmp_path: Path) -> AsyncIterator[Client]:
    settings = load_settings(
        {}, data_dir=str(tmp_path), database_url=store_url, admin_token=ADMIN, max_body_bytes=65536
    )
    async with AsyncTestClient(app=create_app(settings, "registry")) as c:
        c.headers.update({"Authorization": f"Bearer {ADMIN}"})
        yield c


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's side, as MLflow documents it."""
    signed = f"{headers['x-mlflow-delivery-id']}.{headers['x-mlflow-timestamp']}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(digest).decode()
    return hmac.compare_digest(expected, headers["x-mlflow-signature"])


async def hook(client: Client, url: str, events: list[dict[str, str]], **extra: Any) -> str:
    body = {"name": "ci", "url": url, "events": events, "secret": SECRET, **extra}
    r = await client.post(f"{API}/webhooks", json=body)
    assert r.status_code == 200, r.text
    assert SECRET not in r.text
    return str(r.json()["webhook"]["webhook_id"])


async def test_webhook_api_is_admin_only_and_hides_the_secret(
    client: Client, receiver: Receiver
) -> None:
    webhook_id = await hook(client, receiver.url, ALL_EVENTS[:2], description="d")
    listed = await client.get(f"{API}/webhooks")
    assert [w["webhook_id"] for w in listed.json()["webhooks"]] == [webhook_id]
    got = (await client.get(f"{API}/webhooks/{webhook_id}")).json()["webhook"]
    assert got["events"] == [
        {"entity": "MODEL_VERSION", "action": "CREATED"},
        {"entity": "REGISTERED_MODEL", "action": "CREATED"},
    ]
    assert got["status"] == "ACTIVE" and "secret" not in got
    assert SECRET not in listed.text
    r = await client.post("/api/v1/tokens", json={"name": "dep", "role": "deployer"})
    deployer = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await client.get(f"{API}/webhooks", headers=deployer)
    assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED"
    bad = {"name": "x", "url": receiver.url, "events": [{"entity": "RUN", "action": "CREATED"}]}
    r = await client.post(f"{API}/webhooks", json=bad)
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    r = await client.post(f"{API}/webhooks", json={**bad, "url": "ftp://x", "events": ALL_EVENTS})
    assert r.status_code == 400
    r = await client.request("DELETE", f"{API}/webhooks/{webhook_id}")
    assert r.status_code == 200 and r.json() == {}
    r = await client.get(f"{API}/webhooks/{webhook_id}")
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


async def test_changes_are_delivered_signed_in_mlflow_format(
    client: Client, receiver: Receiver
) -> None:
    await hook(client, receiver.url, ALL_EVENTS)

    async def call(method: str, path: str, body: dict[str, Any]) -> None:
        r = await client.request(method, f"{API}/{path}", json=body)
        assert r.status_code == 200, r.text

    await call(
        "POST", "registered-models/create", {"name": "iris", "tags": [{"key": "a", "value": "b"}]}
    )
    await call(
        "POST", "model-versions/create", {"name": "iris", "source": "s3://b/1", "run_id": "r1"}
    )
    await call("POST", "model-versions/create", {"name": "iris", "source": "s3://b/2"})
    await call(
        "POST", "model-versions/set-tag", {"name": "iris", "version": "1", "key": "k", "value": "v"}
    )
    await call("DELETE", "model-versions/delete-tag", {"name": "iris", "version": "1", "key": "k"})
    await call(
        "POST", "registered-models/alias", {"name": "iris", "alias": "champion", "version": "2"}
    )
    await call("DELETE", "registered-models/alias", {"name": "iris", "alias": "champion"})
    stage = {"name": "iris", "stage": "Production", "archive_existing_versions": True}
    await call("POST", "model-versions/transition-stage", {**stage, "version": "1"})
    await call("POST", "model-versions/transition-stage", {**stage, "version": "2"})
    # the native API's changes are the same events
    r = await client.put("/api/v1/models/iris/versions/2/tags/native", json={"value": "yes"})
    assert r.status_code == 200

    got = receiver.wait_for(11)
    assert len(got) == 11, [d.json for d in got]
    assert all(verify(SECRET, d.headers, d.body) for d in got)
    assert all(d.headers["content-type"] == "application/json" for d in got)
    events = [(d.json["entity"], d.json["action"], d.json["data"]) for d in got]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for entity, action, data in events:
        by_kind.setdefault(f"{entity}.{action}", []).append(data)
    assert by_kind["registered_model.created"] == [
        {"name": "iris", "tags": {"a": "b"}, "description": None}
    ]
    # posted concurrently (docs/mlflow.md): the two versions' events may arrive in either order
    created = sorted(by_kind["model_version.created"], key=lambda d: d["version"])
    assert created == [
        {
            "name": "iris",
            "version": "1",
            "source": "s3://b/1",
            "run_id": "r1",
            "tags": {},
            "description": None,
        },
        {
            "name": "iris",
            "version": "2",
            "source": "s3://b/2",
            "run_id": None,
            "tags": {},
            "description": None,
        },
    ]
    assert {"name": "iris", "version": "1", "key": "k", "value": "v"} in by_kind[
        "model_version_tag.set"
    ]
    assert {"name": "iris", "version": "2", "key": "native", "value": "yes"} in by_kind[
        "model_version_tag.set"
    ]
    assert by_kind["model_version_tag.deleted"] == [{"name": "iris", "version": "1", "key": "k"}]
    assert by_kind["model_version_alias.created"] == [
        {"name": "iris", "alias": "champion", "version": "2"}
    ]
    assert by_kind["model_version_alias.deleted"] == [{"name": "iris", "alias": "champion"}]
    moves = {(s["version"], s["to_stage"]) for s in by_kind["model_version_stage.transitioned"]}
    assert moves == {("1", "Production"), ("1", "Archived"), ("2", "Production")}
    assert all(d.json["timestamp"] for d in got)


async def test_failed_deliveries_are_retried_with_the_same_id(
    client: Client, receiver: Receiver
) -> None:
    await hook(client, receiver.url, [{"entity": "REGISTERED_MODEL", "action": "CREATED"}])
    receiver.status = 503
    r = await client.post(f"{API}/registered-models/create", json={"name": "iris"})
    assert r.status_code == 200
    for _ in range(200):
        if len(receiver.attempts) >= 2:
            break
        await asyncio.sleep(0.05)
    receiver.status = 200
    (delivered,) = receiver.wait_for(1, timeout=20)
    ids = {a.headers["x-mlflow-delivery-id"] for a in receiver.attempts}
    assert len(receiver.attempts) >= 3 and ids == {delivered.headers["x-mlflow-delivery-id"]}
    assert verify(SECRET, delivered.headers, delivered.body)


async def test_unsubscribed_and_disabled_webhooks_get_nothing(
    client: Client, receiver: Receiver
) -> None:
    await hook(client, receiver.url, [{"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}])
    await hook(client, receiver.url, ALL_EVENTS, status="DISABLED")
    r = await client.post(f"{API}/registered-models/create", json={"name": "iris"})
    assert r.status_code == 200
    r = await client.post(f"{API}/model-versions/create", json={"name": "iris", "source": "s3://x"})
    assert r.status_code == 200
    r = await client.post(
        f"{API}/registered-models/alias", json={"name": "iris", "alias": "a", "version": "1"}
    )
    assert r.status_code == 200
    (only,) = receiver.wait_for(1)
    assert (only.json["entity"], only.json["action"]) == ("model_version_alias", "created")
    await asyncio.sleep(1.5)
    assert len(receiver.accepted()) == 1
