"""The gateway's weighted split in-process (`modelyard serve` built by create_app, in front of
two small upstreams): requests without a sticky key follow the model's draw sequence, so the
ones the splits decide split within three requests of the weight, with pinned requests and
sticky keys mixed in between them (those take no draw)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.settings import load_settings
from tests.integration.test_tracing import ADMIN, ROWS, iris_on_echoes, set_traffic


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Any]:
    settings = load_settings(
        {}, data_dir=str(tmp_path), admin_token=ADMIN, deployer="none", grpc_port=0
    )
    async with iris_on_echoes(settings) as c:
        yield c


async def test_unkeyed_requests_split_within_three_of_the_weight(client: Any) -> None:
    """At random, the 10 % canary's count over 200 decided requests would stray by about 4 at
    one sigma; here every prefix of them stays within 3 of 10 %."""
    policy = {"splits": [{"version": 2, "weight": 10}], "sticky": {"header": "x-user"}}
    await set_traffic(client, policy)
    decided: list[str] = []
    pinned: list[str] = []
    for i in range(400):
        headers = {}
        if i % 4 == 1:
            headers = {"x-modelyard-version": "1"}
        elif i % 4 == 3:
            headers = {"x-user": f"user-{i}"}
        r = await client.post("/models/iris/classify", json=ROWS, headers=headers)
        assert r.status_code == 200, r.text
        version = r.headers["x-modelyard-version"]
        if not headers:
            decided.append(version)
        elif "x-modelyard-version" in headers:
            pinned.append(version)
    assert set(pinned) == {"1"} and len(decided) == 200
    canary = 0
    for n, version in enumerate(decided, 1):
        canary += version == "2"
        assert abs(canary - n / 10) <= 3, (n, canary)
