"""The modelyard process under benchmark, over its REST API: register and promote a model
version, then wait until the gateway serves it."""

from __future__ import annotations

import time
from typing import Any, Final

import httpx

from loadtests.benchkit import BenchError
from modelyard.processes import ModelyardProcess

SERVED_TIMEOUT_S: Final = 15.0  # the gateway serving a newly promoted model


def expect_success(response: httpx.Response) -> Any:
    if not response.is_success:
        raise BenchError(
            f"{response.request.method} {response.request.url.path} answered"
            f" {response.status_code}: {response.text[:500]}"
        )
    return response.json()


def register(proc: ModelyardProcess, name: str, version: dict[str, Any]) -> int:
    """Create model `name` with one version, promote it to Production; returns its number."""
    headers = {"Authorization": f"Bearer {proc.admin_token}"}
    with httpx.Client(base_url=f"{proc.url}/api/v1", headers=headers, timeout=30.0) as api:
        expect_success(api.post("/models", json={"name": name, "description": "benchmark"}))
        number = int(expect_success(api.post(f"/models/{name}/versions", json=version))["version"])
        stage = {"stage": "Production", "archive_existing": True}
        expect_success(api.post(f"/models/{name}/versions/{number}/stage", json=stage))
    return number


def wait_served(url: str, body: str, version: int) -> httpx.Response:
    """POST until the gateway answers 200 (the route feed has the promotion); checks the headers
    that name what served it."""
    deadline = time.monotonic() + SERVED_TIMEOUT_S
    last = "no answer"
    headers = {"Content-Type": "application/json"}
    with httpx.Client(timeout=10.0) as client:
        while time.monotonic() < deadline:
            try:
                response = client.post(url, content=body, headers=headers)
            except httpx.TransportError as exc:
                last = repr(exc)
            else:
                if response.status_code == 200:
                    served = response.headers.get("x-modelyard-version")
                    if served != str(version):
                        raise BenchError(
                            f"POST {url}: x-modelyard-version is {served!r}, not {version}"
                            f" (headers: {dict(response.headers)})"
                        )
                    return response
                last = f"{response.status_code}: {response.text[:500]}"
            time.sleep(0.05)
    raise BenchError(f"POST {url} never answered 200 in {SERVED_TIMEOUT_S:.0f} s; last: {last}")
