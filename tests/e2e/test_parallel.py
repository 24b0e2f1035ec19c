"""Real parallel requests against real `modelyard registry` processes (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from modelyard.processes import ModelyardProcess
from tests.e2e.conftest import Factory

pytestmark = pytest.mark.e2e

DIGEST = "sha256:" + "12" * 32
VERSION = {"artifact_uri": "s3://bucket/m.bento", "digest": DIGEST, "size_bytes": 1}
PROMOTE = {"stage": "Production", "archive_existing": True}


def client(proc: ModelyardProcess, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=proc.url,
        headers={"Authorization": f"Bearer {token}"},
        limits=httpx.Limits(max_connections=64),
        timeout=30,
    )


async def setup_model(c: httpx.AsyncClient, name: str, versions: int) -> None:
    assert (await c.post("/api/v1/models", json={"name": name})).status_code == 201
    for _ in range(versions):
        assert (await c.post(f"/api/v1/models/{name}/versions", json=VERSION)).status_code == 201


async def production(c: httpx.AsyncClient, name: str) -> list[int]:
    r = await c.get(f"/api/v1/models/{name}/versions", params={"stage": "Production"})
    return [v["version"] for v in r.json()["items"]]


async def test_64_parallel_promotions_leave_one_production(
    server: Factory, admin_token: str
) -> None:
    proc = server()
    proc.start()
    async with client(proc, admin_token) as c:
        await setup_model(c, "iris", 8)
        calls = [
            c.post(f"/api/v1/models/iris/versions/{1 + i % 8}/stage", json=PROMOTE)
            for i in range(64)
        ]
        answers = await asyncio.gather(*calls)
        assert [r.status_code for r in answers] == [200] * 64
        assert len(await production(c, "iris")) == 1
        verify = (await c.get("/api/v1/models/iris/audit/verify")).json()
        assert verify["ok"], verify


async def test_64_parallel_creates_are_numbered_1_to_64(server: Factory, admin_token: str) -> None:
    proc = server()
    proc.start()
    async with client(proc, admin_token) as c:
        await setup_model(c, "iris", 0)
        answers = await asyncio.gather(
            *(c.post("/api/v1/models/iris/versions", json=VERSION) for _ in range(64))
        )
        assert sorted(r.json()["version"] for r in answers) == list(range(1, 65))
        listed = (await c.get("/api/v1/models/iris/versions", params={"limit": 100})).json()
        assert [v["version"] for v in listed["items"]] == list(range(64, 0, -1))


async def test_two_replicas_share_one_production(
    replicas: list[ModelyardProcess], admin_token: str
) -> None:
    """Two registry processes on one PostgreSQL database: the lock is in the database."""
    first, second = replicas
    async with client(first, admin_token) as a, client(second, admin_token) as b:
        await setup_model(a, "iris", 8)
        calls = [
            (a if i % 2 else b).post(
                f"/api/v1/models/iris/versions/{1 + i % 8}/stage", json=PROMOTE
            )
            for i in range(64)
        ]
        answers = await asyncio.gather(*calls)
        assert [r.status_code for r in answers] == [200] * 64
        assert len(await production(a, "iris")) == 1
        assert await production(a, "iris") == await production(b, "iris")
        created = await asyncio.gather(
            *(
                (a if i % 2 else b).post("/api/v1/models/iris/versions", json=VERSION)
                for i in range(32)
            )
        )
        assert sorted(r.json()["version"] for r in created) == list(range(9, 41))
