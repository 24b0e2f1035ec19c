"""A model name with a space end to end: registered, served by the gateway (`modelyard serve`
in-process, in front of an echo upstream), invoked at its percent-encoded path. The gateway's
fast HTTP server hands a percent-encoded path to this same application (fast_http.py)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from litestar.testing import AsyncTestClient

from modelyard.app import create_app
from modelyard.settings import load_settings
from tests.integration.test_tracing import ADMIN, AUTH, ROWS, echo_upstream, wait_routes_served

NAME = "churn model (eu)"


async def test_a_name_with_spaces_is_served_at_its_percent_encoded_path(tmp_path: Path) -> None:
    settings = load_settings(
        {}, data_dir=str(tmp_path), admin_token=ADMIN, deployer="none", grpc_port=0
    )
    path = quote(NAME, safe="")
    with echo_upstream(1) as upstream:
        async with AsyncTestClient(app=create_app(settings, "serve")) as c:
            r = await c.post("/api/v1/models", json={"name": NAME}, headers=AUTH)
            assert r.status_code == 201, r.text
            body = {"endpoint": upstream, "apis": [{"name": "classify", "inputs": ["x"]}]}
            r = await c.post(f"/api/v1/models/{path}/versions", json=body, headers=AUTH)
            assert r.status_code == 201, r.text
            assert r.headers["location"] == f"/api/v1/models/{path}/versions/1"
            stage = {"stage": "Production"}
            r = await c.post(f"/api/v1/models/{path}/versions/1/stage", json=stage, headers=AUTH)
            assert r.status_code == 200, r.text
            await wait_routes_served(c)
            r = await c.post(f"/models/{path}/classify", json=ROWS)
            assert r.status_code == 200, r.text
            assert r.headers["x-modelyard-version"] == "1"
            ready = await c.get(f"/v2/models/{path}/ready")
            assert ready.status_code == 200, ready.text
