"""Fixtures of the in-process API tests that steer traffic (rollouts, experiments)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from modelyard.app import create_app
from modelyard.settings import load_settings
from tests.integration.test_api import ADMIN, Client, bearer


@pytest.fixture
async def steering_client(store_url: str, tmp_path: Path) -> AsyncIterator[Client]:
    settings = load_settings(
        {}, data_dir=str(tmp_path), database_url=store_url, admin_token=ADMIN, rollout_tick_s=0.05
    )
    async with AsyncTestClient(app=create_app(settings, "registry")) as c:
        c.headers.update(bearer(ADMIN))
        yield c
