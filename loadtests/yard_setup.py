"""Getting a modelyard ready for a load run, over its REST API: the iris bentos, a model with a
served version (optionally with the example's fault switch on), a candidate for a rollout, a
model for registry traffic, and where its BentoML server runs. Used by loadrun.py and by the
load tests' fixtures (tests/e2e/test_loadtest.py), which share one process between runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

REPO: Final = Path(__file__).resolve().parents[1]
IRIS_BODY: Final = b'{"input_series": [[5.1, 3.5, 1.4, 0.2]]}'
SERVED_TIMEOUT_S: Final = 120.0  # upload, `bentoml serve` start (5-8 s alone), route feed
LATENCY_TAG: Final = "serving.env.IRIS_FAULT_LATENCY_MS"
ERROR_RATE_TAG: Final = "serving.env.IRIS_FAULT_ERROR_RATE"
JSON: Final = {"Content-Type": "application/json"}
UNREACHABLE: Final = "http://127.0.0.1:9"  # registry-only versions: never called


class SetupError(RuntimeError):
    """The target could not be made ready for the run (exit code 2)."""


def fault_tags(latency_ms: float = 0.0, error_rate: float = 0.0) -> dict[str, str]:
    tags = {}
    if latency_ms:
        tags[LATENCY_TAG] = f"{latency_ms:g}"
    if error_rate:
        tags[ERROR_RATE_TAG] = f"{error_rate:g}"
    return tags


def build_bentos(out: Path = REPO / ".cache" / "bentos") -> tuple[Path, Path]:
    """The example's exported v1 and v2 bentos (built once; a no-op when up to date)."""
    done = subprocess.run(
        [sys.executable, str(REPO / "examples/iris/build.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "BENTOML_DO_NOT_TRACK": "true"},
    )
    if done.returncode != 0:
        raise SetupError(f"examples/iris/build.py failed ({done.returncode}):\n{done.stderr}")
    v1, v2 = (Path(line) for line in done.stdout.split())
    return v1, v2


def expect(response: httpx.Response) -> Any:
    if not response.is_success:
        raise SetupError(
            f"{response.request.method} {response.request.url.path} answered"
            f" {response.status_code}: {response.text[:500]}"
        )
    return response.json() if response.content else None


@dataclass(frozen=True)
class Target:
    """A running modelyard: its URL and a deployer (or admin) token."""

    url: str
    token: str

    def api(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=120.0)

    def create_model(self, name: str) -> None:
        with self.api() as api:
            expect(api.post("/models", json={"name": name, "description": "load test"}))

    def upload(self, model: str, archive: Path, tags: dict[str, str]) -> int:
        params = {"tag": [f"{k}={v}" for k, v in tags.items()]}
        with self.api() as api, archive.open("rb") as body:
            found = expect(api.post(f"/models/{model}/versions/bento", content=body, params=params))
        return int(found["version"])

    def promote(self, model: str, version: int) -> None:
        stage = {"stage": "Production", "archive_existing": True}
        with self.api() as api:
            expect(api.post(f"/models/{model}/versions/{version}/stage", json=stage))

    def wait_served(self, model: str, version: int, within_s: float = SERVED_TIMEOUT_S) -> None:
        """POST through the gateway until `version` answers 200."""
        url, last = f"{self.url}/models/{model}/classify", "no answer"
        deadline = time.monotonic() + within_s
        with httpx.Client(timeout=10.0) as client:
            while time.monotonic() < deadline:
                try:
                    r = client.post(url, content=IRIS_BODY, headers=JSON)
                except httpx.TransportError as exc:
                    last = repr(exc)
                else:
                    served = r.headers.get("x-modelyard-version")
                    if r.status_code == 200 and served == str(version):
                        return
                    last = f"{r.status_code} from version {served}"
                time.sleep(0.2)
        raise SetupError(f"{model} v{version} not served within {within_s:g} s; last: {last}")

    def serve_iris(self, model: str, archive: Path, tags: dict[str, str]) -> int:
        """Model `model` with `archive` as its Production version, answering through the
        gateway; returns the version number."""
        self.create_model(model)
        version = self.upload(model, archive, tags)
        self.promote(model, version)
        return version

    def registry_model(self, name: str, versions: int) -> None:
        """A model with `versions` endpoint versions (never called), v1 in Production and the
        alias `champion` on it: what the registry scenario reads, promotes and moves."""
        self.create_model(name)
        with self.api() as api:
            for _ in range(versions):
                expect(api.post(f"/models/{name}/versions", json={"endpoint": UNREACHABLE}))
            stage = {"stage": "Production", "archive_existing": True}
            expect(api.post(f"/models/{name}/versions/1/stage", json=stage))
            expect(api.put(f"/models/{name}/aliases/champion", json={"version": 1}))

    def server_of(self, model: str, version: int) -> dict[str, Any] | None:
        """The BentoML server modelyard runs for the version (endpoint, pid), if it runs one."""
        with self.api() as api:
            r = api.get(f"/models/{model}/versions/{version}/deployment")
        return r.json() if r.status_code == 200 else None

    def stable_version(self, model: str) -> int:
        with self.api() as api:
            found = expect(api.get(f"/models/{model}/versions", params={"stage": "Production"}))
        items = found["items"] if isinstance(found, dict) else found
        if not items:
            raise SetupError(f"model {model!r} has no Production version to load")
        return int(items[0]["version"])
