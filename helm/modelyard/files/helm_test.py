"""`helm test`: the release answers end to end. Runs in the modelyard image (standard library only).

1. waits until the registry (`/readyz`) and the gateway (`/v2/health/ready`) are ready;
2. serves a tiny model itself (`POST /echo` answers its JSON body back) on TEST_PORT;
3. registers it as a version of a fresh model, by `endpoint` (this pod's IP), in Production;
4. checks that the gateway routes `POST /models/<model>/echo` to it (the answer comes back,
   headed with the version that served it);
5. deletes the model again. Exit 0 when routed, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REGISTRY = os.environ["MODELYARD_URL"].rstrip("/")
GATEWAY = os.environ["GATEWAY_URL"].rstrip("/")
TOKEN = os.environ["MODELYARD_TOKEN"]
POD_IP = os.environ["POD_IP"]
PORT = int(os.environ.get("TEST_PORT", "8080"))
TIMEOUT_S = float(os.environ.get("TIMEOUT_S", "240"))
BIND = os.environ.get("TEST_BIND", "0.0.0.0")  # noqa: S104 (the gateway must reach it)


def say(message: str) -> None:
    print(f"helm test: {message}", flush=True)


def call(
    method: str, url: str, body: Any = None, token: bool = True
) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (http only)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {TOKEN}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            raw = response.read()
            return response.status, dict(response.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, dict(exc.headers), json.loads(raw)
        except ValueError:
            return exc.code, dict(exc.headers), raw.decode(errors="replace")


class Echo(BaseHTTPRequestHandler):
    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200 if self.path in ("/readyz", "/livez") else 404, b'"ok"')

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/echo":
            self._send(404, b'"no such api"')
            return
        self._send(
            200, json.dumps({"echo": json.loads(body or b"null"), "by": "helm-test"}).encode()
        )

    def log_message(self, *args: Any) -> None:  # quiet
        pass


def wait_ready(deadline: float) -> None:
    for name, url in (
        ("registry", f"{REGISTRY}/readyz"),
        ("gateway", f"{GATEWAY}/v2/health/ready"),
    ):
        while True:
            try:
                status = call("GET", url, token=False)[0]
            except OSError as exc:
                status = str(exc)
            if status == 200:
                say(f"{name} ready: {url}")
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"helm test: {name} not ready at {url}: {status}")
            time.sleep(1)


def routed(model: str, deadline: float) -> bool:
    nonce = secrets.token_hex(8)
    last: Any = None
    while time.monotonic() < deadline:
        try:
            status, headers, body = call(
                "POST", f"{GATEWAY}/models/{model}/echo", {"x": nonce}, token=False
            )
        except OSError as exc:
            status, headers, body = 0, {}, str(exc)
        version = {k.lower(): v for k, v in headers.items()}.get("x-modelyard-version")
        if status == 200 and body == {"echo": {"x": nonce}, "by": "helm-test"} and version == "1":
            say(f"the gateway routed POST /models/{model}/echo to version {version}")
            return True
        last = (status, body)
        time.sleep(0.5)
    say(f"the gateway did not route to the test model: last answer {last}")
    return False


def main() -> int:
    deadline = time.monotonic() + TIMEOUT_S
    wait_ready(deadline)
    server = ThreadingHTTPServer((BIND, PORT), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    model = f"helm-test-{secrets.token_hex(4)}"
    endpoint = f"http://{POD_IP}:{PORT}"
    try:
        steps = [
            ("POST", f"{REGISTRY}/api/v1/models", {"name": model, "description": "helm test"}),
            (
                "POST",
                f"{REGISTRY}/api/v1/models/{model}/versions",
                {"endpoint": endpoint, "apis": [{"name": "echo", "inputs": ["x"]}]},
            ),
            ("POST", f"{REGISTRY}/api/v1/models/{model}/versions/1/stage", {"stage": "Production"}),
        ]
        for method, url, body in steps:
            status, _, answer = call(method, url, body)
            if status >= 300:
                say(f"{method} {url} answered {status}: {answer}")
                return 1
        say(f"registered {model} version 1 at {endpoint}, in Production")
        return 0 if routed(model, deadline) else 1
    finally:
        status, _, answer = call("DELETE", f"{REGISTRY}/api/v1/models/{model}")
        say(f"deleted {model}" if status < 300 else f"could not delete {model}: {status} {answer}")
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
