"""Readiness of `modelyard serve` in-process after a restart on the same data folder: it is 503,
naming what it waits for, until the endpoints of the served versions answer their health
check; a version whose endpoint never answers, or whose server cannot start, is listed but
stops holding readiness (after `ready_timeout_s`, or at once when it failed)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from modelyard.app import create_app
from modelyard.settings import Settings, load_settings
from tests.http_threads import serving
from tests.integration.bentos import write_bento
from tests.integration.test_tracing import ADMIN, AUTH, ROWS

APIS = [{"name": "classify", "inputs": ["input_series"]}]


@contextmanager
def model_server(version: int, ready: threading.Event) -> Iterator[str]:
    """An HTTP server that says it is ready on GET /readyz once `ready` is set (503 before, as
    BentoML does while it starts) and answers POSTs with `{"model_version": "vN"}`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path != "/readyz":
                self._send(404, {})
            else:
                self._send(200 if ready.is_set() else 503, {})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            self._send(200, {"model_version": f"v{version}"})

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        yield url


def settings(tmp_path: Path, **kw: Any) -> Settings:
    kw.setdefault("deployer", "none")
    kw.setdefault("grpc_port", 0)  # HTTP only: no fixed port bound by a test
    return load_settings({}, data_dir=str(tmp_path), admin_token=ADMIN, **kw)


async def register(s: Settings, versions: list[dict[str, Any]], stages: dict[int, str]) -> None:
    """The first run: model iris with these versions in these stages, and a 50 % split to v2
    when there is one; then the process stops."""
    async with AsyncTestClient(app=create_app(s, "serve")) as c:
        assert (await c.post("/api/v1/models", json={"name": "iris"}, headers=AUTH)).is_success
        for body in versions:
            r = await c.post("/api/v1/models/iris/versions", json=body, headers=AUTH)
            assert r.status_code == 201, r.text
        for number, stage in stages.items():
            r = await c.post(
                f"/api/v1/models/iris/versions/{number}/stage", json={"stage": stage}, headers=AUTH
            )
            assert r.status_code == 200, r.text
        if len(versions) > 1:
            split = {"splits": [{"version": 2, "weight": 50}]}
            assert (await c.put("/api/v1/models/iris/traffic", json=split, headers=AUTH)).is_success


async def until(c: Any, path: str, found: Callable[[Any], bool], within_s: float = 30) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        r = await c.get(path, headers=AUTH)
        if found(r):
            return r
        assert time.monotonic() < deadline, f"{path}: {r.status_code} {r.text}"
        await asyncio.sleep(0.05)


def named(r: Any) -> dict[int, str]:
    return {v["version"]: v["status"] for v in r.json().get("not_ready", [])}


async def test_after_a_restart_ready_waits_for_every_served_endpoint(tmp_path: Path) -> None:
    v1_up, v2_up, never = threading.Event(), threading.Event(), threading.Event()
    v1_up.set()
    with (
        model_server(1, v1_up) as v1,
        model_server(2, v2_up) as v2,
        model_server(3, never) as v3,
    ):
        await register(
            settings(tmp_path),
            [{"endpoint": v1, "apis": APIS}, {"endpoint": v2, "apis": APIS}],
            {1: "Production", 2: "Staging"},
        )
        async with AsyncTestClient(app=create_app(settings(tmp_path), "serve")) as c:
            # v1 answers at once; v2 still starts, and holds readiness
            r = await until(c, "/readyz", lambda r: named(r) == {2: "checking"})
            assert r.status_code == 503 and r.json()["status"] == "starting"
            assert "iris v2 (checking)" in r.json()["detail"]
            waiting = r.json()["not_ready"][0]
            assert waiting["endpoint"] == v2 and waiting["model"] == "iris"
            oip = await c.get("/v2/health/ready")
            assert oip.status_code == 503 and oip.json()["ready"] is False
            assert [v["version"] for v in oip.json()["not_ready"]] == [2]
            view = (await c.get("/api/v1/models/iris/traffic", headers=AUTH)).json()
            served = {v["version"]: (v["status"], v["serving"]) for v in view["versions"]}
            assert served == {1: ("ready", True), 2: ("checking", False)}

            v2_up.set()
            r = await until(c, "/readyz", lambda r: r.status_code == 200)
            assert r.json()["status"] == "ok" and "not_ready" not in r.json()
            assert (await c.get("/v2/health/ready")).status_code == 200
            for path in ("/models/iris/versions/1/classify", "/models/iris/versions/2/classify"):
                answer = await c.post(path, json=ROWS)
                assert answer.status_code == 200, answer.text
            # once up, a version staged later that does not answer is listed, and never pulls
            # readiness back (every replica would leave its balancer at once)
            body = {"endpoint": v3, "apis": APIS}
            r = await c.post("/api/v1/models/iris/versions", json=body, headers=AUTH)
            assert r.status_code == 201, r.text
            stage = {"stage": "Staging"}
            r = await c.post("/api/v1/models/iris/versions/3/stage", json=stage, headers=AUTH)
            assert r.status_code == 200
            r = await until(c, "/readyz", lambda r: 3 in named(r))
            assert r.status_code == 200 and named(r) == {3: "not_answering"}


async def test_an_endpoint_that_never_answers_stops_holding_after_the_timeout(
    tmp_path: Path,
) -> None:
    never = threading.Event()
    with model_server(1, never) as v1:
        await register(settings(tmp_path), [{"endpoint": v1, "apis": APIS}], {1: "Production"})
        s = settings(tmp_path, ready_timeout_s=1.0)
        async with AsyncTestClient(app=create_app(s, "serve")) as c:
            r = await until(c, "/readyz", lambda r: r.status_code == 200)
            assert r.json()["not_ready"] == [
                {
                    "model": "iris",
                    "version": 1,
                    "status": "not_answering",
                    "endpoint": v1,
                    "detail": "GET /readyz answered 503",
                }
            ]


async def test_a_version_whose_server_cannot_start_is_failed_not_holding(tmp_path: Path) -> None:
    async with AsyncTestClient(app=create_app(settings(tmp_path), "serve")) as c:
        assert (await c.post("/api/v1/models", json={"name": "iris"}, headers=AUTH)).is_success
        archive = write_bento(tmp_path / "iris.bento").read_bytes()
        r = await c.post(
            "/api/v1/models/iris/versions/bento",
            content=archive,
            headers={**AUTH, "content-type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        stored = Path(r.json()["artifact_uri"].removeprefix("file://"))
        digest = r.json()["digest"]
        stage = {"stage": "Production"}
        assert (
            await c.post("/api/v1/models/iris/versions/1/stage", json=stage, headers=AUTH)
        ).status_code == 200
    stored.write_bytes(b"tampered")  # its digest no longer matches: the server cannot start
    s = settings(tmp_path, deployer="local")
    async with AsyncTestClient(app=create_app(s, "serve")) as c:
        r = await until(c, "/readyz", lambda r: named(r).get(1) in ("failed", "restarting"))
        assert r.status_code == 200, r.text  # listed, but it holds nothing back
        failed = r.json()["not_ready"][0]
        assert digest in failed.get("detail", "") or failed["status"] == "restarting", failed
        view = (await c.get("/api/v1/models/iris/traffic", headers=AUTH)).json()
        assert view["versions"][0]["serving"] is False
