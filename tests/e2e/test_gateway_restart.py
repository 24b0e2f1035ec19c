"""A `modelyard gateway` restarted while its registry is down serves the last route table it
saved under its data dir: every request answered, none told the model does not exist; a
gateway that never had a table answers 503 with Retry-After (issue 18)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest

from modelyard.processes import ModelyardProcess
from tests.http_threads import serving

pytestmark = pytest.mark.e2e

TOKEN = "restart-e2e-admin-token-0123456789"
APIS = [{"name": "classify", "inputs": ["x"]}]


class Upstream(BaseHTTPRequestHandler):
    """A model server: any POST gets `{"label": 1}`; GET /readyz is 200."""

    protocol_version = "HTTP/1.1"

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(b"{}")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self._answer(b'{"label": 1}')

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def upstream() -> Iterator[str]:
    with serving(Upstream) as url:
        yield url


def metric(gateway: ModelyardProcess, name: str) -> float:
    for line in httpx.get(f"{gateway.url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name}")


def test_a_gateway_restarted_during_an_outage_serves_its_last_table(
    upstream: str, tmp_path: Path
) -> None:
    registry = ModelyardProcess("registry", tmp_path / "registry", TOKEN)
    registry.start()
    env = {"MODELYARD_REGISTRY_URL": registry.url, "MODELYARD_REGISTRY_TOKEN": TOKEN}
    gateway = ModelyardProcess("gateway", tmp_path / "gateway", TOKEN, extra_env=env)
    try:
        with httpx.Client(
            base_url=f"{registry.url}/api/v1", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as c:
            assert c.post("/models", json={"name": "iris"}).status_code == 201
            body = {"endpoint": upstream, "apis": APIS}
            assert c.post("/models/iris/versions", json=body).status_code == 201
            assert c.post("/models/iris/versions/1/stage", json={"stage": "Production"}).is_success
        gateway.start()
        with httpx.Client(base_url=gateway.url, timeout=10) as c:
            assert c.post("/models/iris/classify", json={"x": [1]}).status_code == 200
        saved = tmp_path / "gateway" / "gateway-routes.json"
        assert "iris" in json.loads(saved.read_bytes())["models"]

        registry.kill9()
        gateway.stop()
        gateway.start()  # ready: it has a table (the saved one)
        with httpx.Client(base_url=gateway.url, timeout=10) as c:
            answers = [c.post("/models/iris/classify", json={"x": [1]}) for _ in range(200)]
            failed = [r.status_code for r in answers if r.status_code != 200]
            print(f"\nafter a restart during the outage: {len(answers)} requests, {failed=}")
            assert failed == [] and answers[0].json() == {"label": 1}
            ready = c.get("/v2/health/ready").json()
            assert ready["registry"] == "unreachable", ready
        assert metric(gateway, "modelyard_gateway_registry_up") == 0.0
    finally:
        gateway.stop()
        registry.stop()


def test_a_gateway_without_a_table_answers_503_to_retry(tmp_path: Path) -> None:
    """The registry accepts connections and never answers (hung): reported down, and a request
    for a model is told to retry, not that the model does not exist."""
    hung = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        hung.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(hung.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    url = f"http://127.0.0.1:{hung.getsockname()[1]}"
    env = {"MODELYARD_REGISTRY_URL": url, "MODELYARD_REGISTRY_TOKEN": TOKEN}
    gateway = ModelyardProcess("gateway", tmp_path / "gateway", TOKEN, extra_env=env)
    try:
        gateway.start(until="live")
        with httpx.Client(base_url=gateway.url, timeout=10) as c:
            r = c.post("/models/iris/classify", json={"x": [1]})
            assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
            assert r.json()["error_code"] == "NO_ROUTE_TABLE"
        assert metric(gateway, "modelyard_gateway_registry_up") == 0.0
    finally:
        gateway.stop()
        stop.set()
        hung.close()
        for conn in held:
            conn.close()
