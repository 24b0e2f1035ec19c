"""kill -9 in the middle of a stream of writes loses no write the server acknowledged."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest

from tests.e2e.conftest import Factory

pytestmark = pytest.mark.e2e

WRITERS = 8
KILL_AFTER = 120  # acknowledged creates before the kill; writes keep flowing while it lands


def digest(i: int) -> str:
    return "sha256:" + hashlib.sha256(str(i).encode()).hexdigest()


async def test_kill_9_loses_no_acknowledged_write(server: Factory, admin_token: str) -> None:
    proc = server()
    proc.start()
    headers = {"Authorization": f"Bearer {admin_token}"}
    acked: dict[int, str] = {}  # version -> digest the server confirmed
    alias_acked: list[int] = []
    killed = asyncio.Event()

    async with httpx.AsyncClient(base_url=proc.url, headers=headers, timeout=10) as c:
        assert (await c.post("/api/v1/models", json={"name": "iris"})).status_code == 201

        async def writer(w: int) -> None:
            i = 0
            while not killed.is_set():
                i += 1
                body = {"artifact_uri": f"s3://b/{w}-{i}", "digest": digest(w * 100_000 + i)}
                try:
                    r = await c.post("/api/v1/models/iris/versions", json=body)
                except httpx.TransportError:
                    return
                assert r.status_code == 201, r.text
                acked[r.json()["version"]] = body["digest"]
                try:
                    r = await c.put(
                        "/api/v1/models/iris/aliases/champion",
                        json={"version": r.json()["version"]},
                    )
                except httpx.TransportError:
                    return
                assert r.status_code == 200, r.text
                if w == 0:
                    alias_acked.append(r.json()["version"])
                if len(acked) >= KILL_AFTER and not killed.is_set():
                    killed.set()
                    proc.kill9()

        await asyncio.wait_for(asyncio.gather(*(writer(w) for w in range(WRITERS))), timeout=120)

    assert killed.is_set() and len(acked) >= KILL_AFTER
    proc.start()
    async with httpx.AsyncClient(base_url=proc.url, headers=headers, timeout=10) as c:
        found: dict[int, str] = {}
        cursor = None
        while True:
            params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = (await c.get("/api/v1/models/iris/versions", params=params)).json()
            found |= {v["version"]: v["digest"] for v in page["items"]}
            if (cursor := page["next_cursor"]) is None:
                break
        lost = {v: d for v, d in acked.items() if found.get(v) != d}
        assert not lost, f"acknowledged writes lost after kill -9: {sorted(lost)[:10]}"
        model = (await c.get("/api/v1/models/iris")).json()
        assert sorted(found) == list(range(1, model["latest_version"] + 1)), "half-written version"
        verify = (await c.get("/api/v1/models/iris/audit/verify")).json()
        assert verify["ok"], verify
        assert model["aliases"]["champion"] in found
